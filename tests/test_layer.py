"""SuperPosPrompt against the reference op and an independent einsum formulation (issue 2)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from superpos_kernels import SuperPosPrompt, extend_attention_mask, superpos_embed_reference, superpose
from superpos_kernels.reference import superpos_backward_reference

SHAPES = [  # (B, L, V, d, n, m)
    (1, 1, 5, 37, 1, 3),
    (2, 7, 50, 37, 3, 3),
    (3, 1, 11, 8, 1, 1),
    (1, 9, 300, 16, 10, 128),
    (4, 5, 40, 33, 2, 17),
]


def _einsum_embed(ids, table, w, E):
    """An independent formulation: one-hot matmul for the gather, einsum for the superposition."""
    onehot = torch.nn.functional.one_hot(ids, table.shape[0]).to(table.dtype)
    tokens = torch.einsum("blv,vd->bld", onehot, table)
    prompt = torch.einsum("nm,nmd->nd", w, E)
    return torch.cat([prompt.expand(ids.shape[0], -1, -1), tokens], dim=1)


def _layer(V, d, n, m, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    emb = nn.Embedding(V, d).to(dtype)
    with torch.no_grad():
        emb.weight.copy_(torch.randn(V, d, generator=gen, dtype=torch.float64).to(dtype))
    emb.weight.requires_grad_(False)
    layer = SuperPosPrompt(emb, num_prompt_tokens=n, num_sampled_tokens=m, seed=seed)
    with torch.no_grad():  # fresh random parameters, not just the initial copies
        layer.w.copy_(torch.randn(n, m, generator=gen, dtype=torch.float64).to(dtype))
        layer.E.add_(torch.randn(n, m, d, generator=gen, dtype=torch.float64).to(dtype))
    return emb, layer


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}-L{}-V{}-d{}-n{}-m{}".format(*s))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layer_matches_reference_and_einsum(shape, dtype):
    B, L, V, d, n, m = shape
    seed = hash((shape, str(dtype))) % 10_000
    emb, layer = _layer(V, d, n, m, dtype, seed)
    ids = torch.randint(0, V, (B, L), generator=torch.Generator().manual_seed(seed))
    ids[0, 0], ids[-1, -1] = 0, V - 1  # both ends of the table
    out, mask = layer(ids)
    ref = superpos_embed_reference(ids, emb.weight, layer.w, layer.E)
    alt = _einsum_embed(ids, emb.weight, layer.w, layer.E)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    assert out.dtype == dtype and out.shape == (B, n + L, d)
    torch.testing.assert_close(out, ref, **tol)
    torch.testing.assert_close(out, alt, **tol)
    assert torch.equal(mask, torch.ones(B, n + L, dtype=torch.long))

    grad = torch.randn_like(out)
    gw, gE = torch.autograd.grad(out, (layer.w, layer.E), grad)
    ew, eE = torch.autograd.grad(alt, (layer.w, layer.E), grad)
    cw, cE = superpos_backward_reference(grad, layer.w.detach(), layer.E.detach())
    torch.testing.assert_close(gw, ew, **tol)
    torch.testing.assert_close(gE, eE, **tol)
    torch.testing.assert_close(gw, cw, **tol)
    torch.testing.assert_close(gE, cE, **tol)


def test_frozen_table_gets_no_gradient_and_is_not_a_parameter():
    emb, layer = _layer(30, 8, 2, 4, torch.float32, 0)
    assert all(p is not emb.weight for p in layer.parameters())
    assert set(layer.state_dict()) == {"w", "E", "sampled_token_ids"}
    emb.weight.requires_grad_(True)  # even if a user forgets to freeze it, the op hands it no gradient
    out, _ = layer(torch.randint(0, 30, (2, 3)))
    out.sum().backward()
    assert emb.weight.grad is None or torch.count_nonzero(emb.weight.grad) == 0
    assert layer.w.grad is not None and layer.E.grad is not None


def test_gradcheck_fp64():
    emb, layer = _layer(13, 5, 2, 3, torch.float64, 1)
    ids = torch.randint(0, 13, (2, 4))
    w = layer.w.detach().clone().requires_grad_(True)
    E = layer.E.detach().clone().requires_grad_(True)
    from superpos_kernels import superpos_embed

    assert torch.autograd.gradcheck(lambda w_, E_: superpos_embed(ids, emb.weight, w_, E_)[0], (w, E))


def test_m1_w1_is_simple_prompt_tuning():
    """m = 1 and w = 1: each prompt vector is exactly its own trainable copy of one vocabulary row."""
    emb = nn.Embedding(50, 12)
    layer = SuperPosPrompt(emb, num_prompt_tokens=4, num_sampled_tokens=1, seed=3)
    with torch.no_grad():
        layer.w.fill_(1.0)
    row = emb.weight[layer.sampled_token_ids[0]]
    prompt = layer.materialize()
    assert torch.equal(prompt, row.detach().expand(4, -1))
    ids = torch.randint(0, 50, (2, 5))
    out, _ = layer(ids)
    simple = torch.cat([prompt.expand(2, -1, -1), emb(ids)], dim=1)
    assert torch.equal(out, simple)
    # and the gradient w.r.t. the single copy equals simple prompt tuning's gradient w.r.t. its prompt
    grad = torch.randn_like(out)
    (gE,) = torch.autograd.grad(out, layer.E, grad)
    torch.testing.assert_close(gE[:, 0, :], grad[:, :4, :].sum(0))


def test_init_samples_unique_allowed_ids_and_copies_rows():
    emb = nn.Embedding(40, 6)
    special = [0, 1, 2]
    layer = SuperPosPrompt(emb, num_prompt_tokens=3, num_sampled_tokens=30, vocab_size=35, exclude_ids=special, seed=7)
    ids = layer.sampled_token_ids.tolist()
    assert len(set(ids)) == 30 and all(3 <= i < 35 for i in ids)
    for i in range(3):
        assert torch.equal(layer.E[i], emb.weight[layer.sampled_token_ids].detach())
    assert layer.E.data_ptr() != emb.weight.data_ptr()
    # each token owns its copy: training one leaves the others alone
    with torch.no_grad():
        layer.E[0].add_(1.0)
    assert torch.equal(layer.E[1], emb.weight[layer.sampled_token_ids].detach())
    # reproducible from the seed, different across seeds
    again = SuperPosPrompt(emb, num_prompt_tokens=3, num_sampled_tokens=30, vocab_size=35, exclude_ids=special, seed=7)
    assert again.sampled_token_ids.tolist() == ids and torch.equal(again.w, layer.w)
    other = SuperPosPrompt(emb, num_prompt_tokens=3, num_sampled_tokens=30, vocab_size=35, exclude_ids=special, seed=8)
    assert other.sampled_token_ids.tolist() != ids


def test_w_init_is_normal_with_variance_one_over_m():
    layer = SuperPosPrompt(nn.Embedding(2000, 4), num_prompt_tokens=50, num_sampled_tokens=1000, seed=0)
    assert abs(layer.w.var().item() * 1000 - 1.0) < 0.05
    assert abs(layer.w.mean().item()) < 3 / math.sqrt(50 * 1000) * math.sqrt(1000) / math.sqrt(1000) * 10


def test_dtype_follows_embedding():
    emb = nn.Embedding(20, 8).to(torch.bfloat16)
    layer = SuperPosPrompt(emb, num_prompt_tokens=2, num_sampled_tokens=4)
    assert layer.w.dtype == layer.E.dtype == torch.bfloat16
    out, _ = layer(torch.randint(0, 20, (1, 3)))
    assert out.dtype == torch.bfloat16


def test_accepts_a_model_with_get_input_embeddings_and_reads_embed_scale():
    class ScaledEmbedding(nn.Embedding):
        def __init__(self):
            super().__init__(30, 4)
            self.register_buffer("embed_scale", torch.tensor(2.0))

        def forward(self, ids):
            return super().forward(ids) * self.embed_scale

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = ScaledEmbedding()

        def get_input_embeddings(self):
            return self.emb

    model = Model()
    layer = SuperPosPrompt(model, num_prompt_tokens=2, num_sampled_tokens=3)
    assert layer.embed_scale == 2.0
    ids = torch.randint(0, 30, (2, 5))
    out, _ = layer(ids)
    torch.testing.assert_close(out[:, 2:], model.emb(ids))
    # E starts as the rows the model actually sees (scaled)
    torch.testing.assert_close(layer.E[0], model.emb(layer.sampled_token_ids))


def test_attention_mask_is_extended_for_padded_batches():
    _emb, layer = _layer(20, 4, 3, 2, torch.float32, 0)
    ids = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    _, ext = layer(ids, mask)
    assert torch.equal(ext, torch.tensor([[1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 0, 0]]))
    boolean = extend_attention_mask(mask.bool(), ids, 3)
    assert boolean.dtype == torch.bool and torch.equal(boolean.long(), ext)


def test_param_groups_decay_w_only():
    _, layer = _layer(20, 4, 3, 2, torch.float32, 0)
    groups = layer.param_groups(weight_decay=0.5)
    by_param = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert by_param == {id(layer.w): 0.5, id(layer.E): 0.0}
    torch.optim.AdamW(groups, lr=1e-2)  # accepted as-is


def test_print_trainable_parameters_peft_format(capsys):
    emb = nn.Embedding(100, 8)
    layer = SuperPosPrompt(emb, num_prompt_tokens=2, num_sampled_tokens=5)
    layer.print_trainable_parameters()
    trainable = 2 * 5 + 2 * 5 * 8
    total = trainable + 800
    assert capsys.readouterr().out.strip() == (
        f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}"
    )


def test_materialize_is_the_superposition():
    _, layer = _layer(20, 4, 3, 2, torch.float32, 0)
    torch.testing.assert_close(layer.materialize(), superpose(layer.w, layer.E).detach())
    assert not layer.materialize().requires_grad
