"""The output layer in fp32 under bf16 autocast (output_head.py, ``--lm-head``): label logits at full precision,
the tied embedding table untouched, the old bf16 head kept for runs that started with it."""

from __future__ import annotations

import pytest
import torch
from superpos_trainer.config import config_from_dict
from superpos_trainer.data import load_examples
from superpos_trainer.forward import autocast, label_logits
from superpos_trainer.models import load_model
from superpos_trainer.output_head import Fp32HeadLinear, fp32_output_head
from superpos_trainer.tasks import get_task
from superpos_trainer.train import Trainer
from torch import nn

from .model_fixtures import tiny_config, tiny_data_dir


def _trainer(model_path, **overrides) -> Trainer:
    config = tiny_config(model_path, None, **{"bf16": "on", **overrides})
    task = get_task("sst2")
    train, validation = (load_examples(task, split, tiny_data_dir()) for split in ("train", "validation"))
    return Trainer.from_config(config, task, (train, validation), load_model(config.model))


def _on_bf16_grid(t: torch.Tensor) -> bool:
    return bool(torch.equal(t.float(), t.float().bfloat16().float()))


@pytest.mark.parametrize("model", ["tiny_llama", "tiny_t5"])
@pytest.mark.parametrize("head", ["fp32", "autocast"])
def test_label_logits_are_full_precision_with_the_fp32_head(model, head, request):
    trainer = _trainer(request.getfixturevalue(model), lm_head=head)
    batch = trainer.make_batch(list(range(4)))
    with torch.no_grad(), autocast(trainer.device, True):
        logits = label_logits(trainer.method, batch)
    # bf16 logits carry 8 significant bits: every value lies on the bf16 grid; fp32 ones almost never do
    assert _on_bf16_grid(logits) == (head == "autocast")
    assert isinstance(trainer.loaded.model.get_output_embeddings(), Fp32HeadLinear) == (head == "fp32")


def test_fp32_head_equals_an_fp32_matmul_of_the_same_hidden_states(tiny_llama):
    trainer = _trainer(tiny_llama)
    model = trainer.loaded.model
    head = model.get_output_embeddings()
    hidden = torch.randn(3, 5, head.in_features).bfloat16()
    with autocast(trainer.device, True):
        out = head(hidden)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, hidden.float() @ head.weight.T, rtol=0, atol=0)
    # the tie to the input embeddings (which the prompt gathers from) survives
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


def test_off_without_bf16_or_when_asked():
    model = nn.Module()
    model.lm_head = nn.Linear(4, 6)
    model.get_output_embeddings = lambda: model.lm_head
    assert not fp32_output_head(model, enabled=False) and type(model.lm_head) is nn.Linear
    assert fp32_output_head(model, enabled=True) and type(model.lm_head) is Fp32HeadLinear
    assert not fp32_output_head(nn.Linear(2, 2), enabled=True)  # no output embeddings to convert


def test_runs_started_before_the_option_resume_with_the_bf16_head():
    saved = tiny_config("m", None).to_dict()
    del saved["lm_head"]
    assert config_from_dict(saved, "config.json").lm_head == "autocast"
    assert tiny_config("m", None).lm_head == "fp32"


def test_without_autocast_the_head_computes_what_the_models_own_head_does(tiny_llama):
    fp32 = _trainer(tiny_llama, lm_head="fp32", bf16="off")
    own = _trainer(tiny_llama, lm_head="autocast", bf16="off")
    assert isinstance(fp32.loaded.model.get_output_embeddings(), Fp32HeadLinear)  # one mm on a contiguous input
    assert type(own.loaded.model.get_output_embeddings()) is nn.Linear
    own.method.load_state_dict(fp32.method.state_dict())
    batch = fp32.make_batch(list(range(4)))
    with torch.no_grad():
        torch.testing.assert_close(label_logits(fp32.method, batch), label_logits(own.method, batch))


def test_a_sliced_hidden_state_gives_the_logits_of_its_contiguous_copy():
    head = nn.Linear(6, 10, bias=False)
    head.__class__ = Fp32HeadLinear
    hidden = torch.randn(2, 7, 6)[:, -3:]  # what logits_to_keep hands the head: a non-contiguous slice
    assert not hidden.is_contiguous()
    torch.testing.assert_close(head(hidden), hidden.contiguous() @ head.weight.T)
