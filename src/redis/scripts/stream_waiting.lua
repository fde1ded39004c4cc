local groups = stream_groups(KEYS[1])
return {stream_unfinished(KEYS[1], groups), stream_oldest_unfinished(KEYS[1], groups) or false}
