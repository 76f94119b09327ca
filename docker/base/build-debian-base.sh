#!/usr/bin/env bash
# Build a small Debian base image with python3 from Debian packages (debootstrap) and import it
# into the local Docker daemon. It stands in for python:3.11-slim where no image registry is
# reachable; the serving Dockerfile works on either (`--build-arg BASE_IMAGE=...`).
#
# The Debian mirror is read from this host's apt sources, so the script works wherever apt does.
#
# Usage: docker/base/build-debian-base.sh [TAG]   (default: product-classifier/debian-python:local)
# Env:   SUITE (default: this host's codename), MIRROR (default: from /etc/apt/sources.list*),
#        FORCE=1 rebuilds even when TAG exists, DOCKER (default: docker),
#        CACHE_DIR keeps the downloaded .deb files between runs (default below; empty: none).
set -euo pipefail

TAG="${1:-product-classifier/debian-python:local}"
DOCKER="${DOCKER:-docker}"
FORCE="${FORCE:-0}"
PACKAGES="python3,python3-venv,ca-certificates"
CACHE_DIR="${CACHE_DIR-/var/cache/product-classifier/debootstrap}"

log() { printf '[debian-base] %s\n' "$*" >&2; }

if [[ "$FORCE" != 1 ]] && "$DOCKER" image inspect "$TAG" >/dev/null 2>&1; then
    log "$TAG exists (FORCE=1 to rebuild)"
    exit 0
fi

# shellcheck disable=SC1091
SUITE="${SUITE:-$(. /etc/os-release && echo "${VERSION_CODENAME:?no VERSION_CODENAME}")}"

# URI of the first enabled "deb" source serving suite $1 (component main), from deb822 (*.sources)
# or one-line (*.list) files.
detect_mirror() {
    local file suite="$1"
    for file in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$file" ]] || continue
        awk -v suite="$suite" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && enabled != "no" && (" " suites " ") ~ (" " suite " ") \
                    && (" " comps " ") ~ / main /) { split(uris, u, " "); print u[1]; found = 1; exit }
                types = uris = suites = comps = ""; enabled = "yes"
            }
            BEGIN { enabled = "yes" }
            /^[ \t]*$/ { flush(); next }
            /^Types:/ { sub(/^Types:[ \t]*/, ""); types = $0 }
            /^URIs:/ { sub(/^URIs:[ \t]*/, ""); uris = $0 }
            /^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
            /^Components:/ { sub(/^Components:[ \t]*/, ""); comps = $0 }
            /^Enabled:/ { sub(/^Enabled:[ \t]*/, ""); enabled = tolower($0) }
            END { if (!found) flush() }
        ' "$file" | head -n1
    done
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$file" ]] || continue
        # "deb [options] URI SUITE COMPONENTS..."
        sed -E 's/\[[^]]*\]//' "$file" \
            | awk -v suite="$suite" '$1 == "deb" && $3 == suite && / main( |$)/ { print $2; exit }'
    done
}

MIRROR="${MIRROR:-$(detect_mirror "$SUITE" | head -n1)}"
SECURITY_MIRROR="${SECURITY_MIRROR-$(detect_mirror "$SUITE-security" | head -n1)}"
[[ -n "$MIRROR" ]] || { log "no apt source for $SUITE/main found; set MIRROR"; exit 1; }
command -v debootstrap >/dev/null || { log "debootstrap is missing (apt-get install debootstrap)"; exit 1; }

ROOT="$(mktemp -d /var/tmp/pc-debian-base.XXXXXX)"
trap 'rm -rf "$ROOT"' EXIT
start=$SECONDS

log "debootstrap $SUITE (minbase + $PACKAGES) from the host's mirror"
cache_opt=()
if [[ -n "$CACHE_DIR" ]]; then
    mkdir -p "$CACHE_DIR"
    cache_opt=(--cache-dir="$CACHE_DIR")
fi
debootstrap --variant=minbase --components=main --include="$PACKAGES" "${cache_opt[@]}" \
    "$SUITE" "$ROOT" "$MIRROR" \
    >"$ROOT.log" 2>&1 || { tail -n 30 "$ROOT.log" >&2; rm -f "$ROOT.log"; exit 1; }
rm -f "$ROOT.log"

# Same mirrors as the host (so `apt-get` works in derived images), with security updates applied
# now; then drop what only makes the image bigger: package caches, docs (copyright stays), man.
{
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\n' "$MIRROR" "$SUITE" "$SUITE"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    if [[ -n "$SECURITY_MIRROR" ]]; then
        printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\n' \
            "$SECURITY_MIRROR" "$SUITE"
        printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    fi
} >"$ROOT/etc/apt/sources.list.d/debian.sources"
rm -f "$ROOT/etc/apt/sources.list"
if [[ "${UPGRADE:-1}" == 1 ]]; then
    log "applying $SUITE-updates/-security"
    chroot "$ROOT" /bin/sh -c 'export DEBIAN_FRONTEND=noninteractive;
        apt-get -qq update && apt-get -qq -y upgrade && apt-get -qq clean' >/dev/null
fi
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* "$ROOT"/usr/share/man/* \
    "$ROOT"/usr/share/info/* "$ROOT"/var/log/*.log "$ROOT"/var/cache/debconf/*-old
find "$ROOT/usr/share/doc" -type f ! -name copyright -delete 2>/dev/null || true

log "importing as $TAG"
tar --numeric-owner -C "$ROOT" -c . | "$DOCKER" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap $SUITE minbase + $PACKAGES" \
    - "$TAG" >/dev/null
log "done in $((SECONDS - start)) s: $("$DOCKER" image inspect -f '{{.Size}}' "$TAG") bytes"
