"""Loading a task's split as Examples: from the Hugging Face hub, or from local files in the official formats.

Generic readers driven by the task's entry (``tasks.py``): which files a split may come from (``Task.files``, most
official first), how each is read (``tasks.Source``), the hub split names (``Task.hub_splits``) and the hint for a
known missing file (``Task.missing_hint``). No task is known here by name.

File formats are the official ones, read exactly as the GLUE / HF loaders read them:

- TSV (GLUE): tab-separated, quoting OFF (the files hold unbalanced ``"``), UTF-8 with an optional BOM (MRPC dev
  has one). Columns are found by their header names (``Source.columns``), and every row must have as many columns
  as the header; a headerless file (CoLA) names column numbers and its exact width. ``idx`` is the 0-based data
  row number (what HF ``glue`` uses).
- JSONL (SuperGLUE): one JSON object per line with the official field names; ``Source.expand`` turns one object
  into several rows (MultiRC: one per answer option, ``Example.group = "<paragraph idx>-<question idx>"``).
- Empty lines are skipped. A last line without a newline is read normally when complete; when it is cut short the
  error says the file may be truncated. A fallback file with a ``Source.warning`` emits it as a ``UserWarning``.

Every problem with a row raises ``DataError`` naming the file, the 1-based line number and what is wrong; a missing
file raises ``DataFileMissing`` (a ``DataError``) naming the expected path and the fix; an empty split is an error.

``limit`` picks a fixed random subset, the same for the same seed (``random.Random(seed)``), kept in file order.
Grouped examples (MultiRC's answers of one question) are sampled whole, so EM stays meaningful: at most ``limit``
rows, at least one group.
"""

from __future__ import annotations

import json
import os
import random
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError, SuperposError, clip, short_repr
from .tasks import SPLITS, Example, RowError, Source, Task, get_task

# Hub ids of the benchmarks ("glue" / "super_glue" redirect to these). Module constants so a mirror can be set.
HUB_DATASETS = {"glue": "nyu-mll/glue", "superglue": "aps/super_glue"}


class DataError(SuperposError):
    """Malformed or missing task data: the message names the file (and line) and what is wrong."""


class DataFileMissing(DataError):
    """None of the files a task/split can be read from exists under ``data_dir``."""


def load_examples(
    task: Task | str,
    split: str,
    data_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> list[Example]:
    """All Examples of ``task``/``split`` ("train" or "validation"), or a seeded subset of ``limit`` of them.

    ``data_dir=None`` loads from the Hugging Face hub (``datasets.load_dataset``); otherwise from local files laid
    out like ``shared/data`` (see the module docstring).
    """
    task = get_task(task)
    split = _check_split(split)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None (all examples), got {short_repr(limit)}")
    if data_dir is None:
        examples, origin = _load_hub(task, split), f"hub dataset {HUB_DATASETS[task.benchmark]}/{task.name} {split}"
    else:
        examples, origin = _load_local(task, split, Path(data_dir))
    if not examples:
        raise DataError(f"{origin}: no examples in the {split} split of {task.name} (empty file or header only)")
    return examples if limit is None else _subset(examples, limit, seed)


def train_holdout_split(
    examples: list[Example], holdout_fraction: float, seed: int = 0
) -> tuple[list[Example], list[Example]]:
    """Split (train) examples into (train, holdout) for an untouched test number; seeded, order kept.

    The holdout gets round(holdout_fraction * number of groups) groups, at least one; both parts must be non-empty.
    Examples sharing a ``group`` (MultiRC answers of one question) go to the same side.
    """
    if isinstance(holdout_fraction, bool) or not isinstance(holdout_fraction, (int, float)):
        raise TypeError(f"holdout_fraction must be a number in (0, 1), got {short_repr(holdout_fraction)}")
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be strictly between 0 and 1, got {holdout_fraction}")
    groups = _groups(examples)
    if len(groups) < 2:  # a user's --holdout-fraction on too small a training set
        raise ConfigError(
            f"cannot hold out part of {len(examples)} example(s) in {len(groups)} group(s): need at least 2 groups"
        )
    n_holdout = min(max(1, round(holdout_fraction * len(groups))), len(groups) - 1)
    order = list(range(len(groups)))
    random.Random(seed).shuffle(order)
    held = {i for g in order[:n_holdout] for i in groups[g]}
    train = [e for i, e in enumerate(examples) if i not in held]
    holdout = [e for i, e in enumerate(examples) if i in held]
    return train, holdout


# -- local files ----------------------------------------------------------------------------------------------


def _load_local(task: Task, split: str, data_dir: Path) -> tuple[list[Example], str]:
    if not data_dir.is_dir():
        raise DataFileMissing(
            f"data_dir {str(data_dir)!r} is not a folder; pass a folder laid out like shared/data "
            f"(glue/<task>/train.tsv, superglue/<task>/train.jsonl) or data_dir=None to load from the hub"
        )
    candidates = task.files[split]
    for source in candidates:
        path = data_dir / source.relpath
        if path.is_file():
            if source.warning:
                warnings.warn(source.warning, UserWarning, stacklevel=3)
            rows = _read_tsv(path, source) if source.kind == "tsv" else _read_jsonl(path, source)
            try:
                return [_format(task, row, path, lineno) for lineno, row in rows], str(path)
            except OSError as err:  # unreadable (permissions), vanished mid-read: the user's file, not a bug
                raise DataError(f"{path}: cannot read the file ({err.strerror or err})") from None
    hint = task.missing_hint.get(split)
    expected = " or ".join(str(data_dir / s.relpath) for s in candidates)
    raise DataFileMissing(
        f"{task.name} {split}: file not found: expected {expected}. {hint + ' ' if hint else ''}Fix: put the official "
        f"{'GLUE TSV' if candidates[0].kind == 'tsv' else 'SuperGLUE JSONL'} file there, or use data_dir=None to "
        f"load {HUB_DATASETS[task.benchmark]}/{task.name} from the Hugging Face hub."
    )


def _format(task: Task, row: Mapping[str, Any], path: Path, lineno: int) -> Example:
    try:
        return task.format(row)
    except (RowError, ValueError, OverflowError) as err:  # ValueError: e.g. a label of 5000 digits
        raise DataError(f"{path}:{lineno}: {clip(str(err), 300)}") from None


def check_text(value: Any, where: str, depth: int = 0) -> None:
    """``DataError`` when a string in ``value`` is not encodable text (a lone surrogate from a JSON ``\\ud800``
    escape would otherwise fail deep inside the tokenizer, after the run folder was set up)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            raise DataError(
                f"{where}: text holds a lone surrogate {value[err.start]!r} at character {err.start}, which is not "
                "a character; fix the \\u escape in the file"
            ) from None
    elif isinstance(value, dict) and depth < 8:
        for item in value.values():
            check_text(item, where, depth + 1)
    elif isinstance(value, list) and depth < 8:
        for item in value:
            check_text(item, where, depth + 1)


def parse_json_line(text: str, where: str, unterminated: bool = False) -> Any:
    """One JSON value; every failure (bad JSON, nested too deeply, a huge number, a lone surrogate) names ``where``."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{where}: invalid JSON: {err.msg} (column {err.colno}){_truncated(unterminated)}") from None
    except RecursionError:
        raise DataError(f"{where}: invalid JSON: nested too deeply") from None
    except ValueError as err:  # e.g. an integer of more than 4300 digits
        raise DataError(f"{where}: invalid JSON: {clip(str(err), 200)}") from None
    check_text(obj, where)
    return obj


def _lines(path: Path) -> Iterator[tuple[int, str, bool]]:
    """(1-based line number, text without newline, whether it is an unterminated last line); empty lines skipped.

    Decoded line by line so an encoding error names its line; a UTF-8 BOM on line 1 is dropped.
    """
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            unterminated = not raw.endswith(b"\n")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}:{lineno}: not valid UTF-8 ({err.reason} at byte {err.start})") from None
            if lineno == 1:
                text = text.removeprefix("\ufeff")
            text = text.rstrip("\r\n")
            if "\r" in text:  # never quote the line: with CR-only endings it is the whole file
                raise DataError(
                    f"{path}:{lineno}: carriage return inside a line (CR-only line endings?); convert the file "
                    "to \\n (or \\r\\n) line endings"
                )
            if text:
                yield lineno, text, unterminated


def _truncated(unterminated: bool) -> str:
    return " (last line has no newline: the file may be truncated)" if unterminated else ""


def _read_tsv(path: Path, source: Source) -> Iterator[tuple[int, dict[str, Any]]]:
    lines = _lines(path)
    if source.num_columns is None:  # header names the columns
        first = next(lines, None)
        if first is None:
            return
        header_line, header_text, _ = first
        header = header_text.split("\t")
        missing = [name for name in source.columns.values() if name not in header]
        if missing:
            raise DataError(
                f"{path}:{header_line}: header lacks column(s) {', '.join(map(repr, missing))}; "
                f"found {', '.join(short_repr(h, 40) for h in header[:12])}{', ...' if len(header) > 12 else ''}"
            )
        positions = {key: header.index(name) for key, name in source.columns.items()}  # type: ignore[arg-type]
        width = len(header)
    else:
        positions = dict(source.columns)  # type: ignore[arg-type]
        width = source.num_columns
    for row_number, (lineno, text, unterminated) in enumerate(lines):
        cells = text.split("\t")
        if len(cells) != width:
            raise DataError(
                f"{path}:{lineno}: expected {width} tab-separated columns, found {len(cells)}{_truncated(unterminated)}"
            )
        row: dict[str, Any] = {key: cells[pos] for key, pos in positions.items()}
        row["idx"] = row_number
        yield lineno, row


def _read_jsonl(path: Path, source: Source) -> Iterator[tuple[int, dict[str, Any]]]:
    for lineno, text, unterminated in _lines(path):
        obj = parse_json_line(text, f"{path}:{lineno}", unterminated)
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object per line, found {type(obj).__name__}")
        if source.expand is None:
            yield lineno, obj
            continue
        try:
            for row in source.expand(obj):
                yield lineno, row
        except RowError as err:
            raise DataError(f"{path}:{lineno}: {err}") from None


# -- hub ------------------------------------------------------------------------------------------------------


def _load_hub(task: Task, split: str) -> list[Example]:
    import datasets  # the train extra; imported here so the local path works without it

    hub_id = HUB_DATASETS[task.benchmark]
    hub_split = task.hub_splits.get(split, split)
    try:
        rows = datasets.load_dataset(hub_id, task.name, split=hub_split)
    except Exception as err:  # network, auth, missing config: one clear message, cause chained
        raise DataError(
            f"could not load {hub_id}/{task.name} split {hub_split!r} from the Hugging Face hub "
            f"({type(err).__name__}: {err}); offline? pass data_dir= a folder of the official files instead"
        ) from err
    examples = []
    for i, row in enumerate(rows):
        try:
            examples.append(task.format(row))
        except RowError as err:
            raise DataError(f"{hub_id}/{task.name} {hub_split} row {i}: {err}") from None
    return examples


# -- subsets --------------------------------------------------------------------------------------------------


def _check_split(split: str) -> str:
    aliases = {"train": "train", "validation": "validation", "dev": "validation", "val": "validation"}
    if not isinstance(split, str) or split.lower() not in aliases:
        raise ValueError(f"split must be one of {', '.join(SPLITS)} (or 'dev'/'val'), got {short_repr(split)}")
    return aliases[split.lower()]


def _groups(examples: list[Example]) -> list[list[int]]:
    """Indices of examples grouped by ``group`` (None: each example alone), in first-appearance order."""
    by_key: dict[object, list[int]] = {}
    for i, example in enumerate(examples):
        key = ("group", example.group) if example.group is not None else ("row", i)
        by_key.setdefault(key, []).append(i)
    return list(by_key.values())


def _subset(examples: list[Example], limit: int, seed: int) -> list[Example]:
    if limit >= len(examples):
        return examples
    groups = _groups(examples)
    order = list(range(len(groups)))
    random.Random(seed).shuffle(order)
    chosen: list[int] = []
    for g in order:
        if len(chosen) + len(groups[g]) <= limit or not chosen:
            chosen.extend(groups[g])
        if len(chosen) >= limit:
            break
    return [examples[i] for i in sorted(chosen)]
