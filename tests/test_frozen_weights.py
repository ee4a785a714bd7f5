"""Frozen matmul weights stored in bf16 under bf16 autocast (frozen_weights.py): the same numbers, bit for bit, as
autocast casting the fp32 weights at every call; the tied embedding table stays fp32; undone for fp32 and full
fine-tuning trainers built later on the same model."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import superpos_trainer.train as train_module
import torch
from superpos_trainer.data import load_examples
from superpos_trainer.evaluate import evaluate, rank_scores
from superpos_trainer.frozen_weights import STASH, keep_frozen_in_bf16
from superpos_trainer.models import load_model
from superpos_trainer.tasks import get_task
from superpos_trainer.train import Trainer
from torch import nn

from .model_fixtures import tiny_config, tiny_data_dir

STEPS = 3  # the tiny train split (12 rows, batch 4) has 3 steps per epoch


def _trainer(model_path, loaded=None, **overrides):
    config = tiny_config(model_path, None, **overrides)
    loaded = loaded if loaded is not None else load_model(config.model)
    task = get_task("sst2")
    train, validation = (load_examples(task, split, tiny_data_dir()) for split in ("train", "validation"))
    return Trainer.from_config(config, task, (train, validation), loaded)


def _linear_dtypes(model: nn.Module) -> set[torch.dtype]:
    return {m.weight.dtype for m in model.modules() if isinstance(m, nn.Linear)}


def _train_and_evaluate(trainer: Trainer) -> tuple[list[float], dict, torch.Tensor, list[str], list[str]]:
    losses = []
    for group in trainer.epoch_plan(0)[:STEPS]:
        before = trainer.state.loss_sum
        trainer.run_step(group)
        losses.append(trainer.state.loss_sum - before)
    settings = trainer.eval_settings
    method, encoder, task = trainer.method, trainer.encoder, trainer.task
    scores = rank_scores(method, encoder, trainer.eval_encoded, task.label_words, settings)
    ranked = evaluate(
        method, encoder, task, trainer.eval_examples, trainer.eval_encoded, replace(settings, mode="rank")
    )
    generated = evaluate(method, encoder, task, trainer.eval_examples, trainer.eval_encoded, settings)
    return losses, trainer.method.trainable_state(), scores, ranked[1], generated[1]


@pytest.mark.parametrize("method", ["superpos", "residual"])
@pytest.mark.parametrize("kind", ["llama", "t5"])
def test_training_and_evaluation_are_bitwise_unchanged(kind, method, tiny_llama, tiny_t5, monkeypatch):
    path = tiny_llama if kind == "llama" else tiny_t5
    cached = _trainer(path, method=method, bf16="on", eval_mode="generate")
    assert _linear_dtypes(cached.loaded.model) == {torch.bfloat16}  # the cache is really in use
    with monkeypatch.context() as patch:  # the reference: autocast casts the fp32 weights at every call
        patch.setattr(train_module, "keep_frozen_in_bf16", lambda model, enabled: 0)
        plain = _trainer(path, method=method, bf16="on", eval_mode="generate")
    assert _linear_dtypes(plain.loaded.model) == {torch.float32}

    got, want = _train_and_evaluate(cached), _train_and_evaluate(plain)
    assert got[0] == want[0]  # the losses of every step
    assert got[1].keys() == want[1].keys()
    for name, tensor in got[1].items():  # the trained (and saved) tensors: fp32 (or the ids), equal bit for bit
        assert tensor.dtype in (torch.float32, torch.int64), name
        assert torch.equal(tensor, want[1][name]), name
    assert torch.equal(got[2], want[2])  # rank scores
    assert got[3] == want[3] and got[4] == want[4]  # ranked and generated outputs


def test_tied_head_gets_its_own_copy_and_the_table_stays_fp32(tiny_llama):
    loaded = load_model(str(tiny_llama))
    model, table = loaded.model, loaded.embedding.weight
    head = model.get_output_embeddings()
    assert head.weight is table  # the tiny Llama ties them
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    count = sum(p.numel() for p in model.parameters())

    assert keep_frozen_in_bf16(model, True) > 0
    assert loaded.embedding.weight is table and table.dtype == torch.float32
    assert head.weight.dtype == torch.bfloat16 and torch.equal(head.weight, table.detach().to(torch.bfloat16))
    assert sum(p.numel() for p in model.parameters()) == count  # the logged parameter count is unchanged
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if "norm" in n)
    assert keep_frozen_in_bf16(model, True) == keep_frozen_in_bf16(model, True)  # a second call changes nothing

    keep_frozen_in_bf16(model, False)
    assert head.weight is table  # the tie is back
    assert not hasattr(model, STASH)
    after = dict(model.named_parameters())
    assert after.keys() == before.keys()
    assert all(after[n].dtype == torch.float32 and torch.equal(after[n], before[n]) for n in before)


def test_later_fp32_and_full_trainers_get_the_fp32_weights_back(tiny_llama):
    loaded = load_model(str(tiny_llama))
    original = {name: p.detach().clone() for name, p in loaded.model.named_parameters()}
    _trainer(tiny_llama, loaded, bf16="on")
    assert _linear_dtypes(loaded.model) == {torch.bfloat16}
    copied = copy.deepcopy(loaded.model)  # a copy carries the fp32 originals (the benches copy models)

    _trainer(tiny_llama, loaded, bf16="off")
    assert _linear_dtypes(loaded.model) == {torch.float32}
    assert all(torch.equal(p, original[n]) for n, p in loaded.model.named_parameters())

    keep_frozen_in_bf16(copied, False)
    assert all(torch.equal(p, original[n]) for n, p in copied.named_parameters())


def test_full_fine_tuning_keeps_fp32_weights(tiny_llama):
    loaded = load_model(str(tiny_llama))
    keep_frozen_in_bf16(loaded.model, True)  # an earlier prompt-tuning trainer converted the shared model
    full = _trainer(tiny_llama, loaded, bf16="on", method="full")
    assert full.bf16 and _linear_dtypes(loaded.model) == {torch.float32}
    assert all(p.dtype == torch.float32 for group in full.optimizer.param_groups for p in group["params"])
