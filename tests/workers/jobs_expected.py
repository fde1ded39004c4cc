#!/usr/bin/env python3
"""Prints, as Rust string literals, the elements enqueue_reference.py builds in serde_json style for
the fixed records, ids and clock reading of src/pipeline/jobs.rs's tests, which paste its output.

    python3 tests/workers/jobs_expected.py
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import enqueue_reference as ref  # noqa: E402

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

UUID = "5f0c1d6e-8a55-4c1b-9d7e-2f3a4b5c6d7e"
DELIVERY_TAG = "0b7e4a1c-3d2f-4e5a-8b6c-7d8e9f0a1b2c"
LARAVEL_ID = "Xq3kP9sT2vW8yZ1aB4cD6eF7gH0jK5mN"
JID = "0123456789abcdef01234567"
NOW = 1700000000.123456
ORIGIN = "gen4242@bridge-host"


def rust(s):
    """A Rust string expression: raw string literals, with the characters editors hide (control
    characters, U+2028/U+2029) as escapes between them in a `concat!`."""
    hidden = re.compile("([\x00-\x1f\x7f\u2028\u2029])")
    parts = [p for p in hidden.split(s) if p]
    assert not any('"#' in p for p in parts), "a raw string literal cannot hold this text"
    lits = ["\"\\u{%x}\"" % ord(p) if hidden.fullmatch(p) else 'r#"' + p + '"#' for p in parts]
    return lits[0] if len(lits) == 1 else "concat!(" + ", ".join(lits) + ")"


def main():
    groups = {
        "LARAVEL": [ref.laravel(r, "App\\Jobs\\RecordMessage@handle", uuid=UUID,
                                job_id=LARAVEL_ID, style="serde")[1] for r in RECORDS],
        "CELERY": [ref.celery(r, "tasks.record", "celery", task_id=UUID, delivery_tag=DELIVERY_TAG,
                              origin=ORIGIN, style="serde")[1] for r in RECORDS],
        "SIDEKIQ": [ref.sidekiq(r, "RecordWorker", "orders", jid=JID, created_at=NOW,
                                enqueued_at=NOW)[1] for r in RECORDS],
    }
    for name, elements in groups.items():
        print("const %s: [&str; %d] = [" % (name, len(elements)))
        for e in elements:
            print("    %s," % rust(e))
        print("];")


if __name__ == "__main__":
    main()
