"""The Table 1 reproduction script builds every configuration of the paper's grid, each a valid trainer config.

Nothing is trained here (the grid needs a GPU and the hub); this checks the grid is complete and every run's
options pass the trainer's own validation, so a user with a GPU does not find a broken run 100 runs in.
"""

from __future__ import annotations

import itertools

import pytest
from superpos_trainer.config import build_config
from superpos_trainer.tasks import TASKS

from experiments import reproduce_table1 as table1


def test_grid_is_13_tasks_x_4_methods_x_dropout_x_2_sizes(tmp_path):
    runs = table1.table1_runs(tmp_path)
    assert len(runs) == 13 * 4 * 2 * 2
    expected = set(itertools.product(("small", "base"), table1.TABLE1_TASKS, table1.TABLE1_METHODS, ("on", "off")))
    assert {(r.size, r.task, r.method, r.dropout) for r in runs} == expected
    assert len({r.options["output_dir"] for r in runs}) == len(runs)  # no two runs share a folder
    assert set(table1.TABLE1_TASKS) == set(TASKS)  # the trainer's 13 tasks, no more, no less


def test_every_run_is_a_valid_trainer_config_with_the_paper_settings(tmp_path):
    for run in table1.table1_runs(tmp_path):
        cfg = build_config(cli_options=run.options)  # raises ConfigError on any invalid option
        assert cfg.model == table1.TABLE1_MODELS[run.size]
        assert (cfg.task, cfg.method, cfg.dropout) == (run.task, run.method, run.dropout)
        assert cfg.epochs == 80 and cfg.train_limit == 0 and cfg.eval_limit == 0
        assert cfg.eval_mode == "generate" and cfg.model_type == "seq2seq"
        assert (cfg.num_prompt_tokens, cfg.num_sampled_tokens) == (10, 128)
    lrs = {run.method: build_config(cli_options=run.options).lr for run in table1.table1_runs(tmp_path)}
    assert lrs == {"superpos": 1e-2, "prompt": 1e-2, "residual": 0.3, "full": 1e-5}


def test_cli_args_round_trip_through_the_trainer_parser(tmp_path):
    from superpos_trainer.cli import build_parser

    parser = build_parser()
    for run in table1.table1_runs(tmp_path, sizes=("small",), tasks=("rte", "multirc")):
        command = table1.train_command(run)
        assert command[3] == "train"
        namespace = parser.parse_args(command[3:])
        parsed = {k: getattr(namespace, k) for k in run.options}
        assert build_config(cli_options=parsed) == build_config(cli_options=run.options)


def test_dry_run_prints_every_command_and_runs_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(table1.subprocess, "run", lambda *a, **k: pytest.fail("dry run must not train"))
    assert table1.main(["--dry-run", "--output-root", str(tmp_path), "--sizes", "base", "--tasks", "cb"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 * 2
    assert all("--model google/t5-base-lm-adapt" in line and "--task cb" in line for line in lines)
    assert not any(tmp_path.iterdir())


def test_unknown_size_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown model size 'large'"):
        table1.table1_runs(tmp_path, sizes=("large",))
