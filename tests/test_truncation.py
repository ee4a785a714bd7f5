"""Truncation never drops a label or a field name; the longest field is cut first; --max-length auto covers 99 %."""

from __future__ import annotations

import json
import logging

import pytest
from superpos_trainer.collate import Encoder, auto_max_length, truncated_share
from superpos_trainer.errors import ConfigError
from superpos_trainer.methods import build_method
from superpos_trainer.models import load_model
from superpos_trainer.tasks import get_task
from superpos_trainer.train import Trainer

from .model_fixtures import WORDS, tiny_config, tiny_llama, tiny_t5  # noqa: F401

PREMISE = " ".join(WORDS[i % len(WORDS)] for i in range(30))  # the long field
HYPOTHESIS = "the cats sit on the mat"


def _encoder(loaded, max_length: int, prompt: int = 4) -> Encoder:
    return Encoder(loaded.tokenizer, loaded.is_encoder_decoder, max_length, prompt, 8, loaded.max_positions, 0)


def _rte(premise: str = PREMISE, hypothesis: str = HYPOTHESIS, label: int = 1):
    return get_task("rte").format({"premise": premise, "hypothesis": hypothesis, "label": label})


def _text(loaded, ids) -> str:
    return loaded.tokenizer.decode(list(ids), skip_special_tokens=True)


@pytest.mark.parametrize("kind", ["t5", "llama"])
def test_label_field_names_and_short_field_survive(kind, tiny_t5, tiny_llama):  # noqa: F811
    loaded = load_model(str(tiny_t5 if kind == "t5" else tiny_llama))
    example = _rte()
    full = _encoder(loaded, 250).encode_example(example)
    assert not full.truncated
    without_premise = len(_encoder(loaded, 250).encode_example(_rte(premise="")).source_ids)
    room = 25  # premise tokens that fit: more than the hypothesis has, so it stays whole
    encoder = _encoder(loaded, without_premise + room + 4 + (0 if loaded.is_encoder_decoder else 8))
    cut = encoder.encode_example(example)
    assert cut.truncated and len(cut.source_ids) <= encoder.source_budget
    text = _text(loaded, cut.source_ids)
    assert text.startswith(f"rte hypothesis: {HYPOTHESIS} premise: ")  # task name, keys, the short field whole
    kept = text.split(" premise: ", 1)[1]
    assert kept and PREMISE.startswith(kept.strip())  # the long field lost its END only
    assert cut.target_ids == full.target_ids  # the label is never cut
    # Nothing is cut beyond what the budget needs (re-tokenising a cut field may shift a token or two).
    assert len(cut.source_ids) >= encoder.source_budget - 3


def test_longest_field_is_cut_first_then_both_evenly(tiny_llama):  # noqa: F811
    loaded = load_model(str(tiny_llama))
    long_text = " ".join(["story"] * 30)
    medium_text = " ".join(["mat"] * 12)
    example = _rte(premise=long_text, hypothesis=medium_text)
    full = len(_encoder(loaded, 250).encode_example(example).source_ids)
    slight = _encoder(loaded, full - 5 + 4 + 8)  # budget = full - 5: five tokens too long
    ids = slight.encode_example(example).source_ids
    text = _text(loaded, ids)
    hypothesis, premise = text.split("hypothesis: ", 1)[1].split(" premise: ")
    assert hypothesis == medium_text  # the shorter field is untouched
    assert premise.split().count("story") < 30
    tokens = lambda text: len(loaded.tokenizer(" " + text, add_special_tokens=False)["input_ids"])  # noqa: E731
    gap = tokens(long_text) - tokens(medium_text)
    hard = _encoder(loaded, full - gap - 8 + 4 + 8)  # the gap and 8 more: both fields lose ~4 tokens
    text = _text(loaded, hard.encode_example(example).source_ids)
    hypothesis, premise = text.split("hypothesis: ", 1)[1].split(" premise: ")
    assert tokens(hypothesis) < tokens(medium_text)
    assert abs(tokens(premise) - tokens(hypothesis)) <= 2


def test_too_small_for_the_field_names_is_a_config_error(tiny_llama):  # noqa: F811
    loaded = load_model(str(tiny_llama))
    with pytest.raises(ConfigError, match="too small for the field names"):
        _encoder(loaded, 4 + 8 + 3).encode_example(_rte())


def test_auto_length_covers_99_percent_and_is_the_smallest_that_does(tiny_llama):  # noqa: F811
    loaded = load_model(str(tiny_llama))
    examples = [_rte(premise=" ".join(WORDS[: 1 + i % 40]), label=i % 2) for i in range(300)]
    args = (loaded.is_encoder_decoder, 4, 8)
    length = auto_max_length(loaded.tokenizer, [e.source for e in examples], *args)
    share = truncated_share([_encoder(loaded, length).encode_example(e) for e in examples])
    assert share <= 0.01
    shorter = truncated_share([_encoder(loaded, length - 1).encode_example(e) for e in examples])
    assert shorter > 0.01
    capped = auto_max_length(loaded.tokenizer, [e.source for e in examples], *args, cap=length - 5)
    assert capped == length - 5  # never beyond the model's positions


def _run(tmp_path, model, **overrides):
    config = tiny_config(model, tmp_path / "run", epochs=1, **overrides)
    loaded = load_model(config.model)
    method = build_method("prompt", loaded, config.num_prompt_tokens, seed=0)
    task = get_task("rte")
    train = [_rte(premise=" ".join(WORDS[: 3 + i]), label=i % 2) for i in range(12)]
    evaluation = [_rte(label=i % 2) for i in range(4)]  # all longer than any training example
    (tmp_path / "run").mkdir(parents=True)
    trainer = Trainer.from_config(config, task, (train, evaluation), method=method, run_dir=tmp_path / "run")
    return trainer, trainer.fit()


def test_auto_length_covers_each_split_not_only_training(tmp_path, tiny_llama, caplog):  # noqa: F811
    caplog.set_level(logging.WARNING, logger="superpos_trainer")
    trainer, results = _run(tmp_path, tiny_llama, task="rte", max_length="auto")
    tokenizer = trainer.loaded.tokenizer

    def auto(examples):
        return auto_max_length(tokenizer, [e.source for e in examples], False, 4, 8, 256 - 5)

    # The validation premises are longer than any training one: the length fitted to training alone would cut them.
    assert auto(trainer.eval_examples) > auto(trainer.train_examples)
    assert trainer.config.max_length == auto(trainer.eval_examples)
    assert results["truncated"] == {"train": 0.0, "validation": 0.0}
    assert "truncated" not in caplog.text
    saved = json.loads((tmp_path / "run" / "best" / "trainer_config.json").read_text())
    assert saved["max_length"] == trainer.config.max_length  # evaluate/predict reuse the resolved length


def test_results_record_truncated_shares_and_warn(tmp_path, tiny_llama, caplog):  # noqa: F811
    caplog.set_level(logging.WARNING, logger="superpos_trainer")
    probe, _ = _run(tmp_path / "probe", tiny_llama, task="rte", max_length=200)
    fits_training = auto_max_length(
        probe.loaded.tokenizer, [e.source for e in probe.train_examples], False, 4, 8, 256 - 5
    )
    caplog.clear()
    _, results = _run(tmp_path, tiny_llama, task="rte", max_length=fits_training)
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["truncated"] == results["truncated"]
    assert results["truncated"]["train"] <= 0.01
    assert results["truncated"]["validation"] == 1.0  # every validation premise is longer than this length allows
    assert "100.0% of the validation inputs are truncated" in caplog.text
    assert "train inputs" not in caplog.text


def test_no_warning_when_nothing_is_cut(tmp_path, tiny_llama, caplog):  # noqa: F811
    caplog.set_level(logging.WARNING, logger="superpos_trainer")
    _, results = _run(tmp_path, tiny_llama, task="rte", max_length=200)
    assert results["truncated"] == {"train": 0.0, "validation": 0.0}
    assert "truncated" not in caplog.text


def test_cut_sources_keep_their_special_tokens(tiny_t5):  # noqa: F811
    loaded = load_model(str(tiny_t5))
    eos = loaded.tokenizer.eos_token_id
    encoder = _encoder(loaded, 40)
    by_fields = encoder.encode_example(_rte())
    plain = encoder.encode(_rte().source, "entailment")  # text without fields: cut at the end
    for encoded in (by_fields, plain):
        assert encoded.truncated and len(encoded.source_ids) <= encoder.source_budget
        assert encoded.source_ids[-1] == eos  # T5's closing </s> survives the cut
    assert not encoder.encode("rte hypothesis: a premise: b", "entailment").truncated
