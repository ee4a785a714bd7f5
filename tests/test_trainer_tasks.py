"""Every task's formatting and official metric through the trainer (tiny files of all 13, slices of the real ones)."""

from __future__ import annotations

import math

import pytest
from superpos_trainer.data import load_examples
from superpos_trainer.methods import build_method
from superpos_trainer.models import load_model
from superpos_trainer.tasks import TASKS, get_task
from superpos_trainer.train import Trainer

from .data_fixtures import shared_data_dir
from .model_fixtures import tiny_config, tiny_data_dir


@pytest.fixture(scope="module")
def t5(tiny_t5):
    return load_model(str(tiny_t5))


def _one_step_and_eval(loaded, task_name: str, data_dir, limit: int | None = None) -> tuple[dict, Trainer]:
    task = get_task(task_name)
    train = load_examples(task, "train", data_dir, limit=limit)
    evaluation = load_examples(task, "validation", data_dir, limit=limit)
    config = tiny_config(loaded.path, None, task=task_name, max_length=96, epochs=1)
    method = build_method("superpos", loaded, config.num_prompt_tokens, config.num_sampled_tokens)
    trainer = Trainer.from_config(config, task, (train, evaluation), method=method)
    loss = trainer.train_step(trainer.make_batch(list(range(min(4, len(train))))))
    assert math.isfinite(loss)
    return trainer.evaluate(), trainer


@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_every_task_trains_and_scores_with_its_official_metric(t5, task_name):
    metrics, trainer = _one_step_and_eval(t5, task_name, tiny_data_dir())
    task = TASKS[task_name]
    assert task.main_metric in metrics and "invalid_rate" in metrics
    assert metrics["num_examples"] == len(trainer.eval_examples)
    assert 0.0 <= metrics["invalid_rate"] <= 1.0
    # The encoded label is the task's label word; the source keeps the task's prefix.
    ex, enc = trainer.train_examples[0], trainer.train_encoded[0]
    assert t5.tokenizer.decode(list(enc.target_ids), skip_special_tokens=True) == ex.target
    assert t5.tokenizer.decode(list(enc.source_ids), skip_special_tokens=True).startswith(task_name)


def test_invalid_generations_count_as_wrong(t5):
    """An untrained random T5 generates no label word: accuracy 0 on a binary task, invalid rate 1."""
    metrics, _ = _one_step_and_eval(t5, "sst2", tiny_data_dir())
    if metrics["invalid_rate"] == 1.0:
        assert metrics["accuracy"] == 0.0
    else:  # the scoring rule holds either way: valid answers alone cannot explain more than their share
        assert metrics["accuracy"] <= 1.0 - metrics["invalid_rate"] + 1e-9


REAL = shared_data_dir()


@pytest.mark.skipif(REAL is None, reason="the real GLUE/SuperGLUE files (shared/data) are not on this machine")
@pytest.mark.parametrize("task_name", ["sst2", "stsb", "multirc", "rte", "cb"])
def test_real_file_slices_go_through_the_trainer(t5, task_name):
    metrics, trainer = _one_step_and_eval(t5, task_name, REAL, limit=6)
    assert len(trainer.train_examples) == 6
    assert TASKS[task_name].main_metric in metrics
    assert all(len(e.source_ids) <= trainer.encoder.source_budget for e in trainer.train_encoded)
