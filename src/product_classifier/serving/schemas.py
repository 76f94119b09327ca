"""Response shapes, for the OpenAPI docs only.

Handlers return plain ``JSONResponse`` dicts (FastAPI skips response-model validation for a
Response), so these models document the API without costing anything per request.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable reason, e.g. unsupported_media_type.")
    message: str = Field(description="Human-readable explanation.")


class ErrorResponse(BaseModel):
    error: ErrorDetail
    request_id: str | None = None


class TopKEntry(BaseModel):
    category: str
    class_id: int
    probability: float


class Prediction(BaseModel):
    category: str = Field(description="Top-1 catalog category.")
    class_id: int = Field(
        description="Index of the category in the model's class list (Fashion-MNIST's label "
        "index for the released model)."
    )
    confidence: float = Field(description="Top-1 probability.")
    top_k: list[TopKEntry] = Field(
        description="The 3 most likely categories (all, if the model has fewer), best first."
    )
    needs_review: bool = Field(
        description="A person should check this answer: the confidence is below the model's "
        "review threshold (review_reason says why)."
    )
    review_reason: Literal["low_confidence", "out_of_scope"] | None = Field(
        description="Why needs_review is true: low_confidence (likely one of the categories, "
        "unsure which) or out_of_scope (likely none of them); null when no review is needed."
    )
    out_of_scope: bool = Field(
        description="The picture is likely none of the model's categories (review_reason "
        "out_of_scope)."
    )


class PredictionResponse(Prediction):
    model_version: str
    request_id: str


class BatchPrediction(Prediction):
    filename: str | None = None


class BatchItemError(BaseModel):
    error: ErrorDetail
    filename: str | None = None


class BatchResponse(BaseModel):
    results: list[BatchPrediction | BatchItemError] = Field(
        description="One entry per uploaded file, in upload order."
    )
    model_version: str
    request_id: str


class Category(BaseModel):
    class_id: int
    category: str


class CategoriesResponse(BaseModel):
    categories: list[Category]
    model_version: str


class ModelInfoResponse(BaseModel):
    model_card: dict[str, Any] = Field(description="model_card.json as written by the export.")
    runtime: dict[str, Any] = Field(description="Providers, threads, batching, sha256 check.")


class StatusResponse(BaseModel):
    status: str
    model_version: str | None = None


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse} for status in statuses}
