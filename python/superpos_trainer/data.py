"""Loading the 13 tasks as Examples: from the Hugging Face hub, or from local files in the official formats.

Local layout (``data_dir``), as in ``shared/data``::

    glue/<task>/train.tsv, dev.tsv            cola sst2 stsb mrpc qqp qnli mnli (rte: fallback, see below)
    superglue/<task>/train.jsonl, val.jsonl   cb copa wic boolq multirc rte

File formats are the official ones, read exactly as the GLUE / HF loaders read them:

- GLUE TSV: tab-separated, quoting OFF (the files hold unbalanced ``"``), UTF-8 with an optional BOM (MRPC dev
  has one), one header line except CoLA (4 columns, no header). Columns are found by their header names
  (e.g. STS-B ``sentence1``, ``sentence2``, ``score``; MRPC ``#1 String``, ``#2 String``, ``Quality``; QQP
  ``question1``, ``question2``, ``is_duplicate``; MNLI ``sentence1``, ``sentence2``, ``gold_label``), every row must
  have as many columns as the header. ``idx`` is the 0-based data row number (what HF ``glue`` uses).
- SuperGLUE JSONL: one JSON object per line with the official field names (COPA: premise, choice1, choice2,
  question, label, idx). MultiRC's nested paragraph objects are flattened to one row per answer option, grouped by
  question (``Example.group = "<paragraph idx>-<question idx>"``).
- Empty lines are skipped. A last line without a newline is read normally when complete; when it is cut short the
  error says the file may be truncated.
- RTE is read from ``superglue/rte/*.jsonl``; when that folder is missing, from ``glue/rte/{train,dev}.tsv``
  (the same 2490/277 examples).
- MNLI validation is the GLUE ``dev_matched.tsv`` (``dev.tsv`` is accepted too). When neither exists but
  ``glue/mnli/textfooler_subset/mnli_matched`` does (``label<TAB>premise<TAB>hypothesis``, no header: 1000 examples
  of dev-matched, Moses-tokenized), that subset is used with a ``UserWarning``: its accuracy is NOT the official
  MNLI-m number.

Every problem with a row raises ``DataError`` naming the file, the 1-based line number and what is wrong; a missing
file raises ``DataFileMissing`` (a ``DataError``) naming the expected path and the fix; an empty split is an error.

``limit`` picks a fixed random subset, the same for the same seed (``random.Random(seed)``), kept in file order. For
MultiRC whole questions are sampled, so EM stays meaningful: at most ``limit`` answer rows, at least one question.
"""

from __future__ import annotations

import json
import os
import random
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import clip, short_repr
from .tasks import Example, RowError, Task, get_task

SPLITS = ("train", "validation")
# Hub ids of the benchmarks ("glue" / "super_glue" redirect to these). Module constants so a mirror can be set.
HUB_DATASETS = {"glue": "nyu-mll/glue", "superglue": "aps/super_glue"}


class DataError(ValueError):
    """Malformed or missing task data: the message names the file (and line) and what is wrong."""


class DataFileMissing(DataError):
    """None of the files a task/split can be read from exists under ``data_dir``."""


@dataclass(frozen=True)
class _Source:
    """One candidate file of a task/split: its path under data_dir and how to read it."""

    relpath: str
    kind: str  # "tsv" or "jsonl"
    columns: Mapping[str, str | int] = field(default_factory=dict)  # row key -> header name (or column number)
    num_columns: int | None = None  # headerless TSV: the exact column count
    warning: str | None = None  # emitted when this (fallback) source is used


_TSV_COLUMNS: dict[str, dict[str, str]] = {
    "sst2": {"sentence": "sentence", "label": "label"},
    "stsb": {"sentence1": "sentence1", "sentence2": "sentence2", "label": "score"},
    "mrpc": {"sentence1": "#1 String", "sentence2": "#2 String", "label": "Quality"},
    "qqp": {"question1": "question1", "question2": "question2", "label": "is_duplicate"},
    "qnli": {"question": "question", "sentence": "sentence", "label": "label"},
    "mnli": {"premise": "sentence1", "hypothesis": "sentence2", "label": "gold_label"},
    "rte": {"premise": "sentence1", "hypothesis": "sentence2", "label": "label"},
}
# CoLA: source code, label, original label (empty), sentence; no header.
_COLA = {"label": 1, "sentence": 3}
_TEXTFOOLER_WARNING = (
    "MNLI validation: the GLUE dev_matched.tsv is missing, using the 1000-example TextFooler subset "
    "glue/mnli/textfooler_subset/mnli_matched instead; its accuracy is not the official MNLI-m number"
)

# Known gaps of shared/data, named in the missing-file message.
_MISSING_HINTS = {
    ("qqp", "train"): "GLUE QQP is not in shared/data (its files exceed the snapshot limit).",
    ("qqp", "validation"): "GLUE QQP is not in shared/data (its files exceed the snapshot limit).",
    ("qnli", "train"): "GLUE QNLI train is not in shared/data (over the snapshot limit); only dev.tsv is.",
    ("mnli", "train"): "GLUE MNLI train is not in shared/data (over the snapshot limit).",
    ("boolq", "train"): "SuperGLUE BoolQ train is not in shared/data (over the snapshot limit); only val.jsonl is.",
    ("copa", "train"): "SuperGLUE COPA is not in shared/data at all.",
    ("copa", "validation"): "SuperGLUE COPA is not in shared/data at all.",
}


def _sources(task: Task, split: str) -> list[_Source]:
    """Candidate files for a task/split, most official first."""
    name = task.name
    if name == "cola":
        return [_Source(f"glue/cola/{'train' if split == 'train' else 'dev'}.tsv", "tsv", _COLA, num_columns=4)]
    if task.benchmark == "glue":
        if split == "train":
            return [_Source(f"glue/{name}/train.tsv", "tsv", _TSV_COLUMNS[name])]
        if name == "mnli":
            return [
                _Source("glue/mnli/dev_matched.tsv", "tsv", _TSV_COLUMNS["mnli"]),
                _Source("glue/mnli/dev.tsv", "tsv", _TSV_COLUMNS["mnli"]),
                _Source(
                    "glue/mnli/textfooler_subset/mnli_matched",
                    "tsv",
                    {"label": 0, "premise": 1, "hypothesis": 2},
                    num_columns=3,
                    warning=_TEXTFOOLER_WARNING,
                ),
            ]
        return [_Source(f"glue/{name}/dev.tsv", "tsv", _TSV_COLUMNS[name])]
    jsonl = _Source(f"superglue/{name}/{'train' if split == 'train' else 'val'}.jsonl", "jsonl")
    if name == "rte":
        return [jsonl, _Source(f"glue/rte/{'train' if split == 'train' else 'dev'}.tsv", "tsv", _TSV_COLUMNS["rte"])]
    return [jsonl]


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
    if len(groups) < 2:
        raise ValueError(
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
    candidates = _sources(task, split)
    for source in candidates:
        path = data_dir / source.relpath
        if path.is_file():
            if source.warning:
                warnings.warn(source.warning, UserWarning, stacklevel=3)
            rows = _read_tsv(path, source) if source.kind == "tsv" else _read_jsonl(path, task)
            return [_format(task, row, path, lineno) for lineno, row in rows], str(path)
    hint = _MISSING_HINTS.get((task.name, split))
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


def _read_tsv(path: Path, source: _Source) -> Iterator[tuple[int, dict[str, Any]]]:
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


def _read_jsonl(path: Path, task: Task) -> Iterator[tuple[int, dict[str, Any]]]:
    for lineno, text, unterminated in _lines(path):
        obj = parse_json_line(text, f"{path}:{lineno}", unterminated)
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object per line, found {type(obj).__name__}")
        if task.name == "multirc":
            try:
                for row in _flatten_multirc(obj):
                    yield lineno, row
            except RowError as err:
                raise DataError(f"{path}:{lineno}: {err}") from None
        else:
            yield lineno, obj


def _flatten_multirc(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Official nested MultiRC paragraph -> HF-style rows (paragraph, question, answer, idx{...}, label)."""
    passage = _get(obj, "passage", dict, "")
    text = _get(passage, "text", str, "passage.")
    questions = _get(passage, "questions", list, "passage.")
    paragraph_idx = _get(obj, "idx", int, "")
    for qn, question in enumerate(questions):
        where = f"passage.questions[{qn}]."
        if not isinstance(question, dict):
            raise RowError(f"multirc: {where[:-1]} must be an object")
        question_text = _get(question, "question", str, where)
        question_idx = _get(question, "idx", int, where)
        for an, answer in enumerate(_get(question, "answers", list, where)):
            awhere = f"{where}answers[{an}]."
            if not isinstance(answer, dict):
                raise RowError(f"multirc: {awhere[:-1]} must be an object")
            yield {
                "paragraph": text,
                "question": question_text,
                "answer": _get(answer, "text", str, awhere),
                "idx": {
                    "paragraph": paragraph_idx,
                    "question": question_idx,
                    "answer": _get(answer, "idx", int, awhere),
                },
                "label": _get(answer, "label", object, awhere),
            }


def _get(obj: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in obj:
        raise RowError(f"multirc: missing field '{where}{key}'")
    value = obj[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise RowError(f"multirc: field '{where}{key}' must be an integer, got {short_repr(value)}")
    if kind is not object and not isinstance(value, kind):
        raise RowError(f"multirc: field '{where}{key}' must be a {kind.__name__}, got {type(value).__name__}")
    return value


# -- hub ------------------------------------------------------------------------------------------------------


def _load_hub(task: Task, split: str) -> list[Example]:
    import datasets  # the train extra; imported here so the local path works without it

    hub_id = HUB_DATASETS[task.benchmark]
    hub_split = "validation_matched" if (task.name == "mnli" and split == "validation") else split
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
