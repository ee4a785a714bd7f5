"""bench/to_markdown.py: pytest-benchmark JSON (op rows + end-to-end extra_info) -> Markdown. No benchmark runs here."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tm = _load("to_markdown")


def _stats(median: float, rounds: int = 100) -> dict:
    return {"min": median * 0.9, "max": median * 1.5, "mean": median, "median": median, "q1": median * 0.95,
            "q3": median * 1.1, "ops": 1 / median, "rounds": rounds, "iqr": median * 0.15}  # fmt: skip


def _summary(median: float, n: int) -> dict:
    return {"median": median, "q1": median * 0.9, "q3": median * 1.2, "min": median * 0.8, "max": median * 1.5, "n": n}


ENV = {"date": "2026-11-24 18:00 UTC", "device": "cpu", "cpu": "AMD EPYC", "cpu_count": 2, "torch_threads": 1,
       "python": "3.11.7", "torch": "2.13.0", "transformers": "5.24.0", "peft": "0.21.2",
       "load_before": [3.9, 3.1, 2.0], "load_after": [4.2, 3.5, 2.4]}  # fmt: skip
SETTINGS = {"batch_size": 8, "max_new_tokens": 5, "epoch_rounds": 2}

FIXED = {
    "suite": "fixed_shape", "env": ENV, "settings": SETTINGS, "timed_steps_per_provider": 15,
    "shape": {"train": [8, 74], "eval": [32, 74], "labels": 2},
    "rows": [
        {"provider": "ours-superpos", "trainable_params": 656640, "train_step_s": _summary(0.812, 15),
         "train_steps_per_s": 1 / 0.812, "eval_examples_per_s": _summary(41.5, 3), "backend": "cpp"},
        {"provider": "peft-prompt", "trainable_params": 5120, "train_step_s": _summary(0.845, 15),
         "train_steps_per_s": 1 / 0.845, "eval_examples_per_s": _summary(40.2, 3), "backend": None},
    ],
    "targets": [
        {"name": "SuperPos step overhead over simple prompt tuning (our trainer)", "measured": 0.005, "op": "<=",
         "threshold": 0.02, "met": True, "detail": "per-round ratio superpos/prompt: median 1.0050"},
        {"name": "ours-superpos step time / PEFT prompt-tuning step time", "measured": 1.031, "op": "<=",
         "threshold": 1.0, "met": False, "detail": "per-round ratio: median 1.0310"},
    ],
}  # fmt: skip
REAL = {
    "suite": "real_task", "env": ENV, "settings": SETTINGS,
    "data": {"task": "sst2", "train_examples": 256, "eval_examples": 128, "steps_per_epoch": 32,
             "source_tokens_mean": 18.44, "source_tokens_max": 61, "max_length": 128},
    "rows": [
        {"provider": "ours-superpos (dynamic)", "epoch_s": _summary(14.2, 2), "train_examples_per_s": 18.0,
         "mean_encoder_len": 41.5, "eval_examples_per_s": _summary(60.0, 2)},
        {"provider": "peft-prompt (max_length)", "epoch_s": _summary(35.5, 2), "train_examples_per_s": 7.2,
         "mean_encoder_len": 128, "eval_examples_per_s": _summary(20.0, 2)},
    ],
    "targets": [{"name": "epoch speed-up: PEFT (max_length) / ours", "measured": 2.5, "op": ">=", "threshold": 1.5,
                 "met": True, "detail": "per-round ratio median 2.500"}],
}  # fmt: skip


def _report() -> dict:
    op = {"group": "superpos_embed fwd", "name": "test_fwd[cpp-8x128]", "params": {"backend": "cpp"},
          "extra_info": {"shape": "8x128", "provider": "cpp", "raw": [1, 2]}, "stats": _stats(12.3e-6)}  # fmt: skip
    e2e = [{"group": "e2e", "name": n, "params": None, "extra_info": {tm.E2E_KEY: r}, "stats": _stats(200.0, 1)}
           for n, r in (("test_e2e_fixed_shape", FIXED), ("test_e2e_real_task_epoch", REAL))]  # fmt: skip
    return {"datetime": "2026-11-24T18:00:00", "machine_info": {"node": "vm", "python_version": "3.11.7",
            "cpu": {"brand_raw": "AMD EPYC"}, "torch": "2.13.0", "cuda_device": None},
            "commit_info": {"id": "abc123", "dirty": True}, "benchmarks": [op, *e2e]}  # fmt: skip


def _section(text: str, title: str) -> str:
    start = text.index(title)
    end = text.find("\n## ", start + len(title))
    return text[start : end if end != -1 else len(text)]


def test_render_puts_op_rows_and_e2e_tables_in_their_sections():
    text = tm.render(_report(), command="python -m pytest bench/")
    ops, e2e = _section(text, "## Op microbenchmarks"), _section(text, "## End-to-end")
    assert "- software/threads: torch 2.13.0\n" in text  # absent facts (no CUDA device) are left out
    assert "- commit: abc123 (dirty)" in text and "- command: `python -m pytest bench/`" in text
    assert "#### superpos_embed fwd" in ops
    row = "| test_fwd[cpp-8x128] | provider=cpp, shape=8x128 | 12.3 us | 11.7 us - 13.5 us | 11.1 us | 81,301 | 100 |"
    assert row in ops
    assert "test_e2e" not in ops  # the whole-suite wall time of an e2e entry is no op measurement
    assert "| ours-superpos | 656,640 | 812 ms | 731 ms - 974 ms | 1.23 | 41.5 | 37.4 - 49.8 | cpp |" in e2e
    assert "| peft-prompt | 5,120 | 845 ms |" in e2e
    assert "| SuperPos step overhead over simple prompt tuning (our trainer) | +0.50 % | <= 2 % | met |" in e2e
    assert "| ours-superpos step time / PEFT prompt-tuning step time | 1.031 | <= 1 | NOT met |" in e2e
    assert "| ours-superpos (dynamic) | 41.5 | 14.2 s | 12.8 s - 17.0 s | 18.0 | 60.0 |" in e2e
    assert "| epoch speed-up: PEFT (max_length) / ours | 2.500 | >= 1.5 | met |" in e2e
    assert "load average before [3.9, 3.1, 2.0], after [4.2, 3.5, 2.4]" in e2e
    assert "peft 0.21.2" in e2e and "(2 cores, 1 threads)" in e2e


def test_every_table_row_has_as_many_cells_as_its_header():
    for block in tm.render(_report()).split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        if rows:
            widths = {line.count(" | ") for line in rows if not line.startswith("|---")}
            assert len(widths) == 1, block


def test_time_units_and_pipes_in_cells():
    assert [tm.fmt_time(x) for x in (812e-9, 12.34e-6, 4.567e-3, 1.234, 75.0)] == [
        "812 ns", "12.3 us", "4.57 ms", "1.23 s", "75.0 s",
    ]  # fmt: skip
    assert tm.table(["a"], [["x|y"]]).splitlines()[-1] == "| x\\|y |"


def test_empty_sections_and_skipped_benchmarks_from_junit(tmp_path):
    junit = tmp_path / "junit.xml"
    junit.write_text(
        '<testsuites><testsuite><testcase classname="bench.test_op_bench" name="test_fwd[triton]">'
        '<skipped type="pytest.skip" message="triton backend unavailable on cpu: no GPU" /></testcase>'
        '<testcase classname="bench.test_e2e_bench" name="test_e2e_fixed_shape" /></testsuite></testsuites>'
    )
    skipped = tm.skipped_from_junit(junit)
    assert skipped == [("bench.test_op_bench::test_fwd[triton]", "triton backend unavailable on cpu: no GPU")]
    text = tm.render({"benchmarks": []}, skipped=skipped)
    assert "_No op microbenchmark results in this report._" in text
    assert "_No end-to-end results in this report._" in text
    assert "| bench.test_op_bench::test_fwd[triton] | triton backend unavailable on cpu: no GPU |" in text


def test_cli_writes_the_file_and_rejects_bad_input(tmp_path, capsys):
    src, out = tmp_path / "bench.json", tmp_path / "RESULTS.md"
    src.write_text(json.dumps(_report()))
    assert tm.main([str(src), "-o", str(out)]) == 0
    assert out.read_text().startswith("# Benchmark report") and "## End-to-end" in out.read_text()
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temp file behind
    src.write_text('{"not": "a report"}')
    assert tm.main([str(src)]) == 2
    assert "no 'benchmarks' key" in capsys.readouterr().err
    src.write_text("{truncated")
    assert tm.main([str(src)]) == 2
    assert str(src) in capsys.readouterr().err


def test_unknown_e2e_suite_is_an_error():
    with pytest.raises(ValueError, match="unknown end-to-end suite"):
        tm.render_e2e({"suite": "bogus"})


# ---- bench/op_speed.py: the refusal rules and the table (the timings themselves are never asserted) ---------------


def _op_speed():
    import importlib
    import sys

    sys.path.insert(0, str(BENCH))  # op_speed imports to_markdown by name, as it does when run from bench/
    try:
        return importlib.import_module("op_speed")
    finally:
        sys.path.remove(str(BENCH))


def test_op_speed_refuses_a_busy_machine():
    speed = _op_speed()
    assert speed.verdict(0.4, 0.9, 0.0, 0.99, cores=2) == "ok"
    # The process's own load is discounted at the end, not at the start (nothing of its own ran yet).
    assert speed.verdict(0.4, 2.5, 1.6, 0.99, cores=2) == "ok"
    start = speed.verdict(1.2, 0.5, 0.0, 0.99, cores=2)
    assert start.startswith("noisy, not a result") and "1.20 at start > 1.00" in start
    end = speed.verdict(0.4, 2.5, 0.5, 0.99, cores=2)
    assert "2.50 minus own 0.50 > 1.00" in end
    descheduled = speed.verdict(0.1, 0.1, 0.0, 0.6, cores=2)
    assert "main thread got 60% of wall time as CPU" in descheduled


def test_own_load_is_a_decayed_box():
    own = _op_speed().OwnLoad()
    own.add(0.0, 60.0, 2.0)  # two busy CPUs for one time constant
    assert own.estimate(60.0) == pytest.approx(2.0 * (1 - 2.718281828**-1))
    assert own.estimate(600.0) < 0.01


def test_op_speed_measures_and_renders_on_a_tiny_shape():
    speed = _op_speed()
    shape = speed.Shape(B=2, L=3, d=8, n=2, m=3, V=20)
    result = speed.measure("fp32", 1, 2, speed.OwnLoad(), None, shape)
    assert set(result["median_ms"]) == set(tm.SPEED_TIMES) and result["backend"] in ("cpp", "reference")
    assert set(result["ratios"]) == set(speed.RATIOS)
    noisy = dict(result, verdict="noisy, not a result: load")
    text = tm.render_op_speed([dict(result, verdict="ok"), noisy], "title")
    ok_row, noisy_row = text.splitlines()[-2:]
    assert "~~" not in ok_row and noisy_row.count("~~") == 2 * len(speed.RATIOS)
    faults = result["page_faults_per_call"]
    assert set(faults) == set(result["median_ms"]) and all(f["mean"] >= 0 for f in faults.values())
    assert "fused forward" in speed.render_faults([result]).splitlines()[-1]
