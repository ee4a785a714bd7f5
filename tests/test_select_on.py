"""``--select-on holdout``: the held-out part of the training data chooses ``best/``; the validation split, unseen by
the choice, is scored once at the end with the best and the last adapter (issue 15's fair protocol)."""

from __future__ import annotations

import json

import pytest
from superpos_trainer.cli import main


def _train(tiny_t5, tiny_data, run, *extra: str) -> int:
    argv = ["train", "--model", str(tiny_t5), "--data-dir", str(tiny_data), "--output-dir", str(run)]
    argv += ["--method", "superpos", "--epochs", "2", "--batch-size", "4", "--num-prompt-tokens", "4"]
    argv += ["--num-sampled-tokens", "16", "--max-length", "64", "--train-limit", "0", "--eval-limit", "0"]
    argv += ["--lr", "0.3", "--eval-steps", "1", "--no-progress", *extra]
    return main(argv)


def test_holdout_chooses_the_best_adapter_and_validation_is_scored_once_at_the_end(
    tiny_t5, tiny_data, tmp_path, capsys
):
    run = tmp_path / "run"
    assert _train(tiny_t5, tiny_data, run, "--select-on", "holdout", "--holdout-fraction", "0.25") == 0
    results = json.loads((run / "results.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    # every periodic evaluation scored the held-out rows, never the validation split
    assert {row["split"] for row in rows} == {"holdout"}
    assert {row["num_examples"] for row in rows} == {results["num_holdout"]} == {3}
    assert results["select_on"] == "holdout"
    assert results["best_metric"] == max(row["accuracy"] for row in rows)
    assert results["best_step"] == next(
        row["step"] for row in rows if row["is_best"] and row["accuracy"] == results["best_metric"]
    )
    final = results["final"]
    assert final["split"] == "validation" and final["examples"] == results["num_eval"] == 8
    assert results["holdout"] is None  # the held-out rows chose; their score is best_metric
    capsys.readouterr()
    # the final scores are the saved adapters' scores on the full validation split
    for which in ("best", "last"):
        assert main(["evaluate", str(run / which), "--limit", "0"]) == 0
        scored = json.loads(capsys.readouterr().out)
        assert scored["num_examples"] == 8
        assert scored["accuracy"] == final[which]["accuracy"], which


def test_default_selection_scores_the_holdout_with_best_and_last(tiny_t5, tiny_data, tmp_path):
    run = tmp_path / "run"
    assert _train(tiny_t5, tiny_data, run, "--holdout-fraction", "0.25") == 0
    results = json.loads((run / "results.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {row["split"] for row in rows} == {"validation"} and {row["num_examples"] for row in rows} == {8}
    assert results["final"]["split"] == "holdout" and results["final"]["examples"] == 3
    assert results["holdout"] == results["final"]["best"]
    assert set(results["final"]["last"]) >= {"accuracy", "num_examples"}


def test_no_holdout_no_final_scores(tiny_t5, tiny_data, tmp_path):
    run = tmp_path / "run"
    assert _train(tiny_t5, tiny_data, run) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["final"] is None and results["holdout"] is None and results["select_on"] == "validation"


@pytest.mark.parametrize("fraction", [None, "0"])
def test_select_on_holdout_without_a_holdout_is_one_line(tiny_t5, tiny_data, tmp_path, capsys, fraction):
    extra = ["--select-on", "holdout"] + (["--holdout-fraction", fraction] if fraction else [])
    assert _train(tiny_t5, tiny_data, tmp_path / "run", *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--select-on holdout" in err[0] and "--holdout-fraction" in err[0]
    assert not (tmp_path / "run").exists()
