"""SuperPosModel on a tiny Llama-style and a tiny T5 model: forward/loss, padding invariance, generate, save and
reload, transformers.Trainer (train, save, reload, resume), the PEFT round trip and bad input."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from superpos_kernels import SuperPosConfig, SuperPosModel, get_superpos_model
from superpos_kernels.layer import CONFIG_NAME, WEIGHTS_NAME

TEXTS = ["the film was good", "a very dull and boring story about cats and dogs", "fun"]
TARGETS = ["positive", "negative", "great"]


def load(path, **overrides):
    """Base model (dropout off, so train and eval mode agree) and tokenizer with a pad token."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    config = AutoConfig.from_pretrained(path)
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    dropout = {"dropout_rate": 0.0} if config.is_encoder_decoder else {"attention_dropout": 0.0}
    torch.manual_seed(0)
    return auto.from_pretrained(path, **dropout, **overrides), tokenizer


def wrap(path, **config):
    base, tokenizer = load(path)
    options = dict(num_prompt_tokens=4, num_sampled_tokens=16, seed=3)
    options.update(config)
    model = get_superpos_model(base, SuperPosConfig.from_tokenizer(tokenizer, **options))
    with torch.no_grad():  # trained-looking values, so a reload that dropped them would show
        model.prompt.w.add_(0.5 * torch.randn_like(model.prompt.w))
    return model.eval(), tokenizer


def batch(tokenizer, side, seq2seq):
    if seq2seq:  # targets always right-padded with -100, so both sides score the same tokens
        tokenizer.padding_side = "right"
        targets = tokenizer(TARGETS, return_tensors="pt", padding=True)
        labels = targets["input_ids"].masked_fill(targets["attention_mask"] == 0, -100)
    tokenizer.padding_side = side
    enc = tokenizer(TEXTS, return_tensors="pt", padding=True)
    if seq2seq:
        enc["labels"] = labels
    else:
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        first_real = enc["attention_mask"].argmax(dim=1)
        labels[torch.arange(len(TEXTS)), first_real] = -100  # not scored: then the logits alone give the loss
        enc["labels"] = labels
    return enc


@pytest.fixture(params=["llama", "t5"])
def path(request, tiny_llama, tiny_t5):
    return tiny_llama if request.param == "llama" else tiny_t5


def test_base_model_is_frozen_and_only_the_prompt_trains(path):
    model, tokenizer = wrap(path)
    assert all(not p.requires_grad for p in model.base_model.parameters())
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"prompt.w", "prompt.E"}
    out = model(**batch(tokenizer, "right", model.is_encoder_decoder))
    out.loss.backward()
    assert all(p.grad is None for p in model.base_model.parameters())
    assert model.prompt.w.grad is not None and model.prompt.E.grad.abs().sum() > 0


def test_causal_loss_and_logits_line_up_with_labels(tiny_llama):
    model, tokenizer = wrap(tiny_llama)
    enc = batch(tokenizer, "right", seq2seq=False)
    out = model(**enc)
    assert type(out).__name__ == "CausalLMOutputWithPast"
    assert out.logits.shape[:2] == enc["input_ids"].shape
    shifted = nn.functional.cross_entropy(
        out.logits[:, :-1].flatten(0, 1), enc["labels"][:, 1:].flatten(), ignore_index=-100
    )
    torch.testing.assert_close(out.loss, shifted)


def test_left_and_right_padding_give_the_same_logits_and_loss(path):
    model, tokenizer = wrap(path)
    seq2seq = model.is_encoder_decoder
    left, right = batch(tokenizer, "left", seq2seq), batch(tokenizer, "right", seq2seq)
    with torch.no_grad():
        out_left, out_right = model(**left), model(**right)
    torch.testing.assert_close(out_left.loss, out_right.loss)
    if seq2seq:
        torch.testing.assert_close(out_left.logits, out_right.logits)
    else:
        real_left, real_right = left["attention_mask"].bool(), right["attention_mask"].bool()
        torch.testing.assert_close(out_left.logits[real_left], out_right.logits[real_right])
    # ... and the same as the row alone, unpadded
    one = tokenizer(TEXTS[:1], return_tensors="pt")
    if seq2seq:
        one["labels"] = right["labels"][:1]
    with torch.no_grad():
        alone = model(**one).logits[0]
    torch.testing.assert_close(alone, out_right.logits[0] if seq2seq else out_right.logits[0][real_right[0]])


def test_prompt_changes_the_output(path):
    model, tokenizer = wrap(path)
    enc = batch(tokenizer, "right", model.is_encoder_decoder)
    with torch.no_grad():
        with_prompt = model(**enc).loss
        without = model.base_model(**enc).loss
    assert not torch.allclose(with_prompt, without)


def test_causal_generate_pads_either_side_and_returns_input_then_new_tokens(tiny_llama):
    model, tokenizer = wrap(tiny_llama)
    left, right = batch(tokenizer, "left", False), batch(tokenizer, "right", False)
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    out_left = model.generate(input_ids=left["input_ids"], attention_mask=left["attention_mask"], **kwargs)
    out_right = model.generate(input_ids=right["input_ids"], attention_mask=right["attention_mask"], **kwargs)
    length = left["input_ids"].shape[1]
    assert torch.equal(out_left[:, :length], left["input_ids"])  # right padding re-packed to left
    assert torch.equal(out_left, out_right)
    # the oracle: the base model generating from [P | x] for one unpadded row
    one = tokenizer(TEXTS[1:2], return_tensors="pt")
    embeds, mask = model.prompt(one["input_ids"], one["attention_mask"])
    expected = model.base_model.generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)
    assert torch.equal(out_left[1, length:], expected[0])
    # max_length counts the input like base generate(input_ids) does, not the prompt
    capped = model.generate(**{k: left[k] for k in ("input_ids", "attention_mask")}, max_length=length + 2)
    assert capped.shape[1] <= length + 2 and torch.equal(capped, out_left[:, : capped.shape[1]])


def test_seq2seq_generate_pads_either_side(tiny_t5):
    model, tokenizer = wrap(tiny_t5)
    left, right = batch(tokenizer, "left", True), batch(tokenizer, "right", True)
    out_left = model.generate(input_ids=left["input_ids"], attention_mask=left["attention_mask"], max_new_tokens=5)
    out_right = model.generate(input_ids=right["input_ids"], attention_mask=right["attention_mask"], max_new_tokens=5)
    assert torch.equal(out_left, out_right)
    embeds, mask = model.prompt(right["input_ids"], right["attention_mask"])
    expected = model.base_model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=5)
    assert torch.equal(out_right, expected)  # decoder sequences, like the base model's generate


def test_save_and_reload_give_identical_outputs(path, tmp_path):
    model, tokenizer = wrap(path)
    model.save_pretrained(tmp_path / "adapter")
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME])
    config = json.loads((tmp_path / "adapter" / CONFIG_NAME).read_text())
    assert config["task_type"] == ("SEQ_2_SEQ_LM" if model.is_encoder_decoder else "CAUSAL_LM")
    assert config["base_model_name_or_path"] == str(path)
    reloaded = SuperPosModel.from_pretrained(load(path)[0], tmp_path / "adapter").eval()
    assert not any(p.requires_grad for p in reloaded.base_model.parameters())
    enc = batch(tokenizer, "right", model.is_encoder_decoder)
    with torch.no_grad():
        assert torch.equal(model(**enc).logits, reloaded(**enc).logits)


def test_state_dict_holds_the_prompt_only(tiny_llama):
    model, _ = wrap(tiny_llama)
    assert sorted(model.state_dict()) == ["prompt.E", "prompt.sampled_token_ids", "prompt.w"]
    other, _ = wrap(tiny_llama, seed=9)
    result = other.load_state_dict(model.state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(other.prompt.E, model.prompt.E)
    with pytest.raises(RuntimeError, match=r"not SuperPosModel's prompt: \['lm_head.weight'\]"):
        other.load_state_dict({**model.state_dict(), "lm_head.weight": torch.zeros(1)})


def _trainer(model, tokenizer, folder, max_steps=4, **args):
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    seq2seq = model.is_encoder_decoder
    rows = []
    for text, target in zip(TEXTS * 3, TARGETS * 3, strict=True):
        if seq2seq:
            rows.append({"input_ids": tokenizer(text)["input_ids"], "labels": tokenizer(target)["input_ids"]})
        else:
            ids = tokenizer(text + " " + target)["input_ids"]
            rows.append({"input_ids": ids, "labels": ids})
    training_args = TrainingArguments(
        output_dir=str(folder),
        max_steps=max_steps,
        per_device_train_batch_size=2,
        learning_rate=0.05,
        save_steps=2,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        **args,
    )
    optimizer = torch.optim.AdamW(model.param_groups(weight_decay=0.1), lr=0.05)  # decay on w only
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True)
    return Trainer(
        model=model, args=training_args, train_dataset=rows, data_collator=collator, optimizers=(optimizer, None)
    )


def test_trainer_trains_saves_reloads_and_resumes(path, tmp_path):
    model, tokenizer = wrap(path)
    frozen_before = {n: p.clone() for n, p in model.base_model.named_parameters()}
    w_before = model.prompt.w.detach().clone()
    trainer = _trainer(model, tokenizer, tmp_path / "run")
    trainer.train()
    assert not torch.equal(model.prompt.w, w_before)
    assert all(torch.equal(p, frozen_before[n]) for n, p in model.base_model.named_parameters())
    decay = {g["name"]: g["weight_decay"] for g in trainer.optimizer.param_groups}
    assert decay == {"superpos_w": 0.1, "superpos_E": 0.0}

    trainer.save_model(str(tmp_path / "saved"))
    saved = tmp_path / "saved" / "model.safetensors"
    assert saved.stat().st_size < 64 * 1024  # the prompt only: no base weights
    reloaded = SuperPosModel.from_pretrained(load(path)[0], tmp_path / "saved").eval()
    enc = batch(tokenizer, "right", model.is_encoder_decoder)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(**enc).logits, reloaded(**enc).logits)

    # a run resumed from its step-2 checkpoint ends where the uninterrupted one did
    fresh, _ = wrap(path)
    resumed = _trainer(fresh, tokenizer, tmp_path / "run")
    resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-2"))
    assert resumed.state.global_step == 4
    torch.testing.assert_close(fresh.prompt.w, model.prompt.w)
    torch.testing.assert_close(fresh.prompt.E, model.prompt.E)


def test_trainer_resume_true_picks_the_last_checkpoint(tiny_llama, tmp_path):
    model, tokenizer = wrap(tiny_llama)
    _trainer(model, tokenizer, tmp_path / "run", max_steps=2).train()
    fresh, _ = wrap(tiny_llama)
    trainer = _trainer(fresh, tokenizer, tmp_path / "run", max_steps=4)
    trainer.train(resume_from_checkpoint=True)
    assert trainer.state.global_step == 4
    assert (tmp_path / "run" / "checkpoint-4" / "model.safetensors").is_file()


def test_trainer_default_optimizer_also_trains(tiny_llama, tmp_path):
    """Without optimizers=..., Trainer's own AdamW trains the prompt too (with weight decay on E as well)."""
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    model, tokenizer = wrap(tiny_llama)
    before = model.prompt.E.detach().clone()
    rows = [{"input_ids": ids, "labels": ids} for ids in tokenizer(TEXTS)["input_ids"]]
    args = TrainingArguments(str(tmp_path), max_steps=1, per_device_train_batch_size=3, report_to=[], use_cpu=True)
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=DataCollatorForSeq2Seq(tokenizer))
    trainer.train()
    assert not torch.equal(model.prompt.E, before)
    trained = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    assert {id(p) for p in trained} == {id(model.prompt.w), id(model.prompt.E)}  # never a base weight


class _NoEmbeddings(nn.Module):
    def get_input_embeddings(self):
        raise NotImplementedError


def test_peft_round_trip_gives_the_same_logits(path, tmp_path):
    from peft import PeftModel

    model, tokenizer = wrap(path)
    model.export_to_peft(tmp_path / "peft")
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config["peft_type"] == "PROMPT_TUNING" and config["num_virtual_tokens"] == 4
    peft_model = PeftModel.from_pretrained(load(path)[0], tmp_path / "peft").eval()
    n = model.prompt.num_prompt_tokens
    enc = tokenizer(TEXTS[1:2], return_tensors="pt")
    if model.is_encoder_decoder:
        enc["labels"] = tokenizer(TARGETS[1:2], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ours = model(**enc).logits
        theirs = peft_model(**enc).logits
    torch.testing.assert_close(ours, theirs if model.is_encoder_decoder else theirs[:, n:])


def test_bad_inputs_get_one_clear_line(tiny_llama, tiny_t5, tmp_path):
    base, tokenizer = load(tiny_llama)
    with pytest.raises(TypeError, match=r"needs a model whose get_input_embeddings\(\) returns .* got Linear"):
        get_superpos_model(nn.Linear(2, 2), SuperPosConfig())
    with pytest.raises(TypeError, match=r"needs a model whose get_input_embeddings\(\) returns .* got _NoEmbeddings"):
        get_superpos_model(_NoEmbeddings(), SuperPosConfig())
    with pytest.raises(TypeError, match=r"config must be a SuperPosConfig, got dict"):
        get_superpos_model(base, {"num_prompt_tokens": 4})
    with pytest.raises(ValueError, match=r"SuperPosConfig does not fit LlamaForCausalLM: vocab_size=5000 exceeds"):
        get_superpos_model(base, SuperPosConfig(num_sampled_tokens=4, vocab_size=5000))
    with pytest.raises(ValueError, match=r"num_sampled_tokens=400 is larger than the sampleable vocabulary"):
        get_superpos_model(base, SuperPosConfig.from_tokenizer(tokenizer, num_sampled_tokens=400))
    with pytest.raises(TypeError, match=r"SuperPosConfig.num_prompt_tokens must be an int >= 1, got '4'"):
        SuperPosConfig(num_prompt_tokens="4")

    config = SuperPosConfig.from_tokenizer(tokenizer, num_prompt_tokens=2, num_sampled_tokens=4)
    model = get_superpos_model(base, config)
    ids = tokenizer(TEXTS[:1], return_tensors="pt")["input_ids"]
    with pytest.raises(ValueError, match=r"labels must have the shape of input_ids \(1, \d+\) for a causal LM"):
        model(input_ids=ids, labels=ids[:, :-1])
    with pytest.raises(TypeError, match=r"labels must be an integer tensor, got torch.float32"):
        model(input_ids=ids, labels=ids.float())
    with pytest.raises(TypeError, match=r"takes input_ids .* not inputs_embeds"):
        model.generate(input_ids=ids, inputs_embeds=torch.zeros(1, 1, 32))

    model.save_pretrained(tmp_path / "llama-adapter")
    with pytest.raises(ValueError, match=r"trained on .*tiny-llama.* \(CAUSAL_LM.* the given model is .*tiny-t5"):
        SuperPosModel.from_pretrained(load(tiny_t5)[0], tmp_path / "llama-adapter")
    with pytest.raises(ValueError, match=r"adapter folder .*nowhere does not exist"):
        SuperPosModel.from_pretrained(base, tmp_path / "nowhere")
