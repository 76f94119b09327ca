"""Downloading one dataset file from a list of mirrors, with retries, timeouts and verification.

Only the standard library (urllib) is used, so the service venv needs no HTTP client for this.
Transient failures (timeouts, resets, 5xx, 429, short reads) are retried on the same mirror with
exponential backoff; permanent ones (404, a bad URL, a file that fails verification) move on to
the next mirror at once, since asking again would get the same answer.
"""

from __future__ import annotations

import http.client
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

from tqdm import tqdm

from product_classifier import __version__
from product_classifier.data.errors import Attempt
from product_classifier.data.idx import MAX_PAYLOAD_BYTES, CorruptFileError
from product_classifier.data.verify import FileSpec, verify_bytes

log = logging.getLogger(__name__)

_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_CHUNK = 1 << 16


class _Transient(Exception):
    """Worth retrying on the same mirror."""


class _Permanent(Exception):
    """Retrying this mirror would give the same answer."""


def _get(url: str, timeout: float, progress: bool, desc: str) -> bytes:
    headers = {"User-Agent": f"product-classifier/{__version__}"}
    request = urllib.request.Request(url, headers=headers)
    try:
        # Mirror URLs come from the code or the operator, never from a request (bandit B310).
        with urllib.request.urlopen(request, timeout=timeout) as response:  # nosec B310
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > MAX_PAYLOAD_BYTES:
                raise _Permanent(f"the server offers {total} bytes, more than any dataset file")
            body = bytearray()
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=desc,
                disable=not progress,
                leave=False,
            ) as bar:
                while chunk := response.read(_CHUNK):
                    body += chunk
                    bar.update(len(chunk))
                    if len(body) > MAX_PAYLOAD_BYTES:
                        raise _Permanent("the response is larger than any dataset file")
    except urllib.error.HTTPError as exc:
        message = f"HTTP {exc.code} {exc.reason}"
        raise (_Transient if exc.code in _RETRYABLE_STATUS else _Permanent)(message) from exc
    except urllib.error.URLError as exc:
        # A reason that is an OSError is a network problem; a plain string is a bad URL.
        if isinstance(exc.reason, OSError) and not isinstance(exc.reason, FileNotFoundError):
            raise _Transient(f"cannot connect: {exc.reason}") from exc
        raise _Permanent(f"cannot open: {exc.reason}") from exc
    except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, short reads
        raise _Transient(f"{type(exc).__name__}: {exc}") from exc
    except ValueError as exc:  # urllib's answer to a malformed URL
        raise _Permanent(f"invalid URL: {exc}") from exc
    if total is not None and len(body) != total:
        raise _Transient(f"the connection closed after {len(body)} of {total} bytes")
    return bytes(body)


def download_file(
    spec: FileSpec,
    mirrors: Sequence[str],
    attempts: list[Attempt],
    *,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 1.0,
    progress: bool = True,
    unreachable: set[str] | None = None,
) -> tuple[bytes, str] | None:
    """(verified .gz bytes, payload sha256) from the first mirror that delivers a good copy.

    Every failed URL is appended to ``attempts``; None when no mirror worked. Mirrors that
    exhausted their retries are added to ``unreachable`` and skipped by later calls sharing the
    set, so an offline machine does not wait out every retry for each of the four files.
    """
    unreachable = unreachable if unreachable is not None else set()
    for base in mirrors:
        url = f"{base.rstrip('/')}/{spec.gz_name}"
        if base in unreachable:
            attempts.append(Attempt(url, "skipped: the mirror failed for an earlier file"))
            continue
        for attempt in range(1, retries + 1):
            try:
                data = _get(url, timeout, progress, spec.gz_name)
            except _Permanent as exc:
                attempts.append(Attempt(url, str(exc)))
                break
            except _Transient as exc:
                if attempt == retries:
                    attempts.append(Attempt(url, f"{exc} (gave up after {retries} tries)"))
                    unreachable.add(base)
                    break
                delay = backoff * 2 ** (attempt - 1)
                log.warning("%s: %s; retrying in %.1f s", url, exc, delay)
                time.sleep(delay)
                continue
            try:
                sha, _ = verify_bytes(data, spec, url)
            except CorruptFileError as exc:
                attempts.append(Attempt(url, f"downloaded, but rejected: {exc.problem}"))
                break
            return data, sha
    return None
