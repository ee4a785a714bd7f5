"""The one-place registries: a task is one ``Task`` entry, a method one registered class, and the CLI reports only
the user's errors as one line (a bug keeps its traceback)."""

from __future__ import annotations

import ast
import errno
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from superpos_trainer import cli
from superpos_trainer.config import METHOD_DEFAULTS, TrainConfig
from superpos_trainer.data import load_examples
from superpos_trainer.errors import ConfigError, user_error
from superpos_trainer.methods import METHODS, PromptMethod, build_method, load_method, register_method
from superpos_trainer.metrics import Metric, accuracy
from superpos_trainer.models import load_model
from superpos_trainer.tasks import TASKS, ClassLabels, Source, Task, get_task

from superpos_kernels import SuperPosInputError

REPO = Path(__file__).resolve().parents[1]


def _train_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    fixed = "--epochs 1 --batch-size 4 --num-prompt-tokens 4 --num-sampled-tokens 16 --max-length 64"
    fixed += " --train-limit 0 --eval-limit 0 --eval-mode rank --no-progress"
    return ["train", "--model", str(model), "--data-dir", str(data), "--output-dir", str(out), *fixed.split(), *extra]


# -- a task is one entry --------------------------------------------------------------------------------------


def _balanced_accuracy(preds, golds, groups, num_classes) -> dict[str, float]:
    """Mean per-class recall: a score no built-in task uses, so nothing can be switching on a metric name."""
    recalls = []
    for c in range(num_classes):
        rows = [p for p, g in zip(preds, golds, strict=True) if g == c]
        if rows:
            recalls.append(sum(p == c for p in rows) / len(rows))
    return {"balanced_accuracy": sum(recalls) / len(recalls), "accuracy": accuracy(preds, golds)}


TOY = Task(
    name="toy",
    benchmark="glue",
    fields=(("review", "text"),),  # the row key "text" is shown as "review"
    labels=ClassLabels(("negative", "positive"), {"low": 0, "high": 1}),
    metric=Metric("balanced_accuracy", _balanced_accuracy),
    files={
        "train": (Source("toy/reviews-train.tsv", "tsv", {"text": "body", "label": "stars"}),),
        "validation": (Source("toy/reviews-dev.tsv", "tsv", {"text": "body", "label": "stars"}),),
    },
    missing_hint={"validation": "The toy task ships no dev file."},
)


def _toy_data(root: Path) -> Path:
    (root / "toy").mkdir(parents=True)
    for split, n in (("train", 12), ("dev", 8)):
        rows = "".join(
            f"{i}\tthe {'alpha' if i % 2 else 'beta'} film {i}\t{'high' if i % 2 else 'low'}\n" for i in range(n)
        )
        (root / "toy" / f"reviews-{split}.tsv").write_text("id\tbody\tstars\n" + rows)
    return root


@pytest.fixture
def toy_task(monkeypatch):
    monkeypatch.setitem(TASKS, "toy", TOY)
    return TOY


def test_a_new_task_entry_reads_formats_and_scores(toy_task, tmp_path):
    data = _toy_data(tmp_path / "data")
    examples = load_examples("toy", "train", data)
    assert len(examples) == 12 and get_task("TOY") is toy_task
    first = examples[1]
    assert (first.source, first.target, first.label, first.idx) == ("toy review: the alpha film 1", "positive", 1, 1)
    assert first.fields == (("review", "the alpha film 1"),) and first.prefix == "toy"
    # Golds 0 1 0; the invalid answer on gold 1 counts as 0: recalls 1/2 and 0, accuracy 1/3.
    scores = toy_task.compute_metrics([0, None, 1], examples[:3])
    assert scores == pytest.approx({"balanced_accuracy": 0.25, "accuracy": 1 / 3, "invalid_rate": 1 / 3})
    (data / "toy" / "reviews-dev.tsv").unlink()
    with pytest.raises(ValueError, match=r"reviews-dev.tsv\. The toy task ships no dev file\. Fix: put the official"):
        load_examples("toy", "validation", data)


def test_a_new_task_entry_trains_and_evaluates_through_the_cli(toy_task, tiny_t5, tmp_path, capsys):
    data = _toy_data(tmp_path / "data")
    run = tmp_path / "run"
    assert cli.main(_train_args(tiny_t5, data, run, "--task", "toy", "--method", "prompt")) == 0
    assert json.loads((run / "results.json").read_text())["main_metric"] == "balanced_accuracy"
    capsys.readouterr()
    assert cli.main(["evaluate", str(run), "--data-dir", str(data)]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["task"] == "toy" and 0.0 <= scored["balanced_accuracy"] <= 1.0


def test_data_py_knows_no_task_by_name():
    """The readers are generic: no string in data.py's code (docstrings aside) names a task."""
    tree = ast.parse((REPO / "python" / "superpos_trainer" / "data.py").read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    strings = [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and id(n) not in docstrings and isinstance(n.value, str)
    ]
    named = [(text, task) for text in strings for task in TASKS if re.search(rf"\b{task}\b", text.lower())]
    assert named == []


def test_task_entry_needs_both_splits():
    with pytest.raises(ValueError, match="no files for split"):
        Task(
            name="half",
            benchmark="glue",
            fields=("text",),
            labels=ClassLabels(("a", "b")),
            metric=TOY.metric,
            files={"train": TOY.files["train"]},
        )


# -- a method is one registered class ----------------------------------------------------------------------------


class HalfPromptMethod(PromptMethod):
    """Test-only: simple prompt tuning whose prompt enters at half scale, with its own defaults and peft_type."""

    name, peft_type = "half-prompt", "HALF_PROMPT_TUNING"
    default_lr, default_weight_decay = 5e-3, 0.0

    def prompt_vectors(self) -> torch.Tensor:
        return 0.5 * self.prompt


@pytest.fixture
def half_prompt():
    cls = register_method(HalfPromptMethod)
    yield cls
    del METHODS[cls.name]


def test_registry_is_the_one_method_list(monkeypatch):
    assert list(METHODS) == ["superpos", "prompt", "residual", "full"]
    assert dict(METHOD_DEFAULTS) == {
        "superpos": (1e-2, 1e-5),
        "prompt": (1e-2, 1e-2),
        "residual": (0.3, 1e-5),
        "full": (1e-5, 0.0),
    }
    monkeypatch.syspath_prepend(str(REPO / "bench"))  # e2e.py imports its sibling modules (e2e_settings, ...)
    spec = importlib.util.spec_from_file_location("bench_e2e_registry", REPO / "bench" / "e2e.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    assert bench.METHODS == tuple(METHODS)
    with pytest.raises(TypeError, match="is taken by PromptMethod"):
        register_method(type("Again", (PromptMethod,), {"name": "again"}))  # PROMPT_TUNING again
    with pytest.raises(ConfigError, match="unknown method 'lora'; choose one of superpos, prompt, residual, full"):
        build_method("lora", None)


def test_a_registered_method_is_a_config_choice_with_its_defaults(half_prompt):
    args = cli.build_parser().parse_args(["train", "--method", "half-prompt"])
    assert args.method == "half-prompt"
    config = TrainConfig(method="half-prompt").resolved()
    assert (config.lr, config.weight_decay) == (5e-3, 0.0)
    assert METHOD_DEFAULTS["half-prompt"] == (5e-3, 0.0)


def test_a_registered_method_trains_saves_and_reloads(half_prompt, tiny_t5, tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(_train_args(tiny_t5, tiny_data, run, "--method", "half-prompt")) == 0
    saved = json.loads((run / "config.json").read_text())
    assert (saved["method"], saved["lr"], saved["weight_decay"]) == ("half-prompt", 5e-3, 0.0)
    capsys.readouterr()
    assert cli.main(["evaluate", str(run)]) == 0  # load_method finds the class by the adapter's peft_type
    assert "accuracy" in json.loads(capsys.readouterr().out)

    loaded = load_model(str(tiny_t5))
    method = build_method("half-prompt", loaded, num_prompt_tokens=3, seed=1)
    method.save_adapter(tmp_path / "adapter")
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["peft_type"] == "HALF_PROMPT_TUNING"
    reloaded = load_method(tmp_path / "adapter", loaded)
    assert type(reloaded) is HalfPromptMethod
    torch.testing.assert_close(reloaded.prompt_vectors(), 0.5 * method.prompt, rtol=0, atol=0)


# -- the CLI: the user's errors are one line, a bug keeps its traceback ------------------------------------------


def test_user_error_rule():
    assert user_error(ConfigError("--lr must be > 0")) == "--lr must be > 0"
    assert user_error(SuperPosInputError("adapter_config.json is missing")) == "adapter_config.json is missing"
    disk = OSError(errno.ENOSPC, "No space left on device", "/runs/a/metrics.jsonl")
    assert "No space left on device (/runs/a/metrics.jsonl)" in user_error(disk)
    assert "pip install" in user_error(ModuleNotFoundError("No module named 'datasets'", name="datasets"))
    for bug in (
        ValueError("bad shape"),  # a plain ValueError is a bug now, not a user error
        FileNotFoundError(errno.ENOENT, "No such file", "/somewhere"),
        KeyError("accuracy"),
        ModuleNotFoundError("No module named 'superpos_trainer.nope'", name="superpos_trainer.nope"),
    ):
        assert user_error(bug) is None, bug


def test_unexpected_exception_propagates_with_its_traceback(monkeypatch, tmp_path):
    def broken(args):
        raise ValueError("an internal invariant broke")  # was reported as a one-line user error before

    monkeypatch.setitem(cli.COMMANDS, "compare", broken)
    with pytest.raises(ValueError, match="an internal invariant broke"):
        cli.main(["compare", str(tmp_path)])


def test_unexpected_exception_exits_1_with_traceback(tmp_path):
    script = (
        "import sys\n"
        "from superpos_trainer import cli\n"
        "def broken(args):\n"
        "    return {}['no such key']\n"
        "cli.COMMANDS['compare'] = broken\n"
        f"sys.exit(cli.main(['compare', {str(tmp_path)!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr and "KeyError: 'no such key'" in proc.stderr
    assert "error:" not in proc.stderr  # not dressed up as a user error
