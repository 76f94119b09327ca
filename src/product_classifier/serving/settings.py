"""Service settings: ``PRODUCT_CLASSIFIER_*`` environment variables, overridden by CLI options.

Every field maps to ``PRODUCT_CLASSIFIER_<FIELD NAME IN UPPER CASE>``. Lists (``providers``,
``cors_origins``) accept a comma-separated string or a JSON list. Invalid values fail at startup
with a message naming the variable and the reason (:class:`SettingsError`).
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from product_classifier.released import RELEASE_DIR
from product_classifier.resources import usable_cores  # affinity capped by the cgroup quota

ENV_PREFIX = "PRODUCT_CLASSIFIER_"
MIB = 1024 * 1024
MIN_API_KEY_LENGTH = 16

# Short names accepted for convenience in env vars and on the command line.
_PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}

# Who may scrape /metrics by default: this host only. Private ranges are no proof of an
# insider (a load balancer that rewrites source addresses, a same-host reverse proxy): a
# deployment names its scraper's network (docs/security.md).
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")
PRIVATE_NETWORKS = (
    *LOOPBACK_NETWORKS, "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7",
)  # fmt: skip

# The released files (one model card describes both; see inference/model_card.py), found
# through the package, never the working directory (released.py).
MODEL_VARIANTS = {
    "cascade": RELEASE_DIR / "model.int8.onnx",  # + the card's first stage
    "int8": RELEASE_DIR / "model.int8.onnx",
    "fp32": RELEASE_DIR / "model.onnx",
}

# Auto-sized servers stop here: past a few processes, memory grows faster than throughput.
MAX_AUTO_WORKERS = 4


LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]


class SettingsError(ValueError):
    """Settings are invalid; the message is meant for the operator, one paragraph."""


def _split_list(value: Any) -> Any:
    """``"a,b"`` or ``'["a","b"]'`` -> ``["a", "b"]``; other values pass through unchanged."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", validate_default=True, case_sensitive=False
    )

    host: str = Field("127.0.0.1", min_length=1, description="Interface to bind.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port to bind.")
    workers: int = Field(
        0,
        ge=0,
        le=64,
        description="uvicorn worker processes; 0: auto, one per usable core (CPU affinity "
        "capped by the cgroup CPU quota, rounded down), at most "
        f"{MAX_AUTO_WORKERS} (the memory each takes: docs/performance.md).",
    )
    log_level: LogLevel = Field("info", description="Log level for uvicorn and the service.")
    access_log: bool = Field(
        False, description="uvicorn access log (off by default: it costs ~10% throughput)."
    )

    model_variant: Literal["cascade", "int8", "fp32"] = Field(
        "cascade",
        description="Released model served when model_path is not set: cascade (the INT8 "
        "model behind its distilled first stage, same accuracy for less CPU per image: "
        "inference/cascade.py), int8 (artifacts/model.int8.onnx alone) or fp32 "
        "(artifacts/model.onnx). With an explicit model_path, 'cascade' applies only if the "
        "model's card describes a cascade for it.",
    )
    cascade_threshold: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Cascade: escalate images whose first-stage confidence is below this "
        "(default: the card's, chosen on validation data). Higher: more accurate, slower.",
    )
    model_path: Path = Field(
        MODEL_VARIANTS["int8"], description="The ONNX model (default: model_variant's file)."
    )
    model_card_path: Path | None = Field(
        None, description="model_card.json; default: model_card.json beside the model."
    )
    verify_sha256: bool = Field(
        True, description="Refuse to start when the model's sha256 differs from the card's."
    )

    review_threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="needs_review is true below this top-1 confidence (default: the model "
        "card's review policy, chosen on held-out data; 0.7 for a card without one).",
    )
    max_upload_bytes: int = Field(10 * MIB, ge=1, description="Largest accepted file.")
    max_batch_upload_bytes: int = Field(
        64 * MIB, ge=1, description="Largest accepted /v1/predict/batch request body."
    )
    max_pixels: int = Field(
        4096 * 4096,
        ge=1,
        description="Largest accepted width x height (preprocessing.DEFAULT_MAX_PIXELS: a 16 MP "
        "photo; the memory one upload may take at it: docs/security.md).",
    )
    max_batch_files: int = Field(64, ge=1, description="Most files per batch request.")

    max_batch_size: int = Field(
        32,
        ge=1,
        le=4096,
        description="Micro-batch size cap (32 measured steadier than 64 at 64 connections, "
        "and smaller: the settings sweep, python -m benchmarks load --sweep).",
    )
    max_wait_ms: float = Field(
        0.0,
        ge=0.0,
        le=1000.0,
        description="Adaptive micro-batching (inference/batcher.py): a free model slot takes "
        "what is queued at once, and requests that queue while every slot is busy form the "
        "next batch. This is the most a request may additionally be held for company, counted "
        "from its arrival, and only while another model call is running and a slot is free "
        "(model_concurrency > 1); an idle model never holds a request. 0 (default): never hold.",
    )
    inference_timeout_s: float = Field(
        10.0,
        gt=0.0,
        le=3600.0,
        description="Deadline for an image's inference, queueing included; past it the "
        "client gets a 504 'inference_timeout', and /ready turns 503 while every model slot "
        "has been stuck in one call for longer.",
    )
    max_in_flight: int = Field(
        128,
        ge=1,
        le=100_000,
        description="/v1 requests one worker serves at once (bodies being read included); "
        "beyond it: 503 'overloaded' with Retry-After. Bounds a worker's memory under floods.",
    )
    model_concurrency: int = Field(
        0,
        ge=0,
        le=64,
        description="Micro-batches run through the model at once per worker, one thread each. "
        "0: auto, the usable cores divided by workers x intra_op_threads.",
    )
    queue_size: int = Field(1024, ge=1, description="Queued images before answering 503.")
    retry_after_s: int = Field(1, ge=0, description="Retry-After sent with 503 responses.")

    intra_op_threads: int = Field(
        1, ge=0, le=256, description="onnxruntime intra-op threads (0: onnxruntime decides)."
    )
    inter_op_threads: int = Field(1, ge=0, le=256, description="onnxruntime inter-op threads.")
    providers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="onnxruntime providers in order of preference (empty: TensorRT, CUDA, "
        "CPU, whichever this build has). Aliases: cpu, cuda, tensorrt.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed by CORS (empty: CORS off)."
    )

    # Security and limits (serving/security.py, serving/limits.py, docs/security.md).
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Keys accepted for /v1 as 'X-API-Key: KEY' or 'Authorization: Bearer KEY' "
        f"(comma-separated, each >= {MIN_API_KEY_LENGTH} characters); empty: /v1 is open.",
    )
    body_timeout_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="Seconds a client has to send its whole request body; slower: 408.",
    )
    discard_oversize_bytes: int = Field(
        128 * MIB,
        ge=0,
        le=16 * 1024 * MIB,
        description="A request body whose Content-Length is over the limit is read and "
        "dropped up to this size (within body_timeout_s) before the 413, so clients that send "
        "the whole body before reading (urllib, requests) get the JSON instead of a connection "
        "reset; larger bodies and 'Expect: 100-continue' requests get the 413 at once. "
        "0: never read.",
    )

    # Shutdown (serving/drain.py).
    drain_s: float = Field(
        20.0,
        ge=0.0,
        le=600.0,
        description="On SIGTERM: seconds each worker keeps serving with /ready at 503 and "
        "'Connection: close' on every response, so load balancers move clients elsewhere "
        "first; then in-flight requests finish and it exits. Default: Kubernetes' 30 s grace "
        "period less 10 s for that. Keep the orchestrator's grace period above it. 0: no drain.",
    )

    # Observability (serving/observability.py, serving/metrics.py, serving/logging_config.py).
    log_format: Literal["json", "text"] = Field(
        "json", description="Log lines as JSON objects (for machines) or key=value text."
    )
    metrics_enabled: bool = Field(True, description="Serve Prometheus metrics at /metrics.")
    opentelemetry: bool = Field(
        False,
        description="FastAPI's native OpenTelemetry spans, metrics and logs, for a deployment "
        "that configures an OpenTelemetry SDK. Off by default: even with nothing configured "
        "it looks up three environment variables per request (the service has its own "
        "Prometheus metrics and JSON logs).",
    )
    metrics_allowed_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(LOOPBACK_NETWORKS),
        description="Client networks (CIDR) allowed to read /metrics; empty: any client. "
        "Default: loopback only. The client is the TCP peer, or what trusted_proxies forward.",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Networks (CIDR) of reverse proxies whose Forwarded / X-Forwarded-For "
        "headers are believed when /metrics checks the client; empty: none. A forwarded "
        "request from any other peer is refused /metrics.",
    )
    metrics_token: SecretStr | None = Field(
        None, description="When set, /metrics requires 'Authorization: Bearer <token>'."
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_log_level(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator(
        "providers",
        "cors_origins",
        "metrics_allowed_networks",
        "trusted_proxies",
        "api_keys",
        mode="before",
    )
    @classmethod
    def _parse_list(cls, value: Any) -> Any:
        try:
            return _split_list(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a comma-separated list nor a JSON list: {exc}") from exc

    @field_validator("metrics_allowed_networks", "trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        try:
            return [str(ipaddress.ip_network(net, strict=False)) for net in value]
        except ValueError as exc:
            raise ValueError(f"not a list of networks like 10.0.0.0/8: {exc}") from exc

    @field_validator("api_keys")
    @classmethod
    def _long_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        short = sum(len(key.get_secret_value()) < MIN_API_KEY_LENGTH for key in value)
        if short:
            raise ValueError(f"{short} key(s) shorter than {MIN_API_KEY_LENGTH} characters")
        return value

    @field_validator("providers")
    @classmethod
    def _known_providers(cls, value: list[str]) -> list[str]:
        if not value:  # the default: don't load onnxruntime into a process that won't use it
            return value
        import onnxruntime as ort  # lazy: only validating a list needs it

        known = ort.get_all_providers()
        resolved = [_PROVIDER_ALIASES.get(name.lower(), name) for name in value]
        unknown = [name for name in resolved if name not in known]
        if unknown:
            raise ValueError(
                f"unknown onnxruntime provider(s) {unknown}; use e.g. cpu, cuda, tensorrt or "
                f"one of {known}"
            )
        return resolved

    @model_validator(mode="after")
    def _consistent(self) -> ServeSettings:
        if self.queue_size < self.max_batch_files:
            raise ValueError(
                f"{env_name('queue_size')}={self.queue_size} must be >= "
                f"{env_name('max_batch_files')}={self.max_batch_files}, or a full batch request "
                "could never be queued"
            )
        if "model_path" not in self.model_fields_set:  # an explicit path beats the variant
            self.model_path = MODEL_VARIANTS[self.model_variant]
        if self.model_card_path is None:
            self.model_card_path = self.model_path.with_name("model_card.json")
        return self

    @property
    def batch_concurrency(self) -> int:
        """``model_concurrency`` with 0 resolved: one model call per core left to each worker."""
        if self.model_concurrency:
            return self.model_concurrency
        cores = usable_cores()
        per_call = self.intra_op_threads or cores  # 0: onnxruntime takes every core
        return max(1, cores // (self.resolved_workers * per_call))

    @property
    def resolved_workers(self) -> int:
        """``workers`` with 0 resolved: one process per usable core, at most MAX_AUTO_WORKERS.

        One process per core because a worker's Python side (HTTP, multipart, decoding) holds
        the GIL: one worker tops out with a core to spare (requests/s per worker count:
        docs/performance.md).
        """
        return self.workers or min(usable_cores(), MAX_AUTO_WORKERS)

    @property
    def card_path(self) -> Path:
        assert self.model_card_path is not None  # filled in by the validator
        return self.model_card_path


# Never echoed in error messages (they end up in logs).
_SECRET_FIELDS = frozenset({"api_keys", "metrics_token"})


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem, naming the env var, the value and the reason."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = [str(part) for part in err["loc"]]
        reason = err["msg"].removeprefix("Value error, ")
        if not loc:
            problems.append(reason)
            continue
        field = loc[0]
        where = f"{env_name(field)} ({field})"
        if err["type"] == "extra_forbidden":
            problems.append(f"{field!r} is not a setting")
        elif err["type"] == "missing":
            problems.append(f"{where} is required")
        else:
            value = "<hidden>" if field in _SECRET_FIELDS else repr(err.get("input"))
            problems.append(f"{where}={value}: {reason}")
    return "invalid service settings: " + "; ".join(problems)


def load_settings(**overrides: Any) -> ServeSettings:
    """Environment + explicit overrides (``None`` values are ignored) -> validated settings."""
    values = {key: value for key, value in overrides.items() if value is not None}
    try:
        return ServeSettings(**values)
    except ValidationError as exc:
        raise SettingsError(format_validation_error(exc)) from exc
