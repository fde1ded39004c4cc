"""A Celery app for kafka2redis's `celery` envelope, run by the stock worker:

    celery -A tasks worker --pool=solo -Q celery

The envelope's `job` names the task, "tasks.record"; its one argument is the bridge's `json` record
(a dict). Each task appends {"topic","partition","offset","value"} (plus "value_encoding" when the
record has one) as one JSON line to the file K2R_WORKER_OUT.

    K2R_REDIS_HOST, K2R_REDIS_PORT, K2R_REDIS_DB  the Redis broker (127.0.0.1, 6379, 0)
    K2R_WORKER_SLEEP                               seconds to wait in each task before recording (0)
    K2R_CELERY_ACKS_LATE                           1: acknowledge after the task ran (task_acks_late),
                                                   so a worker killed mid-task leaves the message in
                                                   the `unacked` hash to be restored (default 0)
    K2R_CELERY_VISIBILITY_TIMEOUT                  seconds before an unacknowledged message is
                                                   restored to its list (kombu's default 3600)
    K2R_CELERY_RESTORE_INTERVAL                    seconds between a worker's scans for such
                                                   messages (kombu 5.7: unacked_restore_interval,
                                                   throttle 1; unset: kombu's 10 s x 10). A worker
                                                   also scans once when it starts.
"""

import fcntl
import json
import os
import time

from celery import Celery

_broker = "redis://{}:{}/{}".format(
    os.environ.get("K2R_REDIS_HOST", "127.0.0.1"),
    os.environ.get("K2R_REDIS_PORT", "6379"),
    os.environ.get("K2R_REDIS_DB", "0"),
)

_transport = {"visibility_timeout": int(os.environ.get("K2R_CELERY_VISIBILITY_TIMEOUT", "3600"))}
if os.environ.get("K2R_CELERY_RESTORE_INTERVAL"):
    _transport["unacked_restore_interval"] = int(os.environ["K2R_CELERY_RESTORE_INTERVAL"])
    _transport["unacked_restore_throttle"] = 1

app = Celery("tasks", broker=_broker)
app.conf.update(
    broker_connection_retry_on_startup=True,
    broker_transport_options=_transport,
    task_acks_late=os.environ.get("K2R_CELERY_ACKS_LATE", "0") == "1",
    worker_prefetch_multiplier=1,
)


@app.task(name="tasks.record")
def record(message):
    pause = float(os.environ.get("K2R_WORKER_SLEEP", "0") or 0)
    if pause > 0:
        time.sleep(pause)
    line = {
        "topic": message["topic"],
        "partition": message["partition"],
        "offset": message["offset"],
        "value": message["value"],
    }
    if "value_encoding" in message:
        line["value_encoding"] = message["value_encoding"]
    out = os.environ.get("K2R_WORKER_OUT")
    if not out:
        raise RuntimeError("K2R_WORKER_OUT is not set")
    with open(out, "a", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
