<?php

// Sends with Messenger's own sender (RedisTransport::send, i.e. RedisSender and Connection::add,
// with the JSON serializer), for comparing its stream entries with the ones kafka2redis writes.
// Usage:
//   php client_send.php [--print] < records.jsonl     (one json-envelope record a line)
// Each record becomes an App\Message\KafkaRecord. With --print, it then writes the `message`
// field of every entry of the stream, as stored (read without phpredis's serializer), one a line:
// they are ASCII and have no line breaks. Same environment as the worker (bootstrap.php).

require __DIR__.'/bootstrap.php';

use App\Message\KafkaRecord;
use Symfony\Component\Messenger\Envelope;

$transport = k2r_transport();
while (($line = fgets(STDIN)) !== false) {
    if (trim($line) === '') {
        continue;
    }
    $record = json_decode($line, true, 512, JSON_THROW_ON_ERROR);
    $transport->send(new Envelope(KafkaRecord::fromRecord($record)));
}

if (in_array('--print', array_slice($argv, 1), true)) {
    $redis = new Redis();
    $redis->connect(k2r_env('K2R_REDIS_HOST', '127.0.0.1'), (int) k2r_env('K2R_REDIS_PORT', '6379'));
    $redis->select((int) k2r_env('K2R_REDIS_DB', '0'));
    foreach ($redis->xRange(k2r_env('K2R_SYMFONY_STREAM', 'messages'), '-', '+') as $fields) {
        echo $fields['message'], "\n";
    }
}
