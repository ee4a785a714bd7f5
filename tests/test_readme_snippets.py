"""Every ```python block of README.md runs, so the docs cannot drift from the code.

The blocks run top to bottom in one namespace, as a reader pasting them into one Python session would. The
preamble is the only difference from what a reader runs:

* the hub ids the README names are replaced by tiny models built from configs (``tests/model_fixtures.py``):
  ``HuggingFaceTB/SmolLM2-135M`` -> the tiny Llama-style model, ``google/t5-*`` -> the tiny T5 (no network here,
  and a step then takes milliseconds);
* the working directory is a temporary folder (the snippets write adapter folders and a Trainer run).
"""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(first line number, code)`` of each ```python block."""
    return [(text.count("\n", 0, match.start()) + 2, match.group(1)) for match in BLOCK.finditer(text)]


def test_blocks_are_found():
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 2  # the quick start and the Hugging Face workflow
    assert "get_superpos_model" in blocks[0][1]


def test_every_readme_python_block_runs(tiny_llama, tiny_t5, tmp_path, monkeypatch):
    text = README.read_text(encoding="utf-8")
    text = text.replace("HuggingFaceTB/SmolLM2-135M", str(tiny_llama))
    text = re.sub(r"google/t5-[\w-]+", str(tiny_t5), text)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme"}
    for line, code in python_blocks(text):
        exec(compile(code, f"README.md:{line}", "exec"), namespace)  # a failure names the block's line
    # the snippets did what they say
    assert (tmp_path / "my-adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "hf-run" / "final" / "model.safetensors").is_file()
    assert (tmp_path / "my-peft-prompt" / "adapter_model.safetensors").is_file()
    assert type(namespace["model"]).__name__ == "SuperPosModel"
