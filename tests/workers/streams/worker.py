"""A consumer-group worker as a Redis Streams user writes one (redis-py): it reads new entries with
XREADGROUP, records each, then acknowledges it with XACK; entries a dead peer left pending longer
than --claim-idle-ms are taken over with XAUTOCLAIM. It runs until it is stopped (SIGTERM) or
killed.

    worker.py --port N --stream KEY --group G --consumer C --out FILE
              [--sleep S] [--count N] [--claim-idle-ms MS] [--create-at ID]

Each entry it handles becomes one JSON line in FILE, written before the entry is acknowledged (so
a kill -9 between the two records it again when a peer claims it):
{"id", "group", "consumer", "claimed", "fields": {name: base64 of the value}}.
"""

import argparse
import base64
import json
import os
import time

import redis


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--consumer", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds per entry")
    parser.add_argument("--count", type=int, default=50, help="entries per read")
    parser.add_argument("--claim-idle-ms", type=int, default=2000)
    parser.add_argument("--create-at", default="0", help="where a new group starts")
    args = parser.parse_args()

    r = redis.Redis(host=args.host, port=args.port)
    try:
        r.xgroup_create(args.stream, args.group, id=args.create_at, mkstream=True)
    except redis.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise
    out = os.open(args.out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def handle(entry_id, fields, claimed):
        line = {
            "id": entry_id.decode(),
            "group": args.group,
            "consumer": args.consumer,
            "claimed": claimed,
            "fields": {k.decode(): base64.b64encode(v).decode() for k, v in fields.items()},
        }
        # One write per line: a kill -9 leaves whole lines.
        os.write(out, (json.dumps(line) + "\n").encode())
        if args.sleep:
            time.sleep(args.sleep)
        r.xack(args.stream, args.group, entry_id)

    claim_from = "0-0"
    while True:
        # A dead peer's pending entries: idle longer than --claim-idle-ms, taken over here.
        reply = r.xautoclaim(
            args.stream, args.group, args.consumer, args.claim_idle_ms, claim_from, count=args.count
        )
        claim_from, claimed = reply[0], reply[1]
        for entry_id, fields in claimed:
            if fields is not None:
                handle(entry_id, fields, True)
        read = r.xreadgroup(
            args.group, args.consumer, {args.stream: ">"}, count=args.count, block=200
        )
        for _, entries in read:
            for entry_id, fields in entries:
                handle(entry_id, fields, False)


if __name__ == "__main__":
    main()
