"""An unknown model name fails at once, in one line, when the hub is unreachable (no rounds of retries)."""

from __future__ import annotations

import pytest
from superpos_trainer import models
from superpos_trainer.errors import ModelLoadError


class _DeadSession:
    calls = 0

    def head(self, url, timeout):
        _DeadSession.calls += 1
        raise ConnectionError(f"[Errno -2] Name or service not known: {url}")


def test_probe_says_unreachable_after_one_request(monkeypatch):
    import huggingface_hub.utils

    _DeadSession.calls = 0
    monkeypatch.setattr(huggingface_hub.utils, "get_session", lambda: _DeadSession())
    assert models._hub_reachable() is False
    assert _DeadSession.calls == 1


def test_offline_mode_counts_as_unreachable(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert models._hub_reachable() is False


def test_unknown_name_without_hub_is_one_line_and_reads_the_cache_only(monkeypatch):
    import transformers

    seen = {}
    real = transformers.AutoConfig.from_pretrained

    def spy(path, **kwargs):
        seen.update(kwargs)
        return real(path, **kwargs)

    monkeypatch.setattr(models, "_hub_reachable", lambda: False)
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", spy)
    with pytest.raises(ModelLoadError, match=r"cannot load model 'no-org/smollm-typo': .* hub is unreachable") as info:
        models.load_model("no-org/smollm-typo")
    assert seen == {"local_files_only": True}  # huggingface_hub never tries the network, so never retries
    assert "\n" not in str(info.value)


def test_local_folders_skip_the_probe(monkeypatch, tiny_llama):
    def fail():
        raise AssertionError("a local folder must not probe the hub")

    monkeypatch.setattr(models, "_hub_reachable", fail)
    assert models.load_model(str(tiny_llama)).is_encoder_decoder is False
