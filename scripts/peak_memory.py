"""Peak memory of one upload's decode + preprocessing, for the worst inputs at the pixel limit.

    flock /tmp/pc-heavy.lock timeout 600 .venv/bin/python scripts/peak_memory.py \
        [--out docs/evidence/peak-memory.json]

Each input is a width x height image at the limit, crafted to compress well (an item on an
empty page: a few hundred KB, far below the 10 MiB upload limit) but to decode into as many
bytes per pixel as Pillow allows:

* RGBA PNG (4 bytes/pixel, then compositing onto white), palette PNG with transparency
  (1 byte/pixel, 4 once converted), 16-bit grey PNG (2 bytes/pixel, then floats),
* CMYK JPEG (4 bytes/pixel) and the ordinary RGB JPEG and RGB PNG for comparison.

Each is measured in a fresh process (no allocator state from the previous one): the peak
resident memory (``VmHWM``, reset through ``/proc/self/clear_refs`` once the bytes are read)
minus the resident memory just before ``preprocess_bytes`` — what one request adds, besides its
upload bytes. Three paths: the previous code (full decode, 40 MP limit), a full decode at
today's limit, and today's reduced decode (``decode_image(..., spec)``) at today's limit.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs/evidence/peak-memory.json"
OLD_LIMIT = 40_000_000  # the limit before 4096 x 4096
KINDS = ("rgba_png", "palette_png_transparent", "gray16_png", "cmyk_jpeg", "rgb_jpeg", "rgb_png")


def _side(limit: int) -> int:
    return int(limit**0.5)


def craft(kind: str, side: int) -> bytes:
    """A side x side image of ``kind``: a dark item on an empty page (compresses well)."""
    lo, hi = side // 4, 3 * side // 4
    buf = io.BytesIO()
    if kind in ("rgba_png", "palette_png_transparent"):
        image = Image.new("RGBA", (side, side), (0, 0, 0, 0))
        image.paste((40, 60, 120, 255), (lo, lo, hi, hi))
        if kind == "palette_png_transparent":
            image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
            image.info["transparency"] = 0
            image.save(buf, "PNG", transparency=0)
        else:
            image.save(buf, "PNG")
    elif kind == "gray16_png":
        arr = np.full((side, side), 60000, np.uint16)
        arr[lo:hi, lo:hi] = 9000
        Image.fromarray(arr).save(buf, "PNG")
    elif kind == "cmyk_jpeg":
        image = Image.new("CMYK", (side, side), (0, 0, 0, 0))
        image.paste((200, 150, 40, 60), (lo, lo, hi, hi))
        image.save(buf, "JPEG", quality=90)
    elif kind == "rgb_jpeg":
        image = Image.new("RGB", (side, side), (255, 255, 255))
        image.paste((40, 60, 120), (lo, lo, hi, hi))
        image.save(buf, "JPEG", quality=90)
    elif kind == "rgb_png":
        image = Image.new("RGB", (side, side), (255, 255, 255))
        image.paste((40, 60, 120), (lo, lo, hi, hi))
        image.save(buf, "PNG")
    else:
        raise ValueError(kind)
    return buf.getvalue()


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(path: Path, reduced: bool, limit: int) -> dict[str, Any]:
    """In a fresh process: what preprocess_bytes adds to the resident memory, at its peak."""
    from product_classifier import preprocessing as pp

    data = path.read_bytes()
    config = pp.PreprocessConfig(max_pixels=limit)
    spec = pp.FASHION_MNIST_SPEC if reduced else None
    # Warm the codecs on a tiny image so their one-off setup is not counted.
    pp.preprocess_image(pp.decode_image(craft("rgb_png", 64), config, spec), config)
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    start = time.perf_counter()
    out = pp.to_model_input(pp.preprocess_image(pp.decode_image(data, config, spec), config))
    seconds = time.perf_counter() - start
    peak = _status_kb("VmHWM")
    assert out.shape == (1, 1, 28, 28)
    return {"peak_increase_mib": (peak - before) / 1024, "seconds": seconds}


def measure(path: Path, reduced: bool, limit: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", str(path), "--limit", str(limit)]
    if reduced:
        cmd.append("--reduced")
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--reduced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.reduced, args.limit)))
        return

    from product_classifier.preprocessing import DEFAULT_MAX_PIXELS

    paths = {
        ("before", "full decode, 40 MP limit"): (OLD_LIMIT, False),
        ("full_at_limit", "full decode, today's limit"): (DEFAULT_MAX_PIXELS, False),
        ("after", "reduced decode, today's limit"): (DEFAULT_MAX_PIXELS, True),
    }
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            rows[kind] = {}
            for (name, _), (limit, reduced) in paths.items():
                side = _side(limit)
                path = Path(tmp) / f"{kind}-{side}.bin"
                if not path.exists():
                    path.write_bytes(craft(kind, side))
                result = measure(path, reduced, limit)
                result.update(pixels=side * side, side=side, upload_kib=path.stat().st_size / 1024)
                rows[kind][name] = result
                print(
                    f"{kind:24s} {name:14s} {side}x{side} {result['upload_kib']:8.0f} KiB "
                    f"upload -> +{result['peak_increase_mib']:6.1f} MiB peak, "
                    f"{result['seconds'] * 1000:7.1f} ms",
                    flush=True,
                )
    worst = {
        name: max(rows[kind][name]["peak_increase_mib"] for kind in KINDS) for name, _ in paths
    }
    report = {
        "what": "peak resident memory one upload's decode + preprocessing adds (MiB), "
        "fresh process per measurement (VmHWM after /proc/self/clear_refs)",
        "paths": {name: label for name, label in paths},
        "worst_peak_increase_mib": worst,
        "inputs": rows,
        "setup": {
            "command": "scripts/peak_memory.py",
            "python": platform.python_version(),
            "pillow": Image.__version__,
            "machine": platform.machine(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(worst, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
