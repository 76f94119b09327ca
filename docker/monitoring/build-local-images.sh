#!/usr/bin/env bash
# Build product-classifier/{prometheus,alertmanager}:local from Debian packages on the local
# Debian base, for machines that cannot pull prom/prometheus and prom/alertmanager. Then:
#   PROMETHEUS_IMAGE=product-classifier/prometheus:local \
#   ALERTMANAGER_IMAGE=product-classifier/alertmanager:local docker compose ... --profile monitoring up
# Usage: docker/monitoring/build-local-images.sh [BASE_IMAGE]   (DOCKER: a BuildKit-capable CLI)
set -euo pipefail
cd "$(dirname "$0")"
BASE_IMAGE="${1:-product-classifier/debian-python:local}"
DOCKER="${DOCKER:-docker}"
for target in prometheus alertmanager; do
    DOCKER_BUILDKIT=1 "$DOCKER" build -q --network host -f Dockerfile --target "$target" \
        --build-arg BASE_IMAGE="$BASE_IMAGE" -t "product-classifier/$target:local" . >/dev/null
    echo "product-classifier/$target:local"
done
