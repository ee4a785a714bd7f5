"""The four commands end to end on the tiny T5: train (config file + flags), evaluate, predict, compare."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from superpos_trainer.cli import main


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "compare"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: superpos " + command)
    if command == "train":
        for flag in (
            "--config",
            "--resume",
            "--method",
            "--dropout",
            "--holdout-fraction",
            "--eval-mode",
            "--grad-accum",
            "--group-by-length",
            "--save-steps",
            "--bf16",
        ):
            assert flag in out


def test_config_file_flags_override_and_resolved_config_is_saved(tiny_t5, tiny_data, tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"model: {tiny_t5}\ndata-dir: {tiny_data}\nmethod: prompt\nepochs: 1\nnum_prompt_tokens: 3\n"
        "batch_size: 4\nmax_length: 48\ntrain_limit: 0\nprogress: false\n"
    )
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--config",
                str(cfg),
                "--num-prompt-tokens",
                "5",
                "--output-dir",
                str(run),
                "--holdout-fraction",
                "0.25",
            ]
        )
        == 0
    )
    saved = json.loads((run / "config.json").read_text())
    assert saved["method"] == "prompt" and saved["epochs"] == 1  # from the file
    assert saved["num_prompt_tokens"] == 5  # the flag wins
    assert saved["lr"] == 1e-2 and saved["weight_decay"] == 1e-2  # method defaults, resolved
    assert saved["max_new_tokens"] == 5  # untouched default
    results = json.loads((run / "results.json").read_text())
    assert results["num_train"] == 9 and results["num_holdout"] == 3
    assert results["holdout"]["num_examples"] == 3 and "accuracy" in results["holdout"]
    for name in (
        "metrics.jsonl",
        "learning_curve.png",
        "train.log",
        "best/adapter_config.json",
        "last/adapter_model.safetensors",
        "best/trainer_config.json",
        "checkpoint/trainer_state.json",
    ):
        assert (run / name).is_file(), name
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    for key in (
        "epoch",
        "step",
        "accuracy",
        "invalid_rate",
        "train_loss",
        "wall_time",
        "train_examples_per_s",
        "eval_examples_per_s",
    ):
        assert key in row
    out = capsys.readouterr().out
    assert "prompt on sst2" in out and str(run) in out and "9 train / 8 validation / 3 held-out" in out


def test_train_evaluate_predict_compare(tiny_t5, tiny_data, tmp_path, capsys):
    runs = []
    for method in ("superpos", "prompt"):
        run = tmp_path / method
        assert (
            main(
                [
                    "train",
                    "--model",
                    str(tiny_t5),
                    "--data-dir",
                    str(tiny_data),
                    "--output-dir",
                    str(run),
                    "--method",
                    method,
                    "--epochs",
                    "2",
                    "--batch-size",
                    "4",
                    "--num-prompt-tokens",
                    "4",
                    "--num-sampled-tokens",
                    "16",
                    "--max-length",
                    "64",
                    "--train-limit",
                    "0",
                    "--eval-limit",
                    "0",
                    "--no-progress",
                ]
            )
            == 0
        )
        runs.append(run)
    capsys.readouterr()

    # evaluate: the best adapter on the same validation set reproduces the best logged metric
    assert main(["evaluate", str(runs[0]), "--output", str(tmp_path / "eval.json")]) == 0
    scored = json.loads(capsys.readouterr().out)
    best = json.loads((runs[0] / "results.json").read_text())["best_metric"]
    assert scored["accuracy"] == best and scored["num_examples"] == 8
    assert json.loads((tmp_path / "eval.json").read_text())["accuracy"] == best

    # predict: same lines in this process and in a fresh one (adapter loaded from disk only)
    argv = ["predict", str(runs[0] / "best"), "--text", "a alpha film", "--json", '{"sentence": "a beta film"}']
    assert main(argv) == 0
    here = capsys.readouterr().out.splitlines()
    assert len(here) == 2 and here[0].endswith("\tsst2 sentence: a alpha film")
    fresh = subprocess.run(
        [sys.executable, "-m", "superpos_trainer.cli", *argv], capture_output=True, text=True, timeout=300
    )
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert fresh.stdout.splitlines() == here

    # compare: a table with both runs and one plot
    plot = tmp_path / "cmp.png"
    assert main(["compare", *map(str, runs), "--output", str(plot)]) == 0
    table = capsys.readouterr().out
    assert "superpos" in table and "prompt" in table and "best" in table.splitlines()[0]
    assert plot.stat().st_size > 1000
    assert main(["compare", *map(str, runs), "--output", str(plot), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["method"] for r in rows] == ["superpos", "prompt"]


def test_causal_rank_mode_end_to_end(tiny_llama, tiny_data, tmp_path, capsys):
    run = tmp_path / "rank"
    assert (
        main(
            [
                "train",
                "--model",
                str(tiny_llama),
                "--data-dir",
                str(tiny_data),
                "--output-dir",
                str(run),
                "--task",
                "rte",
                "--eval-mode",
                "rank",
                "--epochs",
                "1",
                "--batch-size",
                "4",
                "--num-prompt-tokens",
                "4",
                "--num-sampled-tokens",
                "16",
                "--max-length",
                "96",
                "--train-limit",
                "0",
                "--eval-limit",
                "0",
                "--no-progress",
            ]
        )
        == 0
    )
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["invalid_rate"] == 0.0  # ranking always answers with a label word
    capsys.readouterr()
    assert main(["predict", str(run), "--json", '{"premise": "cats sit", "hypothesis": "cats run"}']) == 0
    label = capsys.readouterr().out.split("\t")[0]
    assert label in ("entailment", "not_entailment")
