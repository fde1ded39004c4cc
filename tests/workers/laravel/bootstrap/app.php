<?php

// The service manifests Laravel writes on start (bootstrap/cache/*.php) go to a scratch directory,
// so the fixture's tree stays read-only and several workers can start at once.
$cache = getenv('K2R_LARAVEL_CACHE') ?: sys_get_temp_dir().'/k2r-laravel-'.getmyuid();
if (! is_dir($cache)) {
    @mkdir($cache, 0700, true);
}
foreach (['APP_SERVICES_CACHE' => 'services.php', 'APP_PACKAGES_CACHE' => 'packages.php',
          'APP_CONFIG_CACHE' => 'config.php', 'APP_ROUTES_CACHE' => 'routes.php',
          'APP_EVENTS_CACHE' => 'events.php'] as $name => $file) {
    if (getenv($name) === false) {
        $_ENV[$name] = $_SERVER[$name] = $cache.'/'.$file;
    }
}

$app = new Illuminate\Foundation\Application(dirname(__DIR__));

$app->useStoragePath($cache.'/storage');

$app->singleton(
    Illuminate\Contracts\Console\Kernel::class,
    Illuminate\Foundation\Console\Kernel::class
);

$app->singleton(
    Illuminate\Contracts\Debug\ExceptionHandler::class,
    Illuminate\Foundation\Exceptions\Handler::class
);

return $app;
