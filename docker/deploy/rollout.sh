#!/usr/bin/env bash
# Roll a released version out on a Docker host (run there; release.yml calls it over SSH).
#
#   rollout.sh DEPLOY_PATH VERSION IMAGE
#
# DEPLOY_PATH/releases/VERSION holds docker/ and monitoring/ of that version (copied by the
# workflow); DEPLOY_PATH/current links to the version that serves. The new API container must
# turn healthy (its HEALTHCHECK polls /ready: model loaded and sha256-verified) within the
# timeout, otherwise the previous version is started again and the script fails.
# Env: PROFILES (default: "--profile monitoring"), HEALTH_TIMEOUT_S (default 120),
#      COMPOSE_PROJECT_NAME (default product-classifier).
set -euo pipefail

DEPLOY_PATH="$1" VERSION="$2" IMAGE="$3"
PROFILES="${PROFILES---profile monitoring}"
HEALTH_TIMEOUT_S="${HEALTH_TIMEOUT_S:-120}"
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-product-classifier}"

release="$DEPLOY_PATH/releases/$VERSION"
previous="$(readlink -f "$DEPLOY_PATH/current" 2>/dev/null || true)"

compose() {  # compose RELEASE_DIR IMAGE ARGS...
    local dir="$1" image="$2"; shift 2
    # shellcheck disable=SC2086  # PROFILES is a list of options
    (cd "$dir/docker" && PRODUCT_CLASSIFIER_IMAGE="$image" docker compose $PROFILES "$@")
}

healthy() {  # healthy RELEASE_DIR IMAGE
    local cid status deadline=$((SECONDS + HEALTH_TIMEOUT_S))
    cid="$(compose "$1" "$2" ps -q product-classifier)"
    while ((SECONDS < deadline)); do
        status="$(docker inspect -f '{{.State.Health.Status}}' "$cid" 2>/dev/null || echo gone)"
        [[ "$status" == healthy ]] && return 0
        [[ "$status" == unhealthy || "$status" == gone ]] && break
        sleep 2
    done
    docker logs --tail 50 "$cid" >&2 || true
    return 1
}

echo "pulling $IMAGE"
compose "$release" "$IMAGE" pull --quiet
# Only the containers whose image or config changed are recreated; the old API container
# gets SIGTERM and drains its in-flight requests (stop_grace_period) first.
compose "$release" "$IMAGE" up -d --no-build --remove-orphans
if healthy "$release" "$IMAGE"; then
    ln -sfn "$release" "$DEPLOY_PATH/current"
    echo "$VERSION is serving"
    exit 0
fi

echo "$VERSION did not turn healthy within ${HEALTH_TIMEOUT_S} s" >&2
if [[ -n "$previous" && -d "$previous" ]]; then
    old_version="$(basename "$previous")"
    echo "rolling back to $old_version" >&2
    old_image="${IMAGE%:*}:$old_version"
    compose "$previous" "$old_image" up -d --no-build --remove-orphans
    healthy "$previous" "$old_image" && echo "$old_version is serving again" >&2
fi
exit 1
