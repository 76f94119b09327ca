"""The server process behind ``product-classifier serve``: uvicorn, with nothing else loaded.

The CLI validates the settings and checks the model, then replaces itself (``exec``, same PID,
so signals from Docker or systemd still reach uvicorn) with ``python -m
product_classifier.serving.run`` and the resolved options. Why a separate, small entry point:

* with ``--workers N`` this process only supervises, and no longer holds the CLI's imports
  (Typer, Rich, pydantic-settings): 28 MB of RSS instead of 42 MB;
* uvicorn starts workers with ``multiprocessing`` *spawn*, which re-imports the parent's main
  module in every worker: this small module, not the whole CLI.

Measured with 2 workers on 2 cores under load: 277 MB for all four processes (supervisor,
resource tracker, 2 workers) instead of 295 MB. Everything else (model, limits, metrics)
each worker reads from the ``PRODUCT_CLASSIFIER_*`` environment, as ``create_app()`` does.
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Sequence
from typing import Any

APP_FACTORY = "product_classifier.serving.app:create_app"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m product_classifier.serving.run",
        description="Run the service under uvicorn (use 'product-classifier serve' instead: "
        "it validates the settings and the model first).",
    )
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-format", default="json", choices=["json", "text"])
    parser.add_argument("--access-log", action="store_true")
    parser.add_argument("--no-metrics", action="store_true", help="/metrics is disabled")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    import uvicorn

    from product_classifier.serving.observability_multiprocess import prepare_multiprocess_dir
    from product_classifier.serving.workers import own_sockets_possible, run_workers

    # Metrics add up across workers only if their directory exists before the workers start.
    prepare_multiprocess_dir(args.workers, enabled=not args.no_metrics)
    options = uvicorn_options(args.log_level, args.log_format, access_log=args.access_log)
    where = {"host": args.host, "port": args.port, "workers": args.workers}
    if own_sockets_possible(args.workers, args.port):
        # One listening socket per worker, so that a few connections spread over the cores
        # (serving/workers.py); uvicorn's own path otherwise.
        run_workers(uvicorn.Config(APP_FACTORY, **where, **options))
    else:
        uvicorn.run(APP_FACTORY, **where, **options)


def uvicorn_options(log_level: str, log_format: str, *, access_log: bool) -> dict[str, Any]:
    """How the service runs under uvicorn, apart from where it listens and how many workers:
    also what benchmarks/profile_predict.py profiles, so the two cannot drift apart."""
    from product_classifier.serving.logging_config import build_log_config

    return {
        "factory": True,
        "log_level": log_level,
        "log_config": build_log_config(log_level, log_format),
        "access_log": access_log,
        "loop": "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio",
        "http": "httptools" if importlib.util.find_spec("httptools") is not None else "h11",
        # Let in-flight requests finish on SIGTERM, but don't hang a deploy forever.
        "timeout_graceful_shutdown": 30,
        "server_header": False,  # don't advertise the server software; one header less to write
        # scope["client"] stays the TCP peer: uvicorn would otherwise believe X-Forwarded-For
        # from loopback; the app believes only PRODUCT_CLASSIFIER_TRUSTED_PROXIES
        # (serving/client_address.py).
        "proxy_headers": False,
    }


if __name__ == "__main__":
    main()
