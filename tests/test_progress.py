"""Evaluation progress: a line every ``every_s`` seconds off a terminal, a bar on one, nothing when disabled."""

from __future__ import annotations

import io

from superpos_trainer.progress import Progress

from .model_fixtures import tiny_data, tiny_llama  # noqa: F401


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_every_interval_with_the_example_count():
    clock, out = Clock(), io.StringIO()
    bar = Progress(872, "rank", every_s=10.0, stream=out, clock=clock)
    for _ in range(10):  # 10 batches of 32, 4 s apart: lines at 12 s (4th batch) and 24 s (7th) and 36 s (10th)
        clock.now += 4.0
        bar.update(32)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines == [
        "rank: 96/872 examples (8.0/s)",
        "rank: 192/872 examples (8.0/s)",
        "rank: 288/872 examples (8.0/s)",
    ]


def test_short_runs_and_disabled_progress_stay_quiet():
    clock, out = Clock(), io.StringIO()
    quick = Progress(64, "rank", stream=out, clock=clock)
    quick.update(64)  # done before the first interval
    off = Progress(64, "rank", enabled=False, stream=out, clock=clock, every_s=0.0)
    clock.now += 100.0
    off.update(32)
    assert out.getvalue() == ""


def test_a_terminal_gets_a_bar():
    out = Terminal()
    bar = Progress(10, "generate", stream=out)
    assert bar.bar is not None
    bar.update(4)
    bar.update(6)
    assert bar.bar.n == 10
    bar.close()
    assert "generate:" in out.getvalue() and "/10" in out.getvalue()


def test_evaluation_reports_progress_on_stderr(monkeypatch, capsys, tiny_llama, tiny_data):  # noqa: F811
    """``evaluate(EvalSettings(progress=True))`` (what ``superpos evaluate``/``predict`` use) writes count lines."""
    from superpos_trainer import progress
    from superpos_trainer.collate import Encoder
    from superpos_trainer.data import load_examples
    from superpos_trainer.evaluate import EvalSettings, evaluate
    from superpos_trainer.methods import build_method
    from superpos_trainer.models import load_model
    from superpos_trainer.tasks import get_task

    original = progress.Progress.__init__

    def every_call(self, *args, **kwargs):  # a line after every batch instead of every 10 s
        original(self, *args, **{**kwargs, "every_s": 0.0})

    monkeypatch.setattr(progress.Progress, "__init__", every_call)
    loaded = load_model(str(tiny_llama))
    task = get_task("sst2")
    method = build_method("prompt", loaded, 3)
    encoder = Encoder(loaded.tokenizer, False, 64, 3, 8, loaded.max_positions, 3)
    examples = load_examples(task, "validation", tiny_data)
    encoded = [encoder.encode(e.source, e.target) for e in examples]
    for mode in ("rank", "generate"):
        evaluate(method, encoder, task, examples, encoded, EvalSettings(mode, 2, 2, progress=True))
        # Only our lines: other tests may leave log handlers that write to stderr too.
        lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(f"{mode}: ")]
        assert lines and lines[0].startswith(f"{mode}: {2 if mode == 'generate' else 1}/{len(examples)} examples")
