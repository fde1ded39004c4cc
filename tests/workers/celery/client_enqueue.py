"""Enqueues with Celery's own client (send_task, task protocol 2), for comparing its list element
with the one kafka2redis builds. Usage:

    python client_enqueue.py TASK QUEUE < records.jsonl     (one json-envelope record a line)

Same environment as the worker (K2R_REDIS_*); run from this directory with the workers' virtualenv.
"""

import json
import sys

from tasks import app

task, queue = sys.argv[1], sys.argv[2]
for line in sys.stdin:
    if line.strip():
        app.send_task(task, args=[json.loads(line)], queue=queue)
