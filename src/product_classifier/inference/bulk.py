"""Classify many image files at once: with the local ONNX model or through a running service.

Used by ``product-classifier predict``. Three steps, each usable alone:

* :func:`collect_inputs` turns files, folders (searched recursively for image extensions) and
  glob patterns into an ordered, de-duplicated list; a path that matches nothing becomes an
  error item instead of stopping the run;
* :func:`run_bulk` reads the files in batches and hands each batch to a backend:
  :class:`LocalBackend` (onnxruntime + the shared preprocessing, no torch) or
  :class:`RemoteBackend` (``POST /v1/predict/batch`` with httpx). An unreadable or undecodable
  file becomes an error row; it never aborts the run;
* :func:`write_csv` / :func:`write_json` write one row per image.

Error codes are the API's (see serving/errors.py) plus ``not_found``, ``unreadable_file``,
``file_too_large`` and ``network_error`` for what can only go wrong on the client's side.
"""

from __future__ import annotations

import csv
import glob
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import numpy as np

from product_classifier.inference.expert import opinion_of
from product_classifier.inference.review import review_policy
from product_classifier.preprocessing import (
    IMAGE_EXTENSIONS,
    PreprocessConfig,
    PreprocessingError,
    is_dataset_form,
    preprocess_bytes,
)

if TYPE_CHECKING:  # both are heavy; only the backend that is used imports its own
    import httpx

    from product_classifier.inference.model_card import VerifiedModel

logger = logging.getLogger(__name__)

TOP_K = 3
# The service's defaults (ServeSettings), so that local and remote runs agree.
DEFAULT_BATCH_SIZE = 32
# Files larger than this are not read at all (a catalog photo is a few MB).
MAX_FILE_BYTES = 64 * 1024 * 1024
# One batch request stays under the service's 64 MiB body limit.
MAX_REQUEST_BYTES = 32 * 1024 * 1024
_GLOB_CHARS = frozenset("*?[")
# How RemoteBackend presents a key (the service also takes 'Authorization: Bearer KEY').
API_KEY_HEADER = "X-API-Key"
API_KEY_ENV = "PRODUCT_CLASSIFIER_API_KEY"  # read by `product-classifier predict --url`
# PreprocessingError code -> the public code the API uses for it.
_PUBLIC_CODES = {"not_an_image": "unsupported_media_type"}


CSV_COLUMNS = (
    "path",
    "category",
    "class_id",
    "confidence",
    "needs_review",
    "review_reason",
    *(f"top{k}{suffix}" for k in range(1, TOP_K + 1) for suffix in ("", "_probability")),
    "error_code",
    "error_message",
    "model_version",
)


class BulkError(RuntimeError):
    """The run cannot start (model not loadable, service unreachable); one readable sentence."""


@dataclass(frozen=True)
class InputItem:
    """One image to classify; ``error`` is set when the input itself is already a failure."""

    path: str
    error: tuple[str, str] | None = None


@dataclass(frozen=True)
class TopEntry:
    category: str
    class_id: int
    probability: float


@dataclass(frozen=True)
class BulkRow:
    """The outcome for one image: a prediction, or an error code and message."""

    path: str
    category: str | None = None
    class_id: int | None = None
    confidence: float | None = None
    needs_review: bool | None = None
    top_k: tuple[TopEntry, ...] = ()
    error_code: str | None = None
    error_message: str | None = None
    review_reason: str | None = None  # low_confidence | out_of_scope, when needs_review

    @property
    def ok(self) -> bool:
        return self.error_code is None

    @classmethod
    def failure(cls, path: str, code: str, message: str) -> BulkRow:
        return cls(path=path, error_code=code, error_message=message)

    def to_dict(self) -> dict[str, Any]:
        if not self.ok:
            return {
                "path": self.path,
                "error": {"code": self.error_code, "message": self.error_message},
            }
        return {
            "path": self.path,
            "category": self.category,
            "class_id": self.class_id,
            "confidence": self.confidence,
            "needs_review": self.needs_review,
            "review_reason": self.review_reason,
            "out_of_scope": self.review_reason == "out_of_scope",
            "top_k": [
                {"category": e.category, "class_id": e.class_id, "probability": e.probability}
                for e in self.top_k
            ],
        }


@dataclass
class BulkReport:
    rows: list[BulkRow]
    model_version: str
    source: str  # the model file or the service URL

    @property
    def failed(self) -> int:
        return sum(not row.ok for row in self.rows)

    @property
    def needs_review(self) -> int:
        return sum(bool(row.needs_review) for row in self.rows)

    def summary(self) -> dict[str, int]:
        return {
            "images": len(self.rows),
            "classified": len(self.rows) - self.failed,
            "needs_review": self.needs_review,
            "failed": self.failed,
        }


# -- inputs ------------------------------------------------------------------------------------


def _is_hidden(path: Path, root: Path) -> bool:
    # Skips .git/, .DS_Store and macOS "._photo.jpg" resource forks inside a folder.
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _images_in(directory: Path) -> list[Path]:
    found = [
        p
        for p in directory.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not _is_hidden(p, directory)
    ]
    return sorted(found)


def collect_inputs(inputs: Iterable[str | Path]) -> list[InputItem]:
    """Expand files, folders and globs, in the order given, each image once.

    A file named explicitly or matched by a glob is always read (so a mislabelled or broken
    file is reported, not silently skipped); a folder contributes its image files only, sorted,
    skipping hidden files and folders. Anything that matches nothing becomes a ``not_found``
    item.
    """
    items: list[InputItem] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            items.append(InputItem(str(path)))

    def expand(path: Path) -> None:
        if path.is_dir():
            for image in _images_in(path):
                add(image)
        else:
            add(path)

    for raw in inputs:
        text = str(raw)
        path = Path(text).expanduser()
        if path.exists():
            expand(path)
        elif _GLOB_CHARS & set(text):
            matches = sorted(glob.glob(str(path), recursive=True))
            if not matches:
                items.append(InputItem(text, ("not_found", "no file matches this pattern")))
            for match in matches:
                expand(Path(match))
        else:
            items.append(InputItem(text, ("not_found", "no such file or directory")))
    return items


# -- backends ----------------------------------------------------------------------------------


class Backend(Protocol):
    """Classifies one batch of (path, bytes); returns one row per item, in order."""

    source: str

    @property
    def model_version(self) -> str: ...

    def classify(self, batch: Sequence[tuple[str, bytes]]) -> list[BulkRow]: ...


def top_entries(probs: np.ndarray, class_names: Sequence[str]) -> tuple[TopEntry, ...]:
    # Stable: ties go to the lower class id, exactly like the service's format_prediction.
    order = np.argsort(-probs, kind="stable")[:TOP_K]
    return tuple(TopEntry(class_names[i], int(i), float(probs[i])) for i in order)


class LocalBackend:
    """The ONNX model in this process (sha256-checked against its card when the card exists)."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        review_threshold: float | None = None,
        preprocess: PreprocessConfig | None = None,
        model: VerifiedModel | None = None,
        cascade: bool = False,
        cascade_threshold: float | None = None,
    ) -> None:
        from product_classifier.inference.errors import ModelLoadError
        from product_classifier.inference.model_card import default_card_path, load_verified_model

        path = Path(model_path)
        if model is None:
            try:
                # Without a card there is nothing to verify against (a model under development).
                verify = default_card_path(path).is_file()
                # cascade: the card's first stage in front, exactly as the service loads it.
                model = load_verified_model(
                    path, verify=verify, cascade=cascade, cascade_threshold=cascade_threshold
                )
            except ModelLoadError as exc:
                raise BulkError(f"cannot load the model: {exc}") from exc
        self.predictor = model.predictor
        # The pictures' second opinion, as the service asks it (inference/expert.py).
        self.expert = model.expert
        self.source = str(path)
        # The service's policy: the card's (temperature, thresholds), or the operator's.
        self.review = review_policy(model.card, review_threshold)
        self.preprocess = preprocess or PreprocessConfig()

    @property
    def model_version(self) -> str:
        return self.predictor.model_version

    def _decode(self, data: bytes) -> np.ndarray | tuple[str, str]:
        try:
            return preprocess_bytes(data, self.preprocess, self.predictor.spec)
        except PreprocessingError as exc:
            return _PUBLIC_CODES.get(exc.code, exc.code), exc.message
        except Exception as exc:  # exotic modes Pillow opens but cannot convert
            return "invalid_image", f"the image could not be processed: {exc}"

    def classify(self, batch: Sequence[tuple[str, bytes]]) -> list[BulkRow]:
        rows: list[BulkRow | None] = [None] * len(batch)
        good: list[int] = []
        tensors: list[np.ndarray] = []
        for i, (path, data) in enumerate(batch):
            decoded = self._decode(data)
            if isinstance(decoded, tuple):
                rows[i] = BulkRow.failure(path, *decoded)
            else:
                good.append(i)
                tensors.append(decoded)
        if tensors:
            inputs = np.concatenate(tensors)
            probs = self.predictor.predict_proba(inputs)
            names = self.predictor.class_names
            pictures = [not is_dataset_form(batch[i][1]) for i in good]
            opinions = np.ones(len(good), dtype=np.float32)
            if self.expert is not None and any(pictures):
                rows_of_pictures = np.flatnonzero(pictures)
                opinions[rows_of_pictures] = opinion_of(self.expert, inputs[rows_of_pictures])
            for i, raw, picture, opinion in zip(good, probs, pictures, opinions, strict=True):
                # The service's policy for this upload: real pictures have their own.
                review = self.review.for_upload(picture)
                top = top_entries(review.calibrate(raw[None])[0], names)
                reason = review.reason(top[0].probability, float(opinion))
                rows[i] = BulkRow(
                    path=batch[i][0],
                    category=top[0].category,
                    class_id=top[0].class_id,
                    confidence=top[0].probability,
                    needs_review=reason is not None,
                    review_reason=reason,
                    top_k=top,
                )
        return [row for row in rows if row is not None]


class RemoteBackend:
    """A running service, through ``POST /v1/predict/batch`` (one request per batch).

    ``api_key`` is sent as ``X-API-Key`` on every request. It never appears in a message: it
    is checked to be a plain header value before httpx sees it (httpx would quote a bad one
    in its exception), and a refused key is reported by the service's code alone.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        client: httpx.Client | None = None,
    ) -> None:
        import httpx

        self.source = url.rstrip("/")
        self.retries = retries
        headers = {API_KEY_HEADER: _checked_api_key(api_key)} if api_key else {}
        self._client = client or httpx.Client(
            base_url=self.source, timeout=timeout, headers=headers
        )
        if client is not None:
            self._client.headers.update(headers)
        self._model_version = "unknown"
        self._wait_ready()
        self._check_access()

    @property
    def model_version(self) -> str:
        return self._model_version

    def close(self) -> None:
        self._client.close()

    def _wait_ready(self) -> None:
        import httpx

        for attempt in range(self.retries + 1):
            try:
                response = self._client.get("/ready")
            except httpx.HTTPError as exc:
                raise BulkError(f"cannot reach the service at {self.source}: {exc}") from exc
            if response.status_code == 200:
                self._model_version = str(response.json().get("model_version", "unknown"))
                return
            if response.status_code != 503 or attempt == self.retries:
                code, message = _api_error(response)
                raise BulkError(f"the service at {self.source} is not ready: {message} ({code})")
            time.sleep(_retry_after(response))

    def _check_access(self) -> None:
        """Fail the run up front when the service wants a key (``/ready`` is always open)."""
        import httpx

        try:
            response = self._client.get("/v1/categories")
        except httpx.HTTPError as exc:
            raise BulkError(f"cannot reach the service at {self.source}: {exc}") from exc
        if response.status_code != 401:
            return
        if API_KEY_HEADER not in self._client.headers:
            raise BulkError(
                f"the service at {self.source} needs an API key: pass --api-key or set "
                f"{API_KEY_ENV} (unauthorized)"
            )
        raise BulkError(f"the service at {self.source} refused the API key (unauthorized)")

    def classify(self, batch: Sequence[tuple[str, bytes]]) -> list[BulkRow]:
        import httpx

        files = [
            ("files", (Path(path).name, data, "application/octet-stream")) for path, data in batch
        ]
        for attempt in range(self.retries + 1):
            try:
                response = self._client.post("/v1/predict/batch", files=files)
            except httpx.HTTPError as exc:
                return [BulkRow.failure(p, "network_error", str(exc)) for p, _ in batch]
            if response.status_code == 503 and attempt < self.retries:
                time.sleep(_retry_after(response))  # overloaded: back off as told
                continue
            break
        if response.status_code != 200:
            code, message = _api_error(response)
            return [BulkRow.failure(p, code, message) for p, _ in batch]
        body = response.json()
        self._model_version = str(body.get("model_version", self._model_version))
        results = body.get("results", [])
        if len(results) != len(batch):
            message = f"the service sent {len(results)} results for {len(batch)} files"
            return [BulkRow.failure(p, "bad_response", message) for p, _ in batch]
        return [
            _row_from_api(path, result) for (path, _), result in zip(batch, results, strict=True)
        ]


def _checked_api_key(key: str) -> str:
    if key != key.strip() or not key.isascii() or not key.isprintable():
        # Not echoed: the value is a secret even when it is malformed.
        raise BulkError("the API key must be printable ASCII without leading or trailing spaces")
    return key


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(30.0, max(0.1, float(response.headers.get("Retry-After", "1"))))
    except ValueError:
        return 1.0


def _api_error(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status_code}", response.text[:200] or response.reason_phrase


def _row_from_api(path: str, result: dict[str, Any]) -> BulkRow:
    if "error" in result:
        return BulkRow.failure(path, result["error"]["code"], result["error"]["message"])
    return BulkRow(
        path=path,
        category=result["category"],
        class_id=int(result["class_id"]),
        confidence=float(result["confidence"]),
        needs_review=bool(result["needs_review"]),
        review_reason=result.get("review_reason"),
        top_k=tuple(
            TopEntry(e["category"], int(e["class_id"]), float(e["probability"]))
            for e in result["top_k"]
        ),
    )


# -- the run -----------------------------------------------------------------------------------


def _read(item: InputItem, max_file_bytes: int) -> bytes | BulkRow:
    if item.error is not None:
        return BulkRow.failure(item.path, *item.error)
    path = Path(item.path)
    try:
        size = path.stat().st_size
        if size > max_file_bytes:
            return BulkRow.failure(
                item.path,
                "file_too_large",
                f"the file is {size} bytes; the limit is {max_file_bytes}",
            )
        return path.read_bytes()
    except OSError as exc:
        return BulkRow.failure(item.path, "unreadable_file", exc.strerror or str(exc))


def _batches(
    items: Sequence[InputItem], batch_size: int, max_file_bytes: int, max_batch_bytes: int
) -> Iterator[tuple[list[BulkRow | None], list[tuple[str, bytes]]]]:
    """Yields (rows with the read failures filled in, the files to classify), in input order."""
    slots: list[BulkRow | None] = []
    todo: list[tuple[str, bytes]] = []
    size = 0
    for item in items:
        read = _read(item, max_file_bytes)
        if isinstance(read, BulkRow):
            slots.append(read)
            continue
        if todo and (len(todo) >= batch_size or size + len(read) > max_batch_bytes):
            yield slots, todo
            slots, todo, size = [], [], 0
        slots.append(None)
        todo.append((item.path, read))
        size += len(read)
    if slots:
        yield slots, todo


def run_bulk(
    items: Sequence[InputItem],
    backend: Backend,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_batch_bytes: int = MAX_REQUEST_BYTES,
    on_progress: Callable[[int], None] | None = None,
) -> BulkReport:
    """Classify every item, ``batch_size`` at a time; one row per item, in input order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rows: list[BulkRow] = []
    for slots, todo in _batches(items, batch_size, max_file_bytes, max_batch_bytes):
        classified = iter(backend.classify(todo) if todo else [])
        for slot in slots:
            rows.append(slot if slot is not None else next(classified))
        if on_progress is not None:
            on_progress(len(slots))
    return BulkReport(rows=rows, model_version=backend.model_version, source=backend.source)


# -- output ------------------------------------------------------------------------------------


def _spreadsheet_safe(text: str) -> str:
    # A cell starting with = + - @ is a formula to Excel/LibreOffice; a leading ' keeps it text.
    return f"'{text}" if text[:1] in ("=", "+", "-", "@") else text


def csv_record(row: BulkRow, model_version: str) -> dict[str, Any]:
    record: dict[str, Any] = {"path": _spreadsheet_safe(row.path), "model_version": model_version}
    if not row.ok:
        record["error_code"] = row.error_code
        record["error_message"] = _spreadsheet_safe(row.error_message or "")
        return record
    assert row.confidence is not None
    record.update(
        category=row.category,
        class_id=row.class_id,
        confidence=f"{row.confidence:.6f}",
        needs_review=str(bool(row.needs_review)).lower(),
        review_reason=row.review_reason or "",
    )
    for k, entry in enumerate(row.top_k, start=1):
        record[f"top{k}"] = entry.category
        record[f"top{k}_probability"] = f"{entry.probability:.6f}"
    return record


def write_csv(report: BulkReport, stream: IO[str]) -> None:
    writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in report.rows:
        writer.writerow(csv_record(row, report.model_version))


def write_json(report: BulkReport, stream: IO[str]) -> None:
    document = {
        "model_version": report.model_version,
        "source": report.source,
        "summary": report.summary(),
        "results": [row.to_dict() for row in report.rows],
    }
    json.dump(document, stream, indent=2)
    stream.write("\n")


Writer = Callable[[BulkReport, IO[str]], None]
WRITERS: dict[str, Writer] = {".csv": write_csv, ".json": write_json}


def writer_for(path: Path) -> Writer:
    """``results.csv`` -> CSV, ``results.json`` -> JSON; anything else is a ValueError."""
    writer = WRITERS.get(path.suffix.lower())
    if writer is None:
        raise ValueError(f"{path}: the output file must end in .csv or .json")
    return writer
