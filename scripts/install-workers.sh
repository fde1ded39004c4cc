#!/usr/bin/env bash
# Installs the stock worker frameworks the job envelopes (laravel, celery, sidekiq) are tested with:
#   - Laravel's queue worker: Debian's php-cli + php-laravel-framework (Laravel 8.83 on Debian 12) and
#     the phpredis extension (php-redis);
#   - Sidekiq: Debian's ruby-sidekiq (Sidekiq 6.4 on Debian 12);
#   - Celery: from PyPI into a virtualenv at .venv-workers/ in the repo, with the redis extra.
# Idempotent: installs only what is missing; runs `apt-get update` once, only when it must install.
# Run as root on Debian (or with sudo available). The Celery, kombu and redis-py pins can be
# overridden with CELERY_VERSION, KOMBU_VERSION, REDIS_PY_VERSION.
set -euo pipefail
cd "$(dirname "$0")/.."

CELERY_VERSION="${CELERY_VERSION:-5.7.0}"
KOMBU_VERSION="${KOMBU_VERSION:-5.7.0}"
REDIS_PY_VERSION="${REDIS_PY_VERSION:-8.1.0}"
VENV="${WORKERS_VENV:-$PWD/.venv-workers}"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need_apt=()
for pkg in php-cli php-laravel-framework php-redis ruby-sidekiq redis-server redis-tools; do
  [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" = "install ok installed" ] || need_apt+=("$pkg")
done
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  need_apt+=(python3-venv)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-workers: apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# The phpredis extension must be enabled for the command-line PHP (Debian enables it on install).
php -r 'exit(extension_loaded("redis") ? 0 : 1);' || { echo "install-workers: the PHP redis extension is not loaded by php-cli" >&2; exit 1; }

want="$CELERY_VERSION $KOMBU_VERSION $REDIS_PY_VERSION"
have="$("$VENV/bin/python" -c 'import celery, kombu, redis; print(celery.__version__, kombu.__version__, redis.__version__)' 2>/dev/null || true)"
if [ -x "$VENV/bin/celery" ] && [ "$have" = "$want" ]; then
  echo "install-workers: celery $CELERY_VERSION (kombu $KOMBU_VERSION, redis-py $REDIS_PY_VERSION) already in $VENV"
else
  echo "install-workers: celery[redis]==$CELERY_VERSION kombu==$KOMBU_VERSION redis==$REDIS_PY_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "celery[redis]==$CELERY_VERSION" "kombu==$KOMBU_VERSION" "redis==$REDIS_PY_VERSION"
fi

echo "install-workers: laravel $(dpkg-query -W -f='${Version}' php-laravel-framework)," \
  "phpredis $(php -r 'echo phpversion("redis");'), php $(php -r 'echo PHP_VERSION;')," \
  "sidekiq $(dpkg-query -W -f='${Version}' ruby-sidekiq), ruby $(ruby -e 'print RUBY_VERSION')," \
  "celery $("$VENV/bin/python" -c 'import celery, kombu, redis; print(celery.__version__, "(kombu", kombu.__version__ + ", redis-py", redis.__version__ + ")")')"
