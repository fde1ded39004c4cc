<?php

namespace App\Providers;

use Illuminate\Queue\Console\ClearCommand;
use Illuminate\Queue\Console\RestartCommand;
use Illuminate\Queue\Console\WorkCommand;
use Illuminate\Support\ServiceProvider;

// Registers Laravel's own queue commands the way Illuminate\Foundation\Providers\ArtisanServiceProvider
// does, without the dozens of other commands that need a database, views or mail.

class QueueCommandsServiceProvider extends ServiceProvider
{
    public function register()
    {
        $this->app->singleton('command.queue.work', function ($app) {
            return new WorkCommand($app['queue.worker'], $app['cache.store']);
        });
        $this->app->singleton('command.queue.restart', function ($app) {
            return new RestartCommand($app['cache.store']);
        });
        $this->app->singleton('command.queue.clear', function () {
            return new ClearCommand;
        });

        $this->commands(['command.queue.work', 'command.queue.restart', 'command.queue.clear']);
    }
}
