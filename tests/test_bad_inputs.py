"""Bad-input sweep: malformed inputs to the op, the layer, the trainer and the CLI.

Every case ends in a clear error naming the problem (the CLI: one line on stderr, exit 2, no traceback) or in a
documented safe behaviour, and none may damage a run folder: cases aimed at an existing run compare its files
byte for byte before and after (``train.log`` may only grow). Documented safe behaviours checked here:

* the op does not scan w/E for NaN/Inf (that would be a device sync per call): a NaN stays in the prompt row it
  belongs to, the text rows are exact; the trainer's numerical guard stops training on it (``trainer-nan-prompt``);
* a zero-length text is kept (``superpos_trainer/tasks.py``): the op returns just the prompt, the trainer trains;
* disk full while writing: the write fails cleanly, the previous complete checkpoint stays, ``--resume`` continues.
"""

from __future__ import annotations

import errno
import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from superpos_trainer import checkpoints as ckpt
from superpos_trainer import run_folder
from superpos_trainer.cli import main

from superpos_kernels import SuperPosPrompt
from superpos_kernels.ops import superpos_embed

from .bad_input_tools import Ctx, cli_fails, copy_run, train_args
from .data_fixtures import write_tiny_data_dir

V, N, M, D = 50, 3, 5, 8


def _copy_run(ctx: Ctx) -> Path:
    return copy_run(ctx.finished, ctx.tmp / "run")


def _broken_data(ctx: Ctx, rel: str, edit: Callable[[bytes], bytes]) -> Path:
    data = write_tiny_data_dir(ctx.tmp / "data", n_train=12, n_val=8)
    path = data / rel
    path.write_bytes(edit(path.read_bytes()))
    return data


def _op_args() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "input_ids": torch.randint(0, V, (2, 4), generator=g),
        "weight": torch.randn(V, D, generator=g),
        "w": torch.randn(N, M, generator=g),
        "E": torch.randn(N, M, D, generator=g),
    }


def _op_raises(exc: type[Exception], match: str, **changes: object) -> None:
    with pytest.raises(exc, match=match):
        superpos_embed(**{**_op_args(), **changes})


# ---- the op ---------------------------------------------------------------------------------------------------------


def op_float_ids(ctx: Ctx) -> None:
    _op_raises(TypeError, "input_ids must be an integer tensor", input_ids=torch.zeros(2, 4))


def op_ids_wrong_rank(ctx: Ctx) -> None:
    _op_raises(ValueError, r"shape \[batch, seq_len\]", input_ids=torch.zeros(2, 4, 1, dtype=torch.long))


def op_empty_batch(ctx: Ctx) -> None:
    _op_raises(ValueError, "empty batch", input_ids=torch.zeros(0, 4, dtype=torch.long))


def op_id_out_of_range(ctx: Ctx) -> None:
    _op_raises(ValueError, f"id {V}, out of range", input_ids=torch.tensor([[1, V]]))


def op_negative_id(ctx: Ctx) -> None:
    _op_raises(ValueError, "negative id", input_ids=torch.tensor([[1, -3]]))


def op_dtype_mismatch(ctx: Ctx) -> None:
    _op_raises(TypeError, "must share one dtype", w=torch.randn(N, M, dtype=torch.float64))


def op_shape_mismatch(ctx: Ctx) -> None:
    _op_raises(ValueError, "disagree on", E=torch.randn(N, M + 1, D))


def op_device_mismatch(ctx: Ctx) -> None:  # no GPU needed: the meta device is "another device" too
    _op_raises(ValueError, "input_ids is on meta", input_ids=torch.zeros(2, 4, dtype=torch.long, device="meta"))


def op_mask_shape(ctx: Ctx) -> None:
    _op_raises(ValueError, "attention_mask must have the shape", attention_mask=torch.ones(2, 5, dtype=torch.long))


def op_nan_inf_in_prompt(ctx: Ctx) -> None:
    args = _op_args()
    args["w"][1, 2] = float("nan")
    args["E"][2, 0, 3] = float("inf")
    out, mask = superpos_embed(**args)
    assert torch.isnan(out[:, 1]).all() and torch.isfinite(out[:, 0]).all()  # NaN stays in its prompt row
    torch.testing.assert_close(out[:, N:], args["weight"][args["input_ids"]])  # text rows exact
    assert mask.shape == (2, N + 4)


def op_zero_length_text(ctx: Ctx) -> None:
    args = _op_args()
    out, mask = superpos_embed(**{**args, "input_ids": torch.zeros(2, 0, dtype=torch.long)})
    assert out.shape == (2, N, D) and mask.tolist() == [[1] * N] * 2  # the prompt alone


# ---- the layer ------------------------------------------------------------------------------------------------------


def layer_zero_prompt_tokens(ctx: Ctx) -> None:
    with pytest.raises(ValueError, match="num_prompt_tokens must be >= 1"):
        SuperPosPrompt(torch.nn.Embedding(V, D), num_prompt_tokens=0, num_sampled_tokens=4)


def layer_more_rows_than_vocab(ctx: Ctx) -> None:
    with pytest.raises(ValueError, match="larger than the sampleable vocabulary"):
        SuperPosPrompt(torch.nn.Embedding(V, D), num_prompt_tokens=2, num_sampled_tokens=V + 1)


def layer_not_an_embedding(ctx: Ctx) -> None:
    with pytest.raises(TypeError):
        SuperPosPrompt("t5-base", num_prompt_tokens=2, num_sampled_tokens=4)


def layer_truncated_adapter(ctx: Ctx) -> None:
    emb = torch.nn.Embedding(V, D)
    SuperPosPrompt(emb, num_prompt_tokens=2, num_sampled_tokens=4).save_pretrained(ctx.tmp / "adapter")
    weights = ctx.tmp / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-20])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        SuperPosPrompt.from_pretrained(ctx.tmp / "adapter", emb)


# ---- the trainer (in process) ---------------------------------------------------------------------------------------


def _trainer(ctx: Ctx):
    from superpos_trainer.data import load_examples
    from superpos_trainer.methods import build_method
    from superpos_trainer.models import load_model
    from superpos_trainer.tasks import get_task
    from superpos_trainer.train import Trainer

    from .model_fixtures import tiny_config

    task = get_task("sst2")
    data = load_examples(task, "train", ctx.data)[:4]
    loaded = load_model(str(ctx.t5))
    config = tiny_config(ctx.t5, None)
    method = build_method("superpos", loaded, config.num_prompt_tokens, config.num_sampled_tokens)
    return Trainer.from_config(config, task, (data, data[:2]), method=method)


def trainer_nan_prompt(ctx: Ctx) -> None:
    trainer = _trainer(ctx)
    with torch.no_grad():
        trainer.method.layer.w[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="training loss became nan at optimizer step 1: training stopped"):
        trainer.train_step(trainer.make_batch([0, 1]))


def trainer_zero_length_text(ctx: Ctx) -> None:
    from superpos_trainer.collate import Encoded

    trainer = _trainer(ctx)
    trainer.train_encoded[0] = Encoded(trainer.encoder.source(""), trainer.train_encoded[0].target_ids)
    assert math.isfinite(trainer.train_step(trainer.make_batch([0, 1])))


# ---- the CLI: data files --------------------------------------------------------------------------------------------


def cli_truncated_jsonl(ctx: Ctx) -> None:
    data = _broken_data(ctx, "superglue/rte/train.jsonl", lambda b: b[: len(b) - 25])
    out = ctx.tmp / "out"
    cli_fails(ctx, train_args(ctx, out, data=data, task="rte"), "train.jsonl:12: invalid JSON", "truncated")
    assert not out.exists()


def cli_truncated_tsv(ctx: Ctx) -> None:
    data = _broken_data(ctx, "glue/sst2/train.tsv", lambda b: b[: b.rindex(b"\t")])
    cli_fails(ctx, train_args(ctx, ctx.tmp / "out", data=data), "train.tsv:13: expected 2", "truncated")


def cli_unknown_label(ctx: Ctx) -> None:
    data = _broken_data(ctx, "glue/sst2/train.tsv", lambda b: b.replace(b"\t1\n", b"\tmaybe\n", 1))
    cli_fails(ctx, train_args(ctx, ctx.tmp / "out", data=data), "unknown label 'maybe'")


def cli_header_only_split(ctx: Ctx) -> None:
    data = _broken_data(ctx, "glue/sst2/train.tsv", lambda b: b.split(b"\n")[0] + b"\n")
    cli_fails(ctx, train_args(ctx, ctx.tmp / "out", data=data), "no examples in the train split")


def cli_not_utf8(ctx: Ctx) -> None:
    data = _broken_data(ctx, "glue/sst2/dev.tsv", lambda b: b.replace(b"film", b"f\xffm", 1))
    cli_fails(ctx, train_args(ctx, ctx.tmp / "out", data=data), "dev.tsv:2: not valid UTF-8")


# ---- the CLI: options and folders -----------------------------------------------------------------------------------


def cli_max_length_below_prompt(ctx: Ctx) -> None:
    cli_fails(ctx, train_args(ctx, ctx.tmp / "out", "--max-length", "4"), "--max-length 4", "prompt")


def cli_batch_size_zero(ctx: Ctx) -> None:
    cli_fails(ctx, train_args(ctx, ctx.tmp / "out", "--batch-size", "0"), "--batch-size must be a positive")


def cli_nan_lr(ctx: Ctx) -> None:
    cli_fails(ctx, train_args(ctx, ctx.tmp / "out", "--lr", "nan"), "--lr must be a finite number > 0")


def cli_bad_device(ctx: Ctx) -> None:
    cli_fails(ctx, train_args(ctx, ctx.tmp / "out", "--device", "gpu0"), "--device 'gpu0' is not a device")


def cli_unwritable_output(ctx: Ctx) -> None:
    (ctx.tmp / "a_file").write_text("x")
    cli_fails(ctx, train_args(ctx, ctx.tmp / "a_file" / "run"), "cannot write to output folder")


def resume_different_config(ctx: Ctx) -> None:
    run = _copy_run(ctx)
    args = train_args(ctx, run, "--num-sampled-tokens", "8", "--resume")
    cli_fails(ctx, args, "different config", "num_sampled_tokens: 16 -> 8", run=run)


def resume_with_truncated_data(ctx: Ctx) -> None:
    run = _copy_run(ctx)
    data = _broken_data(ctx, "glue/sst2/train.tsv", lambda b: b[: b.rindex(b"\t")])
    cli_fails(ctx, train_args(ctx, run, "--resume", data=data), "train.tsv:13", run=run)


def resume_corrupt_checkpoint(ctx: Ctx) -> None:
    run = _copy_run(ctx)
    weights = run / "checkpoint" / "trainable.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    cli_fails(ctx, train_args(ctx, run, "--resume"), "checkpoint", "is unreadable", run=run)


def resume_garbled_metrics(ctx: Ctx) -> None:
    run = _copy_run(ctx)
    metrics = run / "metrics.jsonl"
    metrics.write_text(metrics.read_text()[:-15] + "\n")
    cli_fails(ctx, train_args(ctx, run, "--resume"), "metrics.jsonl line 1 is not JSON", run=run)


def _fail_on_call(n: int, target: Callable) -> Callable:
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise OSError(errno.ENOSPC, "No space left on device")
        return target(*args, **kwargs)

    return flaky


def disk_full_on_checkpoint(ctx: Ctx) -> None:
    run = ctx.tmp / "run"
    # checkpoint 2 of 2 (step 3); each checkpoint writes two safetensors files
    ctx.monkeypatch.setattr(ckpt, "save_file", _fail_on_call(3, ckpt.save_file))
    cli_fails(ctx, train_args(ctx, run), "No space left on device", "is kept", "--resume")
    loaded = ckpt.load_checkpoint(run / "checkpoint")
    assert loaded is not None and loaded.state["step"] == 2
    assert not [p for p in run.iterdir() if p.name.startswith(".") and p.name != ".lock"]  # no temp folder left
    ctx.monkeypatch.undo()  # space freed: the run continues
    assert main(train_args(ctx, run, "--resume")) == 0
    assert json.loads((run / "results.json").read_text())["steps"] == 3


def disk_full_on_metrics(ctx: Ctx) -> None:
    run = ctx.tmp / "run"
    # The 2nd metrics.jsonl append fails (disk full); other files are written normally.
    ctx.monkeypatch.setattr(run_folder, "append_line", _fail_on_call(2, run_folder.append_line))
    cli_fails(ctx, train_args(ctx, run, "--eval-steps", "2"), f"cannot write {run / 'metrics.jsonl'}", "No space left")
    assert [r["step"] for r in run_folder.read_metrics(run / "metrics.jsonl")] == [2]  # the old file, whole
    ckpt.load_checkpoint(run / "checkpoint")  # the step-2 checkpoint still loads
    assert not [p for p in run.iterdir() if p.name.startswith(".") and p.name != ".lock"]


CASES: dict[str, Callable[[Ctx], None]] = {
    f.__name__.replace("_", "-"): f
    for f in (
        op_float_ids, op_ids_wrong_rank, op_empty_batch, op_id_out_of_range, op_negative_id, op_dtype_mismatch,
        op_shape_mismatch, op_device_mismatch, op_mask_shape, op_nan_inf_in_prompt, op_zero_length_text,
        layer_zero_prompt_tokens, layer_more_rows_than_vocab, layer_not_an_embedding, layer_truncated_adapter,
        trainer_nan_prompt, trainer_zero_length_text,
        cli_truncated_jsonl, cli_truncated_tsv, cli_unknown_label, cli_header_only_split, cli_not_utf8,
        cli_max_length_below_prompt, cli_batch_size_zero, cli_nan_lr, cli_bad_device, cli_unwritable_output,
        resume_different_config, resume_with_truncated_data, resume_corrupt_checkpoint, resume_garbled_metrics,
        disk_full_on_checkpoint, disk_full_on_metrics,
    )
}  # fmt: skip


@pytest.fixture(scope="module")
def finished(tiny_t5, tiny_data, tmp_path_factory) -> Path:
    ctx = Ctx(Path(), tiny_t5, tiny_data, Path(), None, None)  # type: ignore[arg-type]
    run = tmp_path_factory.mktemp("bad-inputs") / "finished"
    assert main(train_args(ctx, run)) == 0
    return run


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, tiny_t5, tiny_data, finished, tmp_path, capsys, monkeypatch):
    CASES[case](Ctx(tmp_path, tiny_t5, tiny_data, finished, capsys, monkeypatch))
