"""The defaults-study scripts run end to end on a tiny model (the real runs: SmolLM2, docs/DEFAULTS_STUDY.md)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from .model_fixtures import tiny_data, tiny_llama  # noqa: F401

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_init_study_prompt_init_starts_where_simple_prompt_tuning_does(tiny_llama, tiny_data, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "init.json"
    args = ["--model", str(tiny_llama), "--tasks", "sst2", "--data-dir", str(tiny_data), "--eval-limit", "6"]
    args += ["--seeds", "0", "1", "--num-prompt-tokens", "4", "--num-sampled-tokens", "16", "--residual-hidden", "8"]
    assert _script("init_study").main([*args, "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert len(rows) == 2 * 6  # seeds x (3 SuperPos inits, prompt, residual, none)
    for seed in (0, 1):
        by = {(r["method"], r["w_init"]): r for r in rows if r["seed"] == seed}
        assert by[("superpos", "prompt")]["loss"] == pytest.approx(by[("prompt", "-")]["loss"], rel=1e-6)
        assert by[("superpos", "cone")]["positive_share"] == 1.0
        assert -1.0 <= by[("superpos", "normal")]["pairwise_cosine"] <= 1.0
        assert by[("superpos", "normal")]["loss"] != by[("superpos", "prompt")]["loss"]
    table = capsys.readouterr().out
    assert "| superpos | cone |" in table and "| none | - |" in table


def test_update_size_reports_every_method(tiny_llama, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "moves.json"
    args = ["--model", str(tiny_llama), "--steps", "3", "--num-prompt-tokens", "4", "--num-sampled-tokens", "16"]
    assert _script("update_size").main([*args, "--residual-hidden", "8", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [r["method"] for r in data["rows"]] == [
        "superpos (w_init normal)",
        "superpos (w_init cone)",
        "superpos (w_init prompt)",
        "prompt",
        "residual",
    ]
    for row in data["rows"]:
        assert 0 < row["move_step1"] <= row["move_step3"] * 1.0001 and row["auto_lr"] > 0
    assert "anisotropy" in capsys.readouterr().out


def test_step0_scores_use_the_grid_runs_held_out_split(tiny_llama, tiny_data, tmp_path, capsys):  # noqa: F811
    """The options come from the grid's seed-0 prompt tuning run (its config.json); each seed's held-out split is
    scored before any step. SuperPos's `prompt` init starts exactly where simple prompt tuning does, so its score
    is the same to the last digit: the script builds each prompt as the grid's run of that seed does."""
    from superpos_trainer.config import build_config

    config = build_config(
        cli_options={"model": str(tiny_llama), "task": "sst2", "data_dir": str(tiny_data), "num_prompt_tokens": 4,
                     "num_sampled_tokens": 16, "residual_hidden": 8, "eval_mode": "rank", "select_on": "holdout",
                     "holdout_fraction": 0.5, "train_limit": 0, "eval_limit": 0, "method": "prompt", "lr": 0.001}
    )  # fmt: skip
    run = tmp_path / "runs" / "tiny" / "sst2" / "prompt-lr0.001-seed0"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(config.to_dict()))
    out = tmp_path / "step0.json"
    args = ["--model", "tiny", "--tasks", "sst2", "--seeds", "0", "1", "--runs", str(tmp_path / "runs")]
    variants = ["--variants", "superpos:normal", "superpos:prompt", "prompt", "residual"]
    assert _script("step0_scores").main([*args, *variants, "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert len(rows) == 2 * 4 and {r["examples"] for r in rows} == {6}  # half of the 12 training rows held out
    for seed in (0, 1):
        by = {(r["method"], r["w_init"]): r["score"] for r in rows if r["seed"] == seed}
        assert by[("superpos", "prompt")] == by[("prompt", "-")]
        assert all(0.0 <= v <= 1.0 for v in by.values())
    assert "| sst2 | superpos | normal | s0: " in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        _script("step0_scores").main([*args, "--variants", "superpos:ones"])
    assert refused.value.code == 2 and "--variants superpos:ones: expected one of" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no grid run files"):
        _script("step0_scores").main([*args[:2], "--tasks", "rte", *args[6:]])
