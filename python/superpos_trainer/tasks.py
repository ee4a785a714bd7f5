"""The 13 GLUE / SuperGLUE tasks as text-to-text problems: input format, label words, parsing, official metrics.

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
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import metrics

STSB_INVALID_VALUE = -1.0


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


class RowError(ValueError):
    """A raw row that cannot be turned into an Example (missing field, unknown label). The data loader adds the
    file name and line number (``data.DataError``)."""


class Task:
    """A classification task: fixed label words, official metric(s). One instance per task in ``TASKS``.

    ``fields`` are (key shown in the input, key of the raw row) pairs in input order. ``label_aliases`` maps the
    label strings of the official files ("entailment", "0") to class indices; integer labels (HF datasets, JSONL)
    are accepted as class indices, booleans only for False/True tasks.
    """

    def __init__(
        self,
        name: str,
        benchmark: str,
        label_words: tuple[str, ...],
        main_metric: str,
        fields: tuple[tuple[str, str], ...],
        label_aliases: Mapping[str, int] | None = None,
    ) -> None:
        self.name = name
        self.benchmark = benchmark  # "glue" or "superglue"
        self.label_words = label_words
        self.main_metric = main_metric
        self.fields = fields
        self.label_aliases = dict(label_aliases or {})
        self._word_to_label = {word: i for i, word in enumerate(label_words)}

    def __repr__(self) -> str:
        return f"Task({self.name!r}, main_metric={self.main_metric!r}, label_words={self.label_words!r})"

    @property
    def num_classes(self) -> int:
        return len(self.label_words)

    # -- formatting -------------------------------------------------------------------------------------------

    def format(self, row: Mapping[str, Any]) -> Example:
        """Raw row with the official field names (HF datasets row, JSONL object, or TSV columns) -> Example."""
        label = self.normalize_label(_field(row, "label"))
        return self._example(row, self.label_text(label), label, idx=_row_idx(row))

    def _example(self, row: Mapping[str, Any], target: str, label: int | float, **extra: Any) -> Example:
        parts = self.source_fields(row)
        return Example(render_source(self.name, parts), target, label, prefix=self.name, fields=parts, **extra)

    def source_fields(self, row: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
        """``(shown key, text)`` per input field, in input order."""
        return tuple((shown, _text(row, key)) for shown, key in self.fields)

    def source_text(self, row: Mapping[str, Any]) -> str:
        return render_source(self.name, self.source_fields(row))

    def label_text(self, label: int | float) -> str:
        """Class index -> label word (the target text)."""
        return self.label_words[self.normalize_label(label)]

    def normalize_label(self, raw: Any) -> int:
        """Official label value (int id, label string, bool) -> class index; RowError if it is none of them."""
        if isinstance(raw, bool):
            if self.label_words == ("False", "True"):
                return int(raw)
            raise RowError(f"{self.name}: label {raw!r} is a boolean; expected one of {self._expected_labels()}")
        if isinstance(raw, numbers.Integral):
            if 0 <= int(raw) < self.num_classes:
                return int(raw)
            hint = " (an unlabelled test row?)" if int(raw) == -1 else ""
            raise RowError(
                f"{self.name}: label {raw} is outside 0..{self.num_classes - 1}{hint}; "
                f"expected one of {self._expected_labels()}"
            )
        if isinstance(raw, str) and raw.strip() in self.label_aliases:
            return self.label_aliases[raw.strip()]
        raise RowError(f"{self.name}: unknown label {raw!r}; expected one of {self._expected_labels()}")

    def _expected_labels(self) -> str:
        known = list(self.label_aliases) or list(range(self.num_classes))
        if self.label_words == ("False", "True"):
            known = [False, True, 0, 1]
        return ", ".join(repr(k) for k in known)

    # -- predictions and metrics ------------------------------------------------------------------------------

    def parse_prediction(self, text: str) -> int | float | None:
        """Generated text -> class index, or None when it is not exactly one label word (after stripping)."""
        return self._word_to_label.get(text.strip())

    def compute_metrics(
        self, predictions: Sequence[int | float | None], examples: Sequence[Example]
    ) -> dict[str, float]:
        golds = [int(e.label) for e in examples]
        preds, invalid_rate = self._fill_invalid(predictions, golds)
        out = self._scores(preds, golds, examples)
        out["invalid_rate"] = invalid_rate
        return out

    def _fill_invalid(self, predictions: Sequence[int | float | None], golds: list[int]) -> tuple[list[int], float]:
        _check_prediction_count(predictions, golds)
        filled, invalid = [], 0
        for i, (pred, gold) in enumerate(zip(predictions, golds, strict=True)):
            if pred is None:
                invalid += 1
                filled.append(1 - gold if self.num_classes == 2 else -1)
            elif isinstance(pred, numbers.Integral) and not isinstance(pred, bool) and 0 <= pred < self.num_classes:
                filled.append(int(pred))
            else:
                raise ValueError(
                    f"{self.name}: prediction {i} is {pred!r}; expected a class index 0..{self.num_classes - 1} "
                    f"or None (invalid), as returned by parse_prediction"
                )
        return filled, invalid / len(golds)

    def _scores(self, preds: list[int], golds: list[int], examples: Sequence[Example]) -> dict[str, float]:
        acc = metrics.accuracy(preds, golds)
        if self.main_metric == "accuracy":
            return {"accuracy": acc}
        if self.main_metric == "mcc":
            return {"mcc": metrics.matthews(preds, golds), "accuracy": acc}
        if self.main_metric == "f1_accuracy":
            if self.num_classes == 2:
                f1 = metrics.f1_binary(preds, golds)
            else:
                f1 = metrics.f1_macro(preds, golds, self.num_classes)
            return {"f1_accuracy": (f1 + acc) / 2, "f1": f1, "accuracy": acc}
        raise AssertionError(f"unhandled main metric {self.main_metric!r}")  # tasks are defined in this file


class STSBTask(Task):
    """STS-B as regression-by-text: the target is the gold score rounded to 0.2 (T5), metric Pearson/Spearman."""

    def normalize_label(self, raw: Any) -> float:  # type: ignore[override]
        if isinstance(raw, bool):
            raise RowError(f"stsb: label {raw!r} is a boolean; expected a similarity score between 0 and 5")
        try:
            value = float(raw.strip() if isinstance(raw, str) else raw)
        except (TypeError, ValueError):
            raise RowError(
                f"stsb: label {raw!r} is not a number; expected a similarity score between 0 and 5"
            ) from None
        if not (math.isfinite(value) and 0.0 <= value <= 5.0):
            raise RowError(f"stsb: label {raw!r} is outside [0, 5]; expected a similarity score between 0 and 5")
        return value

    def label_text(self, label: int | float) -> str:
        # Python's round is half-to-even, like the tf.round of T5's STS-B preprocessor.
        return f"{round(self.normalize_label(label) * 5) / 5:.1f}"

    def parse_prediction(self, text: str) -> float | None:
        try:
            value = float(text.strip())
        except ValueError:
            return None
        return value if math.isfinite(value) and 0.0 <= value <= 5.0 else None

    def compute_metrics(
        self, predictions: Sequence[int | float | None], examples: Sequence[Example]
    ) -> dict[str, float]:
        golds = [float(e.label) for e in examples]
        _check_prediction_count(predictions, golds)
        filled = []
        for i, pred in enumerate(predictions):
            if pred is None:
                filled.append(STSB_INVALID_VALUE)
            elif isinstance(pred, numbers.Real) and not isinstance(pred, bool) and math.isfinite(pred):
                filled.append(float(pred))
            else:
                raise ValueError(f"stsb: prediction {i} is {pred!r}; expected a finite number or None (invalid)")
        pearson, spearman = metrics.pearson_spearman(filled, golds)
        invalid_rate = sum(p is None for p in predictions) / len(golds)
        return {
            "pearson_spearman": (pearson + spearman) / 2,
            "pearson": pearson,
            "spearman": spearman,
            "invalid_rate": invalid_rate,
        }


class COPATask(Task):
    """COPA: the question field must be "cause" or "effect" (it tells the model which way to reason)."""

    def source_fields(self, row: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
        question = _text(row, "question")
        if question not in ("cause", "effect"):
            raise RowError(f"copa: field 'question' is {question!r}; expected 'cause' or 'effect'")
        return super().source_fields(row)


class MultiRCTask(Task):
    """MultiRC: one Example per answer option, True/False; grouped by question for EM.

    Rows are the flattened Hugging Face form: paragraph, question, answer, label, idx = {paragraph, question,
    answer} (``data.py`` flattens the official nested JSONL into it).
    """

    def format(self, row: Mapping[str, Any]) -> Example:
        label = self.normalize_label(_field(row, "label"))
        idx = _field(row, "idx")
        if not isinstance(idx, Mapping) or not all(k in idx for k in ("paragraph", "question", "answer")):
            raise RowError(f"multirc: field 'idx' must hold paragraph, question and answer indices, got {idx!r}")
        group = f"{idx['paragraph']}-{idx['question']}"
        answer_idx = idx["answer"] if isinstance(idx["answer"], int) else None
        return self._example(row, self.label_text(label), label, group=group, idx=answer_idx)

    def _scores(self, preds: list[int], golds: list[int], examples: Sequence[Example]) -> dict[str, float]:
        groups = [e.group if e.group is not None else f"row-{i}" for i, e in enumerate(examples)]
        f1a, em = metrics.multirc_scores(preds, golds, groups)
        return {"f1a_em": (f1a + em) / 2, "f1a": f1a, "em": em, "accuracy": metrics.accuracy(preds, golds)}


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


def _row_idx(row: Mapping[str, Any]) -> int | None:
    idx = row.get("idx")
    return int(idx) if isinstance(idx, numbers.Integral) and not isinstance(idx, bool) else None


def _check_prediction_count(predictions: Sequence[Any], golds: Sequence[Any]) -> None:
    if len(predictions) != len(golds):
        raise ValueError(f"got {len(predictions)} predictions for {len(golds)} examples; they must match one to one")
    if not golds:
        raise ValueError("no examples to score: compute_metrics needs at least one example")


_BINARY = {"0": 0, "1": 1}
_NLI2 = {"entailment": 0, "not_entailment": 1}
_BOOL = ("False", "True")

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("sst2", "glue", ("negative", "positive"), "accuracy", (("sentence", "sentence"),), _BINARY),
        Task("cola", "glue", ("unacceptable", "acceptable"), "mcc", (("sentence", "sentence"),), _BINARY),
        STSBTask(
            "stsb",
            "glue",
            tuple(f"{i / 5:.1f}" for i in range(26)),
            "pearson_spearman",
            (("sentence1", "sentence1"), ("sentence2", "sentence2")),
        ),
        Task(
            "mrpc",
            "glue",
            ("not_equivalent", "equivalent"),
            "f1_accuracy",
            (("sentence1", "sentence1"), ("sentence2", "sentence2")),
            _BINARY,
        ),
        Task(
            "qqp",
            "glue",
            ("not_duplicate", "duplicate"),
            "f1_accuracy",
            (("question1", "question1"), ("question2", "question2")),
            _BINARY,
        ),
        Task(
            "qnli",
            "glue",
            ("entailment", "not_entailment"),
            "accuracy",
            (("question", "question"), ("sentence", "sentence")),
            _NLI2,
        ),
        Task(
            "mnli",
            "glue",
            ("entailment", "neutral", "contradiction"),
            "accuracy",
            (("hypothesis", "hypothesis"), ("premise", "premise")),
            {"entailment": 0, "neutral": 1, "contradiction": 2},
        ),
        Task(
            "rte",
            "superglue",
            ("entailment", "not_entailment"),
            "accuracy",
            (("hypothesis", "hypothesis"), ("premise", "premise")),
            _NLI2,
        ),
        Task(
            "cb",
            "superglue",
            ("entailment", "contradiction", "neutral"),
            "f1_accuracy",
            (("hypothesis", "hypothesis"), ("premise", "premise")),
            {"entailment": 0, "contradiction": 1, "neutral": 2},
        ),
        COPATask(
            "copa",
            "superglue",
            ("choice1", "choice2"),
            "accuracy",
            (("choice1", "choice1"), ("choice2", "choice2"), ("premise", "premise"), ("question", "question")),
        ),
        Task(
            "wic",
            "superglue",
            _BOOL,
            "accuracy",
            (("sentence1", "sentence1"), ("sentence2", "sentence2"), ("word", "word")),
        ),
        Task("boolq", "superglue", _BOOL, "accuracy", (("question", "question"), ("passage", "passage"))),
        MultiRCTask(
            "multirc",
            "superglue",
            _BOOL,
            "f1a_em",
            (("question", "question"), ("answer", "answer"), ("paragraph", "paragraph")),
        ),
    )
}


def get_task(name: str | Task) -> Task:
    """Task by name, case-insensitive, ignoring "-", "_" and spaces ("SST-2", "sts_b"); a Task passes through."""
    if isinstance(name, Task):
        return name
    key = "".join(ch for ch in str(name).lower() if ch not in "-_ ")
    if key not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[key]
