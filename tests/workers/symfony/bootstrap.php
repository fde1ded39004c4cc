<?php

// Loads Debian's Symfony packages (php-symfony-messenger, php-symfony-redis-messenger,
// php-symfony-serializer, php-symfony-property-access; scripts/install-workers.sh installs them)
// and this app's two classes, and builds the transport every script here uses: Messenger's Redis
// transport from a DSN with the stock JSON serializer, the one a Symfony app gets from
// `serializer: messenger.transport.symfony_serializer`.
//
// Environment: K2R_REDIS_HOST (127.0.0.1), K2R_REDIS_PORT (6379), K2R_REDIS_DB (0),
// K2R_SYMFONY_STREAM (the stream, default `messages`), K2R_SYMFONY_GROUP (`symfony`),
// K2R_SYMFONY_CONSUMER (`consumer`), K2R_SYMFONY_REDELIVER_TIMEOUT (seconds, 3600),
// K2R_SYMFONY_CLAIM_INTERVAL (milliseconds, 60000).

require '/usr/share/php/Symfony/Component/Messenger/autoload.php';
require '/usr/share/php/Symfony/Component/Messenger/Bridge/Redis/autoload.php';
require '/usr/share/php/Symfony/Component/Serializer/autoload.php';
require '/usr/share/php/Symfony/Component/PropertyAccess/autoload.php';
require '/usr/share/php/Symfony/Component/EventDispatcher/autoload.php';
require __DIR__.'/src/KafkaRecord.php';
require __DIR__.'/src/KafkaRecordHandler.php';

use Symfony\Component\Messenger\Bridge\Redis\Transport\RedisTransport;
use Symfony\Component\Messenger\Bridge\Redis\Transport\RedisTransportFactory;
use Symfony\Component\Messenger\Transport\Serialization\Serializer;

function k2r_env(string $name, string $default): string
{
    $value = getenv($name);

    return $value === false || $value === '' ? $default : $value;
}

/** The Redis transport as `MESSENGER_TRANSPORT_DSN=redis://…` and the options below configure it. */
function k2r_transport(): RedisTransport
{
    $dsn = sprintf(
        'redis://%s:%s/%s/%s/%s',
        k2r_env('K2R_REDIS_HOST', '127.0.0.1'),
        k2r_env('K2R_REDIS_PORT', '6379'),
        rawurlencode(k2r_env('K2R_SYMFONY_STREAM', 'messages')),
        rawurlencode(k2r_env('K2R_SYMFONY_GROUP', 'symfony')),
        rawurlencode(k2r_env('K2R_SYMFONY_CONSUMER', 'consumer'))
    );
    $options = [
        'dbindex' => (int) k2r_env('K2R_REDIS_DB', '0'),
        'delete_after_ack' => false,
        'redeliver_timeout' => (int) k2r_env('K2R_SYMFONY_REDELIVER_TIMEOUT', '3600'),
        'claim_interval' => (int) k2r_env('K2R_SYMFONY_CLAIM_INTERVAL', '60000'),
    ];

    return (new RedisTransportFactory())->createTransport($dsn, $options, Serializer::create());
}
