"""The servers `make loadtest` measures the service against, each serving the same ONNX model
with ONNX Runtime and the same session settings (``model.py``): the naive FastAPI server
(``benchmarks/load/naive_server.py``), BentoML (``bentoml_service.py``) and LitServe
(``litserve_server.py``). BentoML and LitServe run from their own venvs (``make peers``,
pinned in ``requirements-*.txt``), so their dependencies never meet the project's.
"""
