#!/usr/bin/env python3
"""The reference for kafka2redis's job envelopes: builds, for one `json` envelope record, the exact
list element and Redis writes that each framework's own client makes, and can push them.

The Rust encoder is compared against this file (see docs/workers-wire-format.md for the facts it
follows); tests/workers/verify.py checks it against the real clients and the stock workers.

    enqueue_reference.py FRAMEWORK --job NAME [--queue NAME] [--prefix P]
                         [--host H] [--port N] [--db N] [--print] < records.jsonl

FRAMEWORK is laravel, celery or sidekiq. Each input line is one record as the bridge's `json`
envelope writes it ({"topic","partition","offset","timestamp","key","headers","value"}, with
"key_encoding"/"value_encoding": "base64" after a binary key/value). --print writes the Redis
commands (one JSON array a line) instead of sending them. Standard library only; no Redis client.

Random parts (uuid, ids, delivery tags) and clock readings are parameters of the builder functions,
so a caller can reproduce a given element byte for byte.
"""

import argparse
import base64
import json
import os
import socket
import sys
import time
import uuid as uuidlib

# --- the bridge's `json` envelope record (mirrors src/envelope.rs) ---------------------------------


def json_record(topic, partition, offset, timestamp, key, value, headers=()):
    """The `json` envelope's record as an ordered dict; key/value/header values are bytes or None."""

    def put(obj, name, data):
        if data is None:
            obj[name] = None
            return
        try:
            obj[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            obj[name] = base64.b64encode(data).decode("ascii")
            obj[name + "_encoding"] = "base64"

    rec = {"topic": topic, "partition": partition, "offset": offset, "timestamp": timestamp}
    put(rec, "key", key)
    hdrs = []
    for hkey, hvalue in headers:
        h = {"key": hkey}
        put(h, "value", hvalue)
        hdrs.append(h)
    rec["headers"] = hdrs
    put(rec, "value", value)
    return rec


def serde_json(obj):
    """serde_json::to_writer's bytes: compact, UTF-8 unescaped, `/` unescaped."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# --- each language's JSON writer, byte for byte -----------------------------------------------------


def php_json(obj):
    """PHP json_encode($v, JSON_UNESCAPED_UNICODE): compact, UTF-8 as is, but `/` -> `\\/` and
    U+2028/U+2029 escaped (PHP >= 7.1 without JSON_UNESCAPED_LINE_TERMINATORS). `/` and the two
    line terminators only ever occur inside strings, so replacing them in the output is exact."""
    out = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return out.replace("/", "\\/").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def ruby_json(obj):
    """Ruby's JSON.generate (json 2.x, no script_safe): compact, UTF-8 as is, `/` as is."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def python_json(obj):
    """kombu.utils.json.dumps = json.dumps defaults: ASCII only (\\uXXXX, surrogate pairs above
    U+FFFF), separators ", " and ": "."""
    return json.dumps(obj)


# --- Laravel (RedisQueue::push of a string job; Laravel 8-11 payload) ----------------------------


def laravel_random_id():
    """Str::random(32): 32 characters of [A-Za-z0-9]."""
    out = ""
    while len(out) < 32:
        raw = base64.b64encode(os.urandom(48)).decode()
        out += raw.replace("/", "").replace("+", "").replace("=", "")
    return out[:32]


def laravel(record, job, queue="default", prefix="", uuid=None, job_id=None, style="php"):
    """Returns (commands, element) for one record. `job` is 'Class@method' (or 'Class', whose
    method is then `fire`); `prefix` is the connection's database.redis.options.prefix.
    style="serde" writes the same payload as serde_json would (`/` and U+2028/9 unescaped): a
    different byte string that every PHP JSON decoder reads as the same value."""
    payload = {
        "uuid": uuid or str(uuidlib.uuid4()),
        "displayName": job.split("@")[0],
        "job": job,
        "maxTries": None,
        "maxExceptions": None,
        "failOnTimeout": False,
        "backoff": None,
        "timeout": None,
        "data": record,
        "id": job_id or laravel_random_id(),
        "attempts": 0,
    }
    element = php_json(payload) if style == "php" else serde_json(payload)
    key = prefix + "queues:" + queue
    # LuaScripts::push(): rpush(queue, payload) then rpush(queue:notify, 1), in one EVAL.
    return [["RPUSH", key, element], ["RPUSH", key + ":notify", "1"]], element


# --- Celery (task protocol 2 on kombu's Redis transport) ------------------------------------------


def celery_argsrepr(record):
    """The bridge's argsrepr: a short Python-style summary, not the value (argsrepr is only shown in
    logs and events; Celery's default would copy up to 1024 characters of the arguments)."""
    return "[{{'topic': {!r}, 'partition': {}, 'offset': {}, ...}}]".format(
        record["topic"], record["partition"], record["offset"]
    )


def celery_origin():
    """celery.utils.nodenames.anon_nodename(): gen<pid>@<hostname>."""
    return "gen{}@{}".format(os.getpid(), socket.gethostname())


def celery(record, task, queue="celery", task_id=None, delivery_tag=None, origin=None,
           reply_to="", argsrepr=None, global_keyprefix="", style="python"):
    """Returns (commands, element) for one record: what app.send_task(task, args=[record],
    queue=queue) publishes through kombu's Redis transport (priority 0, anonymous exchange).
    style="serde" writes the body JSON (inside the base64) and the message as serde_json would
    (compact, UTF-8 unescaped): other bytes, the same values for kombu's JSON decoder."""
    dump = python_json if style == "python" else serde_json
    task_id = task_id or str(uuidlib.uuid4())
    body = [[record], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    message = {
        "body": base64.b64encode(dump(body).encode("utf-8")).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": task,
            "id": task_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": celery_argsrepr(record) if argsrepr is None else argsrepr,
            "kwargsrepr": "{}",
            "origin": origin or celery_origin(),
            "ignore_result": None,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        },
        "properties": {
            "correlation_id": task_id,
            "reply_to": reply_to,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": delivery_tag or str(uuidlib.uuid4()),
        },
    }
    element = dump(message)
    # kombu Channel._put: lpush(queue, message); workers BRPOP, so the list is FIFO.
    return [["LPUSH", global_keyprefix + queue, element]], element


# --- Sidekiq (Sidekiq::Client.push with a class name; Sidekiq 6 and 7) -----------------------------


def sidekiq(record, klass, queue="default", jid=None, created_at=None, enqueued_at=None):
    """Returns (commands, element) for one record. Times are float seconds since the epoch."""
    now = time.time()
    job = {
        "retry": True,
        "queue": queue,
        "class": klass,
        "args": [record],
        "jid": jid or os.urandom(12).hex(),
        "created_at": now if created_at is None else float(created_at),
        "enqueued_at": now if enqueued_at is None else float(enqueued_at),
    }
    element = ruby_json(job)
    # Client#atomic_push, pipelined: sadd("queues", queue) then lpush("queue:<queue>", job).
    return [["SADD", "queues", queue], ["LPUSH", "queue:" + queue, element]], element


# --- a minimal Redis client (RESP2), enough to send these commands ---------------------------------


class Redis:
    def __init__(self, host="127.0.0.1", port=6379, db=0):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.file = self.sock.makefile("rb")
        if db:
            self.call("SELECT", str(db))

    def call(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(parts))
        return self._read()

    def _read(self):
        line = self.file.readline()
        if not line:
            raise ConnectionError("Redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.file.read(n + 2)[:-2]
            return data
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RuntimeError("unexpected reply %r" % line)

    def close(self):
        self.sock.close()


def build(framework, record, job, queue=None, prefix=""):
    if framework == "laravel":
        return laravel(record, job, queue=queue or "default", prefix=prefix)
    if framework == "celery":
        return celery(record, job, queue=queue or "celery", global_keyprefix=prefix)
    if framework == "sidekiq":
        return sidekiq(record, job, queue=queue or "default")
    raise ValueError("unknown framework %r" % framework)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("framework", choices=["laravel", "celery", "sidekiq"])
    ap.add_argument("--job", required=True, help="Laravel 'Class@method', Celery task, Sidekiq class")
    ap.add_argument("--queue", help="queue name (laravel/sidekiq: default; celery: celery)")
    ap.add_argument("--prefix", default="", help="laravel: options.prefix; celery: global_keyprefix")
    ap.add_argument("--host", default=os.environ.get("K2R_REDIS_HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("K2R_REDIS_PORT", "6379")))
    ap.add_argument("--db", type=int, default=int(os.environ.get("K2R_REDIS_DB", "0")))
    ap.add_argument("--print", action="store_true", help="print the commands instead of sending")
    args = ap.parse_args(argv)

    redis = None if args.print else Redis(args.host, args.port, args.db)
    for line in sys.stdin:
        if not line.strip():
            continue
        record = json.loads(line)
        commands, _ = build(args.framework, record, args.job, args.queue, args.prefix)
        if redis is None:
            for cmd in commands:
                print(json.dumps(cmd, ensure_ascii=False))
        else:
            # One MULTI/EXEC per record, as the frameworks make their writes together.
            redis.call("MULTI")
            for cmd in commands:
                redis.call(*cmd)
            redis.call("EXEC")
    if redis is not None:
        redis.close()


if __name__ == "__main__":
    main()
