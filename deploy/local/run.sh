#!/usr/bin/env bash
# The first command: a virtualenv, Redis, the API and one worker on this machine, then the sample photos
# stylized through the HTTP API. Leaves the API running (URL printed); `--stop` stops what it started.
#   ./deploy/local/run.sh [--photos DIR] [--out DIR] [--weights FILE] [--port N] [--once] [--stop]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3 || true)}"
STATE="$ROOT/data/local"
REDIS_URL="${ANIMEGAN_REDIS_URL:-redis://127.0.0.1:6379/0}"

say() { echo "[run.sh] $*"; }
die() { echo "[run.sh] error: $*" >&2; exit 1; }

if [[ " $* " == *" --help "* || " $* " == *" -h "* ]]; then
    sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'
    exec "$VENV/bin/python" scripts/demo.py --help 2>/dev/null || exit 0
fi

stop_only=""
[[ " $* " == *" --stop "* ]] && stop_only=1

# 1. The virtualenv, installed with the pinned constraints; reinstalled only when the project files change.
if [[ -z "$stop_only" ]]; then
    [[ -n "$PYTHON" ]] || die "no python3 found; install Python 3.11+ (e.g. apt-get install python3.11-venv)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$PYTHON is $("$PYTHON" -V 2>&1); this project needs Python 3.11+ (set PYTHON=/path/to/python3.11)"
    if [[ ! -x "$VENV/bin/python" ]]; then
        say "creating the virtualenv $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    stamp="$VENV/.animegan-install-stamp"
    # `make install` / `make test` write this one for the [dev] extra, which includes [api,worker].
    dev_stamp="$VENV/.animegan-dev-stamp"
    want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
    if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" && "$(cat "$dev_stamp" 2>/dev/null)" != "$want" ]]; then
        mkdir -p "$STATE/logs"
        pip_log="$STATE/logs/pip-install.log"
        say "installing the project with its API and worker extras (pip, constraints.txt; log: $pip_log)"
        if ! { "$VENV/bin/python" -m pip install --upgrade pip \
            && "$VENV/bin/python" -m pip install -c constraints.txt -e ".[api,worker]"; } >"$pip_log" 2>&1; then
            tail -n 20 "$pip_log" >&2
            die "pip install failed; the full log is $pip_log"
        fi
        echo "$want" >"$stamp"
    fi
fi

# 2. Redis: use one that answers on the configured host and port, else start a local redis-server.
hostport="${REDIS_URL#*://}"
hostport="${hostport#*@}"
hostport="${hostport%%/*}"
redis_host="${hostport%%:*}"
redis_port="${hostport##*:}"
[[ "$redis_port" == "$hostport" ]] && redis_port=6379

redis_answers() {
    local reply=""
    # The braces scope the 2>/dev/null to this one connection: on a bare `exec` a redirection is permanent,
    # and would silence the whole script's stderr (every error message and the progress bar) from here on.
    { exec 3<>"/dev/tcp/$redis_host/$redis_port"; } 2>/dev/null || return 1
    printf 'PING\r\n' >&3
    read -r -t 2 reply <&3 || true
    exec 3>&-
    # A password-protected Redis answers -NOAUTH: it is there, and the URL carries the password.
    [[ "$reply" == +PONG* || "$reply" == -NOAUTH* ]]
}

if [[ -z "$stop_only" ]]; then
    if redis_answers; then
        say "Redis answers on $redis_host:$redis_port; using it"
    elif [[ "$redis_host" != "127.0.0.1" && "$redis_host" != "localhost" ]]; then
        die "Redis at $redis_host:$redis_port (ANIMEGAN_REDIS_URL) does not answer; start it or unset the variable"
    else
        if ! command -v redis-server >/dev/null; then
            if command -v apt-get >/dev/null && { [[ "$(id -u)" == 0 ]] || sudo -n true 2>/dev/null; }; then
                say "installing redis-server with apt-get"
                SUDO=""
                [[ "$(id -u)" != 0 ]] && SUDO="sudo -n"
                $SUDO apt-get update -qq
                DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
            else
                die "redis-server is not installed: install it (Debian/Ubuntu: sudo apt-get install redis-server;" \
                    "macOS: brew install redis) or point ANIMEGAN_REDIS_URL at a running Redis, then run this again"
            fi
        fi
        mkdir -p "$STATE/redis"
        say "starting redis-server on 127.0.0.1:$redis_port (data in $STATE/redis)"
        redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$STATE/redis" --appendonly yes \
            --daemonize yes --pidfile "$STATE/redis.pid" --logfile "$STATE/redis.log"
        for _ in $(seq 50); do redis_answers && break; sleep 0.2; done
        redis_answers || die "redis-server did not answer on port $redis_port; see $STATE/redis.log"
    fi
fi

# 3. The API, the worker, the model and the photos: scripts/demo.py (Python from here on).
export ANIMEGAN_REDIS_URL="$REDIS_URL"
# Each checkout its own deployment namespace (Redis keys and broker queues): two demos on one machine and one
# Redis never take each other's tasks nor see each other's jobs. Set ANIMEGAN_NAMESPACE to choose another.
ANIMEGAN_NAMESPACE="${ANIMEGAN_NAMESPACE:-demo-$(printf '%s' "$ROOT" | sha256sum | cut -c1-10)}"
export ANIMEGAN_NAMESPACE
exec "$VENV/bin/python" scripts/demo.py "$@"
