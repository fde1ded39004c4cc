#!/usr/bin/env python3
"""Helpers for scripts/check-deploy.sh (standard library only).

  deploy-check.py dashboard DASHBOARD.json FIXTURE.yml OUTDIR
      Checks the dashboard's structure and writes OUTDIR/dashboard.rules.yml and
      OUTDIR/dashboard.test.yml: one alert `count(<query>) > 0` for every panel query and every
      `label_values(...)` variable, and a promtool unit test that expects each of them to fire over
      the fixture's series. `promtool check rules` then proves that every query parses, and
      `promtool test rules` that every query returns data from the metrics the daemon exports.
      Grafana's variables are replaced first: $__rate_interval and friends by durations, the
      dashboard's own variables by `.*` (their "All" value).

  deploy-check.py metrics SRC_DIR PROPOSED.txt FILE...
      Every kafka2redis_* series named in FILEs must be one the daemon registers under SRC_DIR, with
      the right suffix for its type (counter: _total; histogram: _bucket, _sum, _count; gauge: bare).
      Names listed in PROPOSED.txt may be missing (a warning); once one appears in the source, the
      check fails until it is taken off the list.

JSON is valid YAML, so the generated files are written as JSON.
"""

import json
import pathlib
import re
import sys

GRAFANA_BUILTINS = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__interval_ms": "60000",
}
VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*(\w+)\s*\)\s*$", re.S)


def fail(msg):
    print(f"deploy-check: {msg}", file=sys.stderr)
    sys.exit(1)


def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))


def substitute(expr, variables, where):
    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in GRAFANA_BUILTINS:
            return GRAFANA_BUILTINS[name]
        if name in variables:
            return ".*"
        fail(f"{where}: unknown variable ${name} in {expr!r}")
    return VAR.sub(repl, expr)


def dashboard(dash_path, fixture_path, outdir):
    dash = json.loads(pathlib.Path(dash_path).read_text())
    problems = []
    for key in ("title", "uid", "panels", "templating", "schemaVersion"):
        if key not in dash:
            problems.append(f"missing top-level key {key!r}")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    if variables.get("datasource", {}).get("type") != "datasource":
        problems.append("no `datasource` variable of type datasource")

    queries = []  # (name, expr)
    for name, v in variables.items():
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = LABEL_VALUES.match(q or "")
        if not m:
            problems.append(f"variable {name}: expected label_values(<selector>, <label>), got {q!r}")
            continue
        queries.append((f"variable_{name}", substitute(m.group(1), variables, f"variable {name}")))

    ids = set()
    for p in walk_panels(dash.get("panels", [])):
        pid = p.get("id")
        if pid in ids:
            problems.append(f"duplicate panel id {pid}")
        ids.add(pid)
        if "gridPos" not in p:
            problems.append(f"panel {pid} has no gridPos")
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"panel {pid} ({p.get('title')}): datasource is not ${{datasource}}")
        targets = p.get("targets", [])
        if not targets:
            problems.append(f"panel {pid} ({p.get('title')}) has no query")
        refs = set()
        for t in targets:
            ref, expr = t.get("refId"), t.get("expr", "").strip()
            if not ref or ref in refs:
                problems.append(f"panel {pid}: missing or duplicate refId {ref!r}")
            refs.add(ref)
            if not expr:
                problems.append(f"panel {pid} target {ref}: empty expr")
                continue
            queries.append((f"panel_{pid}_{ref}", substitute(expr, variables, f"panel {pid}")))
    if problems:
        fail("dashboard " + dash_path + ":\n  " + "\n  ".join(problems))

    out = pathlib.Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"alert": name, "expr": f"count({expr}) > 0"} for name, expr in queries
    ]}]}
    (out / "dashboard.rules.yml").write_text(json.dumps(rules, indent=2) + "\n")

    fixture = pathlib.Path(fixture_path).read_text()
    body = "".join("    " + line + "\n" if line.strip() else "\n" for line in fixture.splitlines())
    tests = [{"eval_time": "10m", "alertname": name, "exp_alerts": [{"exp_labels": {}}]}
             for name, _ in queries]
    (out / "dashboard.test.yml").write_text(
        "rule_files: [dashboard.rules.yml]\n"
        "evaluation_interval: 1m\n"
        "tests:\n"
        "  - name: every dashboard query returns data\n"
        + body
        + "    alert_rule_test: " + json.dumps(tests) + "\n"
    )
    (out / "queries.txt").write_text("".join(f"{n}\t{e}\n" for n, e in queries))
    print(f"dashboard: {len(queries)} queries from {len(ids)} panels and variables written to {out}")


def registered(src_dir):
    """{series name: type} for every metric the source registers."""
    text = "\n".join(p.read_text() for p in sorted(pathlib.Path(src_dir).rglob("*.rs")))
    prefixes = re.findall(r'with_prefix\(\s*"(\w+)"\s*\)', text)
    if not prefixes:
        fail(f"no Registry::with_prefix(\"...\") under {src_dir}: cannot tell the metric prefix")
    prefix = prefixes[0] + "_"
    found = {}
    for kind, name in re.findall(r'\b(counter|gauge)\(\s*\w+\s*,\s*"(\w+)"', text):
        found[name] = kind
    for name, kind in re.findall(
        r'encode_descriptor\(\s*"(\w+)"\s*,[^;]*?MetricType::(\w+)', text, re.S
    ):
        found[name] = kind.lower()
    if not found:
        fail(f"found no metric registrations under {src_dir}; update `registered` in {__file__}")
    series = {}
    for name, kind in found.items():
        base = prefix + name
        if kind == "counter":
            series[base + "_total"] = kind
        elif kind == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                series[base + suffix] = kind
        else:
            series[base] = kind
    return prefix, series


def metrics(src_dir, proposed_path, files):
    prefix, series = registered(src_dir)
    proposed = {
        line.strip()
        for line in pathlib.Path(proposed_path).read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    used = {}
    for f in files:
        for name in re.findall(r"\b(" + prefix + r"[a-z0-9_]*[a-z0-9])\b", pathlib.Path(f).read_text()):
            used.setdefault(name, set()).add(f)
    problems, warnings = [], []
    for name in sorted(proposed):
        if name in series:
            problems.append(f"{name} is exported now: take it off {proposed_path}")
    for name, where in sorted(used.items()):
        if name in series:
            continue
        if name in proposed:
            warnings.append(f"{name} (in {', '.join(sorted(where))}) is a proposed metric, not exported yet")
            continue
        hint = ""
        for exported in series:
            if exported.startswith(name) or name.startswith(exported):
                hint = f" (did you mean {exported}, a {series[exported]}?)"
        problems.append(f"{name} (in {', '.join(sorted(where))}) is not exported by the daemon{hint}")
    for w in warnings:
        print(f"deploy-check: warning: {w}")
    if problems:
        fail("metric names:\n  " + "\n  ".join(problems))
    print(f"metrics: {len(used)} names used, all exported by the daemon"
          + (f" or proposed ({len(warnings)})" if warnings else "")
          + f"; the daemon registers {len(series)} series names")


def main(argv):
    if len(argv) >= 2 and argv[1] == "dashboard" and len(argv) == 5:
        dashboard(*argv[2:])
    elif len(argv) >= 5 and argv[1] == "metrics":
        metrics(argv[2], argv[3], argv[4:])
    else:
        fail(__doc__)


if __name__ == "__main__":
    main(sys.argv)
