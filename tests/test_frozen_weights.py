"""A bf16 copy of the frozen matmul weights under bf16 autocast (frozen_weights.py): the same numbers, bit for bit,
as autocast casting the fp32 weights at every call; the fp32 parameters (tied embedding table included) untouched;
an ordinary nn.Linear outside autocast or with trainable weights; a stale copy rebuilt."""

from __future__ import annotations

from dataclasses import replace

import pytest
import superpos_trainer.precision as precision_module
import torch
from superpos_trainer.data import load_examples
from superpos_trainer.evaluate import evaluate, rank_scores
from superpos_trainer.frozen_weights import Bf16CachedLinear, cache_frozen_bf16, plain_linears
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


def _copies(model: nn.Module) -> list[object]:
    """Each Linear's bf16 copy (None: none made); an empty list: no Linear of the model keeps one."""
    return [m._bf16_copy for m in model.modules() if isinstance(m, Bf16CachedLinear)]


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
    with monkeypatch.context() as patch:  # the reference: autocast casts the fp32 weights at every call
        patch.setattr(precision_module, "cache_frozen_bf16", lambda model, enabled: 0)
        plain = _trainer(path, method=method, bf16="on", eval_mode="generate")
    assert _copies(plain.loaded.model) == []

    got, want = _train_and_evaluate(cached), _train_and_evaluate(plain)
    copies = _copies(cached.loaded.model)  # the copies were really used: one per Linear, all bf16
    assert copies and all(c is not None and c[1].dtype == torch.bfloat16 for c in copies)
    assert got[0] == want[0]  # the losses of every step
    assert got[1].keys() == want[1].keys()
    for name, tensor in got[1].items():  # the trained (and saved) tensors: fp32 (or the ids), equal bit for bit
        assert tensor.dtype in (torch.float32, torch.int64), name
        assert torch.equal(tensor, want[1][name]), name
    assert torch.equal(got[2], want[2])  # rank scores
    assert got[3] == want[3] and got[4] == want[4]  # ranked and generated outputs


def test_parameters_stay_fp32_and_tied(tiny_llama):
    loaded = load_model(str(tiny_llama))
    model = loaded.model
    before = {name: p.detach().clone() for name, p in model.state_dict().items()}
    trainer = _trainer(tiny_llama, loaded, bf16="on", lm_head="autocast")  # the bf16 head: cached like the rest
    trainer.run_step(trainer.epoch_plan(0)[0])
    head = model.get_output_embeddings()
    assert isinstance(head, Bf16CachedLinear) and head.weight is loaded.embedding.weight  # still tied
    assert head._bf16_copy is not None and torch.equal(head._bf16_copy[1], head.weight.detach().to(torch.bfloat16))
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(after[n].dtype == before[n].dtype and torch.equal(after[n], before[n]) for n in before)


def _linear() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(8, 4).requires_grad_(False)


def test_outside_autocast_and_when_trained_it_is_a_plain_linear():
    layer, x = _linear(), torch.randn(3, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = layer(x)
    assert cache_frozen_bf16(layer, False) == 0 and type(layer) is nn.Linear
    assert cache_frozen_bf16(layer, True) == 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(layer(x), want)
    assert layer(x).dtype == torch.float32  # fp32 outside autocast: the fp32 weights, as nn.Linear
    assert torch.equal(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))
    layer.requires_grad_(True)  # a trained weight: autocast's own cast (gradients reach the fp32 weight)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x).float().sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.dtype == torch.float32
    assert plain_linears(layer) == 1 and type(layer) is nn.Linear and "_bf16_copy" not in vars(layer)


def test_a_changed_weight_gets_a_new_copy_and_inference_copies_train():
    layer, x = _linear(), torch.randn(3, 8, requires_grad=True)
    cache_frozen_bf16(layer, True)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x.detach())  # the first copy is made during an evaluation
    with torch.no_grad():
        layer.weight.mul_(2)  # an in-place update (load_state_dict copies in place too)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = layer(x)
        got.float().sum().backward()  # the copy can be saved for backward (not an inference tensor)
    assert torch.equal(layer._bf16_copy[1], layer.weight.to(torch.bfloat16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = torch.nn.functional.linear(x, layer.weight, layer.bias)
    assert torch.equal(got, want)


def test_full_fine_tuning_is_left_alone(tiny_llama):
    loaded = load_model(str(tiny_llama))
    _trainer(tiny_llama, loaded, bf16="on", method="full")
    assert _copies(loaded.model) == []
