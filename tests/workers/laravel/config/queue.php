<?php

// One Redis queue connection, named "redis" as in a stock Laravel app.
//   K2R_QUEUE                default queue name ("default"); the list is queues:<name>
//   K2R_LARAVEL_RETRY_AFTER  seconds a reserved job may run before another worker may take it (90)
//   K2R_LARAVEL_BLOCK_FOR    seconds a worker blocks on queues:<name>:notify when idle (unset: poll)

$blockFor = getenv('K2R_LARAVEL_BLOCK_FOR');

return [
    'default' => 'redis',
    'connections' => [
        'redis' => [
            'driver' => 'redis',
            'connection' => 'default',
            'queue' => getenv('K2R_QUEUE') ?: 'default',
            'retry_after' => (int) (getenv('K2R_LARAVEL_RETRY_AFTER') ?: 90),
            'block_for' => ($blockFor === false || $blockFor === '') ? null : (int) $blockFor,
            'after_commit' => false,
        ],
    ],
    'failed' => [
        'driver' => 'null',
    ],
];
