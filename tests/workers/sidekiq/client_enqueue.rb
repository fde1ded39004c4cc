# Enqueues with Sidekiq's own client (Sidekiq::Client.push with a class name), for comparing its
# list element with the one kafka2redis builds. Usage:
#   ruby client_enqueue.rb CLASS QUEUE < records.jsonl     (one json-envelope record a line)
# Same environment as the worker (K2R_REDIS_*).
require_relative "worker"

klass, queue = ARGV
$stdin.each_line do |line|
  next if line.strip.empty?
  Sidekiq::Client.push("class" => klass, "queue" => queue, "args" => [JSON.parse(line)])
end
