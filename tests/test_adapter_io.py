"""save_pretrained / from_pretrained: bit-exact round trip and clear errors for broken folders."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from superpos_kernels import SuperPosPrompt
from superpos_kernels.layer import CONFIG_NAME, WEIGHTS_NAME


@pytest.fixture
def trained(tmp_path):
    emb = nn.Embedding(64, 12)
    layer = SuperPosPrompt(emb, num_prompt_tokens=3, num_sampled_tokens=5, seed=4, base_model_name="tiny/model")
    with torch.no_grad():  # not the initial values: a round trip must carry trained parameters
        layer.w.normal_()
        layer.E.add_(torch.randn_like(layer.E))
    folder = tmp_path / "adapter"
    layer.save_pretrained(folder)
    return emb, layer, folder


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_round_trip_is_bit_exact(tmp_path, dtype):
    emb = nn.Embedding(64, 12).to(dtype)
    layer = SuperPosPrompt(emb, num_prompt_tokens=3, num_sampled_tokens=5, seed=4)
    with torch.no_grad():
        layer.w.normal_()
        layer.E.add_(torch.randn_like(layer.E))
    layer.save_pretrained(tmp_path)
    loaded = SuperPosPrompt.from_pretrained(tmp_path, emb)
    assert loaded.w.dtype == dtype
    assert torch.equal(loaded.w, layer.w) and torch.equal(loaded.E, layer.E)
    assert torch.equal(loaded.sampled_token_ids, layer.sampled_token_ids)
    ids = torch.randint(0, 64, (2, 5))
    assert torch.equal(loaded(ids)[0], layer(ids)[0])


def test_config_contents(trained):
    _, layer, folder = trained
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert config["num_prompt_tokens"] == 3 and config["num_sampled_tokens"] == 5
    assert config["sampled_token_ids"] == layer.sampled_token_ids.tolist()
    assert config["embedding_dim"] == 12 and config["num_embeddings"] == 64
    assert config["base_model_name_or_path"] == "tiny/model"
    assert config["superpos_kernels_version"]
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME])  # no temp files left


def test_missing_folder(tmp_path):
    with pytest.raises(ValueError, match=r"adapter folder .*nope does not exist"):
        SuperPosPrompt.from_pretrained(tmp_path / "nope", nn.Embedding(4, 2))


def test_missing_config(trained):
    emb, _, folder = trained
    (folder / CONFIG_NAME).unlink()
    with pytest.raises(ValueError, match=r"adapter_config.json is missing"):
        SuperPosPrompt.from_pretrained(folder, emb)


def test_corrupt_config(trained):
    emb, _, folder = trained
    (folder / CONFIG_NAME).write_text('{"num_prompt_tokens": 3,')
    with pytest.raises(ValueError, match=r"adapter_config.json is not valid JSON"):
        SuperPosPrompt.from_pretrained(folder, emb)


def test_config_missing_key(trained):
    emb, _, folder = trained
    config = json.loads((folder / CONFIG_NAME).read_text())
    del config["sampled_token_ids"]
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"lacks the key 'sampled_token_ids'"):
        SuperPosPrompt.from_pretrained(folder, emb)


def test_wrong_adapter_type(trained):
    emb, _, folder = trained
    (folder / CONFIG_NAME).write_text(json.dumps({"peft_type": "LORA"}))
    with pytest.raises(ValueError, match=r"describes a 'LORA' adapter, expected peft_type 'SUPERPOS_PROMPT'"):
        SuperPosPrompt.from_pretrained(folder, emb)


@pytest.mark.parametrize("peft_type", ["SUPERPOS_PROMPT", None])
def test_config_that_is_not_an_object(trained, peft_type):
    from superpos_kernels.io import read_adapter_config

    _, _, folder = trained
    (folder / CONFIG_NAME).write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"must hold a JSON object, found a JSON list; the adapter folder is corrupt"):
        read_adapter_config(folder / CONFIG_NAME, peft_type)


@pytest.mark.parametrize("keep", [0, 7, 100, -10])
def test_truncated_weights(trained, keep):
    emb, _, folder = trained
    path = folder / WEIGHTS_NAME
    data = path.read_bytes()
    path.write_bytes(data[:keep])  # keep < 0 drops the tail
    with pytest.raises(ValueError, match=r"adapter_model.safetensors is not a readable safetensors file"):
        SuperPosPrompt.from_pretrained(folder, emb)


def test_missing_weights(trained):
    emb, _, folder = trained
    (folder / WEIGHTS_NAME).unlink()
    with pytest.raises(ValueError, match=r"adapter_model.safetensors is missing"):
        SuperPosPrompt.from_pretrained(folder, emb)


def test_wrong_embedding_dim(trained):
    _, _, folder = trained
    with pytest.raises(ValueError, match=r"trained for embedding dim 12, but the given embedding has dim 7"):
        SuperPosPrompt.from_pretrained(folder, nn.Embedding(64, 7))


def test_weights_with_wrong_shape(trained, tmp_path):
    emb, _, folder = trained
    other = SuperPosPrompt(emb, num_prompt_tokens=2, num_sampled_tokens=5, seed=4)
    other.save_pretrained(tmp_path / "other")
    (folder / WEIGHTS_NAME).write_bytes((tmp_path / "other" / WEIGHTS_NAME).read_bytes())
    with pytest.raises(ValueError, match=r"tensor 'w' has shape \(2, 5\), expected \(3, 5\)"):
        SuperPosPrompt.from_pretrained(folder, emb)


def test_failed_write_leaves_previous_adapter_intact(trained, monkeypatch):
    """A write that dies half-way (disk full) must not replace the good adapter with a broken one."""
    emb, layer, folder = trained
    before = (folder / WEIGHTS_NAME).read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("superpos_kernels.io.save_file", disk_full)
    with torch.no_grad():
        layer.w.add_(1.0)
    with pytest.raises(OSError, match="No space left"):
        layer.save_pretrained(folder)
    assert (folder / WEIGHTS_NAME).read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME])
    SuperPosPrompt.from_pretrained(folder, emb)


def _edit_config(folder, **changes):
    config = json.loads((folder / CONFIG_NAME).read_text())
    config.update(changes)
    (folder / CONFIG_NAME).write_text(json.dumps(config))


def test_huge_prompt_length_is_refused_before_allocation(trained, monkeypatch):
    """num_prompt_tokens 3,000,000 would allocate gigabytes for E: the header check must refuse it first."""
    emb, _, folder = trained
    _edit_config(folder, num_prompt_tokens=3_000_000)
    built = []
    monkeypatch.setattr(SuperPosPrompt, "__init__", lambda *a, **k: built.append(1))
    with pytest.raises(ValueError, match=r"tensor 'w' has shape \(3, 5\), expected \(3000000, 5\) from the adapter"):
        SuperPosPrompt.from_pretrained(folder, emb)
    assert not built  # refused before the layer (and its n x m x d tensor) was built


def test_huge_sampled_count_is_refused_before_allocation(trained):
    emb, _, folder = trained
    _edit_config(folder, num_sampled_tokens=10**9)
    with pytest.raises(ValueError, match=r"'sampled_token_ids' must be a list of 1000000000 token ids, got 5 entries"):
        SuperPosPrompt.from_pretrained(folder, emb)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("num_prompt_tokens", "3", "an integer >= 1"),
        ("num_prompt_tokens", 3.0, "an integer >= 1"),
        ("num_prompt_tokens", True, "an integer >= 1"),
        ("num_prompt_tokens", 0, "an integer >= 1"),
        ("num_sampled_tokens", [5], "an integer >= 1"),
        ("seed", "4", "an integer >= 0"),
        ("seed", None, "an integer >= 0"),
        ("embedding_dim", 12.0, "an integer >= 1"),
        ("embed_scale", "1.0", "a finite number"),
        ("embed_scale", False, "a finite number"),
        ("base_model_name_or_path", 7, "a string or null"),
    ],
)
def test_wrong_json_types_are_one_clear_line(trained, key, value, expected):
    emb, _, folder = trained
    _edit_config(folder, **{key: value})
    with pytest.raises(ValueError, match=rf"adapter_config.json: key '{key}' must be {expected}, got") as info:
        SuperPosPrompt.from_pretrained(folder, emb)
    assert "\n" not in str(info.value)


def test_bad_sampled_ids_are_named(trained):
    emb, _, folder = trained
    _edit_config(folder, sampled_token_ids=[1, 2, "3", 4, 5])
    with pytest.raises(ValueError, match=r"key 'sampled_token_ids' must be a list of non-negative integers, got '3'"):
        SuperPosPrompt.from_pretrained(folder, emb)


def test_long_values_are_not_echoed_whole(trained):
    emb, _, folder = trained
    _edit_config(folder, num_prompt_tokens="9" * 100_000)
    with pytest.raises(ValueError) as info:
        SuperPosPrompt.from_pretrained(folder, emb)
    assert len(str(info.value)) < 500


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_embed_scale_is_refused(trained, value):
    emb, _, folder = trained
    text = (folder / CONFIG_NAME).read_text()
    config = json.loads(text)
    text = text.replace(f'"embed_scale": {json.dumps(config["embed_scale"])}', f'"embed_scale": {value}')
    (folder / CONFIG_NAME).write_text(text)
    with pytest.raises(ValueError, match=r"adapter_config.json: key 'embed_scale' must be a finite number"):
        SuperPosPrompt.from_pretrained(folder, emb)


@pytest.mark.parametrize(("name", "bad"), [("w", float("nan")), ("E", float("inf")), ("E", float("-inf"))])
def test_non_finite_weights_are_refused(trained, name, bad):
    from safetensors.torch import load_file, save_file

    emb, _, folder = trained
    tensors = load_file(str(folder / WEIGHTS_NAME))
    tensors[name].view(-1)[1] = bad
    save_file(tensors, str(folder / WEIGHTS_NAME))
    with pytest.raises(ValueError, match=rf"adapter_model.safetensors: tensor '{name}' holds NaN or inf values"):
        SuperPosPrompt.from_pretrained(folder, emb)


def test_forged_header_cannot_claim_more_than_the_file(trained):
    """A header whose shapes match a huge config but whose file is small is refused by the header check."""
    import struct

    emb, _, folder = trained
    path = folder / WEIGHTS_NAME
    data = path.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + size])
    header["w"]["shape"] = [3_000_000, 5]
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + size :])
    _edit_config(folder, num_prompt_tokens=3_000_000)
    with pytest.raises(ValueError, match=r"adapter_model.safetensors is not a readable safetensors file"):
        SuperPosPrompt.from_pretrained(folder, emb)


def test_deeply_nested_config_is_one_line(trained):
    emb, _, folder = trained
    (folder / CONFIG_NAME).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=r"adapter_config.json nests JSON too deeply"):
        SuperPosPrompt.from_pretrained(folder, emb)


def test_oversized_config_is_refused_unread(trained, monkeypatch):
    emb, _, folder = trained
    monkeypatch.setattr("superpos_kernels.io.MAX_CONFIG_BYTES", 100)
    with pytest.raises(ValueError, match=r"adapter_config.json is [\d,]+ bytes, more than any adapter config"):
        SuperPosPrompt.from_pretrained(folder, emb)
