#!/usr/bin/env bash
# Installs the stock worker frameworks the job envelopes (laravel, celery, sidekiq, bullmq, rq,
# symfony) are tested with:
#   - Laravel's queue worker: Debian's php-cli + php-laravel-framework (Laravel 8.83 on Debian 12) and
#     the phpredis extension (php-redis);
#   - Symfony Messenger's Worker and Redis transport with its JSON serializer: Debian's
#     php-symfony-messenger, php-symfony-redis-messenger, php-symfony-serializer and
#     php-symfony-property-access (Symfony 5.4 on Debian 12), with the same php-cli and php-redis;
#   - Sidekiq: Debian's ruby-sidekiq (Sidekiq 6.4 on Debian 12);
#   - Celery and RQ: from PyPI into a virtualenv at .venv-workers/ in the repo (Celery with the redis
#     extra);
#   - BullMQ: Node.js from Debian when there is no `node` (any Node 18 or later will do), and the
#     BullMQ and ioredis versions pinned in tests/workers/bullmq/package.json and its lock file, from
#     npm into tests/workers/bullmq/node_modules (`npm ci`).
# Idempotent: installs only what is missing; runs `apt-get update` once, only when it must install.
# Run as root on Debian (or with sudo available). The Celery, kombu, redis-py and RQ pins can be
# overridden with CELERY_VERSION, KOMBU_VERSION, REDIS_PY_VERSION, RQ_VERSION.
set -euo pipefail
cd "$(dirname "$0")/.."

CELERY_VERSION="${CELERY_VERSION:-5.7.0}"
KOMBU_VERSION="${KOMBU_VERSION:-5.7.0}"
REDIS_PY_VERSION="${REDIS_PY_VERSION:-8.1.0}"
RQ_VERSION="${RQ_VERSION:-3.0.0}"
BULLMQ_DIR="$PWD/tests/workers/bullmq"
VENV="${WORKERS_VENV:-$PWD/.venv-workers}"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need_apt=()
for pkg in php-cli php-laravel-framework php-redis php-symfony-messenger php-symfony-redis-messenger \
  php-symfony-serializer php-symfony-property-access ruby-sidekiq redis-server redis-tools; do
  [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" = "install ok installed" ] || need_apt+=("$pkg")
done
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  need_apt+=(python3-venv)
fi
# Node.js and npm from Debian, unless a node is already there (a distribution's or an image's own,
# which brings its npm).
if ! command -v node >/dev/null 2>&1; then
  need_apt+=(nodejs npm)
elif ! command -v npm >/dev/null 2>&1; then
  need_apt+=(npm)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-workers: apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# The phpredis extension must be enabled for the command-line PHP (Debian enables it on install).
php -r 'exit(extension_loaded("redis") ? 0 : 1);' || { echo "install-workers: the PHP redis extension is not loaded by php-cli" >&2; exit 1; }

want="$CELERY_VERSION $KOMBU_VERSION $REDIS_PY_VERSION $RQ_VERSION"
have="$("$VENV/bin/python" -c 'import celery, kombu, redis, rq; print(celery.__version__, kombu.__version__, redis.__version__, rq.__version__)' 2>/dev/null || true)"
if [ -x "$VENV/bin/celery" ] && [ -x "$VENV/bin/rq" ] && [ "$have" = "$want" ]; then
  echo "install-workers: celery $CELERY_VERSION (kombu $KOMBU_VERSION, redis-py $REDIS_PY_VERSION), rq $RQ_VERSION already in $VENV"
else
  echo "install-workers: celery[redis]==$CELERY_VERSION kombu==$KOMBU_VERSION redis==$REDIS_PY_VERSION rq==$RQ_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "celery[redis]==$CELERY_VERSION" "kombu==$KOMBU_VERSION" "redis==$REDIS_PY_VERSION" "rq==$RQ_VERSION"
fi

# BullMQ: exactly the lock file's packages. Install scripts stay off: the only one is msgpackr's
# optional native accelerator, whose pure JavaScript fallback BullMQ uses without it.
bullmq_version() { node -p "require('$1/package.json').version" 2>/dev/null || true; }
bullmq_pin="$(node -p "require('$BULLMQ_DIR/package.json').dependencies.bullmq")"
if [ "$(bullmq_version "$BULLMQ_DIR/node_modules/bullmq")" = "$bullmq_pin" ]; then
  echo "install-workers: bullmq $bullmq_pin already in $BULLMQ_DIR/node_modules"
else
  echo "install-workers: npm ci (bullmq $bullmq_pin) in $BULLMQ_DIR"
  (cd "$BULLMQ_DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
fi

echo "install-workers: laravel $(dpkg-query -W -f='${Version}' php-laravel-framework)," \
  "symfony messenger $(dpkg-query -W -f='${Version}' php-symfony-messenger)," \
  "phpredis $(php -r 'echo phpversion("redis");'), php $(php -r 'echo PHP_VERSION;')," \
  "sidekiq $(dpkg-query -W -f='${Version}' ruby-sidekiq), ruby $(ruby -e 'print RUBY_VERSION')," \
  "celery $("$VENV/bin/python" -c 'import celery, kombu, redis; print(celery.__version__, "(kombu", kombu.__version__ + ", redis-py", redis.__version__ + ")")')," \
  "rq $("$VENV/bin/python" -c 'import rq; print(rq.__version__)')," \
  "bullmq $(bullmq_version "$BULLMQ_DIR/node_modules/bullmq") (ioredis $(bullmq_version "$BULLMQ_DIR/node_modules/ioredis")), node $(node --version)"
