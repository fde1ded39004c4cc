return stream_unfinished(KEYS[1], stream_groups(KEYS[1]))
