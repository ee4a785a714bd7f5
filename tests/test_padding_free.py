"""``--padding-free``: a causal batch run as one unpadded row computes what the padded batch computes (tiny Llama and
tiny Gemma 3, every method, labels of different lengths), and the policy flattens only where it should."""

from __future__ import annotations

import json

import pytest
import torch
from superpos_trainer.collate import Encoder, train_batch
from superpos_trainer.config import config_from_dict
from superpos_trainer.data import load_examples
from superpos_trainer.errors import ConfigError
from superpos_trainer.forward import label_logits, label_loss
from superpos_trainer.methods import build_method
from superpos_trainer.models import load_model
from superpos_trainer.padding_free import FlattenPolicy, flatten, flatten_policy, label_positions
from superpos_trainer.runner import run_training
from superpos_trainer.tasks import get_task

from .model_fixtures import tiny_config

CPU = torch.device("cpu")
ALWAYS = FlattenPolicy(always=True, position_cost=1.0, pair_cost=0.0)


@pytest.fixture(scope="module")
def models(tiny_llama, tiny_gemma3):
    return {"llama": load_model(str(tiny_llama)), "gemma3": load_model(str(tiny_gemma3))}


def _batch(loaded, data_dir, n: int):
    encoder = Encoder(loaded.tokenizer, False, 96, n, 8, loaded.max_positions, 3)
    examples = load_examples(get_task("rte"), "train", data_dir, limit=6, seed=1)
    items = [encoder.encode(e.source, e.target) for e in examples]
    batch = train_batch(items, list(range(len(items))), loaded.tokenizer.pad_token_id, False)
    lengths = batch.attention_mask.sum(dim=1)
    assert lengths.min() < lengths.max(), "the batch must have padding for the test to mean anything"
    label_lengths = (batch.labels != -100).sum(dim=1)
    assert label_lengths.min() < label_lengths.max(), "labels of different token lengths"
    return batch


@pytest.mark.parametrize("model_name", ["llama", "gemma3"])
@pytest.mark.parametrize("method_name", ["superpos", "prompt", "residual", "full"])
def test_flat_batch_gives_the_padded_logits_loss_and_gradients(models, tiny_data, model_name, method_name):
    loaded = models[model_name]
    n = 0 if method_name == "full" else 4
    kwargs = {"num_sampled_tokens": 16} if method_name == "superpos" else {}
    method = build_method(method_name, loaded, num_prompt_tokens=n, seed=3, **kwargs) if n else None
    method = method or build_method("full", loaded)
    batch = _batch(loaded, tiny_data, n)
    params = [p for p in method.trainable_parameters()] + (
        [p for p in loaded.model.parameters()] if method.trains_backbone else []
    )
    if method.trains_backbone:
        loaded.model.requires_grad_(True)
    try:
        results = []
        for flat in (None, ALWAYS):
            for p in params:
                p.grad = None
            logits = label_logits(method, batch, flat)
            loss = label_loss(logits, batch.labels)
            loss.backward()
            results.append((logits.detach(), loss.detach(), [p.grad.clone() for p in params if p.grad is not None]))
    finally:
        if method.trains_backbone:
            loaded.model.requires_grad_(False)
    (padded, padded_loss, padded_grads), (flat, flat_loss, flat_grads) = results
    valid = batch.labels != -100
    torch.testing.assert_close(flat[valid], padded[valid], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(flat_loss, padded_loss, rtol=1e-6, atol=1e-6)
    assert len(flat_grads) == len(padded_grads) > 0
    for got, want in zip(flat_grads, padded_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_flatten_keeps_real_positions_in_order_and_restarts_positions():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    embeds = torch.arange(15.0).view(3, 5, 1)
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    flat, flat_positions, ends = flatten(embeds, mask, positions)
    assert flat.flatten().tolist() == [2, 3, 4, 5, 6, 7, 8, 9, 14]
    assert flat_positions.tolist() == [[0, 1, 2, 0, 1, 2, 3, 4, 0]]
    assert ends.tolist() == [2, 7, 8]
    # Row 0 ends at 2: its 2 label positions are 0, 1; row 2 has one position: clamped (its labels are -100).
    assert label_positions(ends, 2).tolist() == [0, 1, 5, 6, 6, 7]
    assert label_positions(torch.tensor([0]), 2).tolist() == [0, 0]


def test_policy_auto_flattens_only_when_cheaper():
    policy = FlattenPolicy(always=False, position_cost=100.0, pair_cost=1.0)
    assert not policy.worth_it(torch.tensor([40, 40, 40, 40]))  # no padding: flat only adds attention pairs
    assert policy.worth_it(torch.tensor([10, 10, 10, 60]))  # mostly padding
    assert policy.worth_it(torch.tensor([20, 20, 20, 60]))  # half padding, cheap attention
    assert not FlattenPolicy(False, 1.0, 100.0).worth_it(torch.tensor([50, 50, 50, 60]))  # attention dominates
    assert ALWAYS.worth_it(torch.tensor([5, 5]))


def test_policy_by_setting_model_and_device(models, tiny_t5):
    llama = models["llama"]
    assert flatten_policy("off", llama, CPU) is None
    assert flatten_policy("auto", llama, torch.device("cuda")) is None  # not measured there; dense masks
    auto = flatten_policy("auto", llama, CPU)
    assert auto is not None and not auto.always and auto.position_cost > 0 and auto.pair_cost > 0
    head = llama.model.get_output_embeddings().weight.numel()
    linears = sum(m.weight.numel() for m in llama.model.modules() if isinstance(m, torch.nn.Linear))
    assert auto.position_cost == linears - head
    assert flatten_policy("on", llama, torch.device("cuda")).always
    t5 = load_model(str(tiny_t5))
    assert flatten_policy("auto", t5, CPU) is None
    with pytest.raises(ConfigError, match="--padding-free on needs a decoder-only"):
        flatten_policy("on", t5, CPU)


def test_training_run_records_it_and_old_configs_resume_padded(tiny_llama, tiny_data, tmp_path):
    config = tiny_config(tiny_llama, tmp_path / "run", padding_free="on", epochs=1, max_steps=2)
    results = run_training(config)
    assert results["padding_free"] is True
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["padding_free"] == "on"
    saved.pop("padding_free")
    assert config_from_dict(saved).padding_free == "off"  # a run started before the option resumes as it ran


def test_cli_refuses_padding_free_on_for_seq2seq_in_one_line(tiny_t5, tiny_data, tmp_path, capsys):
    from superpos_trainer.cli import main

    argv = ["train", "--model", str(tiny_t5), "--data-dir", str(tiny_data), "--output-dir", str(tmp_path / "run")]
    argv += ["--num-prompt-tokens", "4", "--num-sampled-tokens", "16", "--no-progress", "--padding-free", "on"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    assert (
        "--padding-free on needs a decoder-only (causal) model" in err[-1]
        and "use --padding-free auto or off" in err[-1]
    )
    assert main([*argv[:-1], "auto", "--max-steps", "1", "--epochs", "1"]) == 0  # the same run starts with auto
