"""Turn a ``pytest bench/ --benchmark-json=FILE`` report into Markdown tables.

* Op microbenchmarks: every pytest-benchmark entry becomes a row (median, IQR, min, ops/s, rounds), grouped by
  ``group``; ``params`` and ``extra_info`` scalars are shown so providers and shapes can be told apart.
* End-to-end: entries whose ``extra_info`` holds ``superpos_e2e`` (written by ``bench/test_e2e_bench.py``) carry
  their own interleaved measurements; they are rendered as their own tables with the targets, never as op rows
  (their pytest-benchmark time is the whole suite's wall time).
* Skipped benchmarks (``--junitxml`` report, optional) are listed with pytest's reason.

Usage: ``python bench/to_markdown.py bench.json [--junit junit.xml] [--command "..."] [-o RESULTS.md]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

E2E_KEY = "superpos_e2e"
OP_SPEED_KEY = "op_speed"


# ---- formatting -------------------------------------------------------------------------------------------------


def fmt_time(seconds: float) -> str:
    """A duration with a readable unit: ``812 ns``, ``12.3 us``, ``4.56 ms``, ``1.23 s``."""
    if not math.isfinite(seconds):
        return str(seconds)
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if abs(seconds) >= scale:
            return f"{_sig(seconds / scale)} {unit}"
    return f"{_sig(seconds / 1e-9)} ns"


def _sig(x: float) -> str:
    """Three significant digits, no exponent for the ranges we print."""
    if x == 0:
        return "0"
    digits = max(0, 2 - math.floor(math.log10(abs(x))))
    return f"{x:.{digits}f}"


def fmt_num(x: float) -> str:
    return _sig(x) if abs(x) < 1000 else f"{x:,.0f}"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# ---- op benchmarks ------------------------------------------------------------------------------------------------


def _labels(bench: dict[str, Any]) -> str:
    """The scalar ``extra_info`` of a row (the test id in ``name`` already shows its parameters)."""
    extra = bench.get("extra_info") or {}
    return ", ".join(f"{k}={v}" for k, v in sorted(extra.items()) if isinstance(v, (str, int, float, bool)))


def op_rows(benchmarks: Sequence[dict[str, Any]]) -> dict[str, list[list[str]]]:
    groups: dict[str, list[list[str]]] = {}
    for b in benchmarks:
        if E2E_KEY in (b.get("extra_info") or {}) or OP_SPEED_KEY in (b.get("extra_info") or {}):
            continue
        s = b["stats"]
        iqr = f"{fmt_time(s['q1'])} - {fmt_time(s['q3'])}"
        row = [b.get("name", "?"), _labels(b), fmt_time(s["median"]), iqr, fmt_time(s["min"]), fmt_num(s["ops"])]
        groups.setdefault(b.get("group") or "ungrouped", []).append([*row, str(s["rounds"])])
    return groups


def render_ops(benchmarks: Sequence[dict[str, Any]]) -> str:
    groups = op_rows(benchmarks)
    if not groups:
        return "_No op microbenchmark results in this report._"
    out = []
    header = ["benchmark", "info", "median", "IQR (q1 - q3)", "min", "ops/s (1/mean)", "rounds"]
    for group in sorted(groups):
        out += [f"#### {group}", "", table(header, groups[group]), ""]
    return "\n".join(out).rstrip()


# ---- op speed targets (bench/op_speed.py) ---------------------------------------------------------------------------

SPEED_TIMES = (
    "embedding forward",
    "eager forward",
    "fused forward",
    "eager forward_backward",
    "fused forward_backward",
)


def render_op_speed(results: Sequence[dict[str, Any]], title: str) -> str:
    """One row per (dtype, threads); the ratios of a configuration refused as noisy are struck out."""
    if not results:
        return "_No op speed-target results in this report._"
    ratio_names = list(results[0]["ratios"])
    header = ["dtype", "threads", "backend", *(f"{k} (median)" for k in SPEED_TIMES), *ratio_names]
    header += ["load before -> after (own estimate)", "main-thread CPU share", "verdict"]
    rows = []
    for r in results:
        ok = r["verdict"] == "ok"
        cells = []
        for name in ratio_names:
            q = r["ratios"][name]
            text = f"{q['value']:.2f}x ({q['goal']}: {'met' if q['met'] else 'not met'})"
            cells.append(text if ok else f"~~{text}~~")

        def load(x: float | None) -> str:
            return "?" if x is None else f"{x:.2f}"

        rows.append(
            [
                r["dtype"],
                r["threads"],
                r["backend"],
                *(f"{r['median_ms'][k]:.3f} ms" for k in SPEED_TIMES),
                *cells,
                f"{load(r['load_before'])} -> {load(r['load_after'])} ({r['own_load_estimate']:.2f})",
                f"{r['main_thread_cpu_share']:.0%}",
                r["verdict"],
            ]
        )
    return title + "\n\n" + table(header, rows)


# ---- end-to-end -------------------------------------------------------------------------------------------------


def _spread(s: dict[str, float], unit: str = "time") -> str:
    f = fmt_time if unit == "time" else fmt_num
    return f"{f(s['q1'])} - {f(s['q3'])}"


def render_targets(targets: Sequence[dict[str, Any]]) -> str:
    rows = []
    for t in targets:
        measured = t["measured"]
        shown = f"{100 * measured:+.2f} %" if "overhead" in t["name"] else f"{measured:.3f}"
        limit = f"{100 * t['threshold']:.0f} %" if "overhead" in t["name"] else f"{t['threshold']:g}"
        rows.append([t["name"], shown, f"{t['op']} {limit}", "met" if t["met"] else "NOT met", t["detail"]])
    return table(["target", "measured", "goal", "result", "detail"], rows)


def _env_line(env: dict[str, Any]) -> str:
    device = env.get("gpu") or f"{env.get('cpu')} ({env.get('cpu_count')} cores, {env.get('torch_threads')} threads)"
    versions = ", ".join(f"{k} {env.get(k)}" for k in ("python", "torch", "transformers", "peft"))
    load = ""
    if "load_before" in env:
        load = f"; load average before {env.get('load_before')}, after {env.get('load_after')}"
    return f"{env.get('date')}; device {env.get('device')}: {device}; {versions}{load}"


def render_fixed(result: dict[str, Any]) -> str:
    shape = result["shape"]
    head = (
        f"**Fixed shape** (train batch {shape['train'][0]} x {shape['train'][1]} encoder tokens incl. the prompt, "
        f"{shape['labels']} label tokens; eval batch {shape['eval'][0]} x {shape['eval'][1]}, greedy "
        f"{result['settings']['max_new_tokens']} new tokens; {result['timed_steps_per_provider']} timed steps per "
        f"provider, interleaved). {_env_line(result['env'])}"
    )
    rows = []
    for r in result["rows"]:
        st, ev = r["train_step_s"], r["eval_examples_per_s"]
        rows.append(
            [
                r["provider"],
                f"{r['trainable_params']:,d}",
                fmt_time(st["median"]),
                _spread(st),
                fmt_num(r["train_steps_per_s"]),
                fmt_num(ev["median"]),
                _spread(ev, "num"),
                r.get("backend") or "",
            ]
        )
    header = ["provider", "trainable", "step median", "step IQR", "steps/s", "eval ex/s", "eval ex/s IQR", "op backend"]
    return "\n\n".join([head, table(header, rows), render_targets(result["targets"])])


def render_real(result: dict[str, Any]) -> str:
    d = result["data"]
    head = (
        f"**Real task epoch** ({d['task']}: {d['train_examples']} training examples = {d['steps_per_epoch']} steps of "
        f"{result['settings']['batch_size']}, {d['eval_examples']} validation examples; source tokens mean "
        f"{d['source_tokens_mean']:.1f}, max {d['source_tokens_max']}; max_length {d['max_length']} incl. the "
        f"prompt; {result['settings']['epoch_rounds']} interleaved rounds). {_env_line(result['env'])}"
    )
    rows = []
    for r in result["rows"]:
        ev = r.get("eval_examples_per_s")
        rows.append(
            [
                r["provider"],
                fmt_num(r["mean_encoder_len"]),
                fmt_time(r["epoch_s"]["median"]),
                _spread(r["epoch_s"]),
                fmt_num(r["train_examples_per_s"]),
                fmt_num(ev["median"]) if ev else "",
            ]
        )
    header = ["provider (padding)", "mean encoder len", "epoch median", "epoch IQR", "train ex/s", "eval ex/s"]
    return "\n\n".join([head, table(header, rows), render_targets(result["targets"])])


def render_e2e(result: dict[str, Any]) -> str:
    if result.get("suite") == "fixed_shape":
        return render_fixed(result)
    if result.get("suite") == "real_task":
        return render_real(result)
    raise ValueError(f"unknown end-to-end suite {result.get('suite')!r}; expected fixed_shape or real_task")


# ---- whole report ---------------------------------------------------------------------------------------------------


def skipped_from_junit(path: str | Path) -> list[tuple[str, str]]:
    """``(test id, reason)`` of every skipped test in a pytest ``--junitxml`` report."""
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        skip = case.find("skipped")
        if skip is not None:
            name = f"{case.get('classname', '')}::{case.get('name', '')}".strip(":")
            out.append((name, skip.get("message") or (skip.text or "").strip()))
    return out


def render(report: dict[str, Any], command: str | None = None, skipped: Sequence[tuple[str, str]] = ()) -> str:
    if "benchmarks" not in report:
        raise ValueError("not a pytest-benchmark JSON report (no 'benchmarks' key); run pytest with --benchmark-json")
    machine = report.get("machine_info") or {}
    cpu = (machine.get("cpu") or {}).get("brand_raw") or machine.get("processor") or "?"
    commit = report.get("commit_info") or {}
    lines = [
        "# Benchmark report",
        "",
        f"- date: {report.get('datetime', '?')}",
        f"- machine: {machine.get('node', '?')}, {cpu}, Python {machine.get('python_version', '?')}",
        f"- commit: {commit.get('id', '?')}{' (dirty)' if commit.get('dirty') else ''}",
    ]
    facts = [f"{k} {machine[k]}" for k in ("torch", "torch_num_threads", "cuda_device", "triton") if machine.get(k)]
    if facts:
        lines.append(f"- software/threads: {', '.join(facts)}")
    if command:
        lines.append(f"- command: `{command}`")
    speed = [b["extra_info"][OP_SPEED_KEY] for b in report["benchmarks"] if OP_SPEED_KEY in (b.get("extra_info") or {})]
    lines += ["", "## Op speed targets", "", render_op_speed(speed, "Interleaved medians (bench/op_speed.py)."), ""]
    lines += ["## Op microbenchmarks", "", render_ops(report["benchmarks"]), "", "## End-to-end", ""]
    e2e = [b["extra_info"][E2E_KEY] for b in report["benchmarks"] if E2E_KEY in (b.get("extra_info") or {})]
    lines += [render_e2e(r) + "\n" for r in e2e] or ["_No end-to-end results in this report._", ""]
    if skipped:
        lines += ["## Skipped", "", table(["benchmark", "reason"], skipped), ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", help="pytest-benchmark JSON (pytest bench/ --benchmark-json=FILE)")
    parser.add_argument("--junit", help="pytest --junitxml report, to list skipped benchmarks with their reasons")
    parser.add_argument("--command", help="the command that produced the report, printed in the header")
    parser.add_argument("-o", "--output", help="write the Markdown here (atomically) instead of stdout")
    args = parser.parse_args(argv)
    try:
        report = json.loads(Path(args.report).read_text(encoding="utf-8"))
        skipped = skipped_from_junit(args.junit) if args.junit else []
        text = render(report, args.command, skipped)
    except (OSError, ValueError, KeyError, ET.ParseError) as exc:
        print(f"to_markdown: cannot convert {args.report}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if args.output:
        from superpos_kernels.io import atomic_write

        atomic_write(args.output, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
