"""experiments/fair_report.py: the fair comparison's statistics and tables, from fake run folders (no training)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from experiments import doc_sections, fair_report
from experiments import fair_plan as fp

from .test_run_fair import AUTOS, write_autos

MODEL = "smollm2-135m"


def fake(
    run: fp.Run, root: Path, curve: list[float], val_best: float, val_last: float, precision: str = "bf16-autocast"
) -> None:
    """The files ``superpos train --select-on holdout`` leaves in a finished run (held-out every 20 steps)."""
    run_dir = run.run_dir(root)
    run_dir.mkdir(parents=True)
    rows = [{"step": 20 * (i + 1), "accuracy": v, "split": "holdout", "is_best": False} for i, v in enumerate(curve)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    best = max(curve)
    results = {
        "main_metric": "accuracy", "select_on": "holdout", "best_metric": best,
        "best_step": 20 * (curve.index(best) + 1), "steps": 20 * len(curve), "precision": precision,
        "train_seconds": 100.0,
        "final": {"split": "validation", "examples": 872, "best": {"accuracy": val_best},
                  "last": {"accuracy": val_last}},
    }  # fmt: skip
    (run_dir / "results.json").write_text(json.dumps(results))


def select_run(task: str, method: str, k: int) -> fp.Run:
    return fp.selection_run(MODEL, task, method, AUTOS[method], k)


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    """Each task chooses its own lr. SST-2: SuperPos and prompt tuning choose auto (k = 0; prompt tuning by the tie
    rule), Residual wins at the edge (3 auto) and its extension is not run. RTE: SuperPos wins at the edge (3 auto),
    its extension (9 auto) scores lower, so 3 auto is chosen and auto ranks 2 of 4; prompt tuning chooses auto;
    Residual waits for its extension as on SST-2."""
    root = tmp_path / "fair"
    write_autos(root)
    heldout = {  # (task, method) -> best held-out score per k
        ("sst2", "superpos"): {-1: 0.70, 0: 0.75, 1: 0.72},
        ("sst2", "prompt"): {-1: 0.71, 0: 0.72, 1: 0.72},
        ("sst2", "residual"): {-1: 0.60, 0: 0.62, 1: 0.70},
        ("rte", "superpos"): {-1: 0.50, 0: 0.55, 1: 0.60, 2: 0.54},
        ("rte", "prompt"): {-1: 0.52, 0: 0.56, 1: 0.50},
        ("rte", "residual"): {-1: 0.50, 0: 0.50, 1: 0.55},
    }
    for (task, method), scores in heldout.items():
        for k, best in scores.items():
            if task == "sst2":
                fake(select_run(task, method, k), root, [0.5, best, best - 0.01], 0.5 + best / 4, 0.5)
            else:  # RTE's chosen SuperPos run (3 auto) scores 0.53 on validation: the pair uses that run
                fake(
                    select_run(task, method, k), root, [0.5, best], 0.53 if (method, k) == ("superpos", 1) else 0.5, 0.5
                )
    # the chosen runs of seed 0 on SST-2 carry the numbers the tests check (overwrite the generic ones)
    for method, curve, best, last in (
        ("superpos", [0.6, 0.75, 0.7], 0.80, 0.78),
        ("prompt", [0.5, 0.7, 0.72], 0.76, 0.77),
    ):
        run_dir = select_run("sst2", method, 0).run_dir(root)
        for name in ("metrics.jsonl", "results.json"):
            (run_dir / name).unlink()
        run_dir.rmdir()
        fake(select_run("sst2", method, 0), root, curve, best, last)
    lr = {m: fp.candidate_lr(AUTOS[m], 0) for m in ("superpos", "prompt")}  # SST-2's chosen lrs
    fake(fp.Run(MODEL, "sst2", "superpos", 1, lr["superpos"]), root, [0.5, 0.6, 0.8], 0.82, 0.80)
    fake(fp.Run(MODEL, "sst2", "prompt", 1, lr["prompt"]), root, [0.7, 0.7, 0.7], 0.80, 0.79)
    fake(fp.Run(MODEL, "sst2", "superpos", 2, lr["superpos"]), root, [0.5, 0.55, 0.6], 0.79, 0.75)
    fake(fp.Run(MODEL, "sst2", "prompt", 2, lr["prompt"]), root, [0.5, 0.6, 0.65], 0.78, 0.76)
    return root


def test_paired_t_interval_matches_a_hand_computed_case():
    # diffs 2, 4, 0, 6, 3 pp: mean 3 pp, sd sqrt(20/4) pp = 2.2361 pp, se 1 pp, t(0.975, 4) = 2.7764 (t table)
    mean, low, high = fair_report.t_interval([0.02, 0.04, 0.00, 0.06, 0.03])
    assert mean == pytest.approx(0.03)
    assert (low, high) == (pytest.approx(0.03 - 0.027764, abs=1e-6), pytest.approx(0.03 + 0.027764, abs=1e-6))
    assert math.isnan(fair_report.t_interval([0.01])[1])  # one pair: no interval
    assert fair_report.verdict(0.001, 0.03) == "higher" and fair_report.verdict(-0.03, -0.001) == "lower"
    assert fair_report.verdict(-0.01, 0.015) == "equivalent"  # includes 0 but narrower than +-2 pp
    assert fair_report.verdict(-0.03, 0.05) == "inconclusive"


def test_steps_to_reach_and_their_median_count_never_as_latest():
    curve = [(20, 0.5), (40, 0.7), (60, 0.65)]
    assert fair_report.steps_to_reach(curve, 0.7) == 40 and fair_report.steps_to_reach(curve, 0.5) == 20
    assert fair_report.steps_to_reach(curve, 0.71) is None
    assert fair_report.median_steps([20, None, 40]) == 40
    assert fair_report.median_steps([20, 40]) == 30
    assert fair_report.median_steps([None, None, 20]) is None and fair_report.median_steps([]) is None


def test_tables_from_run_files(runs_root: Path):
    (data,) = fair_report.collect(runs_root)
    assert data.plan.chosen_lr("sst2", "superpos") == 0.00207 and data.plan.chosen_lr("rte", "superpos") == 0.00622
    assert data.plan.chosen_lr("sst2", "residual") is None and data.plan.chosen_lr("cb", "superpos") is None
    assert len(data.comparison) == 2 * 3 + 2  # SST-2 seeds 0-2 and RTE seed 0 of SuperPos and prompt tuning
    rows = {(r["task"], r["method"]): r for r in fair_report.method_rows(data)}
    sst2 = rows[("sst2", "superpos")]
    assert sst2["seeds"] == [0, 1, 2] and sst2["val_best_mean"] == pytest.approx((0.80 + 0.82 + 0.79) / 3)
    assert sst2["val_last_mean"] == pytest.approx((0.78 + 0.80 + 0.75) / 3) and sst2["precision"] == ["bf16-autocast"]
    assert rows[("sst2", "residual")]["seeds"] == [] and rows[("sst2", "residual")]["lr"] is None
    assert rows[("rte", "superpos")]["lr"] == 0.00622 and rows[("rte", "superpos")]["seeds"] == [0]

    paired = {(r["baseline"], r["task"]): r for r in fair_report.paired_rows(data)}
    assert paired[("prompt", "sst2")]["seeds"] == [0, 1, 2]
    sst2_diffs = [0.80 - 0.76, 0.82 - 0.80, 0.79 - 0.78]
    assert paired[("prompt", "sst2")]["val_best_mean"] == pytest.approx(sum(sst2_diffs) / 3)
    pooled = paired[("prompt", "pooled")]
    rte_diff = 0.53 - 0.5  # RTE seed 0: SuperPos's chosen run (3 auto), not its auto run (0.5)
    expected = fair_report.t_interval([*sst2_diffs, rte_diff])
    assert pooled["val_best_n"] == 4
    assert (pooled["val_best_mean"], pooled["val_best_low"], pooled["val_best_high"]) == pytest.approx(expected)
    assert paired[("residual", "pooled")]["val_best_n"] == 0

    reach = {(r["task"], r["baseline"]): r for r in fair_report.reach_rows(data)}
    # prompt's final held-out scores: 0.72, 0.7, 0.65; SuperPos reaches them at 40, 60 and never
    assert reach[("sst2", "prompt")]["per_seed"] == {0: 40, 1: 60, 2: None}
    assert reach[("sst2", "prompt")]["median"] == 60 and reach[("sst2", "prompt")]["reached"] == 2

    selection = {(r["task"], r["method"], r["k"]): r for r in fair_report.selection_rows(data)}
    assert selection[("sst2", "superpos", 0)]["chosen"] and selection[("sst2", "superpos", 0)]["rank"] == 1
    assert selection[("sst2", "superpos", 0)]["heldout"] == pytest.approx(0.75)
    # prompt tuning on SST-2: auto and 3 auto tie at 0.72, the smaller lr (auto) ranks first and is chosen
    assert selection[("sst2", "prompt", 0)]["rank"] == 1 and selection[("sst2", "prompt", 1)]["rank"] == 2
    assert selection[("rte", "superpos", 1)]["chosen"] and selection[("rte", "superpos", 0)]["rank"] == 2
    assert selection[("rte", "superpos", 0)]["candidates"] == 4
    residual = [r for (t, m, _), r in selection.items() if (t, m) == ("sst2", "residual")]
    assert [r["k"] for r in residual] == [-1, 0, 1, 2] and not any(r["chosen"] for r in residual)
    assert all(r["rank"] is None for r in residual)  # no rank until the extension is scored
    assert fair_report.auto_checks(data, "rte") == {"superpos": (2, 4), "prompt": (1, 3), "residual": (None, 4)}
    assert fair_report.auto_checks(data, "cb") == {m: (None, 3) for m in fp.METHODS}
    # the chosen lr as auto x 3^k per finished selection: SuperPos auto on SST-2, 3 auto on RTE; prompt auto on both
    assert fair_report.chosen_factors(data) == {"superpos": {"sst2": 0, "rte": 1}, "prompt": {"sst2": 0, "rte": 0},
                                                "residual": {}}  # fmt: skip
    from experiments import fair_markdown

    assert fair_markdown.factor_summary(data).startswith(
        "SuperPos-Prompt: 1x (sst2), 3x (rte) (geometric mean 1.73x); simple prompt tuning: 1x (sst2), 1x (rte)"
    )
    assert fair_markdown.factor_summary(data).endswith("Residual prompt tuning: pending")

    keys, waiting = fair_report.missing(data)
    for task in ("sst2", "rte"):  # the extension, 9 x 0.0483, on each task
        assert f"smollm2-135m/{task}/residual-lr0.435-seed0" in keys
    # residual's SST-2/RTE seeds; CB and MRPC, every method (SuperPos and prompt tuning with the second stage, seeds
    # 5-9): no lr chosen yet
    assert waiting == 2 * 4 + 2 * (3 * 4 + 2 * len(fp.EXTRA_SEEDS[MODEL]))
    assert fp.Run(MODEL, "sst2", "superpos", 3, 0.00207).key in keys
    assert fp.Run(MODEL, "rte", "superpos", 1, 0.00622).key in keys
    assert fp.selection_run(MODEL, "cb", "prompt", AUTOS["prompt"], 0).key in keys


def test_report_answers_first_and_keeps_the_appendix(runs_root: Path, tmp_path: Path):
    doc = tmp_path / "EXPERIMENTS.md"
    appendix = "## Appendix: paper hyper-parameters used unchanged on a Llama model\n\nold tables"
    doc.write_text(doc_sections.replace_section(doc_sections.skeleton(), doc_sections.APPENDIX, appendix))
    fair_report.write_outputs(fair_report.collect(runs_root), tmp_path / "results", doc)
    text = doc.read_text()
    assert doc_sections.section(text, doc_sections.APPENDIX) == appendix
    fair = doc_sections.section(text, doc_sections.FAIR)
    answer = fair.index("**Answer**")
    assert answer < fair.index("### Protocol") < fair.index("### SmolLM2-135M")
    assert "**SmolLM2-135M: not yet conclusive: 8 of 100 runs done.**" in fair
    assert "**Gemma-3-270M: not yet conclusive: 0 of 30 runs done** (not started)" in fair
    assert (
        "- **The derived default `F x --lr auto` transferred to Gemma-3-270M** (SST-2, no re-tuning: within the best "
        "two of its lr candidates?): F pending (SmolLM2-135M's four selections not all done). Plain `--lr auto`: "
        "pending (not started)." in fair
    )
    assert "Learning rate per (model, task, method), on that task's held-out scores only" in fair
    assert "Precision of the runs in these tables: bf16-autocast." in fair
    assert "| sst2 (accuracy) | SuperPos-Prompt | 0.00207 | 3 | 80.3 ± 1.5 |" in fair
    assert "| rte (accuracy) | SuperPos-Prompt | 0.00622 | 1 | 53.0 |" in fair
    assert "| rte | SuperPos-Prompt | 0.00622 | **chosen** | 60.0 | 1 |" in fair
    assert (
        "- `--lr auto` within the best two on sst2: SuperPos-Prompt yes (rank 1 of 3); "
        "simple prompt tuning yes (rank 1 of 3); Residual prompt tuning pending." in fair
    )
    assert "- `--lr auto` within the best two on rte: SuperPos-Prompt yes (rank 2 of 4); " in fair
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    assert summary["waiting_for_lr"] == {MODEL: 52}  # 32 of seeds 1-4, 20 of the second stage's seeds 5-9
    assert (tmp_path / "results" / "paired.csv").read_text().startswith("model,task,baseline")
    assert (tmp_path / "results" / "lr_selection.csv").read_text().startswith("model,task,method,k,lr")
    print(fair)  # shown with -s: the section as a reader sees it
    fair_report.write_outputs([], tmp_path / "results", doc)  # regenerating replaces only its own section
    assert doc_sections.section(doc.read_text(), doc_sections.APPENDIX) == appendix


def test_the_issue_transfer_check_is_stated_for_gemma_on_sst2(tmp_path: Path):
    """Gemma-3-270M, SST-2: SuperPos's auto ranks 3 of 4 (3 auto wins after one extension), prompt tuning's 1 of 3."""
    root = tmp_path / "fair"
    gemma = "gemma3-270m"
    write_autos(root, gemma)
    for method, scores in {
        "superpos": {-1: 0.65, 0: 0.6, 1: 0.7, 2: 0.55},
        "prompt": {-1: 0.6, 0: 0.7, 1: 0.65},
    }.items():
        for k, best in scores.items():
            fake(fp.selection_run(gemma, "sst2", method, AUTOS[method], k), root, [0.5, best], 0.7, 0.7)
    (data,) = fair_report.collect(root)
    assert data.plan.chosen_lr("sst2", "superpos") == 0.00622 and data.plan.chosen_lr("rte", "superpos") is None
    doc = tmp_path / "EXPERIMENTS.md"
    doc.write_text(doc_sections.skeleton())
    fair_report.write_outputs([data], tmp_path / "results", doc)
    fair = doc_sections.section(doc.read_text(), doc_sections.FAIR)
    assert (
        "F pending (SmolLM2-135M's four selections not all done). Plain `--lr auto`: "
        "SuperPos-Prompt no (rank 3 of 4); simple prompt tuning yes (rank 1 of 3)." in fair
    )
    assert "**Gemma-3-270M: not yet conclusive: 2 of 30 runs done.**" in fair
    assert "- `--lr auto` within the best two on sst2 (the issue's transfer check): SuperPos-Prompt no" in fair
    assert "- `--lr auto` within the best two on rte: SuperPos-Prompt pending" in fair


@pytest.mark.parametrize(
    ("chosen", "fitted"),
    [([1, 1, 1, 0], 1), ([1, 1, 0, 0], 0), ([-1, -1, 0, 0], 0), ([2, 1, 1, 1], 1), ([2, 2, 1, 1], 1), ([-2, -1], -1),
     ([0, 0, 0, 0], 0), ([-1, -1, -1, 0], -1)],
)  # fmt: skip
def test_the_rule_rounds_the_mean_exponent_and_a_tie_toward_plain_auto(chosen: list[int], fitted: int):
    assert fair_report.fitted_exponent(chosen) == fitted


def test_the_rule_fitted_on_smollm2_is_checked_on_gemma_sst2(tmp_path: Path):
    """SmolLM2's four selections fix F per method (SuperPos 3 auto on three tasks of four: F = 3; prompt tuning auto
    everywhere: F = 1; Residual's MRPC selection is unfinished: no rule); Gemma's SST-2 candidates then rank F x auto
    (SuperPos: 3 auto ranks 1 of 4, while plain auto ranks 3)."""
    root = tmp_path / "fair"
    gemma = "gemma3-270m"
    write_autos(root)
    write_autos(root, gemma)
    wins = {1: {-1: 0.5, 0: 0.55, 1: 0.6, 2: 0.54}, 0: {-1: 0.5, 0: 0.6, 1: 0.55}}  # held-out scores choosing k
    for task, superpos_k in (("sst2", 1), ("rte", 1), ("cb", 1), ("mrpc", 0)):
        for method, k in (("superpos", superpos_k), ("prompt", 0), ("residual", 0)):
            for candidate, best in wins[k].items():
                if (task, method, candidate) != ("mrpc", "residual", 1):  # one candidate short: undecided
                    fake(fp.selection_run(MODEL, task, method, AUTOS[method], candidate), root, [0.5, best], 0.7, 0.7)
    for method, scores in {"superpos": {-1: 0.65, 0: 0.6, 1: 0.7, 2: 0.55}, "prompt": wins[0]}.items():
        for k, best in scores.items():
            fake(fp.selection_run(gemma, "sst2", method, AUTOS[method], k), root, [0.5, best], 0.7, 0.7)
    data = {d.plan.model: d for d in fair_report.collect(root)}
    assert fair_report.fitted_rule(data[MODEL]) == {"superpos": 1, "prompt": 0, "residual": None}
    assert fair_report.rank_checks(data[gemma], "sst2", {"superpos": 1, "prompt": 0}) == {
        "superpos": (1, 4),
        "prompt": (1, 3),
    }
    from experiments import fair_markdown

    assert "(geometric mean 2.28x; rule F = 3x)" in fair_markdown.factor_summary(data[MODEL])
    assert fair_markdown.transfer_line(data[gemma], data[MODEL]).endswith(
        "F fitted on SmolLM2-135M: SuperPos-Prompt 3x, simple prompt tuning 1x; SuperPos-Prompt yes (rank 1 of 4); "
        "simple prompt tuning yes (rank 1 of 3). Plain `--lr auto`: SuperPos-Prompt no (rank 3 of 4); "
        "simple prompt tuning yes (rank 1 of 3)."
    )


def test_doc_sections_insert_missing_sections_in_order():
    text = doc_sections.replace_section("# title\n", doc_sections.APPENDIX, "B")
    text = doc_sections.replace_section(text, doc_sections.FAIR, "A")
    assert text.index("fair-report:begin") < text.index("appendix:begin")
    assert (
        doc_sections.section(text, doc_sections.FAIR) == "A"
        and doc_sections.section(text, doc_sections.APPENDIX) == "B"
    )


def test_the_committed_report_is_generated_from_the_committed_run_files():
    """docs/EXPERIMENTS.md's fair section is what experiments/fair_report.py makes of the committed run files (no
    number typed by hand, none left stale); only the regeneration time may differ."""
    from experiments import fair_markdown

    committed = doc_sections.section(fair_report.DOC.read_text(encoding="utf-8"), doc_sections.FAIR)
    rendered = fair_markdown.render(fair_report.collect(fair_report.RUN_FILES, fair_report.STARTS))

    def lines(text: str) -> list[str]:
        return [line for line in text.strip().splitlines() if not line.startswith("Last regenerated:")]

    assert lines(committed) == lines(rendered)


def test_a_missing_runs_folder_is_refused_before_anything_is_written(tmp_path, capsys):
    before = fair_report.DOC.read_text(encoding="utf-8")
    assert fair_report.main(["--runs", str(tmp_path / "typo")]) == 2
    assert "--runs " in capsys.readouterr().err and fair_report.DOC.read_text(encoding="utf-8") == before


def test_out_of_box_pairs_each_method_at_its_derived_default(tmp_path: Path):
    """The issue's out-of-box check: SuperPos at F x auto (F = 3: chosen on three tasks of four) minus prompt tuning
    at auto (F = 1), seed-paired. SST-2, where 3 auto is SuperPos's chosen lr, pairs every seed run; MRPC, where
    SuperPos chose auto, pairs its 3-auto selection run (seed 0), not the chosen run."""
    root = tmp_path / "fair"
    write_autos(root)
    picks = {1: {-1: 0.5, 0: 0.55, 1: 0.6, 2: 0.54}, 0: {-1: 0.5, 0: 0.6, 1: 0.55}}  # held-out scores choosing k
    superpos_val = {"sst2": 0.80, "rte": 0.60, "cb": 0.70, "mrpc": 0.65}  # at 3 auto
    for task, superpos_k in (("sst2", 1), ("rte", 1), ("cb", 1), ("mrpc", 0)):
        for method, k in (("superpos", superpos_k), ("prompt", 0), ("residual", 0)):
            for candidate, best in picks[k].items():
                val = 0.75 if method == "prompt" else superpos_val[task] if candidate == 1 else 0.9
                fake(
                    fp.selection_run(MODEL, task, method, AUTOS[method], candidate), root, [0.5, best], val, val - 0.01
                )
    lr = {"superpos": fp.candidate_lr(AUTOS["superpos"], 1), "prompt": fp.candidate_lr(AUTOS["prompt"], 0)}
    for seed, ours, theirs in ((1, 0.82, 0.80), (2, 0.78, 0.74)):
        fake(fp.Run(MODEL, "sst2", "superpos", seed, lr["superpos"]), root, [0.5, 0.6], ours, ours - 0.02)
        fake(fp.Run(MODEL, "sst2", "prompt", seed, lr["prompt"]), root, [0.5, 0.6], theirs, theirs)
    (data,) = fair_report.collect(root)
    rule = fair_report.fitted_rule(data)
    assert (rule["superpos"], rule["prompt"]) == (1, 0)
    rows = {r["task"]: r for r in fair_report.default_rows(data, rule)}
    assert rows["sst2"]["seeds"] == [0, 1, 2] and rows["mrpc"]["seeds"] == [0]
    assert rows["sst2"]["val_best_mean"] == pytest.approx((0.05 + 0.02 + 0.04) / 3)
    assert rows["mrpc"]["val_best_mean"] == pytest.approx(-0.10) and rows["mrpc"]["verdict"] == "undetermined"
    expected = [0.05, 0.02, 0.04, -0.15, -0.05, -0.10]
    assert rows["pooled"]["val_best_n"] == 6
    assert rows["pooled"]["val_best_mean"] == pytest.approx(sum(expected) / 6)
    assert rows["pooled"]["val_last_mean"] == pytest.approx((sum(expected) - 0.04) / 6)
    assert rows["pooled"]["verdict"] == "inconclusive"
    assert fair_report.default_rows(data, {"superpos": 1, "prompt": None}) == []
    doc = tmp_path / "EXPERIMENTS.md"
    doc.write_text(doc_sections.skeleton())
    fair_report.write_outputs([data], tmp_path / "results", doc)
    fair = doc_sections.section(doc.read_text(), doc_sections.FAIR)
    assert "SmolLM2-135M -3.2 pp [" in fair and "over 6 pairs: not worse beyond seed noise (the CI includes 0)." in fair
    assert (
        "SuperPos-Prompt at its derived default 3x auto (lr 0.00622) minus simple prompt tuning at its own 1x" in fair
    )
    assert "| mrpc | 1 | -10.0 pp | -10.0 pp | undetermined (fewer than 2 pairs) |" in fair
    assert (tmp_path / "results" / "out_of_box.csv").read_text().count("\n") == 6  # header, 4 tasks, pooled


def lower_superpos_root(tmp_path: Path) -> Path:
    """SST-2 only: SuperPos and prompt tuning both choose auto (held-out 0.5 / 0.6 / 0.55 at auto/3, auto, 3 auto);
    at its chosen lr SuperPos scores 0.69-0.72 on validation, prompt tuning 0.78-0.80 (seeds 0-3)."""
    root = tmp_path / "fair"
    write_autos(root)
    for method in ("superpos", "prompt"):
        for k, best in {-1: 0.5, 0: 0.6, 1: 0.55}.items():
            val = {"superpos": 0.70, "prompt": 0.80}[method] if k == 0 else 0.5
            fake(select_run("sst2", method, k), root, [0.5, best], val, val)
    lr = {m: fp.candidate_lr(AUTOS[m], 0) for m in ("superpos", "prompt")}
    for seed, ours, theirs in ((1, 0.71, 0.79), (2, 0.69, 0.80), (3, 0.72, 0.78)):
        fake(fp.Run(MODEL, "sst2", "superpos", seed, lr["superpos"]), root, [0.5, 0.6], ours, ours)
        fake(fp.Run(MODEL, "sst2", "prompt", seed, lr["prompt"]), root, [0.5, 0.6], theirs, theirs)
    return root


def write_starts(folder: Path, task: str, scores: dict[tuple[str, str, int], float]) -> None:
    """experiments/step0_scores.py's file for MODEL and ``task``: ``(method, w init, seed) -> held-out score``."""
    folder.mkdir(parents=True, exist_ok=True)
    results = [{"task": task, "method": m, "w_init": w, "seed": seed, "score": v} for (m, w, seed), v in scores.items()]
    (folder / f"{MODEL}-{task}.json").write_text(json.dumps({"args": {}, "results": results}))


def test_the_page_says_no_lr_default_can_help_where_tuned_superpos_is_lower(tmp_path: Path):
    """Where SuperPos-Prompt at its per-task chosen lr is lower than prompt tuning at its own (CI below 0), no lr
    default of it can do better (a default is one lr for every task): the page says so, with the pooled CI and how
    many of SuperPos's choices lie inside their candidates (auto chosen from {auto/3, auto, 3 auto}: inside)."""
    from experiments import fair_markdown

    (data,) = fair_report.collect(lower_superpos_root(tmp_path))
    assert fair_report.interior_choices(data, "superpos") == (1, 1)
    line = fair_markdown.ceiling_line([data])
    assert "SmolLM2-135M so far -8.8 pp [-12.3, -5.2]" in line and "over 4 pairs" in line
    assert "inside its candidates on 1 of 1 tasks: **no lr default can**" in line


def test_an_untrained_start_above_every_lr_tried_unsettles_the_lr_search(tmp_path: Path):
    """SuperPos's untrained prompt (seed 0) scores 0.65 on held-out data, above its best at every lr tried (0.6): as
    lr -> 0 a run keeps its start, so a smaller lr would beat the candidates and the page must not claim that no lr
    default can help. Its `cone` start is not the grid's (normal) and is ignored; the table shows each method's mean
    start over the seeds scored."""
    from experiments import fair_markdown

    starts = tmp_path / "step0"
    write_starts(
        starts,
        "sst2",
        {("superpos", "normal", 0): 0.65, ("superpos", "normal", 1): 0.61, ("superpos", "cone", 0): 0.99,
         ("prompt", "-", 0): 0.63, ("prompt", "-", 1): 0.64},
    )  # fmt: skip
    root = lower_superpos_root(tmp_path)
    (data,) = fair_report.collect(root, starts)
    assert fair_report.starts_above_candidates(data) == [("sst2", 0.65, 0.6)]
    assert fair_report.starts_above_candidates(data, "prompt") == [("sst2", 0.63, 0.6)]
    line = fair_markdown.ceiling_line([data])
    assert "no lr default can" not in line and "**not settled by the lr search**: sst2:" in line
    assert "untrained prompt 65.0 on held-out data (seed 0) against 60.0 at its best lr tried" in line
    assert "simple prompt tuning's chosen runs 60.0 against its untrained 63.5" in line
    rows = {r["method"]: r for r in fair_report.method_rows(data) if r["task"] == "sst2"}
    assert (
        rows["superpos"]["heldout_start_mean"] == pytest.approx(0.63) and rows["superpos"]["heldout_start_seeds"] == 2
    )
    table = "\n".join(fair_markdown.methods_table(fair_report.method_rows(data), {}))
    assert "| held-out best | held-out at step 0 |" in table and "| 60.0 | 63.0 |" in table
    # Seed-paired gains over the start: SuperPos 0.6 - 0.65 and 0.6 - 0.61, prompt tuning 0.6 - 0.63, 0.6 - 0.64.
    assert fair_report.start_gain(data, "sst2", "superpos") == pytest.approx(-0.03)
    assert fair_report.start_gain(data, "sst2", "prompt") == pytest.approx(-0.035)
    assert fair_markdown.no_gain_tasks(data, ("superpos", "prompt")) == ["sst2"]
    answer = fair_markdown.answer_line(data, {})
    assert "On sst2 neither method's held-out best ends more than 2 pp above its own untrained start" in answer
    # Without step-0 scores (or with a start below the candidates) the lr search's claim stands.
    (data,) = fair_report.collect(root)
    assert data.starts == {} and fair_report.starts_above_candidates(data) == []
    write_starts(starts, "sst2", {("superpos", "normal", 0): 0.55, ("prompt", "-", 0): 0.55})
    (data,) = fair_report.collect(root, starts)
    assert "**no lr default can**" in fair_markdown.ceiling_line([data])
    assert fair_markdown.no_gain_tasks(data, ("superpos", "prompt")) == []  # both gained 5 pp on seed 0


def test_the_page_does_not_rule_out_a_default_where_tuned_superpos_is_not_lower(runs_root: Path):
    from experiments import fair_markdown

    (data,) = fair_report.collect(runs_root)
    assert fair_report.interior_choices(data, "superpos") == (2, 2)  # SST-2 auto of 3; RTE 3 auto of 4 candidates
    line = fair_markdown.ceiling_line([data])
    assert "the tuned comparison does not rule such a default out" in line and "no lr default can" not in line


def test_the_answer_names_tasks_where_neither_method_beats_the_constant_answer(runs_root: Path):
    """SST-2 in the fixture: SuperPos 0.80, 0.82, 0.79 and prompt tuning 0.76, 0.80, 0.78 (best adapter). Against a
    constant answer of 0.79 both are within 2 pp on average (0.803, 0.78): SST-2 is named; against 0.70 it is not.
    RTE has SuperPos 0.53 and prompt 0.5 from the selection runs against a constant answer of 0.52: named too."""
    from experiments import fair_markdown

    (data,) = fair_report.collect(runs_root)
    level = {"metric": "accuracy", "answer": "x", "examples": 10}
    near = {"sst2": {**level, "score": 0.79}, "rte": {**level, "score": 0.52}}
    assert fair_markdown.unlearned_tasks(data, near, ("superpos", "prompt")) == ["sst2", "rte"]
    far = {"sst2": {**level, "score": 0.70}, "rte": {**level, "score": 0.40}}
    assert fair_markdown.unlearned_tasks(data, far, ("superpos", "prompt")) == []
    line = fair_markdown.answer_line(data, near)
    assert line.endswith("On sst2, rte neither method's mean beats the constant answer by more than 2 pp: those pairs "
                         "compare two methods that learned nothing at this budget.")  # fmt: skip
    assert "neither method" not in fair_markdown.answer_line(data, far)


def test_pairs_needed_is_the_smallest_count_whose_interval_the_rule_calls_conclusive():
    # mean 3 pp, sd 2.2361 pp: 5 pairs give +-2.78 pp (excludes 0, the hand case above); 4 give +-3.56 pp (t 3.182)
    assert fair_report.pairs_needed(0.03, 0.022361) == 5
    # mean 0, sd 5 pp: the +-2 pp rule decides; t(26) 2.0555 * 5 / sqrt(27) = 1.98 pp, t(25) 2.0595 * 5 / sqrt(26) 2.02
    assert fair_report.pairs_needed(0.0, 0.05) == 27
    assert fair_report.pairs_needed(0.01, math.nan) is None  # one pair: no spread to plan with
    assert fair_report.pairs_needed(0.0, 10.0, most=100) is None


def test_a_finished_inconclusive_answer_says_how_many_pairs_would_settle_it(runs_root: Path):
    from experiments import fair_markdown

    pooled = {"verdict": "inconclusive", "val_best_mean": 0.0, "val_best_sd": 0.05, "val_best_n": 20,
              "val_best_low": -0.02018, "val_best_high": 0.02018}  # fmt: skip
    assert fair_markdown.what_it_would_take(pooled) == (
        " The CI's half-width is 2.02 pp against the rule's 2 pp; it excludes a SuperPos-Prompt deficit larger than"
        " 2.0 pp and a lead larger than 2.0 pp. No seeds were added after this answer was seen: extending a sample"
        " until its interval turns conclusive makes a 95 % CI cover less than 95 %."
        " At the measured mean and spread (sd 5.0 pp over 20 pairs) about 27 pairs would make it conclusive."
    )
    assert fair_markdown.what_it_would_take({**pooled, "verdict": "higher"}) == ""
    (data,) = fair_report.collect(runs_root)
    data.planned = len(data.comparison)  # every planned run done: the verdict line, not "not yet conclusive"
    line = fair_markdown.answer_line(data, {})
    assert line.startswith("- **SmolLM2-135M**: **yes**: SuperPos-Prompt is higher; pooled difference +2.5 pp")
    assert "would make it conclusive" not in line  # conclusive: nothing to plan


def test_the_second_stage_seeds_pool_with_the_first_and_the_first_stage_is_quoted_alone(runs_root: Path):
    """SmolLM2's seeds 5-9 (fair_plan.EXTRA_SEEDS, SuperPos and prompt tuning only) join the pooled answer; the
    first stage's own pooled answer (seeds 0-4) is still quoted, and the Residual pairs never gain a seed."""
    from experiments import fair_markdown

    extra = fp.EXTRA_SEEDS[MODEL][0]
    lr = {m: fp.candidate_lr(AUTOS[m], 0) for m in ("superpos", "prompt")}  # SST-2's chosen lrs
    fake(fp.Run(MODEL, "sst2", "superpos", extra, lr["superpos"]), runs_root, [0.5, 0.9], 0.90, 0.85)
    fake(fp.Run(MODEL, "sst2", "prompt", extra, lr["prompt"]), runs_root, [0.5, 0.8], 0.80, 0.80)
    (data,) = fair_report.collect(runs_root)
    # pairs: SST-2 seeds 0, 1, 2 (+4, +2, +1 pp) and RTE seed 0 (+3 pp) in the first stage; SST-2 seed 5: +10 pp
    both = fair_report.pooled_row(data)
    first = fair_report.pooled_row(data, seeds=fp.SEEDS)
    assert (both["val_best_n"], first["val_best_n"]) == (5, 4)
    assert both["val_best_mean"] == pytest.approx(0.04) and first["val_best_mean"] == pytest.approx(0.025)
    residual = [fair_report.pooled_row(data, "residual", seeds)["val_best_n"] for seeds in (None, fp.SEEDS)]
    assert residual[0] == residual[1]
    sst2 = next(r for r in fair_report.paired_rows(data) if (r["task"], r["baseline"]) == ("sst2", "prompt"))
    assert sst2["seeds"] == [0, 1, 2, extra]
    line = fair_markdown.answer_line(data, {})
    assert "pooled difference +4.0 pp" in line and "(95 % CI, 5 seed-paired (task, seed) pairs)" in line
    assert f"First stage alone (seeds 0-4): +2.5 pp [{first['val_best_low'] * 100:+.1f}, " in line
    assert line.endswith("+4.6] over 4 pairs (higher).")  # the first stage alone: +4, +2, +1, +3 pp
    assert data.planned == 4 * (3 * len(fp.SEEDS) + 2 * len(fp.EXTRA_SEEDS[MODEL]))
