<?php

namespace App\Message;

// The message class a kafka2redis `symfony` envelope names as its `job`: the bridge's `json`
// record, one public property per key. The `*_encoding` markers are typed and have no default, so
// they stay uninitialised unless the record carries them; Symfony's ObjectNormalizer then leaves
// them out when it serializes the message, so a message sent by Messenger's own sender is the
// record's JSON, key for key, and one decoded from the bridge's entry has exactly the record's keys.
final class KafkaRecord
{
    public string $topic;
    public int $partition;
    public int $offset;
    /** Milliseconds since the epoch, or null. */
    public ?int $timestamp;
    public ?string $key;
    public string $key_encoding;
    /** A list of ['key' => string, 'value' => ?string] (plus 'value_encoding' => 'base64'). */
    public array $headers;
    /** Null for a tombstone. */
    public ?string $value;
    public string $value_encoding;

    /** The record as the `json` envelope writes it: decoded with json_decode(..., true). */
    public static function fromRecord(array $record): self
    {
        $message = new self();
        foreach ($record as $name => $value) {
            $message->$name = $value;
        }

        return $message;
    }
}
