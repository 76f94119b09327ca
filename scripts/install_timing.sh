#!/usr/bin/env bash
# How long a new user waits: (1) the serving set into a fresh venv, pip against uv (uv's own
# install included), and (2) a fresh clone of REV -> `make serve` -> the first 200 from /ready.
# Download caches are off for every install, so each run pays what a new machine pays.
#
#   scripts/install_timing.sh [REV...]     # default REV: HEAD; several REVs compare revisions
#
# Needs $PYTHON (default python3, >= 3.11), git, make, curl and the package index. One line per
# measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PYTHON=${PYTHON:-python3}
UV_VERSION=$(sed -n 's/^UV_VERSION := //p' Makefile)
WORK=$(mktemp -d)
SERVER_GROUP=
cleanup() {
    if [[ -n "$SERVER_GROUP" ]]; then kill -TERM -- "-$SERVER_GROUP" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
export PIP_NO_CACHE_DIR=1 UV_NO_CACHE=1 PIP_DISABLE_PIP_VERSION_CHECK=1

seconds_since() { python3 -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$1"; }

t=$(date +%s.%N)
"$PYTHON" -m venv "$WORK/pip"
"$WORK/pip/bin/pip" install -q -r requirements/serve.txt
echo "serving set, fresh venv, pip: $(seconds_since "$t") s"

t=$(date +%s.%N)
"$PYTHON" -m venv "$WORK/uv"
"$WORK/uv/bin/pip" install -q "uv==$UV_VERSION"
"$WORK/uv/bin/uv" pip install -q --python "$WORK/uv/bin/python" -r requirements/serve.txt
echo "serving set, fresh venv, uv $UV_VERSION (its install included): $(seconds_since "$t") s"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

for rev in "${@:-HEAD}"; do
    clone="$WORK/clone-$rev"
    git clone -q --no-checkout "$REPO" "$clone"
    git -C "$clone" checkout -q "$rev"
    port=$(free_port)
    t=$(date +%s.%N)
    # Its own process group, so that the server and its workers stop together.
    (cd "$clone" && exec setsid make serve PORT="$port") >"$WORK/serve-$rev.log" 2>&1 &
    SERVER_GROUP=$!
    until curl -sf "http://127.0.0.1:$port/ready" >/dev/null; do
        if ! kill -0 "$SERVER_GROUP" 2>/dev/null; then
            tail -20 "$WORK/serve-$rev.log" >&2
            echo "make serve at $rev exited before /ready answered" >&2
            exit 1
        fi
        sleep 0.2
    done
    echo "fresh clone of $rev -> make serve -> /ready: $(seconds_since "$t") s"
    kill -TERM -- "-$SERVER_GROUP"
    wait "$SERVER_GROUP" 2>/dev/null || true
    SERVER_GROUP=
done
