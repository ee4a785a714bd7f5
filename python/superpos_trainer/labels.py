"""A task's labels: how a raw gold label, a label word and a generated answer become numbers.

Two kinds, given to a task entry as ``labels=`` (``tasks.py``):

* :class:`ClassLabels`: a fixed set of label words, the class index of a word is its position (the Hugging Face
  ``datasets`` label id). Official label strings ("entailment", "0") map to classes through ``aliases``; integer
  labels (HF datasets, JSONL) are class indices; booleans are accepted only for False/True tasks.
* :class:`ScoreLabels`: a number in ``[0, high]`` written as text rounded to ``1 / per_unit`` (STS-B: 0.2, T5).

Each raises ``RowError`` (tasks.py adds nothing to the message) for a gold label it cannot read, and ``ValueError``
for a prediction that is neither a parsed answer nor None: both name the task.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

from .errors import SuperposError

_BOOL_WORDS = ("False", "True")


class RowError(SuperposError):
    """A raw row that cannot be turned into an Example (missing field, unknown label). The data loader adds the
    file name and line number (``data.DataError``)."""


class ClassLabels:
    """Label words of a classification task; an invalid answer becomes a wrong class (see ``fill``)."""

    def __init__(self, words: tuple[str, ...], aliases: Mapping[str, int] | None = None) -> None:
        self.words = tuple(words)
        self.aliases = dict(aliases or {})
        self._word_to_label = {word: i for i, word in enumerate(self.words)}

    def normalize(self, raw: Any, task: str) -> int:
        """Official label value (int id, label string, bool) -> class index; RowError if it is none of them."""
        if isinstance(raw, bool):
            if self.words == _BOOL_WORDS:
                return int(raw)
            raise RowError(f"{task}: label {raw!r} is a boolean; expected one of {self._expected()}")
        if isinstance(raw, numbers.Integral):
            if 0 <= int(raw) < len(self.words):
                return int(raw)
            hint = " (an unlabelled test row?)" if int(raw) == -1 else ""
            raise RowError(
                f"{task}: label {raw} is outside 0..{len(self.words) - 1}{hint}; expected one of {self._expected()}"
            )
        if isinstance(raw, str) and raw.strip() in self.aliases:
            return self.aliases[raw.strip()]
        raise RowError(f"{task}: unknown label {raw!r}; expected one of {self._expected()}")

    def _expected(self) -> str:
        known: list[Any] = list(self.aliases) or list(range(len(self.words)))
        if self.words == _BOOL_WORDS:
            known = [False, True, 0, 1]
        return ", ".join(repr(k) for k in known)

    def text(self, label: int | float, task: str) -> str:
        """Class index -> label word (the target text)."""
        return self.words[self.normalize(label, task)]

    def parse(self, text: str) -> int | None:
        """Generated text -> class index, or None when it is not exactly one label word (after stripping)."""
        return self._word_to_label.get(text.strip())

    def gold(self, label: int | float) -> int:
        return int(label)

    def fill(self, index: int, pred: Any, gold: int, task: str) -> int:
        """A parsed prediction as a class; None (invalid) becomes a wrong answer: the negation of gold for two
        classes (a false negative or false positive, as a wrong word would be), else -1 (matches no class)."""
        n = len(self.words)
        if pred is None:
            return 1 - gold if n == 2 else -1
        if isinstance(pred, numbers.Integral) and not isinstance(pred, bool) and 0 <= pred < n:
            return int(pred)
        raise ValueError(
            f"{task}: prediction {index} is {pred!r}; expected a class index 0..{n - 1} "
            f"or None (invalid), as returned by parse_prediction"
        )


class ScoreLabels:
    """A score in ``[0, high]`` as text rounded to ``1 / per_unit`` ("3.4"); an invalid answer scores ``invalid``
    (T5's default for an unparsable STS-B score, outside the range, so it pulls the correlation down)."""

    def __init__(self, high: float, per_unit: int, invalid: float, what: str) -> None:
        self.high, self.per_unit, self.invalid, self.what = float(high), per_unit, float(invalid), what
        self.words = tuple(f"{i / per_unit:.1f}" for i in range(round(high * per_unit) + 1))

    def normalize(self, raw: Any, task: str) -> float:
        expected = f"expected {self.what} between 0 and {self.high:g}"
        if isinstance(raw, bool):
            raise RowError(f"{task}: label {raw!r} is a boolean; {expected}")
        try:
            value = float(raw.strip() if isinstance(raw, str) else raw)
        except (TypeError, ValueError):
            raise RowError(f"{task}: label {raw!r} is not a number; {expected}") from None
        if not (math.isfinite(value) and 0.0 <= value <= self.high):
            raise RowError(f"{task}: label {raw!r} is outside [0, {self.high:g}]; {expected}")
        return value

    def text(self, label: int | float, task: str) -> str:
        # Python's round is half-to-even, like the tf.round of T5's STS-B preprocessor.
        return f"{round(self.normalize(label, task) * self.per_unit) / self.per_unit:.1f}"

    def parse(self, text: str) -> float | None:
        """Any decimal number in [0, high] ("3.4", "3.45", "4"); other text, NaN or out of range: None."""
        try:
            value = float(text.strip())
        except ValueError:
            return None
        return value if math.isfinite(value) and 0.0 <= value <= self.high else None

    def gold(self, label: int | float) -> float:
        return float(label)

    def fill(self, index: int, pred: Any, gold: float, task: str) -> float:
        if pred is None:
            return self.invalid
        if isinstance(pred, numbers.Real) and not isinstance(pred, bool) and math.isfinite(pred):
            return float(pred)
        raise ValueError(f"{task}: prediction {index} is {pred!r}; expected a finite number or None (invalid)")


Labels = ClassLabels | ScoreLabels

__all__ = ["ClassLabels", "Labels", "RowError", "ScoreLabels"]
