"""Bad input: one clear line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from superpos_trainer.cli import main


def _train(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--model",
        str(model),
        "--data-dir",
        str(data),
        "--output-dir",
        str(out),
        "--epochs",
        "1",
        "--num-prompt-tokens",
        "4",
        "--num-sampled-tokens",
        "16",
        "--max-length",
        "64",
        "--no-progress",
        *extra,
    ]


def _error(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    # Info log lines (model loaded, ...) may come first; the error itself is one line, the last one.
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and err.splitlines()[-1] == errors[0], err
    return errors[0]


def _copy_tiny(data: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(data, dest)
    return dest


def test_unknown_task_method_model(tiny_t5, tiny_data, tmp_path, capsys):
    assert "unknown task 'nope'" in _error(capsys, _train(tiny_t5, tiny_data, tmp_path / "a", "--task", "nope"))
    assert "unknown method" in _error(
        capsys, ["train", "--config", str(_write(tmp_path / "c.json", {"method": "lora"}))]
    )
    err = _error(capsys, _train(tmp_path / "missing-model", tiny_data, tmp_path / "b"))
    assert "missing-model" in err and "does not exist" in err
    err = _error(capsys, _train(tiny_t5, tiny_data, tmp_path / "b2", "--model-type", "causal"))
    assert "encoder-decoder" in err


def _write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_missing_data_file_and_folder(tiny_t5, tiny_data, tmp_path, capsys):
    data = _copy_tiny(tiny_data, tmp_path / "data")
    (data / "glue" / "sst2" / "dev.tsv").unlink()
    err = _error(capsys, _train(tiny_t5, data, tmp_path / "a"))
    assert "dev.tsv" in err
    err = _error(capsys, _train(tiny_t5, tmp_path / "no-such-dir", tmp_path / "b"))
    assert "--data-dir" in err and "no-such-dir" in err


def test_malformed_rows_empty_split_and_bad_labels(tiny_t5, tiny_data, tmp_path, capsys):
    data = _copy_tiny(tiny_data, tmp_path / "data")
    sst = data / "glue" / "sst2" / "train.tsv"
    good = sst.read_text().splitlines()
    sst.write_text("\n".join([*good[:3], "only-one-column", *good[3:]]) + "\n")
    err = _error(capsys, _train(tiny_t5, data, tmp_path / "a"))
    assert "train.tsv:4" in err and "columns" in err
    sst.write_text(good[0] + "\n")  # header only
    assert "no examples" in _error(capsys, _train(tiny_t5, data, tmp_path / "b"))
    sst.write_text("\n".join([good[0], "a fine film\t7"]) + "\n")  # label outside {0, 1}
    err = _error(capsys, _train(tiny_t5, data, tmp_path / "c"))
    assert "label" in err and "7" in err


def test_bad_options(tiny_t5, tiny_data, tmp_path, capsys):
    err = _error(capsys, _train(tiny_t5, tiny_data, tmp_path / "a", "--max-length", "4"))
    assert "--max-length 4" in err
    err = _error(capsys, _train(tiny_t5, tiny_data, tmp_path / "a", "--holdout-fraction", "1.5"))
    assert "--holdout-fraction" in err
    err = _error(capsys, _train(tiny_t5, tiny_data, tmp_path / "a", "--batch-size", "0"))
    assert "--batch-size" in err
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("epochs: [1, 2\n")
    assert "not valid yaml" in _error(capsys, ["train", "--config", str(bad_yaml)])
    assert "unknown option 'epoch'" in _error(
        capsys, ["train", "--config", str(_write(tmp_path / "u.json", {"epoch": 3}))]
    )
    assert "expects int" in _error(capsys, ["train", "--config", str(_write(tmp_path / "t.json", {"epochs": "x"}))])


def test_max_length_smaller_than_prompt_for_causal(tiny_llama, tiny_data, tmp_path, capsys):
    # 12 > 4 prompt tokens passes the config check, but a causal model also needs room for the label tokens.
    err = _error(capsys, _train(tiny_llama, tiny_data, tmp_path / "a", "--max-length", "12"))
    assert "--max-length 12 is too small" in err and "label tokens" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_unwritable_output_folder(tiny_t5, tiny_data, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        err = _error(capsys, _train(tiny_t5, tiny_data, locked / "run"))
        assert "cannot write to output folder" in err
    finally:
        locked.chmod(0o700)


def test_output_path_that_is_a_file(tiny_t5, tiny_data, tmp_path, capsys):
    # Works as root too: a regular file where the run folder should go.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    err = _error(capsys, _train(tiny_t5, tiny_data, blocker / "run"))
    assert "cannot write to output folder" in err
    err = _error(capsys, _train(tiny_t5, tiny_data, blocker))
    assert "not an empty folder" in err


def test_inference_commands_bad_adapter(tmp_path, capsys):
    assert "does not exist" in _error(capsys, ["evaluate", str(tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    assert "pass --model and --task" in _error(capsys, ["predict", str(tmp_path / "empty"), "--text", "hi"])
    assert "not a run folder" in _error(capsys, ["compare", str(tmp_path / "empty")])


def test_console_script_prints_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "superpos_trainer.cli", "train", "--task", "nope", "--output-dir", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "unknown task 'nope'" in proc.stderr and "Traceback" not in proc.stderr
