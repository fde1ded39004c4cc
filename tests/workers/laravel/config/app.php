<?php

return [
    'name' => 'k2r-laravel-fixture',
    'env' => 'production',
    'debug' => (bool) getenv('K2R_LARAVEL_DEBUG'),
    'timezone' => 'UTC',
    'locale' => 'en',
    'fallback_locale' => 'en',
    'key' => 'base64:'.base64_encode(str_repeat('k', 32)),
    'cipher' => 'AES-256-CBC',
    'providers' => [
        Illuminate\Bus\BusServiceProvider::class,
        Illuminate\Cache\CacheServiceProvider::class,
        Illuminate\Filesystem\FilesystemServiceProvider::class,
        Illuminate\Queue\QueueServiceProvider::class,
        Illuminate\Redis\RedisServiceProvider::class,
        App\Providers\QueueCommandsServiceProvider::class,
    ],
    'aliases' => [],
];
