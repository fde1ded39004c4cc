#!/usr/bin/env python3
"""Prints, as Rust string literals (base64), the pickle Python itself writes for RQ's job data of
the fixed records of src/pipeline/jobs/tests.rs, which pastes them: the call
("tasks.record", None, (record,), {}) with the record as `json.loads` makes it, pickled as
`pickletools.optimize(pickle.dumps(call, protocol=4))` less its FRAME opcode — the pickle the
bridge writes (src/pipeline/jobs/pickle.rs) — except where Python's pickle refers back to an object
it wrote before (`json.loads` shares repeated key strings; CPython has one empty string), which the
bridge writes out again: those records print None.

    python3 tests/workers/rq/pickle_expected.py
"""

import base64
import json
import os
import pickle
import pickletools
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import jobs_expected  # noqa: E402
import enqueue_reference as ref  # noqa: E402

for record in jobs_expected.RECORDS:
    call = ("tasks.record", None, (json.loads(ref.serde_json(record)),), {})
    data = pickletools.optimize(pickle.dumps(call, protocol=4))
    if any(op.name in ("MEMOIZE", "BINGET", "LONG_BINGET") for op, _, _ in pickletools.genops(data)):
        print("    None,")
        continue
    assert data[2] == 0x95, "a FRAME after PROTO"
    data = data[:2] + data[11:]
    assert pickle.loads(data) == call
    print('    Some("{}"),'.format(base64.b64encode(data).decode()))
