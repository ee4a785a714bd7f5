"""End-to-end benchmarks: our trainer (each method) vs Hugging Face PEFT prompt tuning on the same frozen T5.

Run: ``python -m pytest bench/test_e2e_bench.py`` (a few minutes on 2 CPU cores; ``SUPERPOS_E2E_LONG=1`` for a
steadier run, ``SUPERPOS_E2E_<FIELD>=N`` for single sizes, see ``e2e.E2ESettings``; ``SUPERPOS_BENCH_THREADS=1`` on
a CPU shared with other jobs; ``SUPERPOS_BENCH_DEVICE`` to pick the device). The measurements are taken by
``e2e.py`` in interleaved rounds (pytest-benchmark's own timer would run providers one after the other); each test
runs its suite once through ``benchmark.pedantic`` so the results land in ``--benchmark-json`` under
``extra_info["superpos_e2e"]``, and prints the Markdown tables. Targets are reported, not asserted: a benchmark
on a shared machine must not fail because a neighbour was busy.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

pytest.importorskip("pytest_benchmark", reason="pytest-benchmark is not installed: pip install -e '.[bench]'")
pytest.importorskip("transformers", reason="transformers is not installed: pip install -e '.[train]'")
pytest.importorskip("sentencepiece", reason="sentencepiece is not installed: pip install -e '.[train]'")
pytest.importorskip("peft", reason="PEFT (the baseline) is not installed: pip install -e '.[bench]'")

# bench/ has no __init__.py: pytest puts this folder on sys.path, so its helper modules import by name.
import e2e
import to_markdown


def _finite(summary: dict[str, float]) -> bool:
    return all(math.isfinite(v) and v > 0 for v in summary.values())


def _run(benchmark, capsys, suite, *args):
    e2e.configure_threads()
    result = benchmark.pedantic(suite, args=args, rounds=1, iterations=1, warmup_rounds=0)
    benchmark.extra_info[to_markdown.E2E_KEY] = result
    with capsys.disabled():
        print("\n\n" + to_markdown.render_e2e(result) + "\n")
    return result


def test_e2e_fixed_shape(benchmark, capsys):
    benchmark.group = "e2e"
    settings, methods = e2e.E2ESettings.from_env(), e2e.bench_methods()
    result = _run(benchmark, capsys, e2e.fixed_shape_suite, settings, e2e.bench_device(), methods)
    assert [r["provider"] for r in result["rows"]] == [f"ours-{m}" for m in methods] + ["peft-prompt"]
    for row in result["rows"]:
        assert _finite(row["train_step_s"]) and _finite(row["eval_examples_per_s"]), row
        assert row["train_step_s"]["n"] == settings.rounds * settings.steps
    assert all(math.isfinite(t["measured"]) for t in result["targets"])


def _sst2_dir() -> str:
    from superpos_trainer.config import default_data_dir

    data_dir = default_data_dir()
    if data_dir is None or not (Path(data_dir) / "glue" / "sst2" / "train.tsv").is_file():
        pytest.skip(f"SST-2 not found under {data_dir!r}: set SUPERPOS_DATA_DIR to a folder laid out as shared/data")
    return data_dir


def test_e2e_real_task_epoch(benchmark, capsys):
    benchmark.group = "e2e"
    settings = e2e.E2ESettings.from_env()
    result = _run(benchmark, capsys, e2e.real_task_suite, settings, e2e.bench_device(), _sst2_dir())
    assert len(result["rows"]) == 3
    for row in result["rows"]:
        assert _finite(row["epoch_s"]), row
    assert result["data"]["train_examples"] == settings.epoch_examples
    assert math.isfinite(result["targets"][0]["measured"])
