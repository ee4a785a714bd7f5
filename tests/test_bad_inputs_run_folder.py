"""Bad-input corpus, part 2: run folders that were tampered with, copied together, half written or still in use.

Every case in ``CASES`` runs the CLI against a copy of a finished run (or a fresh folder) and must end in exit 2,
one line on stderr naming the file or option, and (for an existing run) the folder byte-identical afterwards.
The tests below the corpus check what must *work*: a format-1 run folder (pickled optimizer state, as dc9bb35
wrote it) resumes exactly, a folder left by an unfinished or failed start can be restarted, files follow the umask.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from superpos_trainer import checkpoints as ckpt
from superpos_trainer import guard, run_folder, state_codec, train
from superpos_trainer.cli import main
from superpos_trainer.errors import RunFolderError
from superpos_trainer.resume_checks import check_checkpoint

from .bad_input_tools import FUZZ_EXAMPLES, Ctx, cli_fails, copy_run, finished_run, snapshot, train_args
from .data_fixtures import write_tiny_data_dir
from .model_fixtures import tiny_data, tiny_t5  # noqa: F401


class Payload:
    """Unpickling this runs a shell command: what a crafted checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _run(ctx: Ctx) -> Path:
    return copy_run(ctx.finished, ctx.tmp / "run")


def _resume_fails(ctx: Ctx, run: Path, *needles: str, data: Path | None = None) -> str:
    return cli_fails(ctx, train_args(ctx, run, "--resume", data=data), *needles, run=run)


def _edit_json(path: Path, edit: Callable[[object], object]) -> None:
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


def _to_format1(run: Path, payload: object | None = None) -> Path:
    """The checkpoint as format 1 had it: optimizer + RNG state pickled in optimizer_rng.pt (or ``payload``)."""
    folder = run / "checkpoint"
    found = ckpt.load_checkpoint(folder)
    torch.save({"optimizer": found.optimizer, "rng": found.rng} if payload is None else payload, folder / "x.pt")
    os.replace(folder / "x.pt", folder / "optimizer_rng.pt")
    (folder / "checkpoint.json").unlink()
    (folder / "optimizer_rng.safetensors").unlink()
    return folder / "optimizer_rng.pt"


# ---- point 1: nothing in a run folder is unpickled ----------------------------------------------------------------


def pickle_in_torch_zip(ctx: Ctx) -> None:
    run = _run(ctx)
    marker = ctx.tmp / "pwned"
    _to_format1(run, {"optimizer": Payload(marker), "rng": {}})
    _resume_fails(ctx, run, "optimizer_rng.pt", "nothing in it was run")
    assert not marker.exists()


def pickle_raw(ctx: Ctx) -> None:
    run = _run(ctx)
    marker = ctx.tmp / "pwned"
    path = _to_format1(run)
    path.write_bytes(pickle.dumps(Payload(marker), protocol=2))
    _resume_fails(ctx, run, "optimizer_rng.pt", "nothing in it was run")
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the payload is live: plain unpickling does run it
    assert marker.exists()


# ---- point 3: a checkpoint that is not this run's -----------------------------------------------------------------


def checkpoint_from_an_lr_05_run(ctx: Ctx) -> None:
    other = finished_run(ctx, ctx.tmp / "other", "--lr", "0.5")
    run = _run(ctx)
    shutil.rmtree(run / "checkpoint")
    shutil.copytree(other / "checkpoint", run / "checkpoint")
    _resume_fails(ctx, run, "checkpoint", "belongs to another run", "options.lr: 0.5 -> 0.01")


def checkpoint_of_another_model(ctx: Ctx) -> None:
    run = _run(ctx)

    def llama(meta):
        meta["fingerprint"]["model"] = {"class": "LlamaForCausalLM", "model_type": "llama", "embedding": [209, 32]}
        return meta

    _edit_json(run / "checkpoint" / "checkpoint.json", llama)
    _resume_fails(ctx, run, "belongs to another run", "model.class: 'LlamaForCausalLM' -> 'T5ForConditionalGeneration'")


def resume_with_other_data(ctx: Ctx) -> None:
    run = _run(ctx)
    data = write_tiny_data_dir(ctx.tmp / "data", n_train=12, n_val=8)
    dev = data / "glue" / "sst2" / "dev.tsv"
    dev.write_text(dev.read_text().replace("film", "movie"))
    _resume_fails(ctx, run, "belongs to another run", "data.validation", data=data)
    # the same rows from another folder are fine: only the data_dir differs
    before = snapshot(run)
    same = write_tiny_data_dir(ctx.tmp / "same", n_train=12, n_val=8)
    assert main(train_args(ctx, run, "--resume", data=same)) == 0
    after = snapshot(run)
    assert {k: after[k] for k in before if k != "learning_curve.png"} == {  # finished: nothing redone (replotted)
        k: v for k, v in before.items() if k != "learning_curve.png"
    }


def _tensor_case(file: str, name: str, shape: tuple[int, ...], *needles: str) -> Callable[[Ctx], None]:
    def case(ctx: Ctx) -> None:
        run = _run(ctx)
        path = run / "checkpoint" / file
        save_file({**load_file(str(path)), name: torch.zeros(shape)}, str(path))
        _resume_fails(ctx, run, *needles)

    return case


checkpoint_with_another_n = _tensor_case(
    "trainable.safetensors", "layer.w", (5, 16), "trainable.safetensors", "'layer.w'", "[5, 16]", "[4, 16]"
)
optimizer_state_of_another_shape = _tensor_case(
    "optimizer_rng.safetensors", "optimizer.0.exp_avg", (3, 16), "checkpoint.json", "0.exp_avg", "[3, 16]"
)


def checkpoint_of_another_method(ctx: Ctx) -> None:
    run = _run(ctx)
    path = run / "checkpoint" / "trainable.safetensors"
    save_file({"prompt": torch.zeros(4, 32)}, str(path))
    _resume_fails(ctx, run, "trainable.safetensors", "another method")


def optimizer_lr_edited(ctx: Ctx) -> None:  # caught even without a fingerprint (format 1)
    run = _run(ctx)
    state_path = _to_format1(run)
    extras = torch.load(state_path, weights_only=False)  # our own file, just written
    extras["optimizer"]["param_groups"][0]["lr"] = 0.5
    torch.save(extras, state_path)
    _resume_fails(ctx, run, "optimizer_rng.pt", "lr 0.5", "0.01")


def format_version_from_the_future(ctx: Ctx) -> None:
    run = _run(ctx)
    _edit_json(run / "checkpoint" / "checkpoint.json", lambda m: {**m, "format_version": 99})
    _resume_fails(ctx, run, "format version 99")


def fingerprint_section_malformed(ctx: Ctx) -> None:
    run = _run(ctx)
    _edit_json(run / "checkpoint" / "checkpoint.json", lambda m: {**m, "fingerprint": {**m["fingerprint"], "model": 7}})
    _resume_fails(ctx, run, "belongs to another run", "model.class: None -> 'T5ForConditionalGeneration'")


def checkpoint_json_without_fingerprint(ctx: Ctx) -> None:
    run = _run(ctx)
    _edit_json(run / "checkpoint" / "checkpoint.json", lambda m: {k: v for k, v in m.items() if k != "fingerprint"})
    _resume_fails(ctx, run, "checkpoint.json", "'fingerprint'")


def checkpoint_json_wrong_types(ctx: Ctx) -> None:
    run = _run(ctx)

    def bad(meta):
        meta["optimizer"]["param_groups"] = "all of them"
        return meta

    _edit_json(run / "checkpoint" / "checkpoint.json", bad)
    _resume_fails(ctx, run, "checkpoint.json", "param_groups must be list")


def _dropped_tensor_case(name: str, *needles: str) -> Callable[[Ctx], None]:
    def case(ctx: Ctx) -> None:
        run = _run(ctx)
        path = run / "checkpoint" / "optimizer_rng.safetensors"
        save_file({k: v for k, v in load_file(str(path)).items() if k != name}, str(path))
        _resume_fails(ctx, run, *needles)

    return case


rng_tensor_missing = _dropped_tensor_case("rng.torch", "optimizer_rng.safetensors", "'rng.torch' is missing")
optimizer_state_incomplete = _dropped_tensor_case(
    "optimizer.1.exp_avg_sq", "checkpoint.json", "optimizer state 1 lacks exp_avg_sq"
)


def optimizer_group_without_lr(ctx: Ctx) -> None:
    run = _run(ctx)

    def drop_lr(meta):
        del meta["optimizer"]["param_groups"][0]["lr"]
        return meta

    _edit_json(run / "checkpoint" / "checkpoint.json", drop_lr)
    _resume_fails(ctx, run, "checkpoint.json", "optimizer group 0 has lr None")


def _numpy_rng_case(change: dict, *needles: str) -> Callable[[Ctx], None]:
    def case(ctx: Ctx) -> None:
        run = _run(ctx)

        def edit(meta):
            meta["rng"]["numpy"].update(change)
            return meta

        _edit_json(run / "checkpoint" / "checkpoint.json", edit)
        _resume_fails(ctx, run, "checkpoint", *needles)

    return case


rng_state_impossible = _numpy_rng_case({"kind": "PCG64"}, "RNG state cannot be restored")
rng_position_out_of_range = _numpy_rng_case({"pos": 10**6}, "checkpoint.json", "rng.numpy.pos must be in [0, 624]")


# ---- point 3: state files validated by schema ---------------------------------------------------------------------


def _state_case(edit: Callable[[dict], object], *needles: str) -> Callable[[Ctx], None]:
    def case(ctx: Ctx) -> None:
        run = _run(ctx)
        _edit_json(run / "checkpoint" / "trainer_state.json", edit)
        _resume_fails(ctx, run, "trainer_state.json", *needles)

    return case


state_missing_step_in_epoch = _state_case(
    lambda s: {k: v for k, v in s.items() if k != "step_in_epoch"}, "lacks the field 'step_in_epoch'"
)
state_step_is_text = _state_case(lambda s: {**s, "step": "2"}, "'step' must be int")
state_done_is_number = _state_case(lambda s: {**s, "done": 1}, "'done' must be bool")
state_negative_epoch = _state_case(lambda s: {**s, "epoch": -1}, "'epoch' must be >= 0")
state_unknown_field = _state_case(lambda s: {**s, "momentum": 3}, "unknown field", "momentum")
state_is_a_list = _state_case(lambda s: [s], "expected a JSON object")
state_step_is_float = _state_case(lambda s: {**s, "step": 2.5}, "'step' must be int")
state_step_in_epoch_past_the_epoch = _state_case(lambda s: {**s, "step_in_epoch": 5}, "no position of this run")
state_step_does_not_add_up = _state_case(lambda s: {**s, "step": 2}, "step 2, epoch 1, step_in_epoch 0 is no position")


def state_nan_loss(ctx: Ctx) -> None:
    run = _run(ctx)
    path = run / "checkpoint" / "trainer_state.json"
    path.write_text(path.read_text().replace('"loss_sum": 0.0', '"loss_sum": NaN'))
    _resume_fails(ctx, run, "trainer_state.json", "'loss_sum' must be finite")


def state_invalid_json(ctx: Ctx) -> None:
    run = _run(ctx)
    (run / "checkpoint" / "trainer_state.json").write_text('{"step": 2,')
    _resume_fails(ctx, run, "trainer_state.json", "not valid JSON")


def state_huge_number(ctx: Ctx) -> None:
    run = _run(ctx)
    path = run / "checkpoint" / "trainer_state.json"
    path.write_text(path.read_text().replace('"step": 3', '"step": ' + "9" * 5001))
    _resume_fails(ctx, run, "trainer_state.json", "not valid JSON")


# ---- metrics.jsonl and config.json of the run ---------------------------------------------------------------------


def _metrics_case(line: str | bytes, *needles: str) -> Callable[[Ctx], None]:
    def case(ctx: Ctx) -> None:
        run = _run(ctx)
        with open(run / "metrics.jsonl", "ab") as handle:
            handle.write((line.encode() if isinstance(line, str) else line) + b"\n")
        _resume_fails(ctx, run, "metrics.jsonl line 2", *needles)

    return case


metrics_row_is_a_list = _metrics_case("[1, 2]", "not a metrics row")
metrics_step_is_text = _metrics_case('{"step": "3"}', "not a metrics row")
metrics_nested_too_deeply = _metrics_case("[" * 100_000 + "]" * 100_000, "is not JSON")
metrics_loss_is_a_list = _metrics_case('{"step": 3, "train_loss": [1]}', "'train_loss' holds [1], not a number")
metrics_epoch_is_text = _metrics_case('{"step": 3, "epoch": "one"}', "'epoch' holds 'one', not a number")
metrics_bad_utf8 = _metrics_case(b'{"step": 3, "x": "\xff"}', "is not JSON")


def _config_json_case(text: bytes, *needles: str) -> Callable[[Ctx], None]:
    def case(ctx: Ctx) -> None:
        run = _run(ctx)
        (run / "config.json").write_bytes(text)
        _resume_fails(ctx, run, "config.json", *needles)

    return case


config_json_invalid = _config_json_case(b'{"task": ', "not valid JSON")
config_json_a_list = _config_json_case(b"[]", "must hold a JSON object")
config_json_bad_utf8 = _config_json_case(b'{"task": "\xff"}', "not valid UTF-8")
config_json_huge_number = _config_json_case(b'{"epochs": ' + b"1" * 5001 + b"}", "not valid JSON")


def _compare_case(name: str, text: bytes, *needles: str) -> Callable[[Ctx], None]:
    def case(ctx: Ctx) -> None:
        run = _run(ctx)
        (run / name).write_bytes(text)
        cli_fails(ctx, ["compare", str(run), "--output", str(ctx.tmp / "c.png")], name, *needles, run=run)

    return case


compare_config_json_a_list = _compare_case("config.json", b"[1]", "must hold a JSON object")
compare_results_json_invalid = _compare_case("results.json", b'{"steps": 3,', "not valid JSON")


# ---- point 5: a real full disk -------------------------------------------------------------------------------------


def _disk_full(exc: Exception, target: str) -> Callable[[Ctx], None]:
    def case(ctx: Ctx) -> None:
        run = ctx.tmp / "run"
        calls = {"n": 0}
        real = ckpt.save_file

        def full(tensors, path, *a, **k):
            calls["n"] += 1
            if calls["n"] == 3:  # checkpoint 2 (step 3): its first file; checkpoint 1 is complete
                raise exc
            return real(tensors, path, *a, **k)

        if target == "checkpoint":
            ctx.monkeypatch.setattr(ckpt, "save_file", full)
        else:  # the adapter files, written by the library (superpos_kernels.io)
            import superpos_kernels.io as kio

            ctx.monkeypatch.setattr(kio, "save_file", lambda *a, **k: (_ for _ in ()).throw(exc))
        cli_fails(ctx, train_args(ctx, run), f"cannot write {run / target}", "is kept", "--resume")
        assert not [p for p in run.iterdir() if run_folder.is_temporary(p.name)]
        ctx.monkeypatch.undo()
        if target == "checkpoint":  # space freed: the run continues from its step-2 checkpoint
            assert ckpt.load_checkpoint(run / "checkpoint").state["step"] == 2
            assert main(train_args(ctx, run, "--resume")) == 0

    return case


STORAGE_FULL = (
    'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
)
TORCH_FULL = (
    "[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing file data/0: file write failed"
)
disk_full_safetensors_checkpoint = _disk_full(SafetensorError(STORAGE_FULL), "checkpoint")
disk_full_torch_checkpoint = _disk_full(RuntimeError(TORCH_FULL), "checkpoint")
disk_full_safetensors_adapter = _disk_full(SafetensorError(STORAGE_FULL), "best")


# ---- point 7: --device meta ----------------------------------------------------------------------------------------


def device_meta_train(ctx: Ctx) -> None:
    out = ctx.tmp / "out"
    cli_fails(ctx, train_args(ctx, out, "--device", "meta"), "--device meta cannot run a model")
    assert not out.exists()


def device_meta_predict(ctx: Ctx) -> None:
    args = ["predict", str(ctx.finished / "best"), "--text", "a film", "--device", "meta"]
    cli_fails(ctx, args, "--device meta cannot run a model", run=ctx.finished)


# ---- point 7/10: trainer_config.json of an adapter -----------------------------------------------------------------


def _adapter_case(text: bytes, *needles: str) -> Callable[[Ctx], None]:
    def case(ctx: Ctx) -> None:
        adapter = ctx.tmp / "adapter"
        shutil.copytree(ctx.finished / "best", adapter)
        (adapter / "trainer_config.json").write_bytes(text)
        cli_fails(ctx, ["predict", str(adapter), "--text", "a film"], "trainer_config.json", *needles, run=adapter)
        cli_fails(ctx, ["evaluate", str(adapter)], "trainer_config.json", *needles, run=adapter)

    return case


trainer_config_text_int = _adapter_case(b'{"max_length": "64"}', "'max_length' expects int")
trainer_config_list = _adapter_case(b"[4]", "must hold a JSON object")
trainer_config_invalid = _adapter_case(b'{"task": "sst2"', "not valid JSON")
trainer_config_bad_utf8 = _adapter_case(b'{"task": "sst\xfe"}', "not valid UTF-8")
trainer_config_nan_lr = _adapter_case(b'{"task": "sst2", "lr": NaN}', "--lr must be a finite number")
trainer_config_deep = _adapter_case(b'{"task": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "nested too deeply")


# ---- point 9: the lock ---------------------------------------------------------------------------------------------


def resume_while_running(ctx: Ctx) -> None:
    run = _run(ctx)
    lock = run_folder.RunLock(run).acquire()  # another open file description: conflicts like another process
    try:
        _resume_fails(ctx, run, f"run folder {run} is in use by pid {os.getpid()}")
        cli_fails(ctx, train_args(ctx, run), "in use by pid", run=run)
    finally:
        lock.release()


def start_in_a_folder_with_files(ctx: Ctx) -> None:
    out = ctx.tmp / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    cli_fails(ctx, train_args(ctx, out), "not an empty folder", run=out)


_CASE_NAMES = """
pickle_in_torch_zip pickle_raw checkpoint_from_an_lr_05_run checkpoint_of_another_model
resume_with_other_data checkpoint_with_another_n checkpoint_of_another_method optimizer_state_of_another_shape
optimizer_lr_edited format_version_from_the_future fingerprint_section_malformed checkpoint_json_without_fingerprint
checkpoint_json_wrong_types rng_tensor_missing optimizer_state_incomplete optimizer_group_without_lr
rng_state_impossible rng_position_out_of_range state_missing_step_in_epoch state_step_is_text
state_done_is_number state_negative_epoch state_unknown_field state_is_a_list
state_step_is_float state_step_in_epoch_past_the_epoch state_step_does_not_add_up state_nan_loss
state_invalid_json state_huge_number metrics_row_is_a_list metrics_step_is_text
metrics_nested_too_deeply metrics_loss_is_a_list metrics_epoch_is_text metrics_bad_utf8
config_json_invalid config_json_a_list config_json_bad_utf8 config_json_huge_number
compare_config_json_a_list compare_results_json_invalid disk_full_safetensors_checkpoint disk_full_torch_checkpoint
disk_full_safetensors_adapter device_meta_train device_meta_predict trainer_config_text_int
trainer_config_list trainer_config_invalid trainer_config_bad_utf8 trainer_config_nan_lr
trainer_config_deep resume_while_running start_in_a_folder_with_files
""".split()
CASES: dict[str, Callable[[Ctx], None]] = {name.replace("_", "-"): globals()[name] for name in _CASE_NAMES}


@pytest.fixture(scope="module")
def finished(tiny_t5, tiny_data, tmp_path_factory) -> Path:  # noqa: F811
    ctx = Ctx(tmp_path_factory.mktemp("run-folder"), tiny_t5, tiny_data, Path(), None, None)  # type: ignore[arg-type]
    return finished_run(ctx, ctx.tmp / "finished")


def test_corpus_size():
    assert len(CASES) >= 45, sorted(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_run_folder(case, tiny_t5, tiny_data, finished, tmp_path, capsys, monkeypatch):  # noqa: F811
    CASES[case](Ctx(tmp_path, tiny_t5, tiny_data, finished, capsys, monkeypatch))


# ---- what must work -------------------------------------------------------------------------------------------------


def _old_save_checkpoint(folder, trainable, optimizer, trainer_state, fingerprint=None) -> None:
    """checkpoints.save_checkpoint as of dc9bb35 (format 1), verbatim but for the ignored fingerprint argument."""
    plain = {k: v.detach().contiguous().cpu().clone() for k, v in trainable.items()}
    extras = {"optimizer": optimizer.state_dict(), "rng": state_codec.rng_state()}

    def write(tmp: Path) -> None:
        save_file(plain, str(tmp / "trainable.safetensors"))
        torch.save(extras, tmp / "optimizer_rng.pt")
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2, sort_keys=True) + "\n")

    run_folder.write_folder(folder, write)


def _rows(run: Path) -> list[dict]:
    timing = {"wall_time", "eval_seconds", "eval_examples_per_s", "train_examples_per_s"}
    return [{k: v for k, v in r.items() if k not in timing} for r in run_folder.read_metrics(run / "metrics.jsonl")]


def test_format1_run_folder_resumes_exactly(tiny_t5, tiny_data, tmp_path, monkeypatch):  # noqa: F811
    """A run interrupted under the old format (pickled optimizer state; config.json without an option added later)
    resumes under the new code and ends exactly like a run never interrupted; its checkpoint is then format 2."""
    ctx = Ctx(tmp_path, tiny_t5, tiny_data, Path(), None, None)  # type: ignore[arg-type]
    extra = ("--epochs", "2", "--dropout", "on")
    straight = finished_run(ctx, tmp_path / "straight", *extra)

    old = tmp_path / "old"
    monkeypatch.setattr(ckpt, "save_checkpoint", _old_save_checkpoint)

    def interrupt(point: str) -> None:
        if point == "step:5":
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "fault_point", interrupt)
    assert main(train_args(ctx, old, *extra)) == 130
    monkeypatch.undo()
    checkpoint = old / "checkpoint"
    assert sorted(p.name for p in checkpoint.iterdir()) == [
        "COMPLETE", "optimizer_rng.pt", "trainable.safetensors", "trainer_state.json"
    ]  # fmt: skip
    assert json.loads((checkpoint / "trainer_state.json").read_text())["step"] == 4
    _edit_json(old / "config.json", lambda c: {k: v for k, v in c.items() if k != "group_by_length"})

    assert main(train_args(ctx, old, "--resume", *extra)) == 0
    assert _rows(old) == _rows(straight)
    for name in ("best", "last"):
        a, b = (load_file(str(r / name / "adapter_model.safetensors")) for r in (straight, old))
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert (checkpoint / "checkpoint.json").is_file() and not (checkpoint / "optimizer_rng.pt").exists()


def test_unfinished_start_can_be_restarted_and_temporaries_are_swept(tiny_t5, tiny_data, tmp_path, capsys):  # noqa: F811
    ctx = Ctx(tmp_path, tiny_t5, tiny_data, Path(), capsys, None)  # type: ignore[arg-type]
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lock").write_text("12345\n")  # a process killed before config.json was in place
    (out / "train.log").write_text("12:00:00 loaded ...\n")
    (out / ".config.json.k3j2h1.tmp").write_text("{")
    (out / ".checkpoint.tmp-abc").mkdir()
    cli_fails(ctx, train_args(ctx, out, "--resume"), "holds no run", "without --resume")
    assert main(train_args(ctx, out)) == 0
    assert not [p for p in out.iterdir() if run_folder.is_temporary(p.name)]
    assert (out / "results.json").is_file()


def test_failed_start_leaves_nothing_that_blocks_the_corrected_command(tiny_t5, tiny_data, tmp_path, capsys):  # noqa: F811
    ctx = Ctx(tmp_path, tiny_t5, tiny_data, Path(), capsys, None)  # type: ignore[arg-type]
    out = tmp_path / "runs" / "out"
    typo = [*train_args(ctx, out), "--model", str(tmp_path / "no-such-model")]
    cli_fails(ctx, typo, "no-such-model")
    assert not out.exists()  # the folder it created is gone again
    out.mkdir()
    cli_fails(ctx, typo, "no-such-model")
    assert list(out.iterdir()) == []  # a folder that existed stays, empty
    assert main(train_args(ctx, out)) == 0


def test_run_files_follow_the_umask(tiny_t5, tiny_data, tmp_path):  # noqa: F811
    ctx = Ctx(tmp_path, tiny_t5, tiny_data, Path(), None, None)  # type: ignore[arg-type]
    old = os.umask(0o002)
    try:
        run = finished_run(ctx, tmp_path / "run")
    finally:
        os.umask(old)
    modes = {str(p.relative_to(run)): stat.S_IMODE(p.stat().st_mode) for p in [run, *run.rglob("*")]}
    wrong = {p: oct(m) for p, m in modes.items() if m != (0o775 if (run / p).is_dir() else 0o664)}
    assert not wrong and len(modes) > 15, wrong


def test_guard_names_only_what_exists(tmp_path):
    def message() -> str:
        with pytest.raises(FloatingPointError) as info:
            guard.check_loss(float("nan"), 0, 0.01, tmp_path)
        return str(info.value)

    assert f"nothing was saved in {tmp_path} yet" in message()
    run_folder.write_folder(tmp_path / "checkpoint", lambda d: None)
    assert "the last good checkpoint/ in" in message() and "last/" not in message().split(" in ")[0]
    run_folder.write_folder(tmp_path / "last", lambda d: None)
    assert "the last good checkpoint/, last/ in" in message()


def test_a_pickle_dropped_into_a_current_checkpoint_is_never_read(tiny_t5, tiny_data, finished, tmp_path):  # noqa: F811
    """Format 2 reads checkpoint.json + safetensors only: a crafted optimizer_rng.pt next to them is ignored."""
    ctx = Ctx(tmp_path, tiny_t5, tiny_data, finished, None, None)  # type: ignore[arg-type]
    run = copy_run(finished, tmp_path / "run")
    marker = tmp_path / "pwned"
    torch.save({"optimizer": Payload(marker), "rng": {}}, run / "checkpoint" / "optimizer_rng.pt")
    assert main(train_args(ctx, run, "--resume")) == 0
    assert ckpt.load_checkpoint(run / "checkpoint").fingerprint is not None
    assert not marker.exists()


def test_lock_held_by_another_process(finished, tiny_t5, tiny_data, tmp_path, capsys):  # noqa: F811
    ctx = Ctx(tmp_path, tiny_t5, tiny_data, finished, capsys, None)  # type: ignore[arg-type]
    run = copy_run(finished, tmp_path / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(run)], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        cli_fails(ctx, train_args(ctx, run, "--resume"), f"is in use by pid {holder.pid}", run=run)
    finally:
        holder.kill()
        holder.wait()
    assert main(train_args(ctx, run, "--resume")) == 0  # the kernel dropped the lock with the process


HOLD_LOCK = """
import sys, time
from pathlib import Path
from superpos_trainer.run_folder import RunLock
RunLock(Path(sys.argv[1])).acquire()
print("locked", flush=True)
time.sleep(120)
"""


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.lists(
        st.sampled_from(
            [
                "optimizer",
                "rng",
                "state",
                "param_groups",
                "python",
                "numpy",
                "0",
                "lr",
                "pos",
                "kind",
                "betas",
                "params",
                "cuda_devices",
                "fingerprint",
            ]
        ),
        min_size=1,
        max_size=4,
    ),
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
        max_leaves=6,
    ),
)
def test_any_checkpoint_json_resumes_or_is_one_line_naming_the_file(tmp_path_factory, path, value):
    """checkpoint.json with one entry replaced (or added) anywhere: the resume checks pass and the optimizer takes
    the state, or there is one RunFolderError naming a file of the checkpoint."""
    folder = tmp_path_factory.mktemp("ckpt") / "checkpoint"
    param = torch.nn.Parameter(torch.ones(2, 3))
    optimizer = torch.optim.AdamW([param], lr=0.1)
    param.grad = torch.ones(2, 3)
    optimizer.step()
    state = asdict(train.TrainState(step=1, epoch=1))
    ckpt.save_checkpoint(folder, {"w": param}, optimizer, state, {"options": {"lr": 0.1}})
    meta = json.loads((folder / "checkpoint.json").read_text())
    node = meta
    for key in path[:-1]:
        child = node.get(key) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            break
        node = child
    if isinstance(node, dict):
        node[path[-1]] = value
    (folder / "checkpoint.json").write_text(json.dumps(meta))
    method = SimpleNamespace(trainable_state=lambda: {"w": param.detach()})
    try:
        found = ckpt.load_checkpoint(folder)
        checked = check_checkpoint(found, {"options": {"lr": 0.1}}, method, optimizer, fields(train.TrainState), 1)
    except RunFolderError as exc:
        message = str(exc)
        assert "\n" not in message and len(message) < 1000 and f"{folder}" in message, message[:300]
        return
    optimizer.load_state_dict(found.optimizer)  # what the trainer does next: it must take the checked state
    state_codec.set_rng_state(found.rng)
    assert checked == state
    param.grad = torch.ones(2, 3)
    optimizer.step()
    assert torch.isfinite(param).all()
