"""The 13 GLUE / SuperGLUE tasks as text-to-text problems: input format, label words, parsing, official metrics,
and where their files are.

Each task is one entry in ``TASKS``, built with keywords (``Task(name=..., fields=..., labels=..., metric=...,
files=...)``); the code that formats rows, parses answers and scores them (here) and reads the files (``data.py``)
is generic and does what the entry says. A new task is one entry (and a tiny file in ``tests/data_fixtures.py`` for
its test); nothing switches on a task's name.

Input format (T5 convention): ``"<task> key1: value1 key2: value2 ..."`` with the official field names as keys in
alphabetical order, as T5's GLUE preprocessor writes them ("mnli hypothesis: ... premise: ..."); BoolQ and MultiRC
put the long context last ("boolq question: ... passage: ...", T5's own order). Every ``Example`` also carries its
parts (task name, ``(key, text)`` fields) so that an input too long for ``--max-length`` loses the end of its
LONGEST field, never a key, the task name or a short field (``collate.Encoder``). Whitespace runs inside a field
collapse to one space. Zero-length texts are KEPT (an empty field gives "key: " in the input): they are rare,
valid rows of the official files, and dropping them would change the dev sets.

Label words (targets) are T5's, short and mostly single-token:

    sst2  negative / positive              cola  unacceptable / acceptable
    mrpc  not_equivalent / equivalent      qqp   not_duplicate / duplicate
    qnli, rte  entailment / not_entailment mnli  entailment / neutral / contradiction
    cb    entailment / contradiction / neutral (SuperGLUE's class order)
    copa  choice1 / choice2                boolq, wic, multirc  False / True
    stsb  the score rounded to the nearest 0.2, one decimal: "0.0", "0.2", ..., "5.0" (26 words)

The class index of ``label_words`` is the Hugging Face ``datasets`` label id of that task.

Parsing a generation: surrounding whitespace is stripped, then the text must equal a label word exactly
(case-sensitive, as T5 scores it); anything else is invalid (None). STS-B accepts any decimal number in [0, 5]
("3.4", "3.45", "4"); other text, NaN or out-of-range numbers are invalid.

Invalid predictions count as wrong in every metric, and ``invalid_rate`` reports how many there were:
binary tasks replace an invalid answer by the negation of gold (1 - gold), so it is a false negative or a false
positive exactly as a wrong label word would be; 3-class tasks (MNLI, CB) replace it by -1, which matches no class:
a miss for the gold class in accuracy and macro-F1, and nobody's false positive. STS-B replaces it by -1.0, T5's
default for an unparsable score (outside the 0..5 range, so it pulls the correlation down).

Local files (``files=``, read by ``data.py``), laid out as in ``shared/data``: GLUE ``glue/<task>/{train,dev}.tsv``
(CoLA without a header), SuperGLUE ``superglue/<task>/{train,val}.jsonl`` (MultiRC's nested paragraphs flattened to
one row per answer option, grouped by question). RTE is read from SuperGLUE, else from the GLUE TSV (the same
2490/277 examples). MNLI validation is the GLUE ``dev_matched.tsv`` (``dev.tsv`` is accepted too); when neither
exists but ``glue/mnli/textfooler_subset/mnli_matched`` does (``label<TAB>premise<TAB>hypothesis``, no header: 1000
examples of dev-matched, Moses-tokenized), that subset is used with a ``UserWarning``: its accuracy is NOT the
official MNLI-m number. On the hub, MNLI validation is ``validation_matched``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import metrics
from .errors import ConfigError, short_repr
from .labels import ClassLabels, Labels, RowError, ScoreLabels

SPLITS = ("train", "validation")


@dataclass(frozen=True)
class Example:
    source: str  # model input text, e.g. "sst2 sentence: a gripping film"
    target: str  # the label as text the model must generate, e.g. "positive" (STS-B: "3.4")
    label: int | float  # raw gold label (class index; float for STS-B)
    group: str | None = None  # MultiRC: "<paragraph idx>-<question idx>" for grouped metrics (EM), else None
    idx: int | None = None  # the official row index (MultiRC: the answer index)
    # The source's parts, so the Encoder can shorten the longest field and never a field name or the task name:
    # ``source == render_source(prefix, fields)``. Left out of equality: they restate ``source``.
    prefix: str = field(default="", compare=False, repr=False)
    fields: tuple[tuple[str, str], ...] = field(default=(), compare=False, repr=False)  # (shown key, text)


def render_source(prefix: str, fields: Sequence[tuple[str, str]]) -> str:
    """``"<prefix> key1: text1 key2: text2"``: the one place the source layout is written."""
    return " ".join([prefix] + [f"{shown}: {text}" for shown, text in fields])


RowExpander = Callable[[dict[str, Any]], Iterator[dict[str, Any]]]


@dataclass(frozen=True)
class Source:
    """One candidate file of a task/split under ``data_dir`` and how ``data.py`` reads it.

    ``kind`` "tsv": tab-separated, quoting off; ``columns`` maps row keys to header names, or to column numbers when
    the file has no header (then ``num_columns`` is its exact width). ``kind`` "jsonl": one JSON object per line
    with the official field names; ``expand`` turns one object into several rows (MultiRC's nested paragraphs).
    ``warning`` is emitted when this (fallback) file is the one used.
    """

    relpath: str
    kind: str  # "tsv" or "jsonl"
    columns: Mapping[str, str | int] = field(default_factory=dict)
    num_columns: int | None = None
    warning: str | None = None
    expand: RowExpander | None = None


Index = Callable[[Mapping[str, Any]], tuple[str | None, int | None]]


@dataclass(frozen=True, kw_only=True, eq=False)
class Task:
    """One task, described by its entry in ``TASKS``: the generic code (formatting, parsing, scoring here; the
    readers in ``data.py``) does what the entry says, so a new task is one entry.

    ``fields``: the raw row's keys in input order, shown under their own name (a ``(shown, key)`` pair renames one);
    ``labels``: ``ClassLabels`` or ``ScoreLabels``; ``metric``: its official score (``metrics.ACCURACY``, ...);
    ``files``: per split, the candidate local files, most official first; ``hub_splits``: hub split names that
    differ from ours; ``missing_hint``: per split, a known gap of shared/data named when the file is missing;
    ``allowed_values``: fields that must hold one of a few words; ``index``: row -> (group, official index).
    """

    name: str
    benchmark: str  # "glue" or "superglue": the hub dataset (data.HUB_DATASETS)
    fields: tuple[str | tuple[str, str], ...]
    labels: Labels
    metric: metrics.Metric
    files: Mapping[str, tuple[Source, ...]]
    hub_splits: Mapping[str, str] = field(default_factory=dict)
    missing_hint: Mapping[str, str] = field(default_factory=dict)
    allowed_values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    index: Index | None = None  # default: no group, the row's integer ``idx``

    def __post_init__(self) -> None:
        pairs = tuple((f, f) if isinstance(f, str) else (f[0], f[1]) for f in self.fields)
        object.__setattr__(self, "fields", pairs)
        missing = [split for split in SPLITS if not self.files.get(split)]
        if missing:
            raise ValueError(f"task {self.name}: no files for split(s) {', '.join(missing)}")

    def __repr__(self) -> str:
        return f"Task({self.name!r}, main_metric={self.main_metric!r}, label_words={self.label_words!r})"

    @property
    def label_words(self) -> tuple[str, ...]:
        return self.labels.words

    @property
    def main_metric(self) -> str:
        return self.metric.main

    @property
    def num_classes(self) -> int:
        return len(self.label_words)

    # -- formatting -------------------------------------------------------------------------------------------

    def format(self, row: Mapping[str, Any]) -> Example:
        """Raw row with the official field names (HF datasets row, JSONL object, or TSV columns) -> Example."""
        label = self.normalize_label(_field(row, "label"))
        group, idx = (self.index or _row_index)(row)
        target = self.label_text(label)
        parts = self.source_fields(row)
        return Example(render_source(self.name, parts), target, label, group, idx, prefix=self.name, fields=parts)

    def source_fields(self, row: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
        """``(shown key, text)`` per input field, in input order."""
        for key, allowed in self.allowed_values.items():
            value = _text(row, key)
            if value not in allowed:
                raise RowError(f"{self.name}: field {key!r} is {value!r}; expected {' or '.join(map(repr, allowed))}")
        return tuple((shown, _text(row, key)) for shown, key in self.fields)

    def source_text(self, row: Mapping[str, Any]) -> str:
        return render_source(self.name, self.source_fields(row))

    def label_text(self, label: int | float) -> str:
        """Gold label -> the target text (a label word; STS-B: the rounded score)."""
        return self.labels.text(label, self.name)

    def normalize_label(self, raw: Any) -> int | float:
        """Official label value (int id, label string, bool; STS-B: a number) -> gold label; RowError if unreadable."""
        return self.labels.normalize(raw, self.name)

    # -- predictions and metrics ------------------------------------------------------------------------------

    def parse_prediction(self, text: str) -> int | float | None:
        """Generated text -> class index (STS-B: score), or None when it is not a valid answer (after stripping)."""
        return self.labels.parse(text)

    def compute_metrics(
        self, predictions: Sequence[int | float | None], examples: Sequence[Example]
    ) -> dict[str, float]:
        golds = [self.labels.gold(e.label) for e in examples]
        if len(predictions) != len(golds):
            raise ValueError(
                f"got {len(predictions)} predictions for {len(golds)} examples; they must match one to one"
            )
        if not golds:
            raise ValueError("no examples to score: compute_metrics needs at least one example")
        filled = [self.labels.fill(i, p, g, self.name) for i, (p, g) in enumerate(zip(predictions, golds, strict=True))]
        groups = [e.group if e.group is not None else f"row-{i}" for i, e in enumerate(examples)]
        out = self.metric.score(filled, golds, groups, self.num_classes)
        out["invalid_rate"] = sum(p is None for p in predictions) / len(golds)
        return out


def _field(row: Mapping[str, Any], key: str) -> Any:
    if not isinstance(row, Mapping):
        raise RowError(f"a row must be a mapping of field names to values, got {type(row).__name__}")
    if key not in row:
        raise RowError(f"missing field {key!r} (row has: {', '.join(map(str, row)) or 'no fields'})")
    return row[key]


def _text(row: Mapping[str, Any], key: str) -> str:
    value = _field(row, key)
    if not isinstance(value, str):
        raise RowError(f"field {key!r} must be text, got {type(value).__name__} {value!r}")
    return " ".join(value.split())


def _row_index(row: Mapping[str, Any]) -> tuple[str | None, int | None]:
    idx = row.get("idx")
    return None, (int(idx) if isinstance(idx, numbers.Integral) and not isinstance(idx, bool) else None)


# -- building blocks of the entries ---------------------------------------------------------------------------


def glue_files(name: str, columns: Mapping[str, str | int], num_columns: int | None = None) -> dict[str, tuple]:
    """``glue/<name>/train.tsv`` and ``dev.tsv`` (the GLUE distribution's layout)."""
    return {
        split: (Source(f"glue/{name}/{file}.tsv", "tsv", columns, num_columns),)
        for split, file in (("train", "train"), ("validation", "dev"))
    }


def superglue_files(name: str, expand: RowExpander | None = None) -> dict[str, tuple]:
    """``superglue/<name>/train.jsonl`` and ``val.jsonl`` (the SuperGLUE distribution's layout)."""
    return {
        split: (Source(f"superglue/{name}/{file}.jsonl", "jsonl", expand=expand),)
        for split, file in (("train", "train"), ("validation", "val"))
    }


def either(*alternatives: Mapping[str, tuple[Source, ...]]) -> dict[str, tuple[Source, ...]]:
    """Per split, the candidates of the first layout, then those of the next (a fallback layout)."""
    return {split: tuple(s for files in alternatives for s in files.get(split, ())) for split in SPLITS}


def both_splits(hint: str) -> dict[str, str]:
    return {split: hint for split in SPLITS}


def multirc_rows(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
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


def multirc_index(row: Mapping[str, Any]) -> tuple[str | None, int | None]:
    """MultiRC rows (HF form): grouped by question for EM; the official index is the answer's."""
    idx = _field(row, "idx")
    if not isinstance(idx, Mapping) or not all(k in idx for k in ("paragraph", "question", "answer")):
        raise RowError(f"multirc: field 'idx' must hold paragraph, question and answer indices, got {idx!r}")
    return f"{idx['paragraph']}-{idx['question']}", (idx["answer"] if isinstance(idx["answer"], int) else None)


# -- the 13 tasks ---------------------------------------------------------------------------------------------

_BINARY = {"0": 0, "1": 1}
_NLI2 = ("entailment", "not_entailment")
_NLI3 = ("entailment", "neutral", "contradiction")
_BOOL = ("False", "True")
_MNLI_COLUMNS = {"premise": "sentence1", "hypothesis": "sentence2", "label": "gold_label"}
_TEXTFOOLER_WARNING = (
    "MNLI validation: the GLUE dev_matched.tsv is missing, using the 1000-example TextFooler subset "
    "glue/mnli/textfooler_subset/mnli_matched instead; its accuracy is not the official MNLI-m number"
)


def _label_map(words: tuple[str, ...]) -> dict[str, int]:
    return {word: i for i, word in enumerate(words)}


_ENTRIES = (
    Task(
        name="sst2",
        benchmark="glue",
        fields=("sentence",),
        labels=ClassLabels(("negative", "positive"), _BINARY),
        metric=metrics.ACCURACY,
        files=glue_files("sst2", {"sentence": "sentence", "label": "label"}),
    ),
    Task(
        name="cola",
        benchmark="glue",
        fields=("sentence",),
        labels=ClassLabels(("unacceptable", "acceptable"), _BINARY),
        metric=metrics.MCC,
        # No header; columns: source code, label, original label (empty), sentence.
        files=glue_files("cola", {"label": 1, "sentence": 3}, num_columns=4),
    ),
    Task(
        name="stsb",
        benchmark="glue",
        fields=("sentence1", "sentence2"),
        labels=ScoreLabels(high=5.0, per_unit=5, invalid=-1.0, what="a similarity score"),
        metric=metrics.PEARSON_SPEARMAN,
        files=glue_files("stsb", {"sentence1": "sentence1", "sentence2": "sentence2", "label": "score"}),
    ),
    Task(
        name="mrpc",
        benchmark="glue",
        fields=("sentence1", "sentence2"),
        labels=ClassLabels(("not_equivalent", "equivalent"), _BINARY),
        metric=metrics.F1_ACCURACY,
        files=glue_files("mrpc", {"sentence1": "#1 String", "sentence2": "#2 String", "label": "Quality"}),
    ),
    Task(
        name="qqp",
        benchmark="glue",
        fields=("question1", "question2"),
        labels=ClassLabels(("not_duplicate", "duplicate"), _BINARY),
        metric=metrics.F1_ACCURACY,
        files=glue_files("qqp", {"question1": "question1", "question2": "question2", "label": "is_duplicate"}),
        missing_hint=both_splits("GLUE QQP is not in shared/data (its files exceed the snapshot limit)."),
    ),
    Task(
        name="qnli",
        benchmark="glue",
        fields=("question", "sentence"),
        labels=ClassLabels(_NLI2, _label_map(_NLI2)),
        metric=metrics.ACCURACY,
        files=glue_files("qnli", {"question": "question", "sentence": "sentence", "label": "label"}),
        missing_hint={"train": "GLUE QNLI train is not in shared/data (over the snapshot limit); only dev.tsv is."},
    ),
    Task(
        name="mnli",
        benchmark="glue",
        fields=("hypothesis", "premise"),
        labels=ClassLabels(_NLI3, _label_map(_NLI3)),
        metric=metrics.ACCURACY,
        files={
            "train": (Source("glue/mnli/train.tsv", "tsv", _MNLI_COLUMNS),),
            "validation": (
                Source("glue/mnli/dev_matched.tsv", "tsv", _MNLI_COLUMNS),
                Source("glue/mnli/dev.tsv", "tsv", _MNLI_COLUMNS),
                Source(  # label<TAB>premise<TAB>hypothesis, no header: 1000 Moses-tokenized dev-matched examples
                    "glue/mnli/textfooler_subset/mnli_matched",
                    "tsv",
                    {"label": 0, "premise": 1, "hypothesis": 2},
                    num_columns=3,
                    warning=_TEXTFOOLER_WARNING,
                ),
            ),
        },
        hub_splits={"validation": "validation_matched"},
        missing_hint={"train": "GLUE MNLI train is not in shared/data (over the snapshot limit)."},
    ),
    Task(
        name="rte",
        benchmark="superglue",
        fields=("hypothesis", "premise"),
        labels=ClassLabels(_NLI2, _label_map(_NLI2)),
        metric=metrics.ACCURACY,
        # The GLUE TSV holds the same 2490/277 examples: read when superglue/rte is missing.
        files=either(
            superglue_files("rte"),
            glue_files("rte", {"premise": "sentence1", "hypothesis": "sentence2", "label": "label"}),
        ),
    ),
    Task(
        name="cb",
        benchmark="superglue",
        fields=("hypothesis", "premise"),
        labels=ClassLabels(
            ("entailment", "contradiction", "neutral"), {"entailment": 0, "contradiction": 1, "neutral": 2}
        ),
        metric=metrics.F1_ACCURACY,
        files=superglue_files("cb"),
    ),
    Task(
        name="copa",
        benchmark="superglue",
        fields=("choice1", "choice2", "premise", "question"),
        labels=ClassLabels(("choice1", "choice2")),
        metric=metrics.ACCURACY,
        files=superglue_files("copa"),
        missing_hint=both_splits("SuperGLUE COPA is not in shared/data at all."),
        allowed_values={"question": ("cause", "effect")},  # which way to reason
    ),
    Task(
        name="wic",
        benchmark="superglue",
        fields=("sentence1", "sentence2", "word"),
        labels=ClassLabels(_BOOL),
        metric=metrics.ACCURACY,
        files=superglue_files("wic"),
    ),
    Task(
        name="boolq",
        benchmark="superglue",
        fields=("question", "passage"),
        labels=ClassLabels(_BOOL),
        metric=metrics.ACCURACY,
        files=superglue_files("boolq"),
        missing_hint={
            "train": "SuperGLUE BoolQ train is not in shared/data (over the snapshot limit); only val.jsonl is."
        },
    ),
    Task(
        name="multirc",
        benchmark="superglue",
        fields=("question", "answer", "paragraph"),
        labels=ClassLabels(_BOOL),
        metric=metrics.F1A_EM,
        files=superglue_files("multirc", expand=multirc_rows),  # one row per answer option
        index=multirc_index,
    ),
)
TASKS: dict[str, Task] = {task.name: task for task in _ENTRIES}


def get_task(name: str | Task) -> Task:
    """Task by name, case-insensitive, ignoring "-", "_" and spaces ("SST-2", "sts_b"); a Task passes through."""
    if isinstance(name, Task):
        return name
    key = "".join(ch for ch in str(name).lower() if ch not in "-_ ")
    if key not in TASKS:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[key]


__all__ = [
    "SPLITS",
    "TASKS",
    "ClassLabels",
    "Example",
    "RowError",
    "ScoreLabels",
    "Source",
    "Task",
    "get_task",
    "render_source",
]
