"""The function kafka2redis's `rq` jobs call in the tests, run by RQ's stock worker with its
default (pickle) serializer:

    rq worker --url redis://127.0.0.1:6379/0 orders        (from this directory)

The envelope's `job` names it, "tasks.record"; its one argument is the bridge's `json` record (a
dict). Each call appends {"id","topic","partition","offset","value"} (plus "value_encoding" when
the record has one) as one JSON line to the file K2R_WORKER_OUT; K2R_WORKER_SLEEP makes each call
wait that many seconds first.
"""

import fcntl
import json
import os
import time

from rq import get_current_job


def record(message):
    pause = float(os.environ.get("K2R_WORKER_SLEEP", "0") or 0)
    if pause > 0:
        time.sleep(pause)
    line = {
        "id": get_current_job().id,
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
