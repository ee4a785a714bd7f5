"""Rank scoring from cached states equals the reference (one full forward per example and label), on tiny models.

Every task's label words, both rank scores, every method (full fine-tuning has no prompt to cache), mixed source
lengths (padding) and label words of different token lengths: same argmax, scores equal to float tolerance.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from superpos_trainer.collate import Encoder
from superpos_trainer.data import load_examples
from superpos_trainer.evaluate import EvalSettings, generate_texts, rank_scores
from superpos_trainer.methods import build_method
from superpos_trainer.models import load_model
from superpos_trainer.prefix_cache import PromptPrefix
from superpos_trainer.tasks import get_task

from .model_fixtures import tiny_data, tiny_gemma3, tiny_llama, tiny_t5  # noqa: F401

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def llama(tiny_llama):  # noqa: F811
    return load_model(str(tiny_llama))


@pytest.fixture(scope="module")
def t5(tiny_t5):  # noqa: F811
    return load_model(str(tiny_t5))


@pytest.fixture(scope="module")
def gemma3(tiny_gemma3):  # noqa: F811
    """Sliding-window and full layers, embeddings scaled inside the model (tests/model_fixtures.py)."""
    return load_model(str(tiny_gemma3))


def _setup(loaded, task_name: str, data_dir, method_name: str = "superpos"):
    task = get_task(task_name)
    n = 0 if method_name == "full" else 4
    kwargs = {"num_sampled_tokens": 16} if method_name == "superpos" else {}
    method = build_method(method_name, loaded, num_prompt_tokens=n, seed=2, **kwargs) if n else None
    if method is None:
        method = build_method("full", loaded)
    encoder = Encoder(loaded.tokenizer, loaded.is_encoder_decoder, 96, n, 8, loaded.max_positions, 3)
    examples = load_examples(task, "validation", data_dir) + load_examples(task, "train", data_dir)
    encoded = [encoder.encode(e.source, e.target) for e in examples]
    return task, method, encoder, encoded


def _both(method, encoder, encoded, words, how: str, batch_size: int = 6):
    settings = EvalSettings(batch_size=batch_size, rank_score=how)
    cached = rank_scores(method, encoder, encoded, words, settings)
    plain = rank_scores(method, encoder, encoded, words, replace(settings, cached=False))
    return cached, plain


def _assert_same(cached: torch.Tensor, plain: torch.Tensor) -> None:
    torch.testing.assert_close(cached, plain, atol=1e-5, rtol=1e-5)
    assert torch.equal(cached.argmax(dim=1), plain.argmax(dim=1))
    assert torch.isfinite(cached).all()


@pytest.mark.parametrize("task_name", ["sst2", "rte", "cb", "copa"])
@pytest.mark.parametrize("how", ["mean", "sum"])
def test_causal_cached_scores_equal_uncached(llama, tiny_data, task_name, how):  # noqa: F811
    task, method, encoder, encoded = _setup(llama, task_name, tiny_data)
    assert len({len(encoder.target(w)) for w in task.label_words}) > 1 or task_name in ("sst2", "copa")
    _assert_same(*_both(method, encoder, encoded, task.label_words, how))


@pytest.mark.parametrize("how", ["mean", "sum"])
def test_sliding_window_model_cached_scores_equal_uncached(gemma3, tiny_data, how):  # noqa: F811
    task, method, encoder, encoded = _setup(gemma3, "rte", tiny_data)
    _assert_same(*_both(method, encoder, encoded, task.label_words, how))
    settings = [EvalSettings(batch_size=5, max_new_tokens=3, cached=cached) for cached in (True, False)]
    texts = [generate_texts(method, encoder, encoded, s) for s in settings]
    assert texts[0] == texts[1]


@pytest.mark.parametrize("loaded_name", ["llama", "t5"])
def test_cached_scores_under_bf16_autocast_stay_close(request, tiny_data, loaded_name):  # noqa: F811
    """bf16 runs both paths (any CPU: autocast emulates where bf16 is not native); they agree to bf16 rounding."""
    task, method, encoder, encoded = _setup(request.getfixturevalue(loaded_name), "rte", tiny_data)
    words = task.label_words
    cached = rank_scores(method, encoder, encoded, words, EvalSettings(batch_size=6, bf16=True))
    plain = rank_scores(method, encoder, encoded, words, EvalSettings(batch_size=6, bf16=True, cached=False))
    fp32 = rank_scores(method, encoder, encoded, words, EvalSettings(batch_size=6))
    assert cached.dtype == torch.float32 and torch.isfinite(cached).all()
    # bf16 keeps 8 mantissa bits: scores (log-probs of magnitude ~10 here) agree to about 1 %.
    torch.testing.assert_close(cached, plain, atol=0.05, rtol=0.01)
    torch.testing.assert_close(cached, fp32, atol=0.05, rtol=0.01)


@pytest.mark.parametrize("method_name", ["prompt", "residual", "full"])
def test_causal_cached_scores_equal_uncached_for_every_method(llama, tiny_data, method_name):  # noqa: F811
    task, method, encoder, encoded = _setup(llama, "rte", tiny_data, method_name)
    _assert_same(*_both(method, encoder, encoded, task.label_words, "mean", batch_size=4))


@pytest.mark.parametrize("task_name", ["sst2", "rte", "cb"])
@pytest.mark.parametrize("how", ["mean", "sum"])
def test_seq2seq_cached_scores_equal_uncached(t5, tiny_data, task_name, how):  # noqa: F811
    task, method, encoder, encoded = _setup(t5, task_name, tiny_data)
    _assert_same(*_both(method, encoder, encoded, task.label_words, how))


def test_batch_size_does_not_change_cached_scores(llama, tiny_data):  # noqa: F811
    task, method, encoder, encoded = _setup(llama, "rte", tiny_data)
    one = rank_scores(method, encoder, encoded, task.label_words, EvalSettings(batch_size=2))
    many = rank_scores(method, encoder, encoded, task.label_words, EvalSettings(batch_size=64))
    torch.testing.assert_close(one, many, atol=1e-5, rtol=1e-5)


def test_prefix_is_computed_once_per_evaluation(llama, tiny_data, monkeypatch):  # noqa: F811
    task, method, encoder, encoded = _setup(llama, "sst2", tiny_data)
    calls = []
    original = PromptPrefix.for_model.__func__

    def counting(cls, *args, **kwargs):
        calls.append(1)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(PromptPrefix, "for_model", classmethod(counting))
    rank_scores(method, encoder, encoded, task.label_words, EvalSettings(batch_size=2))  # several batches
    assert len(encoded) > 2 and len(calls) == 1


def test_prefix_cache_copies_do_not_share_state(llama, tiny_data):  # noqa: F811
    _, method, _, _ = _setup(llama, "sst2", tiny_data)
    with torch.inference_mode():
        prefix = PromptPrefix.for_model(method, CPU)
        first = prefix.for_batch(3)
        first.update(torch.zeros_like(first.layers[0].keys), torch.zeros_like(first.layers[0].values), 0)
        second = prefix.for_batch(2)
    assert first.get_seq_length() == 8 and second.get_seq_length() == 4
    assert second.layers[0].keys.shape[0] == 2


@pytest.mark.parametrize("loaded_name", ["llama", "t5"])
def test_generation_with_prefix_cache_equals_without(request, tiny_data, loaded_name):  # noqa: F811
    loaded = request.getfixturevalue(loaded_name)
    _, method, encoder, encoded = _setup(loaded, "rte", tiny_data)
    with_cache = generate_texts(method, encoder, encoded, EvalSettings(batch_size=5, max_new_tokens=4))
    without = generate_texts(method, encoder, encoded, EvalSettings(batch_size=5, max_new_tokens=4, cached=False))
    assert with_cache == without
    assert any(with_cache)  # the tiny model writes something, so the comparison is not between empty strings


@pytest.mark.parametrize("model_name", ["tiny_llama", "tiny_t5"])
def test_the_check_script_runs_and_agrees(request, tmp_path, tiny_data, model_name):  # noqa: F811
    """experiments/check_cached_scoring.py (the lead's full-validation check) on tiny models: check + timing."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "check_cached_scoring.py"
    spec = importlib.util.spec_from_file_location("check_cached_scoring", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    model = str(request.getfixturevalue(model_name))
    out = tmp_path / "check.json"
    args = ["--model", model, "--data-dir", str(tiny_data), "--tasks", "sst2", "rte", "--max-length", "96"]
    assert script.main([*args, "--timing-rounds", "1", "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    for task in ("sst2", "rte"):
        for how in ("mean", "sum"):
            row = report[task][how]
            assert row["different_predictions"] == 0 and row["same_predictions"] == report[task]["examples"] > 0
        assert set(report["timing"][task]) >= {"uncached fp32 (before)", "cached fp32"}
