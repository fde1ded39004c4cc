<?php

namespace App\Jobs;

// The handler a kafka2redis `laravel` envelope names as 'App\Jobs\RecordMessage@handle'. Laravel
// calls it with the queue job and the payload's `data`: the bridge's `json` record, decoded to an
// array. It appends {"topic","partition","offset","value"} (plus "value_encoding" when the record has
// one) as one JSON line to the file K2R_WORKER_OUT, then deletes the job: a string job that is
// neither deleted nor released stays reserved and runs again after retry_after.
// K2R_WORKER_SLEEP (seconds, fractions allowed) delays each job before it records anything.

class RecordMessage
{
    public function handle($job, $data)
    {
        $sleep = (float) getenv('K2R_WORKER_SLEEP');
        if ($sleep > 0) {
            usleep((int) ($sleep * 1000000));
        }

        $line = [
            'topic' => $data['topic'],
            'partition' => $data['partition'],
            'offset' => $data['offset'],
            'value' => $data['value'],
        ];
        if (isset($data['value_encoding'])) {
            $line['value_encoding'] = $data['value_encoding'];
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

        $job->delete();
    }
}
