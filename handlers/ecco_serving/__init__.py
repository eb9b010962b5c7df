"""ecco_serving: the handler's Prometheus metrics, and the tooling that builds archives and runs TorchServe.

* ``metrics``: what the handler records per request; imported by the handler, so it is the one module
  of this package shipped in a model archive (``archive.SHIPPED``);
* ``archive``, ``server``, ``metrics_exporter`` and the command line (``python -m ecco_serving``): ops
  tooling, never shipped, never imported by the handler.
"""
