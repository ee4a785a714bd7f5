"""Defaults that follow the model: Residual as its official code, --lr auto, the w initialisations, the options."""

from __future__ import annotations

import json

import pytest
import torch
from superpos_trainer import auto_defaults as auto
from superpos_trainer.cli import build_parser, main
from superpos_trainer.config import METHOD_DEFAULTS, TrainConfig, build_config
from superpos_trainer.config import W_INITS as CONFIG_W_INITS
from superpos_trainer.errors import ConfigError
from superpos_trainer.methods import PromptMethod, ResidualMethod, build_method, embedding_rms, load_method
from superpos_trainer.models import load_model

from superpos_kernels import SuperPosConfig, SuperPosPrompt, get_superpos_model
from superpos_kernels.errors import SuperPosInputError
from superpos_kernels.init import W_INITS

from .model_fixtures import tiny_config, tiny_llama  # noqa: F401


def _table(scale: float = 1.0, rows: int = 400, dim: int = 32, shift: float = 0.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return (torch.randn(rows, dim, generator=generator) + shift) * scale


def _built(method: str, table: torch.Tensor, w_init: str = "normal"):
    return build_method(method, auto.table_model(table), 4, 16, 24, 0, w_init)


# ---- Residual as the official code runs it -------------------------------------------------------------------


def test_residual_defaults_follow_the_official_code():
    assert METHOD_DEFAULTS["residual"] == (0.3, 1e-5)  # train.py:143 and :24
    config = TrainConfig(method="residual").resolved()
    assert (config.residual_hidden, config.weight_decay, config.lr) == (800, 1e-5, 0.3)  # train.py:248
    method = build_method("residual", auto.table_model(_table(0.1)), 3, seed=0)
    assert method.mlp[0].out_features == 800
    assert [type(layer) for layer in method.mlp] == [torch.nn.Linear, torch.nn.ReLU, torch.nn.Linear]  # no dropout
    assert method.norm.elementwise_affine  # nn.LayerNorm as in prompt_tuner2.py:56, gain and bias trainable
    groups = method.param_groups(1e-5)
    assert len(groups) == 1 and groups[0]["weight_decay"] == 1e-5  # every parameter decays alike
    names = {name for name, _ in method.named_parameters()}
    assert names == {"prompt", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias", "norm.weight", "norm.bias"}


@pytest.mark.parametrize("scale", [0.05, 1.0, 20.0])
def test_residual_layernorm_branch_starts_at_the_token_scale(scale):
    table = _table(scale)
    method = build_method("residual", auto.table_model(table), 5, seed=0)
    rms = float(table.pow(2).mean().sqrt())
    assert embedding_rms(method.loaded) == pytest.approx(rms, rel=1e-6)
    torch.testing.assert_close(method.norm.weight.detach(), torch.full((32,), rms))
    with torch.no_grad():
        branch = method.norm(method.mlp(method.prompt))
    # LayerNorm output: zero mean, unit variance per token, times the gain: the same RMS as a token's elements.
    assert float(branch.pow(2).mean().sqrt()) == pytest.approx(rms, rel=1e-2)  # (LayerNorm eps)


def test_residual_reload_keeps_the_trained_gain(tmp_path):
    loaded = auto.table_model(_table(0.1))
    method = build_method("residual", loaded, 3, seed=0, residual_hidden=16)
    with torch.no_grad():
        method.norm.weight.mul_(3.0)
    method.save_adapter(tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["residual_norm_scale"] == pytest.approx(
        embedding_rms(loaded)
    )
    reloaded = load_method(tmp_path, loaded)
    assert isinstance(reloaded, ResidualMethod)
    with torch.no_grad():
        torch.testing.assert_close(reloaded.prompt_vectors(), method.prompt_vectors(), rtol=0, atol=0)


# ---- the learning-rate rule ------------------------------------------------------------------------------------


def test_prompt_step_is_lr_over_element_scale():
    # Adam's first step moves every element by lr (sign of the gradient): relative move lr / (element RMS).
    for scale in (0.1, 1.0, 5.0):
        table = _table(scale)
        method = _built("prompt", table)
        rms = float(method.prompt.detach().pow(2).mean().sqrt())
        assert auto.unit_movement(method) == pytest.approx(1.0 / rms, rel=1e-3)


@pytest.mark.parametrize("method", ["prompt", "superpos", "residual"])
def test_unit_movement_is_linear_in_lr_and_leaves_the_method_unchanged(method):
    built = _built(method, _table(0.2))
    before = {k: v.clone() for k, v in built.trainable_state().items()}
    small, double = auto.prompt_movement(built, 1e-5, 1)[0], auto.prompt_movement(built, 2e-5, 1)[0]
    assert double == pytest.approx(2 * small, rel=1e-2)
    for key, value in built.trainable_state().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    assert all(p.grad is None for p in built.parameters())


@pytest.mark.parametrize("method", ["prompt", "superpos", "residual"])
def test_auto_lr_grows_with_the_embedding_scale(method):
    config = TrainConfig(method=method, num_prompt_tokens=4, num_sampled_tokens=16, residual_hidden=24).resolved()
    lrs = [auto.auto_lr(_built(method, _table(scale)), config) for scale in (0.03, 0.3, 3.0)]
    assert lrs[0] < lrs[1] < lrs[2]


def test_auto_lr_formula_and_prompt_proportionality():
    config = TrainConfig(method="prompt", num_prompt_tokens=4).resolved()
    method = _built("prompt", _table(0.5))
    target = auto.reference_move("prompt", 4, config.num_sampled_tokens, config.residual_hidden, "normal")
    # Simple prompt tuning on the reference: one step of lr 1e-2 moves every element by 1e-2, std 1 -> 1 %.
    assert target == pytest.approx(1e-2 / auto.T5_REFERENCE_STD, rel=0.01)
    lr = auto.auto_lr(method, config)
    assert auto.prompt_movement(method, lr, 1)[0] == pytest.approx(target, rel=1e-6)  # the rule's definition
    rms = float(method.prompt.detach().pow(2).mean().sqrt())
    assert lr == pytest.approx(1e-2 * rms, rel=0.01)  # = lr_paper * rms_model / rms_T5
    scaled = auto.auto_lr(_built("prompt", _table(5.0)), config)
    assert scaled / lr == pytest.approx(10.0, rel=1e-4)
    full = TrainConfig(method="full").resolved()
    assert auto.auto_lr(None, full) == METHOD_DEFAULTS["full"][0]


@pytest.mark.parametrize("method", ["superpos", "residual"])
def test_auto_lr_on_the_reference_table_is_the_paper_lr(method):
    config = TrainConfig(method=method, num_prompt_tokens=4, num_sampled_tokens=16, residual_hidden=24).resolved()
    built = build_method(method, auto.table_model(auto.reference_table()), 4, 16, 24, seed=0)
    assert auto.auto_lr(built, config) == pytest.approx(METHOD_DEFAULTS[method][0], rel=1e-6)


def test_embedding_stats_of_isotropic_and_shifted_tables():
    iso = auto.embedding_stats(_table(2.0, rows=2000, dim=64))
    assert iso.element_std == pytest.approx(2.0, rel=0.05)
    assert iso.row_norm == pytest.approx(2.0 * 64**0.5, rel=0.05)
    assert abs(iso.anisotropy) < 0.01
    shifted = auto.embedding_stats(_table(1.0, rows=2000, dim=64, shift=1.0))  # every row shares (1, ..., 1)
    assert shifted.anisotropy == pytest.approx(0.5, abs=0.03) and shifted.positive_share > 0.99


def test_lr_auto_in_a_run_records_the_number(tiny_llama, tmp_path):  # noqa: F811
    from superpos_trainer.data import load_examples
    from superpos_trainer.tasks import get_task
    from superpos_trainer.train import Trainer

    from .model_fixtures import tiny_data_dir

    config = tiny_config(tiny_llama, None, method="prompt", lr="auto")
    assert config.lr == "auto"
    loaded = load_model(config.model)
    method = build_method("prompt", loaded, config.num_prompt_tokens, seed=0)
    expected = auto.auto_lr(method, config)
    data = load_examples(get_task("sst2"), "train", tiny_data_dir())
    trainer = Trainer.from_config(config, get_task("sst2"), (data, data[:4]), method=method)
    assert trainer.config.lr == pytest.approx(expected)
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [trainer.config.lr]
    assert isinstance(trainer.config.max_length, int)


# ---- options ---------------------------------------------------------------------------------------------------


def test_auto_options_parse_from_cli_and_file_and_bad_values_fail():
    parser = build_parser()
    args = parser.parse_args(["train", "--lr", "auto", "--max-length", "auto", "--w-init", "cone"])
    assert (args.lr, args.max_length, args.w_init) == ("auto", "auto", "cone")
    assert parser.parse_args(["train", "--lr", "0.3", "--max-length", "96"]).lr == 0.3
    for bad in (["--lr", "fast"], ["--w-init", "uniform"]):  # the CLI's usage error: one line, exit 2
        assert main(["train", *bad]) == 2
    config = build_config({"lr": "auto", "max_length": "auto"})
    assert (config.lr, config.max_length) == ("auto", "auto")
    assert build_config({"max_length": 96}).max_length == 96
    with pytest.raises(ConfigError, match="--max-length must be a positive integer"):
        build_config({"max_length": 0})
    assert TrainConfig().resolved().max_length == "auto"  # the default
    assert TrainConfig().resolved().lr == 1e-2  # --lr auto is opt-in until the sweeps say otherwise


# ---- w initialisations -----------------------------------------------------------------------------------------


def test_w_init_choices_match_the_library():
    assert CONFIG_W_INITS == W_INITS


def test_normal_init_is_unchanged():
    table = _table(0.3)
    layer = SuperPosPrompt(torch.nn.Embedding.from_pretrained(table), 4, 16, seed=3)
    generator = torch.Generator().manual_seed(3)
    torch.testing.assert_close(layer.w.detach(), torch.randn(4, 16, generator=generator) / 4.0, rtol=0, atol=0)


def test_cone_init_puts_every_prompt_vector_on_the_tokens_side_at_normal_norms():
    table = _table(0.2, rows=600, shift=0.5)  # anisotropic: every row leans towards (1, ..., 1)
    embedding = torch.nn.Embedding.from_pretrained(table)
    cone = SuperPosPrompt(embedding, 12, 32, seed=0, w_init="cone")
    normal = SuperPosPrompt(embedding, 12, 32, seed=0)
    signs = torch.sign((cone.w / normal.w).detach())
    assert bool((signs.abs() == 1).all()) and bool((signs == signs[:, :1]).all())  # one sign flip per prompt token
    prompt, before = cone.materialize(), normal.materialize()
    assert bool((prompt @ table.mean(0) > 0).all())
    assert not bool((before @ table.mean(0) > 0).all())  # today's init: some prompt vectors point away
    torch.testing.assert_close(prompt.norm(dim=1), before.norm(dim=1))


def test_prompt_init_starts_exactly_at_simple_prompt_tuning(tiny_llama):  # noqa: F811
    loaded = load_model(str(tiny_llama))
    superpos = build_method("superpos", loaded, 5, 16, seed=7, w_init="prompt")
    simple = PromptMethod.initial_prompt(loaded, 5, seed=7)
    torch.testing.assert_close(superpos.layer.materialize(), simple, rtol=0, atol=0)
    w = superpos.layer.w.detach()
    assert torch.equal(w.sum(1), torch.ones(5)) and int((w != 0).sum()) == 5


def test_superpos_config_takes_and_checks_w_init(tiny_llama):  # noqa: F811
    assert SuperPosConfig().w_init == TrainConfig().w_init  # the library and the CLI start from the same default
    model = load_model(str(tiny_llama)).model
    wrapped = get_superpos_model(model, SuperPosConfig(num_prompt_tokens=3, num_sampled_tokens=8, w_init="prompt"))
    assert wrapped.prompt.w_init == "prompt" and int((wrapped.prompt.w != 0).sum()) == 3
    with pytest.raises(ValueError, match=r"SuperPosConfig\.w_init must be one of normal, cone, prompt, got 'uniform'"):
        SuperPosConfig(w_init="uniform")


@pytest.mark.parametrize("record", ["cone", None, "uniform"])
def test_library_reload_keeps_the_w_init_record(record, tmp_path):
    embedding = torch.nn.Embedding.from_pretrained(_table(0.3))
    layer = SuperPosPrompt(embedding, 3, 8, seed=1, w_init="cone")
    layer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["w_init"] == "cone"
    if record is None:
        del config["w_init"]  # saved before the record existed: those adapters started from the plain draw
    else:
        config["w_init"] = record
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    if record == "uniform":
        with pytest.raises(SuperPosInputError, match="w_init 'uniform' is not one of normal, cone, prompt"):
            SuperPosPrompt.from_pretrained(tmp_path, embedding)
        return
    reloaded = SuperPosPrompt.from_pretrained(tmp_path, embedding)
    assert reloaded.w_init == (record or "normal") and torch.equal(reloaded.w, layer.w)


def test_unknown_w_init_is_refused():
    with pytest.raises(ValueError, match="w_init='uniform' is not one of normal, cone, prompt"):
        SuperPosPrompt(torch.nn.Embedding.from_pretrained(_table()), 2, 8, w_init="uniform")


@pytest.mark.parametrize("w_init", W_INITS)
def test_w_init_is_saved_and_reload_is_exact(w_init, tmp_path):
    loaded = auto.table_model(_table(0.3))
    method = build_method("superpos", loaded, 4, 16, seed=2, w_init=w_init)
    method.save_adapter(tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["w_init"] == w_init
    reloaded = load_method(tmp_path, loaded)
    assert reloaded.layer.w_init == w_init
    torch.testing.assert_close(reloaded.layer.w, method.layer.w, rtol=0, atol=0)
    torch.testing.assert_close(reloaded.layer.materialize(), method.layer.materialize(), rtol=0, atol=0)
