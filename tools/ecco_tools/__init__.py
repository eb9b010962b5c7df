"""ecco_tools: offline tools around the engine, never packed into a model archive, never imported by
the server.

* ``convert``: the GGUF converter behind ``make model`` (``python -m ecco_tools.convert --help``);
* ``explain``: the engine in-process from a terminal (``python -m ecco_tools.explain --model DIR --prompt TEXT``);
* ``probing``: the Ecco paper's probing experiment (CoNLL-U reading, word/sub-token alignment,
  batched extraction, probes with controls, the report) and similarity over saved activations
  (``python -m ecco_tools.probing --help``).

They import ``ecco_engine``; ``ecco_engine`` never imports them.
"""
