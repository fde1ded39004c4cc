<?php

// Only the Redis part matters. `options.prefix` is prepended by the Redis client to every key the
// queue uses, Lua script keys included: a stock Laravel app sets it to
// Str::slug(APP_NAME, '_').'_database_' ("laravel_database_"); here it is K2R_REDIS_PREFIX, default "".

return [
    'default' => 'sqlite',
    'connections' => [],
    'redis' => [
        'client' => getenv('K2R_LARAVEL_REDIS_CLIENT') ?: 'phpredis',
        'options' => [
            'cluster' => 'redis',
            'prefix' => (string) getenv('K2R_REDIS_PREFIX'),
        ],
        'default' => [
            'host' => getenv('K2R_REDIS_HOST') ?: '127.0.0.1',
            'port' => (int) (getenv('K2R_REDIS_PORT') ?: 6379),
            'database' => (int) (getenv('K2R_REDIS_DB') ?: 0),
            'password' => null,
        ],
    ],
];
