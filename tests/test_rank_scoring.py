"""Rank scores: mean vs sum per label token, and non-finite scores as invalid predictions (never the first label)."""

from __future__ import annotations

import math

import pytest
import torch
from superpos_trainer.collate import IGNORE_INDEX, Encoder
from superpos_trainer.config import TrainConfig
from superpos_trainer.data import load_examples
from superpos_trainer.errors import ConfigError
from superpos_trainer.evaluate import EvalSettings, evaluate
from superpos_trainer.forward import label_token_logprobs
from superpos_trainer.methods import build_method
from superpos_trainer.models import load_model
from superpos_trainer.scoring import choose_labels, reduce_scores
from superpos_trainer.tasks import get_task

from .model_fixtures import tiny_data, tiny_llama, tiny_t5  # noqa: F401


def _logits_for(token_probs: list[dict[int, float]], vocab: int = 8) -> torch.Tensor:
    """Logits ``[T, V]`` whose softmax gives exactly the listed probabilities (the rest share what is left)."""
    rows = []
    for probs in token_probs:
        rest = (1.0 - sum(probs.values())) / (vocab - len(probs))
        rows.append(torch.tensor([math.log(probs.get(v, rest)) for v in range(vocab)]))
    return torch.stack(rows)


def test_sum_penalises_the_long_label_and_mean_does_not():
    # Label A: one word + EOS, each token p = 0.3 -> sum -2.41, mean -1.20.
    # Label B: three words + EOS, each token p = 0.45 -> sum -3.19, mean -0.80 (more likely per token).
    a = _logits_for([{1: 0.3}, {7: 0.3}])
    b = _logits_for([{2: 0.45}, {3: 0.45}, {4: 0.45}, {7: 0.45}])
    logits = torch.zeros(2, 4, 8)
    logits[0, :2], logits[1] = a, b
    labels = torch.tensor([[1, 7, IGNORE_INDEX, IGNORE_INDEX], [2, 3, 4, 7]])
    picked, valid = label_token_logprobs(logits, labels)
    words = ["short", "long"]
    by_sum = reduce_scores(picked, valid, "sum").view(1, 2)
    by_mean = reduce_scores(picked, valid, "mean").view(1, 2)
    torch.testing.assert_close(by_sum, torch.tensor([[2 * math.log(0.3), 4 * math.log(0.45)]]))
    torch.testing.assert_close(by_mean, torch.tensor([[math.log(0.3), math.log(0.45)]]))
    assert choose_labels(by_sum, words) == ["short"]
    assert choose_labels(by_mean, words) == ["long"]


def test_unknown_rank_score_is_refused():
    with pytest.raises(ValueError, match="mean, sum"):
        reduce_scores(torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool), "max")
    with pytest.raises(ConfigError, match="--rank-score must be one of mean, sum, got 'max'"):
        TrainConfig(rank_score="max").resolved()


def test_non_finite_scores_make_the_prediction_invalid():
    nan, inf = float("nan"), float("inf")
    scores = torch.tensor([[nan, -1.0], [-1.0, nan], [nan, nan], [-2.0, -1.0], [-inf, -1.0], [inf, 0.0]])
    # torch.argmax returns the NaN's index: the first two rows would "predict" a label from a broken forward.
    assert scores[:2].argmax(dim=1).tolist() == [0, 1]
    assert choose_labels(scores, ["a", "b"]) == ["", "", "", "b", "", ""]


@pytest.mark.parametrize("loaded_name", ["tiny_llama", "tiny_t5"])
@pytest.mark.parametrize("cached", [True, False])
def test_a_nan_forward_counts_as_invalid_not_as_the_first_label(request, tiny_data, loaded_name, cached):  # noqa: F811
    from superpos_trainer.evaluate import rank_label_words

    loaded = load_model(str(request.getfixturevalue(loaded_name)))
    task = get_task("sst2")
    method = build_method("prompt", loaded, num_prompt_tokens=3, seed=0)
    with torch.no_grad():
        method.prompt[0, 0] = float("nan")  # poisons every position that attends to the prompt
    encoder = Encoder(loaded.tokenizer, loaded.is_encoder_decoder, 64, 3, 8, loaded.max_positions, 3)
    examples = load_examples(task, "validation", tiny_data)
    encoded = [encoder.encode(e.source, e.target) for e in examples]
    picks = rank_label_words(method, encoder, encoded, task.label_words, EvalSettings(batch_size=8, cached=cached))
    assert picks == [""] * len(examples)
    if cached:
        metrics, _ = evaluate(method, encoder, task, examples, encoded, EvalSettings("rank", 8, 3))
        assert metrics["invalid_rate"] == 1.0 and metrics["accuracy"] == 0.0


def test_runs_saved_before_the_option_keep_their_summed_score():
    from superpos_trainer.config import config_differences, config_from_dict

    old = TrainConfig().resolved().to_dict()
    del old["rank_score"]  # a config.json written before --rank-score existed: rank scoring summed
    assert config_from_dict(old).rank_score == "sum"
    assert config_from_dict({}).rank_score == "mean"  # no saved run: today's default
    assert config_differences(old, TrainConfig(rank_score="sum").resolved().to_dict()) == []
    assert config_differences(old, TrainConfig().resolved().to_dict()) == ["rank_score: 'sum' -> 'mean'"]
