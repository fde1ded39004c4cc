<?php

namespace App\MessageHandler;

use App\Message\KafkaRecord;

// The handler for App\Message\KafkaRecord. It appends {"topic","partition","offset","value"} (plus
// "value_encoding" when the record has one) as one JSON line to the file K2R_WORKER_OUT; Messenger's
// Worker acknowledges the entry (XACK) after it returns. K2R_WORKER_SLEEP (seconds, fractions
// allowed) delays each message before it records anything.
final class KafkaRecordHandler
{
    public function __invoke(KafkaRecord $message): void
    {
        $sleep = (float) getenv('K2R_WORKER_SLEEP');
        if ($sleep > 0) {
            usleep((int) ($sleep * 1000000));
        }

        $line = [
            'topic' => $message->topic,
            'partition' => $message->partition,
            'offset' => $message->offset,
            'value' => $message->value,
        ];
        if (isset($message->value_encoding)) {
            $line['value_encoding'] = $message->value_encoding;
        }

        $out = getenv('K2R_WORKER_OUT');
        if ($out === false || $out === '') {
            throw new \RuntimeException('K2R_WORKER_OUT is not set');
        }
        file_put_contents(
            $out,
            json_encode($line, JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR)."\n",
            FILE_APPEND | LOCK_EX
        );
    }
}
