#!/usr/bin/env bash
# Starts one stock, unmodified worker of a job framework on the test fixtures here, in the
# foreground, by `exec`: the process this script starts *is* the worker, so a test can send it
# SIGTERM (graceful stop) or SIGKILL (kill -9 mid-job) by the child's pid.
#
#   tests/workers/run_worker.sh FRAMEWORK [options] [-- EXTRA_WORKER_ARGS...]
#
#   FRAMEWORK        laravel | celery | sidekiq
#   --host H         Redis host (K2R_REDIS_HOST, default 127.0.0.1)
#   --port N         Redis port (K2R_REDIS_PORT, default 6379)
#   --db N           Redis database (K2R_REDIS_DB, default 0)
#   --queue NAME     the queue to work: laravel `default` (list queues:NAME), celery `celery`
#                    (list NAME), sidekiq `default` (list queue:NAME)
#   --out FILE       where the handler appends one JSON line per job (K2R_WORKER_OUT; required)
#   --sleep S        seconds each job waits before recording (K2R_WORKER_SLEEP, default 0)
#   --prefix P       laravel: the Redis connection's key prefix, database.redis.options.prefix
#                    (K2R_REDIS_PREFIX, default ""; a stock Laravel app uses "laravel_database_")
#   --until-empty    laravel only: stop when the queue is empty (queue:work --stop-when-empty)
#   EXTRA...         appended to the worker's own command line
#
# Other knobs, read from the environment by the fixtures: K2R_LARAVEL_RETRY_AFTER (90),
# K2R_LARAVEL_BLOCK_FOR (unset: poll every --sleep=1 s), K2R_CELERY_ACKS_LATE (0),
# K2R_CELERY_VISIBILITY_TIMEOUT (3600), K2R_WORKERS_VENV (the Celery virtualenv, default
# .venv-workers at the repository root).
#
# What runs (scripts/install-workers.sh installs it):
#   laravel  php artisan queue:work redis --queue=NAME --sleep=1 --tries=0 EXTRA
#            (--tries=0: no attempt limit, so a job taken back after a kill -9 runs again
#            instead of being failed as "attempted too many times")
#   celery   celery -A tasks worker --pool=solo -Q NAME -n k2r<pid>@%h --without-gossip
#            --without-mingle --without-heartbeat --loglevel=INFO EXTRA
#   sidekiq  sidekiq -r ./worker.rb -q NAME -c 1 EXTRA
#
# The handler each job names: laravel 'App\Jobs\RecordMessage@handle', celery 'tasks.record',
# sidekiq 'RecordWorker'. Each records {"topic","partition","offset","value"} (and
# "value_encoding" when the record has one) of the `json` record it was given.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

if [ $# -lt 1 ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
framework="$1"
shift

queue=""
until_empty=0
while [ $# -gt 0 ]; do
  case "$1" in
    --host) export K2R_REDIS_HOST="$2"; shift 2 ;;
    --port) export K2R_REDIS_PORT="$2"; shift 2 ;;
    --db) export K2R_REDIS_DB="$2"; shift 2 ;;
    --queue) queue="$2"; shift 2 ;;
    --out) export K2R_WORKER_OUT="$2"; shift 2 ;;
    --sleep) export K2R_WORKER_SLEEP="$2"; shift 2 ;;
    --prefix) export K2R_REDIS_PREFIX="$2"; shift 2 ;;
    --until-empty) until_empty=1; shift ;;
    --) shift; break ;;
    *) echo "run_worker.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

if [ -z "${K2R_WORKER_OUT:-}" ]; then
  echo "run_worker.sh: --out FILE (or K2R_WORKER_OUT) is required" >&2
  exit 2
fi
case "$K2R_WORKER_OUT" in /*) ;; *) K2R_WORKER_OUT="$PWD/$K2R_WORKER_OUT" ;; esac
export K2R_WORKER_OUT

case "$framework" in
  laravel)
    cd "$here/laravel"
    extra=()
    if [ "$until_empty" = 1 ]; then extra+=(--stop-when-empty); fi
    exec php artisan queue:work redis --queue="${queue:-default}" --sleep=1 --tries=0 \
      ${extra[@]+"${extra[@]}"} "$@"
    ;;
  celery)
    if [ "$until_empty" = 1 ]; then echo "run_worker.sh: --until-empty is laravel only" >&2; exit 2; fi
    venv="${K2R_WORKERS_VENV:-$repo/.venv-workers}"
    cd "$here/celery"
    exec "$venv/bin/celery" -A tasks worker --pool=solo -Q "${queue:-celery}" -n "k2r$$@%h" \
      --without-gossip --without-mingle --without-heartbeat --loglevel=INFO "$@"
    ;;
  sidekiq)
    if [ "$until_empty" = 1 ]; then echo "run_worker.sh: --until-empty is laravel only" >&2; exit 2; fi
    cd "$here/sidekiq"
    exec sidekiq -r ./worker.rb -q "${queue:-default}" -c 1 "$@"
    ;;
  *)
    echo "run_worker.sh: unknown framework $framework (laravel, celery or sidekiq)" >&2
    exit 2
    ;;
esac
