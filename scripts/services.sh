#!/usr/bin/env bash
# Starts or stops a local redis-server and Tansu broker on loopback, for a person trying kafka2redis.
# (The test suite starts its own, on free ports.)
#
#   scripts/services.sh start   # redis on 127.0.0.1:$K2R_REDIS_PORT (16379), Tansu on 127.0.0.1:$K2R_KAFKA_PORT (19092)
#   scripts/services.sh stop
#   scripts/services.sh status
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RUN="$ROOT/.run"
REDIS_PORT="${K2R_REDIS_PORT:-16379}"
KAFKA_PORT="${K2R_KAFKA_PORT:-19092}"
TANSU="${TANSU_BIN:-${CARGO_HOME:-$HOME/.cargo}/bin/tansu}"
mkdir -p "$RUN"

alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

wait_port() { # name port
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "services: $1 did not open port $2; see $RUN/$1.log" >&2
  exit 1
}

start() {
  if alive redis; then echo "redis already running on 127.0.0.1:$REDIS_PORT"; else
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
      --dir "$RUN" --daemonize no >"$RUN/redis.log" 2>&1 &
    echo $! >"$RUN/redis.pid"
    wait_port redis "$REDIS_PORT"
    echo "redis started on 127.0.0.1:$REDIS_PORT"
  fi
  if alive tansu; then echo "tansu already running on 127.0.0.1:$KAFKA_PORT"; else
    (cd "$RUN" && RUST_LOG=warn exec "$TANSU" broker \
      --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --storage-engine "sqlite://tansu.db" >"$RUN/tansu.log" 2>&1) &
    echo $! >"$RUN/tansu.pid"
    wait_port tansu "$KAFKA_PORT"
    echo "tansu started on 127.0.0.1:$KAFKA_PORT (storage $RUN/tansu.db)"
  fi
}

stop() {
  for name in kafka2redis tansu redis; do
    if alive "$name"; then
      kill "$(cat "$RUN/$name.pid")" 2>/dev/null || true
      for _ in $(seq 1 100); do alive "$name" || break; sleep 0.1; done
      echo "$name stopped"
    fi
    rm -f "$RUN/$name.pid"
  done
}

status() {
  for name in redis tansu kafka2redis; do
    if alive "$name"; then echo "$name: running (pid $(cat "$RUN/$name.pid"))"; else echo "$name: stopped"; fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
