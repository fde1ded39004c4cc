# A Sidekiq worker for kafka2redis's `sidekiq` envelope, run by the stock server:
#   sidekiq -r ./worker.rb -q NAME -c 1
# The envelope's `job` names the class, "RecordWorker"; its one argument is the bridge's `json`
# record (a Hash). Each job appends {"topic","partition","offset","value"} (plus "value_encoding"
# when the record has one) as one JSON line to the file K2R_WORKER_OUT.
#   K2R_REDIS_HOST, K2R_REDIS_PORT, K2R_REDIS_DB  the Redis to use (127.0.0.1, 6379, 0)
#   K2R_WORKER_SLEEP                               seconds to wait in each job before recording (0)
require "json"
require "sidekiq"

redis_url = "redis://#{ENV.fetch("K2R_REDIS_HOST", "127.0.0.1")}:#{ENV.fetch("K2R_REDIS_PORT", "6379")}/#{ENV.fetch("K2R_REDIS_DB", "0")}"
Sidekiq.configure_server { |config| config.redis = {url: redis_url} }
Sidekiq.configure_client { |config| config.redis = {url: redis_url} }

class RecordWorker
  include Sidekiq::Worker

  def perform(record)
    sleep_for = ENV.fetch("K2R_WORKER_SLEEP", "0").to_f
    sleep(sleep_for) if sleep_for > 0

    line = {
      "topic" => record["topic"],
      "partition" => record["partition"],
      "offset" => record["offset"],
      "value" => record["value"]
    }
    line["value_encoding"] = record["value_encoding"] if record.key?("value_encoding")
    out = ENV["K2R_WORKER_OUT"]
    raise "K2R_WORKER_OUT is not set" if out.nil? || out.empty?
    File.open(out, "a") do |f|
      f.flock(File::LOCK_EX)
      f.write(JSON.generate(line) + "\n")
    end
  end
end
