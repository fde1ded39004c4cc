<?php

// A stock Messenger worker: Symfony's own Worker over the Redis transport's receiver, a message bus
// whose one handler is App\MessageHandler\KafkaRecordHandler, as `bin/console messenger:consume`
// runs it in the smallest app. It stops on SIGTERM after the message in hand, or after
// K2R_SYMFONY_LIMIT messages when that is set. Environment: bootstrap.php's, plus the handler's
// K2R_WORKER_OUT and K2R_WORKER_SLEEP.

require __DIR__.'/bootstrap.php';

use App\Message\KafkaRecord;
use App\MessageHandler\KafkaRecordHandler;
use Symfony\Component\EventDispatcher\EventDispatcher;
use Symfony\Component\Messenger\EventListener\StopWorkerOnMessageLimitListener;
use Symfony\Component\Messenger\EventListener\StopWorkerOnSigtermSignalListener;
use Symfony\Component\Messenger\Handler\HandlersLocator;
use Symfony\Component\Messenger\MessageBus;
use Symfony\Component\Messenger\Middleware\HandleMessageMiddleware;
use Symfony\Component\Messenger\Worker;

$bus = new MessageBus([
    new HandleMessageMiddleware(new HandlersLocator([
        KafkaRecord::class => [new KafkaRecordHandler()],
    ])),
]);

$events = new EventDispatcher();
$events->addSubscriber(new StopWorkerOnSigtermSignalListener());
$limit = (int) k2r_env('K2R_SYMFONY_LIMIT', '0');
if ($limit > 0) {
    $events->addSubscriber(new StopWorkerOnMessageLimitListener($limit));
}

// A failed message is logged to stderr: Messenger's Worker rejects it (the entry is deleted).
$events->addListener(
    \Symfony\Component\Messenger\Event\WorkerMessageFailedEvent::class,
    function ($event) {
        fwrite(STDERR, 'worker: message failed: '.$event->getThrowable()->getMessage()."\n");
    }
);

pcntl_async_signals(true);
$worker = new Worker(['redis' => k2r_transport()], $bus, $events);
fwrite(STDERR, "worker: consuming\n");
$worker->run(['sleep' => 50000]);
