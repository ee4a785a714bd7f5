"""Under CPU bf16 autocast the trainer runs attention in eager mode (SDPA's bf16 CPU backward is slow): the switch
happens only there, and eager attention computes what SDPA computes."""

from __future__ import annotations

import torch
from superpos_trainer.precision import prefer_fast_attention
from transformers import AutoModelForCausalLM


def _model(path):
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa").eval()
    assert model.config._attn_implementation == "sdpa"
    return model


def test_only_cpu_bf16_switches_sdpa_to_eager(tiny_llama):
    model = _model(tiny_llama)
    assert not prefer_fast_attention(model, bf16=False, device=torch.device("cpu"))
    assert not prefer_fast_attention(model, bf16=True, device=torch.device("cuda"))
    assert model.config._attn_implementation == "sdpa"
    assert prefer_fast_attention(model, bf16=True, device=torch.device("cpu"))
    assert model.config._attn_implementation == "eager"
    assert not prefer_fast_attention(model, bf16=True, device=torch.device("cpu"))  # already eager: nothing to do


def test_eager_attention_gives_sdpa_logits_with_left_padding(tiny_llama):
    torch.manual_seed(0)
    ids = torch.randint(3, 100, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding, as the trainer's causal batches
    mask[1, :1] = 0
    model = _model(tiny_llama)
    with torch.no_grad():
        sdpa = model(input_ids=ids, attention_mask=mask).logits
        prefer_fast_attention(model, bf16=True, device=torch.device("cpu"))
        eager = model(input_ids=ids, attention_mask=mask).logits
    real = mask.bool()
    torch.testing.assert_close(eager[real], sdpa[real], rtol=1e-5, atol=1e-5)
