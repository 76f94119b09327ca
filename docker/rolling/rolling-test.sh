#!/usr/bin/env bash
# Rolling update under load, for real: two replicas of the serving image behind HAProxy
# (compose.yaml here, host network, 127.0.0.1), hey sending keep-alive POST /v1/predict through
# HAProxy, and each replica recreated in turn (SIGTERM, drain, exit, new container, /ready) the
# way a Kubernetes rolling update or `docker compose up --force-recreate` replaces it.
# Passes only with 0 failed requests: every non-2xx answer and every transport error counts.
# Writes reports/rolling-update.json. Called by docker/test.sh (`make docker-test`).
#
# Env: IMAGE (default product-classifier:docker-test), BASE_IMAGE (for the HAProxy image,
#      default the local Debian base), HAPROXY_IMAGE (default: built here from Debian's haproxy,
#      the layer cache makes a rebuild instant),
#      DOCKER, COMPOSE (e.g. "docker-compose"; found if unset), PYTHON (with Pillow),
#      CONNECTIONS (16), QPS (25 per connection), SETTLE_S (5: load before the first and after
#      the last restart), MAX_LOAD_S (240: fail if the restarts take longer),
#      DRAIN_S (3: the replicas' PRODUCT_CLASSIFIER_DRAIN_S), HAPROXY_CONFIG (default
#      haproxy.cfg here; e.g. one without retries, to see what they save), KEEP=1 leaves the
#      stack up, REPORT (default reports/rolling-update.json).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
IMAGE="${IMAGE:-product-classifier:docker-test}"
BASE_IMAGE="${BASE_IMAGE:-product-classifier/debian-python:local}"
BUILD_HAPROXY=$([[ -z "${HAPROXY_IMAGE:-}" ]] && echo 1 || echo 0)
HAPROXY_IMAGE="${HAPROXY_IMAGE:-product-classifier/haproxy:local}"
DOCKER="${DOCKER:-docker}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
CONNECTIONS="${CONNECTIONS:-16}" QPS="${QPS:-25}" SETTLE_S="${SETTLE_S:-5}" MAX_LOAD_S="${MAX_LOAD_S:-240}"
export HAPROXY_CONFIG="$(realpath "${HAPROXY_CONFIG:-docker/rolling/haproxy.cfg}")"
export DRAIN_S="${DRAIN_S:-3}"
WORK="$ROOT/.cache/rolling-test"
REPORT="${REPORT:-$ROOT/reports/rolling-update.json}"
mkdir -p "$WORK" "$(dirname "$REPORT")"
rm -f "$WORK"/*

T0=$SECONDS
say() { printf '   [%3ss] %s\n' "$((SECONDS - T0))" "$*"; }
die() { printf '   FAIL: %s\n' "$*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
if [[ -z "${COMPOSE:-}" ]]; then
    if "$DOCKER" compose version >/dev/null 2>&1; then COMPOSE="$DOCKER compose"
    else COMPOSE=docker-compose; fi
fi
command -v hey >/dev/null || die "hey is missing: apt-get install hey"
read -r -a COMPOSE_CMD <<<"$COMPOSE"
COMPOSE_CMD+=(-p pc-rolling -f docker/rolling/compose.yaml)

export PRODUCT_CLASSIFIER_IMAGE="$IMAGE" HAPROXY_IMAGE
API_A_PORT=$(free_port); API_B_PORT=$(free_port); LB_PORT=$(free_port); STATS_PORT=$(free_port)
export API_A_PORT API_B_PORT LB_PORT STATS_PORT
HEY_PID=""
cleanup() {
    [[ -n "$HEY_PID" ]] && kill "$HEY_PID" 2>/dev/null || true
    if [[ "${KEEP:-0}" != 1 ]]; then
        "${COMPOSE_CMD[@]}" logs --no-color >"$WORK/compose.log" 2>&1 || true
        "${COMPOSE_CMD[@]}" down --remove-orphans -t 5 >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

if [[ "$BUILD_HAPROXY" == 1 ]]; then
    t=$SECONDS
    DOCKER_BUILDKIT=1 "$DOCKER" build -q --network host -f docker/rolling/Dockerfile \
        --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$HAPROXY_IMAGE" docker/rolling >/dev/null \
        || die "could not build $HAPROXY_IMAGE"
    say "$HAPROXY_IMAGE: Debian's haproxy on $BASE_IMAGE ($((SECONDS - t)) s)"
fi
# The config is mounted into a container that runs as the haproxy user.
chmod a+r "$HAPROXY_CONFIG"

# `api-a UP` lines from HAProxy's CSV statistics (the servers' state as the balancer sees it).
stats() { "$PYTHON" - "http://127.0.0.1:$STATS_PORT/stats;csv" "$@" <<'EOF'
import csv, sys, urllib.request
rows = csv.DictReader(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode().lstrip("# ").splitlines())
fields = sys.argv[2:] or ["status"]
for row in rows:
    if row["pxname"] == "product-classifier":
        print(row["svname"], *(row[f] for f in fields))
EOF
}
wait_up() {  # wait_up SERVER...: until HAProxy routes to every one of them (90 s at most)
    local up missing
    for _ in $(seq 360); do
        up=" $(stats 2>/dev/null | awk 'NF == 2 && $2 == "UP" {print $1}' | xargs) "
        missing=0
        for server in "$@"; do [[ "$up" == *" $server "* ]] || missing=1; done
        ((missing == 0)) && return 0
        sleep 0.25
    done
    stats >&2 || true
    return 1
}

"${COMPOSE_CMD[@]}" config -q
"${COMPOSE_CMD[@]}" up -d --no-build api-a api-b haproxy >"$WORK/up.log" 2>&1 \
    || { cat "$WORK/up.log" >&2; die "compose up"; }
wait_up api-a api-b || die "the replicas did not turn UP in HAProxy"
say "api-a :$API_A_PORT, api-b :$API_B_PORT UP behind HAProxy :$LB_PORT ($IMAGE, DRAIN_S=$DRAIN_S)"

# One real 28x28 PNG as a multipart body, sent again and again.
CTYPE=$("$PYTHON" - "$WORK/body.bin" <<'EOF'
import io, sys
from PIL import Image
png = io.BytesIO()
Image.frombytes("L", (28, 28), bytes((x * 9 + y * 3) % 256 for y in range(28) for x in range(28))).save(png, "PNG")
boundary = "product-classifier-rolling-test"
body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"shirt.png\"\r\n"
        "Content-Type: image/png\r\n\r\n").encode() + png.getvalue() + f"\r\n--{boundary}--\r\n".encode()
open(sys.argv[1], "wb").write(body)
print(f"multipart/form-data; boundary={boundary}")
EOF
)
code=$("$PYTHON" -c 'import sys, urllib.request as u
r = u.Request(sys.argv[1], open(sys.argv[2], "rb").read(), {"Content-Type": sys.argv[3]})
print(u.urlopen(r, timeout=10).status)' "http://127.0.0.1:$LB_PORT/v1/predict" "$WORK/body.bin" "$CTYPE")
[[ "$code" == 200 ]] || die "a prediction through HAProxy answered $code"

hey -z "${MAX_LOAD_S}s" -c "$CONNECTIONS" -q "$QPS" -m POST -T "$CTYPE" -D "$WORK/body.bin" \
    "http://127.0.0.1:$LB_PORT/v1/predict" >"$WORK/hey.txt" 2>&1 &
HEY_PID=$!
LOAD_T0=$SECONDS
say "hey: $CONNECTIONS keep-alive connections, at most $((CONNECTIONS * QPS)) req/s"
sleep "$SETTLE_S"
RESTARTS=()
for svc in api-a api-b; do
    t=$SECONDS
    # Recreate = SIGTERM the old container (it drains, then exits), start a new one: what a
    # deploy of a new image does. The other replica carries the load meanwhile.
    "${COMPOSE_CMD[@]}" up -d --no-build --no-deps --force-recreate "$svc" >>"$WORK/up.log" 2>&1 \
        || die "recreating $svc"
    stopped=$((SECONDS - t))
    wait_up "$svc" || die "$svc did not come back UP"
    RESTARTS+=("{\"service\": \"$svc\", \"stop_and_start_s\": $stopped, \"back_in_rotation_s\": $((SECONDS - t))}")
    say "$svc recreated: old one stopped and new one started in ${stopped} s, UP in HAProxy after $((SECONDS - t)) s"
done
RESTARTS_DONE_S=$((SECONDS - LOAD_T0))
sleep "$SETTLE_S"
# hey stops on SIGINT and prints its summary; if it already ended, the load did not cover the
# restarts.
kill -INT "$HEY_PID" 2>/dev/null || die "hey ended before the restarts did (MAX_LOAD_S=$MAX_LOAD_S)"
wait "$HEY_PID" || die "hey failed: $(tail -n 5 "$WORK/hey.txt")"
HEY_PID=""
stats wretr wredis chkdown >"$WORK/haproxy-stats.txt"

# hey's summary -> figures; fail unless every request got a 2xx.
R_RESTARTS="[$(IFS=,; echo "${RESTARTS[*]}")]" "$PYTHON" - "$WORK/hey.txt" "$WORK/haproxy-stats.txt" "$REPORT" <<EOF
import json, os, re, sys
hey = open(sys.argv[1]).read()
statuses = {int(c): int(n) for c, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", hey)}
errors = {m.strip(): int(n) for n, m in re.findall(r"^\s*\[(\d+)\]\s+(.*)$", hey.split("Error distribution:")[1], re.M)} if "Error distribution:" in hey else {}
servers = {}
for line in open(sys.argv[2]):
    name, wretr, wredis, chkdown = line.split()
    servers[name] = {"retries": int(wretr or 0), "redispatches": int(wredis or 0), "went_down": int(chkdown or 0)}
answered = sum(statuses.values())
failed = sum(n for c, n in statuses.items() if not 200 <= c < 300) + sum(errors.values())
rate = re.search(r"Requests/sec:\s+([\d.]+)", hey)
report = {
    "image": "$IMAGE", "replicas": 2, "load_balancer": "HAProxy (Debian package)",
    "drain_s_setting": float(os.environ["DRAIN_S"]), "haproxy_config": os.path.basename(os.environ["HAPROXY_CONFIG"]),
    "load_s": round(float(re.search(r"Total:\s+([\d.]+) secs", hey).group(1)), 1),
    "connections": $CONNECTIONS, "max_rate_per_connection": $QPS,
    "requests": answered + sum(errors.values()), "answered": answered,
    "status_codes": statuses, "transport_errors": errors, "failed": failed,
    "requests_per_s": float(rate.group(1)) if rate else None,
    "restarts": json.loads(os.environ["R_RESTARTS"]), "restarts_done_after_s": $RESTARTS_DONE_S,
    "haproxy": servers,
}
json.dump(report, open(sys.argv[3], "w"), indent=2)
print(json.dumps(report, indent=2))
if report["requests"] == 0 or failed:
    sys.exit(f"{failed} of {report['requests']} requests failed during the rolling update")
EOF
say "0 failed requests during the rolling update ($REPORT)"
