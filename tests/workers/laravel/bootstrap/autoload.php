<?php

// Debian's php-laravel-framework installs the framework and its dependencies under /usr/share/php
// with one autoloader; the application's own classes (App\...) load from app/.

require_once 'Illuminate/autoload.php';

spl_autoload_register(function ($class) {
    if (strncmp($class, 'App\\', 4) === 0) {
        $file = __DIR__.'/../app/'.str_replace('\\', '/', substr($class, 4)).'.php';
        if (is_file($file)) {
            require $file;
        }
    }
});
