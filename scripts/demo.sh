#!/usr/bin/env bash
# The first README command: installs what is missing, starts Redis and a Tansu broker on loopback,
# runs kafka2redis on demo traffic and shows the messages arriving in the Redis list.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
RUN="$ROOT/.run"
REDIS_PORT="${K2R_REDIS_PORT:-16379}"
KAFKA_PORT="${K2R_KAFKA_PORT:-19092}"

scripts/install-deps.sh
echo "demo: building kafka2redis (release)"
cargo build --release --quiet --bin kafka2redis --example demo_produce
scripts/services.sh start

BIN="${CARGO_TARGET_DIR:-target}/release"

cat >"$RUN/demo.toml" <<TOML
topics = ["demo"]
[kafka]
brokers = ["127.0.0.1:$KAFKA_PORT"]
group = "kafka2redis-demo"
[redis]
addresses = ["127.0.0.1:$REDIS_PORT"]
[defaults]
envelope = "json"
TOML

"$BIN"/examples/demo_produce --brokers "127.0.0.1:$KAFKA_PORT" --topic demo --count 0 >/dev/null
"$BIN"/kafka2redis check --config "$RUN/demo.toml"

"$BIN"/kafka2redis --config "$RUN/demo.toml" >"$RUN/kafka2redis.log" 2>&1 &
echo $! >"$RUN/kafka2redis.pid"
echo "demo: kafka2redis running (pid $(cat "$RUN/kafka2redis.pid"), log $RUN/kafka2redis.log)"

"$BIN"/examples/demo_produce --brokers "127.0.0.1:$KAFKA_PORT" --topic demo --count 20 --interval-ms 50
for _ in $(seq 1 100); do
  n=$(redis-cli -p "$REDIS_PORT" LLEN queues:demo)
  [ "$n" -ge 20 ] && break
  sleep 0.1
done
echo
echo "demo: redis-cli -p $REDIS_PORT LRANGE queues:demo 0 -1   ($(redis-cli -p "$REDIS_PORT" LLEN queues:demo) elements)"
redis-cli -p "$REDIS_PORT" LRANGE queues:demo 0 -1
echo
echo "demo: kafka2redis keeps running; produce more with"
echo "  $BIN/examples/demo_produce --brokers 127.0.0.1:$KAFKA_PORT --topic demo --count 10"
echo "and stop everything with: scripts/services.sh stop"
