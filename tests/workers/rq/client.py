"""RQ's own client, for comparing what it writes with what kafka2redis writes (tests/job_queues.rs).

    python client.py enqueue QUEUE FUNCTION < jobs.jsonl
        Each line {"id": JOB_ID, "record": RECORD, "description": TEXT, "timeout": N,
        "result_ttl": N}: Queue(QUEUE).enqueue(FUNCTION, RECORD, job_id=JOB_ID, ...).
    python client.py dump QUEUE
        Prints {"queue": [ids], "queues": [members], "jobs": {id: {field: value}}} for the queue,
        with each job's `data` decoded (zlib, then pickle) to [func, instance, args, kwargs] and
        its dict arguments' keys in order.

Environment: K2R_REDIS_HOST, K2R_REDIS_PORT, K2R_REDIS_DB (127.0.0.1, 6379, 0). Run with the
workers' virtualenv (scripts/install-workers.sh).
"""

import json
import os
import pickle
import sys
import zlib

from redis import Redis
from rq import Queue


def connection():
    return Redis(
        host=os.environ.get("K2R_REDIS_HOST", "127.0.0.1"),
        port=int(os.environ.get("K2R_REDIS_PORT", "6379")),
        db=int(os.environ.get("K2R_REDIS_DB", "0")),
    )


def enqueue(queue_name, function):
    queue = Queue(queue_name, connection=connection())
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        queue.enqueue(
            function,
            job["record"],
            job_id=job["id"],
            description=job["description"],
            job_timeout=job["timeout"],
            result_ttl=job["result_ttl"],
        )


def dump(queue_name):
    redis = connection()
    queue_key = "rq:queue:" + queue_name
    ids = [i.decode() for i in redis.lrange(queue_key, 0, -1)]
    jobs = {}
    for job_id in ids:
        fields = {k.decode(): v for k, v in redis.hgetall("rq:job:" + job_id).items()}
        call = pickle.loads(zlib.decompress(fields.pop("data")))
        out = {k: v.decode() for k, v in fields.items()}
        out["data"] = [call[0], call[1], list(call[2]), call[3]]
        # JSON objects compare without order; the dict's own order is part of what a handler sees.
        out["argument_keys"] = [list(arg) for arg in call[2] if isinstance(arg, dict)]
        out["ttl"] = redis.ttl("rq:job:" + job_id)
        jobs[job_id] = out
    queues = sorted(m.decode() for m in redis.smembers("rq:queues"))
    json.dump({"queue": ids, "queues": queues, "jobs": jobs}, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "enqueue":
        enqueue(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "dump":
        dump(sys.argv[2])
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)
