"""Optimizer and RNG states as safetensors + JSON (superpos_trainer/state_codec.py): exact round trips, no pickle."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from superpos_trainer import state_codec


def _optimizer() -> torch.optim.Optimizer:
    a, b = torch.nn.Parameter(torch.randn(2, 3)), torch.nn.Parameter(torch.randn(4))
    optimizer = torch.optim.AdamW([{"params": [a], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0}], lr=0.01)
    for _ in range(3):
        a.grad, b.grad = torch.randn(2, 3), torch.randn(4)
        optimizer.step()
    return optimizer


def _same(x: object, y: object) -> bool:
    if isinstance(x, torch.Tensor):
        return isinstance(y, torch.Tensor) and x.dtype == y.dtype and torch.equal(x, y)
    if isinstance(x, np.ndarray):
        return isinstance(y, np.ndarray) and x.dtype == y.dtype and np.array_equal(x, y)
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, list | tuple):
        return type(x) is type(y) and len(x) == len(y) and all(_same(a, b) for a, b in zip(x, y, strict=True))
    return x == y or (x != x and y != y)  # NaN equals NaN here


def test_round_trip_is_exact_and_json_is_plain():
    optimizer = _optimizer()
    random.gauss(0, 1)  # python's gauss_next is set: a float, not None
    rng = {**state_codec.rng_state(), "cuda": [torch.randint(0, 255, (16,), dtype=torch.uint8) for _ in range(2)]}
    tensors, data = state_codec.encode(optimizer.state_dict(), rng)
    text = json.dumps(data, allow_nan=False)  # strict JSON: no NaN/Infinity literals, nothing custom
    decoded_optimizer, decoded_rng = state_codec.decode(tensors, json.loads(text))
    assert _same(decoded_optimizer, optimizer.state_dict())
    assert _same(decoded_rng, rng)


def test_non_finite_hyperparameters_survive():
    optimizer = _optimizer()
    optimizer.param_groups[0]["eps"] = float("inf")
    optimizer.param_groups[1]["eps"] = float("nan")
    tensors, data = state_codec.encode(optimizer.state_dict(), state_codec.rng_state())
    decoded, _ = state_codec.decode(tensors, json.loads(json.dumps(data, allow_nan=False)))
    assert decoded["param_groups"][0]["eps"] == float("inf") and math.isnan(decoded["param_groups"][1]["eps"])


def test_rng_restore_replays_the_same_numbers():
    tensors, data = state_codec.encode(_optimizer().state_dict(), state_codec.rng_state())
    first = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002 (the global state is the point)
    _, rng = state_codec.decode(tensors, data)
    state_codec.set_rng_state(rng)
    again = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    assert first[:2] == again[:2] and torch.equal(first[2], again[2])


def test_legacy_file_reads_plain_data_only(tmp_path):
    optimizer = _optimizer()
    rng = state_codec.rng_state()
    torch.save({"optimizer": optimizer.state_dict(), "rng": rng}, tmp_path / "optimizer_rng.pt")  # format 1
    decoded_optimizer, decoded_rng = state_codec.load_legacy(tmp_path / "optimizer_rng.pt")
    assert _same(decoded_optimizer, optimizer.state_dict()) and _same(decoded_rng, rng)
    torch.save({"optimizer": optimizer.state_dict(), "rng": rng, "extra": 1}, tmp_path / "other.pt")
    with pytest.raises(state_codec.StateFormatError, match="expected a dict with 'optimizer' and 'rng'"):
        state_codec.load_legacy(tmp_path / "other.pt")
