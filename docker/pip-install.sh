#!/bin/sh
# pip install inside an image build: from the package index (the default), or offline from a
# wheelhouse when the build mounts one at /wheels (`--build-arg WHEELS=<image with /wheels>`).
# A CA bundle given as the BuildKit secret `pip_cert` is used for this command only; secrets and
# wheelhouse mounts never end up in a layer, so the image is the same either way.
set -eu
if [ -s /run/secrets/pip_cert ]; then
    export PIP_CERT=/run/secrets/pip_cert
fi
if ls /wheels/*.whl >/dev/null 2>&1; then
    set -- --no-index --find-links /wheels "$@"
fi
exec /opt/venv/bin/python -m pip install --no-cache-dir --disable-pip-version-check "$@"
