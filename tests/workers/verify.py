#!/usr/bin/env python3
"""Proves the job-envelope reference (enqueue_reference.py) against the real frameworks, on a
redis-server this script starts on a free loopback port:

1. client: each framework's own client enqueues the same records (client_enqueue.*); the
   reference, given the client's random parts (uuid/id, task id/delivery tag, jid/timestamps),
   must produce the very same bytes and the same companion writes.
2. worker: the reference's elements are pushed, the stock worker (run_worker.sh) runs them, and
   the handler must have recorded every record intact and in order (text, multi-byte UTF-8,
   binary as a base64 record, a tombstone, an empty value, an offset above 2^53), leaving no job
   behind (Laravel's :reserved, Celery's unacked hash). Laravel also runs with a key prefix and
   with block_for (woken by the :notify push); Laravel and Celery also run the "serde" variant.
3. kill: a worker killed mid-job, and what each framework's own reservation then does with the
   job (Laravel :reserved + retry_after, Celery acks_late + visibility timeout, Sidekiq's basic
   fetch), so the docs state observed behaviour.

    python3 tests/workers/verify.py [laravel|celery|sidekiq ...]

Needs scripts/install-workers.sh first. Ends with "N passed, N failed".
"""

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import enqueue_reference as ref  # noqa: E402

VENV = os.environ.get("K2R_WORKERS_VENV", os.path.join(REPO, ".venv-workers"))
TS = 1_700_000_000_123

RECORDS = [
    ref.json_record("orders", 0, 0, TS, b"k1", b"hello", []),
    ref.json_record(
        "orders", 0, 1, TS, "clé/1".encode(),
        "héllo wörld — 日本語 😀 \"q\" / back\\slash \u2028 \x01 tab\t<&>".encode(),
        [("trace", b"abc"), ("bin", b"\xff\x01"), ("nil", None)],
    ),
    ref.json_record("orders", 1, 2, None, b"\xff\xfe", b"\x00\xff\x10binary", []),
    ref.json_record("orders", 1, 3, TS, None, None, []),
    ref.json_record("orders", 2, 2**53 + 1, TS, b"", b"", []),
]

JOBS = {
    "laravel": "App\\Jobs\\RecordMessage@handle",
    "celery": "tasks.record",
    "sidekiq": "RecordWorker",
}

results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(("ok   " if ok else "FAIL ") + name + ("" if ok or not detail else "\n     " + detail))
    sys.stdout.flush()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class RedisServer:
    def __init__(self, workdir):
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", workdir],
            stdout=open(os.path.join(workdir, "redis.log"), "wb"), stderr=subprocess.STDOUT,
        )
        for _ in range(100):
            try:
                self.client = ref.Redis("127.0.0.1", self.port)
                self.client.call("PING")
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def env_for(redis, out=None, **extra):
    env = dict(os.environ)
    env.update(K2R_REDIS_HOST="127.0.0.1", K2R_REDIS_PORT=str(redis.port), K2R_REDIS_DB="0")
    env.pop("K2R_REDIS_PREFIX", None)
    if out:
        env["K2R_WORKER_OUT"] = out
    env.update({k: str(v) for k, v in extra.items()})
    return env


def records_jsonl():
    return "".join(ref.serde_json(r) + "\n" for r in RECORDS)


def keys(r):
    return sorted(k.decode() for k in r.call("KEYS", "*"))


# --- 1. the real clients against the reference --------------------------------------------------


def client_laravel(redis, prefix):
    r = redis.client
    r.call("FLUSHALL")
    queue = "orders"
    subprocess.run(["php", "client_enqueue.php", JOBS["laravel"], queue], input=records_jsonl(),
                   text=True, check=True, cwd=os.path.join(HERE, "laravel"),
                   env=env_for(redis, K2R_REDIS_PREFIX=prefix))
    key = prefix + "queues:" + queue
    got = r.call("LRANGE", key, 0, -1)
    ok = len(got) == len(RECORDS)
    detail = "%d elements" % len(got)
    for rec, raw in zip(RECORDS, got):
        real = json.loads(raw)
        _, mine = ref.laravel(rec, JOBS["laravel"], queue, prefix, real["uuid"], real["id"])
        if mine.encode() != raw:
            ok, detail = False, "reference %s\n     client    %s" % (mine, raw.decode())
            break
    check("laravel client == reference (prefix %r)" % prefix, ok, detail)
    notify = r.call("LRANGE", key + ":notify", 0, -1)
    check("laravel client: %s:notify holds one \"1\" per job" % key,
          notify == [b"1"] * len(RECORDS), repr(notify))
    check("laravel client writes only the list and :notify",
          keys(r) == sorted([key, key + ":notify"]), repr(keys(r)))
    uuid_ok = all(len(json.loads(x)["uuid"]) == 36 and json.loads(x)["uuid"][14] == "4" for x in got)
    id_ok = all(len(json.loads(x)["id"]) == 32 and json.loads(x)["id"].isalnum() for x in got)
    check("laravel client: uuid is a v4 UUID, id 32 alphanumerics", uuid_ok and id_ok)


def client_celery(redis):
    r = redis.client
    r.call("FLUSHALL")
    queue = "orders"
    subprocess.run([os.path.join(VENV, "bin", "python"), "client_enqueue.py", JOBS["celery"], queue],
                   input=records_jsonl(), text=True, check=True, cwd=os.path.join(HERE, "celery"),
                   env=env_for(redis))
    got = r.call("LRANGE", queue, 0, -1)
    got.reverse()  # LPUSHed: the oldest is last
    ok = len(got) == len(RECORDS)
    detail = "%d elements" % len(got)
    for rec, raw in zip(RECORDS, got):
        real = json.loads(raw)
        h, p = real["headers"], real["properties"]
        _, mine = ref.celery(rec, JOBS["celery"], queue, task_id=h["id"],
                             delivery_tag=p["delivery_tag"], origin=h["origin"],
                             reply_to=p["reply_to"], argsrepr=h["argsrepr"])
        if mine.encode() != raw:
            ok, detail = False, "reference %s\n     client    %s" % (mine, raw.decode())
            break
    check("celery client == reference (given its ids, origin, reply_to, argsrepr)", ok, detail)
    others = [k for k in keys(r) if k != queue]
    check("celery client writes only the list (and kombu's own _kombu.binding.* sets)",
          all(k.startswith("_kombu.binding") for k in others), repr(others))


def client_sidekiq(redis):
    r = redis.client
    r.call("FLUSHALL")
    queue = "orders"
    subprocess.run(["ruby", "client_enqueue.rb", JOBS["sidekiq"], queue], input=records_jsonl(),
                   text=True, check=True, cwd=os.path.join(HERE, "sidekiq"), env=env_for(redis),
                   stderr=subprocess.DEVNULL)
    got = r.call("LRANGE", "queue:" + queue, 0, -1)
    got.reverse()
    ok = len(got) == len(RECORDS)
    detail = "%d elements" % len(got)
    for rec, raw in zip(RECORDS, got):
        real = json.loads(raw)
        _, mine = ref.sidekiq(rec, JOBS["sidekiq"], queue, real["jid"], real["created_at"],
                              real["enqueued_at"])
        if mine.encode() != raw:
            ok, detail = False, "reference %s\n     client    %s" % (mine, raw.decode())
            break
    check("sidekiq client == reference (given its jid and times)", ok, detail)
    check("sidekiq client: SADD queues <name>", r.call("SMEMBERS", "queues") == [queue.encode()])
    check("sidekiq client writes only queue:<name> and queues",
          keys(r) == sorted(["queue:" + queue, "queues"]), repr(keys(r)))
    check("sidekiq client: jid is 24 hex digits",
          all(len(json.loads(x)["jid"]) == 24 for x in got))


# --- 2. the stock workers on the reference's elements ----------------------------------------------


def expected_lines():
    out = []
    for rec in RECORDS:
        line = {k: rec[k] for k in ("topic", "partition", "offset", "value")}
        if "value_encoding" in rec:
            line["value_encoding"] = rec["value_encoding"]
        out.append(line)
    return out


def run_worker(framework, redis, workdir, queue, out, args=(), extra_env=None, until_lines=None,
               timeout=60, push=None):
    """Starts run_worker.sh, optionally pushes after it started, waits for `until_lines` lines in
    `out` (or for the worker to exit), then stops it with SIGTERM. Returns (lines, seconds, log)."""
    log_path = os.path.join(workdir, "%s-%d.log" % (framework, int(time.time() * 1000)))
    env = env_for(redis, out, **(extra_env or {}))
    cmd = [os.path.join(HERE, "run_worker.sh"), framework, "--queue", queue] + list(args)
    proc = subprocess.Popen(cmd, env=env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)
    started = time.time()
    if push:
        time.sleep(push[0])
        started = time.time()
        push[1]()
    deadline = time.time() + timeout
    lines = []
    while time.time() < deadline:
        if os.path.exists(out):
            with open(out, encoding="utf-8") as f:
                lines = [json.loads(x) for x in f if x.strip()]
        if until_lines is not None and len(lines) >= until_lines:
            break
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    elapsed = time.time() - started
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if os.path.exists(out):
        with open(out, encoding="utf-8") as f:
            lines = [json.loads(x) for x in f if x.strip()]
    with open(log_path, encoding="utf-8", errors="replace") as f:
        log = f.read()
    return lines, elapsed, log


def push_all(redis, framework, queue, prefix="", style=None, skip_notify=False):
    r = redis.client
    for rec in RECORDS:
        kw = {}
        if style:
            kw["style"] = style
        if framework == "laravel":
            cmds, _ = ref.laravel(rec, JOBS[framework], queue, prefix, **kw)
        elif framework == "celery":
            cmds, _ = ref.celery(rec, JOBS[framework], queue, **kw)
        else:
            cmds, _ = ref.sidekiq(rec, JOBS[framework], queue)
        if skip_notify:
            cmds = [c for c in cmds if not c[1].endswith(":notify")]
        r.call("MULTI")
        for c in cmds:
            r.call(*c)
        r.call("EXEC")


def worker_case(framework, redis, workdir, name, queue, prefix="", style=None, args=(),
                extra_env=None, until_empty=False, push_after=None, skip_notify=False,
                timeout=60, want=None):
    r = redis.client
    r.call("FLUSHALL")
    out = os.path.join(workdir, "%s-%s.jsonl" % (framework, name.replace(" ", "_")))
    if os.path.exists(out):
        os.remove(out)
    if push_after is None:
        push_all(redis, framework, queue, prefix, style)
        push = None
    else:
        push = (push_after,
                lambda: push_all(redis, framework, queue, prefix, style, skip_notify))
    wargs = list(args)
    if prefix:
        wargs = ["--prefix", prefix] + wargs
    if until_empty:
        wargs = ["--until-empty"] + wargs
    lines, elapsed, log = run_worker(framework, redis, workdir, queue, out, wargs, extra_env,
                                     until_lines=None if until_empty else len(RECORDS),
                                     timeout=timeout, push=push)
    if want is None:
        want = expected_lines()
        what = "every record recorded intact, in order"
    else:
        what = "recorded %d records" % len(want)
    check("%s worker %s: %s" % (framework, name, what),
          lines == want, "got %r\n     want %r\n     log: %s" % (lines, want, log[-2000:]))
    return lines, elapsed, log


def workers_laravel(redis, workdir):
    r = redis.client
    worker_case("laravel", redis, workdir, "plain", "orders", until_empty=True)
    check("laravel worker plain: nothing left (list, :notify, :reserved, :delayed)",
          keys(r) == [], repr(keys(r)))
    worker_case("laravel", redis, workdir, "prefix laravel_database_", "orders",
                prefix="laravel_database_", until_empty=True)
    check("laravel worker with prefix: nothing left", keys(r) == [], repr(keys(r)))
    worker_case("laravel", redis, workdir, "serde style", "orders", style="serde", until_empty=True)
    check("laravel worker serde style: nothing left", keys(r) == [], repr(keys(r)))
    # A worker with block_for waits in BLPOP on queues:<name>:notify; with --sleep=30 and
    # block_for=10, only the :notify push can make it take the jobs within a few seconds.
    _, elapsed, _ = worker_case("laravel", redis, workdir, "block_for woken by :notify", "orders",
                                args=["--", "--sleep=30"],
                                extra_env={"K2R_LARAVEL_BLOCK_FOR": "10"}, push_after=3)
    check("laravel worker block_for: jobs taken within 5 s of the push (%.1f s)" % elapsed,
          elapsed < 5)
    # The control: the same jobs without the :notify push stay untouched while the worker blocks.
    worker_case("laravel", redis, workdir, "block_for without :notify", "orders",
                args=["--", "--sleep=30"], extra_env={"K2R_LARAVEL_BLOCK_FOR": "10"},
                push_after=3, skip_notify=True, timeout=6, want=[])


def workers_celery(redis, workdir):
    r = redis.client
    for style in ("python", "serde"):
        worker_case("celery", redis, workdir, "%s style" % style, "orders", style=style)
        left = [k for k in keys(r) if not k.startswith("_kombu.binding")]
        check("celery worker %s style: nothing left (list, unacked, unacked_index)" % style,
              left == [], repr(left))


def workers_sidekiq(redis, workdir):
    r = redis.client
    worker_case("sidekiq", redis, workdir, "plain", "orders")
    check("sidekiq worker: queue:orders empty", r.call("LLEN", "queue:orders") == 0)
    failed = r.call("GET", "stat:failed")
    check("sidekiq worker: no failures (stat:failed)", failed in (None, b"0"), repr(failed))


# --- 3. a worker killed mid-job (what each framework's own reservation gives) ------------------------


def start_worker(framework, redis, workdir, queue, out, args=(), extra_env=None):
    log_path = os.path.join(workdir, "%s-%d.log" % (framework, int(time.time() * 1000)))
    env = env_for(redis, out, **(extra_env or {}))
    cmd = [os.path.join(HERE, "run_worker.sh"), framework, "--queue", queue] + list(args)
    return subprocess.Popen(cmd, env=env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)


def wait_for(pred, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def read_lines(out):
    if not os.path.exists(out):
        return []
    with open(out, encoding="utf-8") as f:
        return [json.loads(x) for x in f if x.strip()]


def stop(proc, sig=signal.SIGTERM):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def push_one(redis, framework, queue):
    rec = RECORDS[1]
    if framework == "laravel":
        cmds, _ = ref.laravel(rec, JOBS[framework], queue)
    elif framework == "celery":
        cmds, _ = ref.celery(rec, JOBS[framework], queue)
    else:
        cmds, _ = ref.sidekiq(rec, JOBS[framework], queue)
    for c in cmds:
        redis.client.call(*c)
    return expected_lines()[1]


def kill_laravel(redis, workdir):
    r = redis.client
    for tries, rerun in (("0", True), ("1", False)):
        r.call("FLUSHALL")
        out = os.path.join(workdir, "laravel-kill-%s.jsonl" % tries)
        env = {"K2R_LARAVEL_RETRY_AFTER": "3"}
        want = push_one(redis, "laravel", "orders")
        p = start_worker("laravel", redis, workdir, "orders", out, ["--sleep", "30"], env)
        wait_for(lambda: r.call("ZCARD", "queues:orders:reserved") == 1)
        time.sleep(0.5)
        stop(p, signal.SIGKILL)
        held = r.call("ZRANGE", "queues:orders:reserved", 0, -1)
        check("laravel kill -9 mid-job: the job waits in queues:orders:reserved, attempts 1",
              r.call("LLEN", "queues:orders") == 0 and len(held) == 1
              and json.loads(held[0])["attempts"] == 1 and read_lines(out) == [], repr(held))
        p = start_worker("laravel", redis, workdir, "orders", out, ["--", "--tries=" + tries], env)
        if rerun:
            wait_for(lambda: len(read_lines(out)) >= 1)
            stop(p)
            check("laravel --tries=0: after retry_after the next worker runs it again, once",
                  read_lines(out) == [want] and keys(r) == [], repr((read_lines(out), keys(r))))
        else:
            wait_for(lambda: r.call("ZCARD", "queues:orders:reserved") == 0, 15)
            time.sleep(1)
            stop(p)
            check("laravel --tries=1 (queue:work's default): the retaken job is failed unrun",
                  read_lines(out) == [] and keys(r) == [], repr((read_lines(out), keys(r))))


def kill_celery(redis, workdir):
    r = redis.client
    cases = [
        # (acks_late, pool, message survives the kill)
        ("1", "solo", True),
        # Celery sends acks through its event loop; the solo pool runs the task inside that loop,
        # so even the default early ack is only written once the task has returned.
        ("0", "solo", True),
        ("0", "prefork", False),
    ]
    for acks_late, pool, survives in cases:
        r.call("FLUSHALL")
        out = os.path.join(workdir, "celery-kill-%s-%s.jsonl" % (acks_late, pool))
        env = {"K2R_CELERY_ACKS_LATE": acks_late, "K2R_CELERY_VISIBILITY_TIMEOUT": "3",
               "K2R_CELERY_RESTORE_INTERVAL": "1"}
        want = push_one(redis, "celery", "orders")
        args = ["--sleep", "30", "--", "--pool=" + pool, "--concurrency=1"]
        log_path = os.path.join(workdir, "celery-kill-%s-%s.log" % (acks_late, pool))
        p = subprocess.Popen([os.path.join(HERE, "run_worker.sh"), "celery", "--queue", "orders"]
                             + args, env=env_for(redis, out, **env), start_new_session=True,
                             stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)
        wait_for(lambda: r.call("LLEN", "orders") == 0)
        time.sleep(1.5)
        os.killpg(p.pid, signal.SIGKILL)  # the worker and, with prefork, its pool child
        p.wait()
        unacked = r.call("HLEN", "unacked")
        name = "celery acks_late=%s --pool=%s" % (acks_late, pool)
        p = start_worker("celery", redis, workdir, "orders", out, [], env)
        if survives:
            check(name + ", kill -9 mid-task: the message waits in the unacked hash",
                  unacked == 1 and read_lines(out) == [], repr(unacked))
            wait_for(lambda: len(read_lines(out)) >= 1)
            stop(p)
            check(name + ": after visibility_timeout a worker restores it and runs it once",
                  read_lines(out) == [want] and r.call("HLEN", "unacked") == 0,
                  repr(read_lines(out)))
        else:
            time.sleep(8)
            stop(p)
            check(name + ", kill -9 mid-task: acknowledged before it ran, the message is gone",
                  unacked == 0 and read_lines(out) == [] and r.call("LLEN", "orders") == 0,
                  repr((unacked, read_lines(out))))


def kill_sidekiq(redis, workdir):
    r = redis.client
    r.call("FLUSHALL")
    out = os.path.join(workdir, "sidekiq-kill.jsonl")
    push_one(redis, "sidekiq", "orders")
    p = start_worker("sidekiq", redis, workdir, "orders", out, ["--sleep", "30"])
    wait_for(lambda: r.call("LLEN", "queue:orders") == 0)
    time.sleep(1.5)
    stop(p, signal.SIGKILL)
    p = start_worker("sidekiq", redis, workdir, "orders", out)
    time.sleep(6)
    stop(p)
    check("sidekiq kill -9 mid-job (basic fetch): the job is gone",
          read_lines(out) == [] and r.call("LLEN", "queue:orders") == 0)
    r.call("FLUSHALL")
    out = os.path.join(workdir, "sidekiq-term.jsonl")
    want = push_one(redis, "sidekiq", "orders")
    p = start_worker("sidekiq", redis, workdir, "orders", out, ["--sleep", "30", "--", "-t", "2"])
    wait_for(lambda: r.call("LLEN", "queue:orders") == 0)
    time.sleep(1.5)
    stop(p)
    requeued = r.call("LLEN", "queue:orders")
    p = start_worker("sidekiq", redis, workdir, "orders", out)
    wait_for(lambda: len(read_lines(out)) >= 1)
    stop(p)
    check("sidekiq SIGTERM mid-job past -t: the job is pushed back and runs again",
          requeued == 1 and read_lines(out) == [want], repr((requeued, read_lines(out))))


def main():
    frameworks = sys.argv[1:] or ["laravel", "celery", "sidekiq"]
    workdir = tempfile.mkdtemp(prefix="k2r-workers-")
    redis = RedisServer(workdir)
    try:
        if "laravel" in frameworks:
            client_laravel(redis, "")
            client_laravel(redis, "laravel_database_")
            workers_laravel(redis, workdir)
            kill_laravel(redis, workdir)
        if "celery" in frameworks:
            client_celery(redis)
            workers_celery(redis, workdir)
            kill_celery(redis, workdir)
        if "sidekiq" in frameworks:
            client_sidekiq(redis)
            workers_sidekiq(redis, workdir)
            kill_sidekiq(redis, workdir)
    finally:
        redis.stop()
    passed = sum(1 for x in results if x)
    failed = len(results) - passed
    if failed == 0:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print("logs kept in", workdir)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
