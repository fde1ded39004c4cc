<?php

// Enqueues with Laravel's own client (RedisQueue::push of a string job), for comparing its list
// element with the one kafka2redis builds. Usage:
//   php client_enqueue.php JOB QUEUE < records.jsonl     (one json-envelope record a line)
// e.g. JOB = 'App\Jobs\RecordMessage@handle'. Same environment as the worker (K2R_REDIS_*).

require __DIR__.'/bootstrap/autoload.php';

$app = require __DIR__.'/bootstrap/app.php';
$app->make(Illuminate\Contracts\Console\Kernel::class)->bootstrap();

[$job, $queue] = [$argv[1], $argv[2]];
$connection = $app['queue']->connection('redis');
while (($line = fgets(STDIN)) !== false) {
    if (trim($line) === '') {
        continue;
    }
    $connection->push($job, json_decode($line, true, 512, JSON_THROW_ON_ERROR), $queue);
}
