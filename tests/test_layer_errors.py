"""Every bad input to the layer gives a ValueError/TypeError that names the argument, expected and given."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from superpos_kernels import SuperPosPrompt


@pytest.fixture
def layer():
    return SuperPosPrompt(nn.Embedding(50, 8), num_prompt_tokens=2, num_sampled_tokens=4, seed=0)


@pytest.mark.parametrize(
    ("ids", "mask", "error", "match"),
    [
        (torch.randint(0, 50, (5,)), None, ValueError, r"input_ids must have shape \[batch, seq_len\].*\(5,\)"),
        (torch.randint(0, 50, (1, 2, 3)), None, ValueError, r"input_ids must have shape.*\(1, 2, 3\)"),
        (torch.rand(2, 3), None, TypeError, r"input_ids must be an integer tensor.*torch.float32"),
        (torch.tensor([[1, 50]]), None, ValueError, r"input_ids holds id 50, out of range .* 50 rows"),
        (torch.tensor([[1, -1]]), None, ValueError, r"input_ids holds a negative id \(-1\)"),
        (torch.zeros(0, 3, dtype=torch.long), None, ValueError, r"input_ids is an empty batch"),
        ([[1, 2]], None, TypeError, r"input_ids must be a torch.Tensor, got list"),
        (torch.tensor([[1, 2]]), torch.ones(1, 3), ValueError, r"attention_mask must have the shape of input_ids"),
        (torch.tensor([[1, 2]]), torch.ones(1, 2, dtype=torch.complex64), TypeError, r"attention_mask must be an"),
    ],
    ids=[
        "rank1",
        "rank3",
        "float-ids",
        "id-too-large",
        "negative-id",
        "empty-batch",
        "not-tensor",
        "mask-shape",
        "mask-dtype",
    ],
)
def test_bad_forward_inputs(layer, ids, mask, error, match):
    with pytest.raises(error, match=match):
        layer(ids, mask)


def test_int32_ids_are_accepted(layer):
    out, _ = layer(torch.tensor([[1, 2, 3]], dtype=torch.int32))
    assert out.shape == (1, 5, 8)


def test_mismatched_dtype_between_table_and_prompt(layer):
    layer.embedding.to(torch.float64)
    with pytest.raises(TypeError, match=r"must share one dtype, got weight=torch.float64, w=torch.float32"):
        layer(torch.tensor([[1, 2]]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device (CUDA) to mismatch")
def test_mismatched_devices_cuda(layer):
    with pytest.raises(ValueError, match=r"input_ids is on cuda"):
        layer(torch.tensor([[1, 2]], device="cuda"))


def test_mismatched_devices_meta():
    """Device mismatches are checked before any kernel runs (meta tensors stand in for a second device here)."""
    from superpos_kernels import superpos_embed

    weight = torch.randn(10, 4)
    w, E = torch.randn(2, 3), torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match=r"weight, w and E must be on one device, got weight=cpu, w=meta"):
        superpos_embed(torch.tensor([[1]]), weight, w.to("meta"), E)
    with pytest.raises(ValueError, match=r"input_ids is on meta but the embedding table is on cpu"):
        superpos_embed(torch.tensor([[1]], device="meta"), weight, w, E)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_prompt_tokens": 0}, ValueError, r"num_prompt_tokens must be >= 1, got 0"),
        ({"num_sampled_tokens": 0}, ValueError, r"num_sampled_tokens must be >= 1, got 0"),
        ({"num_prompt_tokens": 2.5}, TypeError, r"num_prompt_tokens must be an int >= 1, got 2.5"),
        (
            {"num_sampled_tokens": 51},
            ValueError,
            r"num_sampled_tokens=51 is larger than the sampleable vocabulary",
        ),
        (
            {"num_sampled_tokens": 48, "exclude_ids": [0, 1, 2]},
            ValueError,
            r"num_sampled_tokens=48 is larger than the sampleable vocabulary \(47 ids",
        ),
        ({"vocab_size": 60}, ValueError, r"vocab_size=60 exceeds the embedding table's 50 rows"),
        ({"sampled_token_ids": [1, 1, 2, 3]}, ValueError, r"sampled_token_ids must hold 4 unique ids"),
        ({"sampled_token_ids": [1, 2, 3, 99]}, ValueError, r"sampled_token_ids holds ids outside \[0, 50\): \[99\]"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, match):
    args = {"num_prompt_tokens": 2, "num_sampled_tokens": 4} | kwargs
    with pytest.raises(error, match=match):
        SuperPosPrompt(nn.Embedding(50, 8), **args)


def test_not_an_embedding():
    with pytest.raises(TypeError, match=r"embedding must be an nn.Embedding or a model with get_input_embeddings\(\)"):
        SuperPosPrompt(nn.Linear(3, 4).bias, num_prompt_tokens=1, num_sampled_tokens=1)


@pytest.mark.parametrize("scale", [float("nan"), float("inf")])
def test_non_finite_embed_scale_is_refused(scale):
    with pytest.raises(ValueError, match=r"embed_scale must be a finite number"):
        SuperPosPrompt(nn.Embedding(50, 8), num_prompt_tokens=2, num_sampled_tokens=4, embed_scale=scale)


def test_a_prompt_larger_than_the_memory_is_refused_before_allocation():
    # 10^9 prompt tokens x 4 rows x 8 floats = 128 GB for E: refused by its size, before any allocation.
    from superpos_kernels import SuperPosInputError

    with pytest.raises(SuperPosInputError, match=r"num_prompt_tokens=1000000000 x num_sampled_tokens=4 x dim=8 needs"):
        SuperPosPrompt(nn.Embedding(50, 8), num_prompt_tokens=10**9, num_sampled_tokens=4, seed=0)
