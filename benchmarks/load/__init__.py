"""HTTP load tests of the service next to its peers: hey and Locust scenarios, a scripted runner.

Entry point: ``python -m benchmarks load`` (``make loadtest``; see ``cli.py``). Modules:

* ``payloads``: real Fashion-MNIST test images as 28x28 PNGs and as ~600x600 catalog JPEGs,
  pre-encoded multipart bodies (shared by Locust and ``hey``);
* ``hey``: the ``hey`` runs every server gets (one connection, 64, a steady rate);
* ``locustfile`` and ``driver``: the Locust users, run headless in their own (gevent-patched)
  process for the service's own scenarios (batch endpoint, mix, ramp, soak);
* ``monitor``: CPU and RSS of a server's whole process tree (psutil);
* ``peers`` and ``naive_server``: the servers measured next to the service
  (``benchmarks/peers/`` holds BentoML's and LitServe's);
* ``runner`` and ``report``: the whole run, its JSON and docs/performance.md.

Nothing is imported here: the driver must import gevent before anything else.
"""
