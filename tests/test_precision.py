"""``--bf16 auto``: on for CUDA and CPUs with native bf16 (AVX512-BF16 / AMX), off elsewhere; fp32 where it counts."""

from __future__ import annotations

import math

import pytest
import torch
from superpos_trainer import precision
from superpos_trainer.precision import cpu_flags, cpu_has_native_bf16, use_bf16

from .model_fixtures import tiny_config, tiny_data, tiny_llama, tiny_t5  # noqa: F401

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
SAPPHIRE = frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
ZEN4 = frozenset({"avx512f", "avx512_bf16"})
SKYLAKE = frozenset({"avx2", "avx512f"})


def _never() -> bool:
    raise AssertionError("the torch probe must not be consulted when /proc/cpuinfo answered")


@pytest.mark.parametrize(
    ("flags", "capability", "expected"),
    [
        (SAPPHIRE, "AVX512", True),
        (ZEN4, "AVX512", True),
        (SKYLAKE, "AVX512", False),  # AVX-512 without bf16 dot products: bf16 is emulated, slower than fp32
        (frozenset({"avx2"}), "AVX2", False),
        (ZEN4, "AVX2", False),  # ATEN_CPU_CAPABILITY=avx2 lowered torch's kernels: no native bf16 path
        (ZEN4, "DEFAULT", False),
        (frozenset({"amx_bf16"}), "AMX", True),
    ],
)
def test_native_bf16_detection_from_flags(flags, capability, expected):
    assert cpu_has_native_bf16(flags=flags, capability=capability, probe=_never) is expected


def test_without_cpuinfo_the_torch_probe_decides(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: None)
    assert cpu_has_native_bf16(capability="AVX512", probe=lambda: True) is True
    assert cpu_has_native_bf16(capability="AVX512", probe=lambda: False) is False


def test_cpuinfo_flags_are_parsed(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\nbugs\t\t: none\n", encoding="utf-8")
    assert cpu_flags(info) == frozenset({"fpu", "avx2", "avx512_bf16"})
    assert cpu_flags(tmp_path / "missing") is None


def test_the_setting_decides_with_the_device():
    yes, no = (lambda: True), (lambda: False)
    assert use_bf16("auto", CUDA, no) and use_bf16("auto", CPU, yes)
    assert not use_bf16("auto", CPU, no) and not use_bf16("auto", torch.device("mps"), yes)
    assert use_bf16("on", CPU, no) and not use_bf16("off", CUDA, yes)
    assert not use_bf16("on", torch.device("mps"), yes)  # no autocast there: results.json must not claim bf16


def test_this_machine_agrees_with_its_cpuinfo():
    flags = cpu_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo on this platform")
    native = bool(flags & precision.NATIVE_BF16_FLAGS) and "AVX512" in torch.backends.cpu.get_cpu_capability()
    assert use_bf16("auto", CPU) is native


@pytest.mark.parametrize("model_name", ["tiny_llama", "tiny_t5"])
@pytest.mark.parametrize("method", ["superpos", "prompt", "residual"])
def test_bf16_training_keeps_fp32_parameters_gradients_and_loss(request, tmp_path, model_name, method):
    from superpos_trainer.data import load_examples
    from superpos_trainer.methods import build_method
    from superpos_trainer.models import load_model
    from superpos_trainer.tasks import get_task
    from superpos_trainer.train import Trainer

    path = request.getfixturevalue(model_name)
    config = tiny_config(path, None, method=method, bf16="on", max_steps=3, eval_mode="rank")
    loaded = load_model(str(path))
    task = get_task("sst2")
    train = load_examples(task, "train", config.data_dir)
    built = build_method(method, loaded, 4, 16) if method == "superpos" else build_method(method, loaded, 4)
    trainer = Trainer.from_config(config, task, (train, train[:4]), method=built)
    assert trainer.bf16
    params = trainer.method.trainable_parameters()
    before = [p.detach().clone() for p in params]
    batch = trainer.make_batch(list(range(4)))
    seen: dict[str, torch.dtype] = {}

    def record(module, args, out) -> None:  # returns None: the hook only looks
        seen["loss"] = out.dtype

    loss_hook = trainer.train_module.register_forward_hook(record)
    trainer.set_train_mode()
    loss = trainer.accumulate(batch)
    loss_hook.remove()
    assert seen["loss"] == torch.float32 and math.isfinite(loss)
    assert all(p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32 for p in params)
    assert any(p.grad.abs().sum() > 0 for p in params)
    trainer.optimizer_step()
    for state in trainer.optimizer.state.values():
        assert all(v.dtype == torch.float32 for k, v in state.items() if k != "step")
    assert any(not torch.equal(a, p) for a, p in zip(before, params, strict=True))
    assert trainer.finish()["precision"] == "bf16-autocast"
    assert trainer.evaluate()["accuracy"] >= 0.0  # evaluation runs under the same autocast


def test_bf16_training_follows_the_fp32_curve(tiny_llama):  # noqa: F811
    """Same data, seed and steps: the bf16 loss curve tracks fp32's (bf16 rounding only) and goes down like it."""
    from superpos_trainer.data import load_examples
    from superpos_trainer.methods import build_method
    from superpos_trainer.models import load_model
    from superpos_trainer.tasks import get_task
    from superpos_trainer.train import Trainer

    losses = {}
    for bf16 in ("on", "off"):
        config = tiny_config(tiny_llama, None, method="superpos", bf16=bf16, lr=0.3)
        loaded = load_model(str(tiny_llama))
        task = get_task("sst2")
        train = load_examples(task, "train", config.data_dir)
        method = build_method("superpos", loaded, 4, 16, seed=0)
        trainer = Trainer.from_config(config, task, (train, train[:4]), method=method)
        assert trainer.bf16 is (bf16 == "on")
        batch = trainer.make_batch(list(range(8)))
        losses[bf16] = torch.tensor([trainer.train_step(batch) for _ in range(8)])
    assert not torch.equal(losses["on"], losses["off"])  # autocast really ran: bf16 rounding shows
    torch.testing.assert_close(losses["on"], losses["off"], rtol=2e-3, atol=0.0)
    assert losses["on"][-1] < losses["on"][0] and losses["off"][-1] < losses["off"][0]
