"""TorchServe token authorization: the key file and the ``Authorization: Bearer <key>`` header.

With token authorization on, TorchServe writes ``key_file.json`` into the directory it was started
from::

    {"management": {"key": "...", "expiration time": "..."},
     "inference":  {"key": "...", "expiration time": "..."},
     "API":        {"key": "..."}}

The inference APIs (REST /predictions, /explanations, gRPC InferenceAPIsService) take the
"inference" key, as ``Authorization: Bearer <key>`` (HTTP header / gRPC metadata ``authorization``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

KEY_FILE_NAME = "key_file.json"
#: where the CLI looks for a key file when none is given: $ECCO_KEY_FILE, ./key_file.json, and the
#: run directory of `make serve`
DEFAULT_KEY_FILES = (Path(KEY_FILE_NAME), Path(".run") / "serve" / KEY_FILE_NAME)


def read_key_file(path: str | os.PathLike[str], which: str = "inference") -> str:
    """The ``which`` key ("inference", "management" or "API") from a TorchServe key file."""
    try:
        data = json.loads(Path(path).read_text())
        key = data[which]["key"]
    except FileNotFoundError:
        raise FileNotFoundError(f"no TorchServe key file at {path}") from None
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a TorchServe key file with a {which!r} key ({error})") from None
    if not isinstance(key, str) or not key:
        raise ValueError(f"{path}: the {which!r} key is empty")
    return key


def find_key_file() -> Path | None:
    """$ECCO_KEY_FILE, else the first of DEFAULT_KEY_FILES that exists (relative to the working directory)."""
    if os.environ.get("ECCO_KEY_FILE"):
        return Path(os.environ["ECCO_KEY_FILE"])
    return next((p for p in DEFAULT_KEY_FILES if p.is_file()), None)


def token_source(token: str | None, key_file: str | os.PathLike[str] | None) -> Callable[[], str | None]:
    """Where the CLI takes the inference key from: ``token``, else the "inference" key of ``key_file``, else
    of ``find_key_file()``, else none. A key file is read again on every call (TorchServe writes a new key
    when it restarts), so a long-running ``ecco ui`` keeps working; a missing file raises at the call."""
    if token is not None:
        return lambda: token
    path = key_file or find_key_file()
    if path is None:
        return lambda: None
    return lambda: read_key_file(path)


def bearer(token: str | None) -> dict[str, str]:
    """The HTTP header (or gRPC metadata) for ``token``; empty without one."""
    return {"authorization": f"Bearer {token}"} if token else {}
