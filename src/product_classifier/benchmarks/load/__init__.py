"""HTTP load tests of the service: Locust scenarios, a scripted runner and a naive baseline.

Entry point: ``product-classifier benchmark load`` (see ``cli/benchmark_load.py``). Modules:

* ``payloads``: real Fashion-MNIST test images as 28x28 PNGs and as ~600x600 catalog JPEGs,
  pre-encoded multipart bodies (shared by Locust and ``hey``);
* ``locustfile``: the Locust users (usable on their own with ``locust -f``);
* ``driver``: runs scenarios headless in its own (gevent-patched) process;
* ``monitor``: CPU and RSS of a server's whole process tree (psutil);
* ``server``: starts a server subprocess and times its cold start;
* ``naive_server``: the baseline (FastAPI + PyTorch eager, one image per call);
* ``runner`` and ``report``: the whole run, its JSON and docs/performance.md.

Nothing is imported here: the driver must import gevent before anything else.
"""
