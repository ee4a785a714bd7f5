"""The causal-LM path: label masking, position ids, embedding scale, generation vs ranking, frozen tied weights."""

from __future__ import annotations

import math

import pytest
import torch
from superpos_trainer.collate import IGNORE_INDEX, Encoded, Encoder, source_batch, train_batch
from superpos_trainer.config import TrainConfig
from superpos_trainer.evaluate import EvalSettings, generate_texts, rank_label_words
from superpos_trainer.forward import label_logits, label_token_logprobs, position_ids_from_mask
from superpos_trainer.methods import build_method
from superpos_trainer.models import LoadedModel, load_model


@pytest.fixture(scope="module")
def llama(tiny_llama):
    return load_model(str(tiny_llama))


def _encoder(loaded: LoadedModel, n: int = 4) -> Encoder:
    return Encoder(loaded.tokenizer, False, 64, n, 6, loaded.max_positions, 3)


def test_loader_sets_left_padding_and_eos_pad(llama):
    assert not llama.is_encoder_decoder
    assert llama.tokenizer.padding_side == "left"
    assert llama.tokenizer.pad_token_id == llama.tokenizer.eos_token_id  # the tiny Llama has no pad token
    assert all(not p.requires_grad for p in llama.model.parameters())
    assert not llama.model.training


def test_labels_cover_only_label_tokens(llama):
    enc = _encoder(llama)
    items = [enc.encode("sst2 sentence: a good film", "positive"), enc.encode("sst2 sentence: dull", "negative")]
    batch = train_batch(items, [0, 1], llama.tokenizer.pad_token_id, False)
    for row, item in enumerate(items):
        target = list(item.target_ids)
        assert target[-1] == llama.tokenizer.eos_token_id
        labels = batch.labels[row].tolist()
        assert labels[len(labels) - len(target) :] == target
        assert all(v == IGNORE_INDEX for v in labels[: len(labels) - len(target)])
        # Left padding: the label ends every row, the source sits right before it.
        ids = batch.input_ids[row].tolist()
        assert ids[len(ids) - len(target) :] == target
        assert ids[len(ids) - len(target) - len(item.source_ids) : len(ids) - len(target)] == list(item.source_ids)


def test_label_logits_align_with_full_forward(llama):
    """The logits_to_keep shortcut returns exactly the logits that predict each label token."""
    method = build_method("superpos", llama, num_prompt_tokens=4, num_sampled_tokens=8)
    enc = _encoder(llama)
    items = [enc.encode("sst2 sentence: a good film indeed", "positive"), enc.encode("sst2 sentence: x", "negative")]
    batch = train_batch(items, [0, 1], llama.tokenizer.pad_token_id, False)
    with torch.no_grad():
        got = label_logits(method, batch)
        embeds, mask = method.embed(batch.input_ids, batch.attention_mask)
        full = llama.model(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits
    width = full.shape[1]
    for row in range(2):
        for j, label in enumerate(batch.labels[row].tolist()):
            if label == IGNORE_INDEX:
                continue
            pos = width - batch.labels.shape[1] + j  # position of this label token in [P | X]
            torch.testing.assert_close(got[row, j], full[row, pos - 1])


def test_prompt_positions_start_at_zero_whatever_the_padding():
    mask = torch.tensor([[1, 1, 0, 0, 1, 1], [1, 1, 1, 1, 1, 1]])
    assert position_ids_from_mask(mask).tolist() == [[0, 1, 0, 0, 2, 3], [0, 1, 2, 3, 4, 5]]


def test_row_result_does_not_depend_on_batch_padding(llama):
    method = build_method("prompt", llama, num_prompt_tokens=3)
    enc = _encoder(llama, 3)
    short = enc.encode("sst2 sentence: good", "positive")
    long = enc.encode("sst2 sentence: a very long and rather boring film about a house", "negative")
    pad = llama.tokenizer.pad_token_id
    with torch.no_grad():
        alone = label_logits(method, train_batch([short], [0], pad, False))
        padded = label_logits(method, train_batch([short, long], [0, 1], pad, False))
    keep = alone.shape[1]
    torch.testing.assert_close(padded[0, -keep:], alone[0], atol=1e-5, rtol=1e-5)


def test_generation_continues_from_the_trained_positions(llama):
    """HF generate (inputs_embeds + left padding) picks the argmax of our own forward's last position."""
    method = build_method("superpos", llama, num_prompt_tokens=4, num_sampled_tokens=8, seed=1)
    enc = _encoder(llama)
    items = [enc.encode("sst2 sentence: good", "positive"), enc.encode("sst2 sentence: a long dull film", "negative")]
    pad = llama.tokenizer.pad_token_id
    batch = source_batch(items, [0, 1], pad, False)
    with torch.no_grad():
        embeds, mask = method.embed(batch.input_ids, batch.attention_mask)
        logits = llama.model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids_from_mask(mask)
        ).logits
    expected_first = logits[:, -1].argmax(-1).tolist()
    texts = generate_texts(method, enc, items, EvalSettings(batch_size=2, max_new_tokens=1))
    for text, tok in zip(texts, expected_first, strict=True):
        assert text == llama.tokenizer.decode([tok], skip_special_tokens=True).strip()


@pytest.mark.parametrize("how", ["mean", "sum"])
def test_ranking_picks_the_most_likely_label_word(llama, how):
    method = build_method("prompt", llama, num_prompt_tokens=2, seed=3)
    enc = _encoder(llama, 2)
    words = ("negative", "positive", "not quite good")  # label words of 2, 2 and 4 tokens (EOS included)
    items = [enc.encode(f"sst2 sentence: {w}", "negative") for w in ("good fun", "awful", "the tree")]
    picks = rank_label_words(method, enc, items, words, EvalSettings(batch_size=4, rank_score=how))
    pad = llama.tokenizer.pad_token_id
    for item, pick in zip(items, picks, strict=True):
        scores = []
        for w in words:  # one row at a time, no cache: the score as the docs define it
            b = train_batch([Encoded(item.source_ids, enc.target(w))], [0], pad, False)
            with torch.no_grad():
                picked, valid = label_token_logprobs(label_logits(method, b), b.labels)
            total = picked.sum().item()
            scores.append(total if how == "sum" else total / valid.sum().item())
        assert pick == words[max(range(len(words)), key=scores.__getitem__)]


def test_train_step_leaves_tied_backbone_untouched(llama):
    from superpos_trainer.data import load_examples
    from superpos_trainer.tasks import get_task
    from superpos_trainer.train import Trainer

    assert llama.model.lm_head.weight is llama.model.model.embed_tokens.weight  # tied
    before = {k: v.clone() for k, v in llama.model.state_dict().items()}
    task = get_task("sst2")
    data = load_examples(task, "train", _tiny_dir())
    config = TrainConfig(model="x", task="sst2", num_prompt_tokens=4, num_sampled_tokens=16, max_length=64).resolved()
    method = build_method("superpos", llama, 4, 16)
    w0 = method.layer.w.detach().clone()
    trainer = Trainer.from_config(config, task, (data, data[:2]), method=method)
    loss = trainer.train_step(trainer.make_batch(list(range(4))))
    assert math.isfinite(loss)
    assert all(p.grad is None for p in llama.model.parameters())
    for k, v in llama.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not torch.equal(method.layer.w, w0)


def _tiny_dir():
    from .model_fixtures import tiny_data_dir

    return tiny_data_dir()


def test_gemma_style_embedding_scale_reaches_every_method(tiny_gemma3):
    """Gemma scales token embeddings by sqrt(d) inside its embedding module; the prompt methods must match it."""
    loaded = load_model(str(tiny_gemma3))  # hidden size 32 (tests/model_fixtures.py)
    model, tok = loaded.model, loaded.tokenizer
    emb = model.get_input_embeddings()
    assert float(emb.embed_scale) == pytest.approx(math.sqrt(32))
    ids = torch.tensor([[5, 6, 7]])
    mask = torch.ones_like(ids)
    for name in ("superpos", "prompt", "residual"):
        method = build_method(name, loaded, num_prompt_tokens=2, num_sampled_tokens=4)
        embeds, _ = method.embed(ids, mask)
        torch.testing.assert_close(embeds[:, 2:], emb(ids))  # the text part: exactly what the model would embed
    # The sampled-row initialisations live in the scaled space too (superpos E rows, prompt rows).
    sp = build_method("superpos", loaded, 2, 4)
    rows = emb(sp.layer.sampled_token_ids.unsqueeze(0))[0]
    torch.testing.assert_close(sp.layer.E[0], rows)
    pr = build_method("prompt", loaded, 2)
    norms = pr.prompt.norm(dim=-1) / emb.weight.norm(dim=-1).mean()
    assert norms.min() > 3  # ~sqrt(32) times a raw row
    # and a training forward with the label-only logits runs on it
    enc = Encoder(tok, False, 32, 2, 4, loaded.max_positions, 2)
    batch = train_batch([enc.encode("sst2 sentence: good", "positive")], [0], tok.pad_token_id, False)
    assert label_logits(sp, batch).shape[:2] == batch.labels.shape
