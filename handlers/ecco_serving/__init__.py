"""ecco_serving: build TorchServe archives for ecco-serve and run TorchServe (``python -m ecco_serving``).

Tooling only: never packed into an archive, never imported by the handler.
"""
