"""The request pipeline: bytes -> micro-batch (preprocessing + model, worker thread) -> dict.

The uploaded bytes go straight into the micro-batcher, whose worker thread decodes and
preprocesses each one (``prepare_fn``) and then runs the model once for the batch: the event
loop never touches pixels, and a request costs one thread hop. Responses are plain dicts built
with Python lists (``tolist`` once per row), cheaper than numpy scalars or pydantic models.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
from PIL import Image

from product_classifier.inference.batcher import MicroBatcher
from product_classifier.inference.errors import (
    BatcherClosedError,
    InferenceTimeoutError,
    OverloadedError,
)
from product_classifier.inference.expert import split_opinion
from product_classifier.inference.model_card import VerifiedModel
from product_classifier.inference.review import review_policy
from product_classifier.preprocessing import (
    FASHION_MNIST_SPEC,
    InputSpec,
    PreprocessConfig,
    PreprocessingError,
    is_dataset_form,
    preprocess_bytes,
)
from product_classifier.serving.errors import ApiError
from product_classifier.serving.settings import ServeSettings

logger = logging.getLogger(__name__)

TOP_K = 3


def timeout_error(exc: InferenceTimeoutError) -> ApiError:
    """A missed inference deadline, as the client sees it: a JSON 504."""
    return ApiError(504, "inference_timeout", f"{exc}; retry later")


def preprocess_upload(
    data: bytes, config: PreprocessConfig, spec: InputSpec = FASHION_MNIST_SPEC
) -> np.ndarray:
    """The batcher's ``prepare_fn`` (runs in its worker thread): bytes -> [1, C, S, S].

    Anything wrong with the image becomes an ApiError, which fails that upload alone.
    """
    try:
        return preprocess_bytes(data, config, spec)
    except PreprocessingError as exc:
        raise ApiError.from_preprocessing(exc) from exc
    except Exception as exc:
        # Exotic modes Pillow opens but cannot convert are still the client's image.
        logger.warning("preprocessing failed unexpectedly: %r", exc)
        # The exception's text stays in the log: it names library internals, not the image.
        raise ApiError(400, "invalid_image", "the image could not be processed") from exc


def upload_preprocessor(
    settings: ServeSettings, spec: InputSpec = FASHION_MNIST_SPEC
) -> Callable[[bytes], np.ndarray]:
    config = PreprocessConfig(max_pixels=settings.max_pixels)
    return partial(preprocess_upload, config=config, spec=spec)


class ModelService:
    """Everything a prediction request needs, created by the app's lifespan."""

    def __init__(
        self,
        model: VerifiedModel,
        batcher: MicroBatcher,
        settings: ServeSettings,
        picture_batcher: MicroBatcher | None = None,
    ) -> None:
        self.model = model
        self.batcher = batcher
        # Real pictures go to their own batcher when the card has a picture expert: its batch
        # calls add the expert's opinion (inference/expert.py), which 28x28 images don't need.
        self.picture_batcher = picture_batcher
        self.settings = settings
        self._class_names = model.predictor.class_names
        self._class_ids = range(len(self._class_names))
        self.review = review_policy(model.card, settings.review_threshold)
        self._max_upload = settings.max_upload_bytes
        self._retry_after = {"Retry-After": str(settings.retry_after_s)}
        # Observability hook (serving/observability.py): (prediction dict, upload bytes), once
        # per classified image, on the event loop. None: nobody listens.
        self.on_prediction: Callable[[dict[str, Any], int], None] | None = None
        self.model_version: str = model.predictor.model_version
        self.categories = {
            "categories": [
                {"class_id": i, "category": name} for i, name in enumerate(self._class_names)
            ],
            "model_version": self.model_version,
        }

    def _check_upload(self, data: bytes) -> None:
        if len(data) > self._max_upload:
            raise ApiError(
                413,
                "file_too_large",
                f"the file is {len(data)} bytes; the limit is {self._max_upload}",
            )
        if not data:
            raise ApiError(400, "empty_file", "the uploaded file is empty")

    @property
    def batchers(self) -> tuple[MicroBatcher, ...]:
        """Every micro-batcher this service feeds (the pictures' too, when there is one)."""
        return tuple(b for b in (self.batcher, self.picture_batcher) if b is not None)

    # -- inference ------------------------------------------------------------------------------

    def _submit(
        self, items: Sequence[bytes], picture: bool = False
    ) -> list[asyncio.Future[np.ndarray]]:
        batcher = self.picture_batcher if picture and self.picture_batcher else self.batcher
        try:
            return batcher.submit_many(items)
        except OverloadedError as exc:
            raise ApiError(503, "overloaded", f"{exc}; retry later", self._retry_after) from exc
        except BatcherClosedError as exc:
            raise ApiError(503, "not_ready", str(exc), self._retry_after) from exc

    def format_prediction(self, probs: np.ndarray, picture: bool = False) -> dict[str, Any]:
        """The answer for one upload; ``picture``: canonicalize reshaped it (the review policy
        for real pictures applies, inference/review.py). ``probs`` may end with the picture
        expert's opinion (inference/expert.py)."""
        review = self.review.for_upload(picture)
        probs, opinion = split_opinion(probs, len(self._class_names))
        p = review.calibrate(probs).tolist()
        names = self._class_names
        # Stable sort: ties go to the lower class id, like numpy's argmax offline.
        order = sorted(self._class_ids, key=p.__getitem__, reverse=True)[:TOP_K]
        best = order[0]
        confidence = p[best]
        reason = review.reason(confidence, opinion)
        return {
            "category": names[best],
            "class_id": best,
            "confidence": confidence,
            "top_k": [{"category": names[i], "class_id": i, "probability": p[i]} for i in order],
            "needs_review": reason is not None,
            "review_reason": reason,
            "out_of_scope": reason == "out_of_scope",
        }

    async def predict_bytes(self, data: bytes) -> dict[str, Any]:
        """One upload -> prediction dict; raises ApiError for anything the client got wrong."""
        self._check_upload(data)
        picture = not is_dataset_form(data)
        try:
            probs = await self._submit((data,), picture)[0]
        except InferenceTimeoutError as exc:  # the batcher's deadline (settings)
            raise timeout_error(exc) from exc
        result = self.format_prediction(probs, picture)
        if self.on_prediction is not None:
            self.on_prediction(result, len(data))
        return result

    async def predict_many(
        self, uploads: Sequence[tuple[str | None, bytes]]
    ) -> list[dict[str, Any]]:
        """Several uploads -> one result per upload, in order; bad files don't fail the batch."""
        results: list[dict[str, Any] | None] = [None] * len(uploads)
        todo: list[int] = []
        for i, (filename, data) in enumerate(uploads):
            try:
                self._check_upload(data)
                todo.append(i)
            except ApiError as exc:
                results[i] = {"error": exc.body(), "filename": filename}
        if todo:
            pictures = {i for i in todo if not is_dataset_form(uploads[i][1])}
            # One submission per batcher: real pictures to theirs when there is one.
            groups = (
                [(todo, False)]
                if self.picture_batcher is None
                else [
                    ([i for i in todo if i not in pictures], False),
                    ([i for i in todo if i in pictures], True),
                ]
            )
            futures: dict[int, asyncio.Future[np.ndarray]] = {}
            for group, picture in groups:
                if group:
                    submitted = self._submit([uploads[i][1] for i in group], picture)
                    futures.update(zip(group, submitted, strict=True))
            rows = await asyncio.gather(*(futures[i] for i in todo), return_exceptions=True)
            for i, row in zip(todo, rows, strict=True):
                filename, data = uploads[i]
                if isinstance(row, ApiError):
                    results[i] = {"error": row.body(), "filename": filename}
                elif isinstance(row, InferenceTimeoutError):
                    # The service's fault, not the file's: the whole request fails.
                    raise timeout_error(row)
                elif isinstance(row, BaseException):
                    raise row  # the model failed, not the file: a 500 like the single route
                else:
                    picture = i in pictures
                    prediction = {"filename": filename, **self.format_prediction(row, picture)}
                    results[i] = prediction
                    if self.on_prediction is not None:
                        self.on_prediction(prediction, len(data))
        return [r for r in results if r is not None]

    # -- health ---------------------------------------------------------------------------------

    def health_problem(self) -> str | None:
        """Why the model cannot answer now (``/ready``); None when it can."""
        for batcher in self.batchers:
            problem = batcher.health_problem()
            if problem is not None:
                return problem
        return None

    # -- startup --------------------------------------------------------------------------------

    async def warmup(self) -> None:
        """Push one real PNG through the whole path (loads Pillow's codec, fills the batcher)."""
        buf = io.BytesIO()
        shape = self.model.predictor.spec.canonical_shape
        Image.fromarray(np.zeros(shape, dtype=np.uint8)).save(buf, "PNG")
        await self.predict_bytes(buf.getvalue())

    def model_info(self) -> dict[str, Any]:
        runtime = self.model.predictor.runtime_info()
        runtime.update(
            {
                "sha256": self.model.sha256,
                "sha256_verified": self.model.sha256_verified,
                "class_names": list(self._class_names),
                "batching": {
                    "max_batch_size": self.batcher.max_batch_size,
                    "max_wait_ms": self.batcher.max_wait_s * 1000.0,
                    "timeout_s": self.batcher.timeout_s,
                    "timeouts": self.batcher.timeouts,
                    "worker_restarts": self.batcher.worker_restarts,
                    "concurrency": self.batcher.concurrency,
                    "queue_size": self.batcher.queue_size,
                    "queued": self.batcher.queued,
                    "batches_run": self.batcher.batches_run,
                    "items_run": self.batcher.items_run,
                },
                "picture_expert": None
                if self.model.expert is None
                else {
                    "model_version": self.model.expert.model_version,
                    "second_opinion": (self.review.pictures or self.review).second_opinion,
                },
                "review_threshold": self.review.threshold,
                "review": self.review.to_dict(),
            }
        )
        return {"model_card": self.model.card, "runtime": runtime}
