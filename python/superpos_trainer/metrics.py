"""Official GLUE / SuperGLUE metrics on already-parsed labels (scikit-learn / scipy; no network).

All scores are fractions (accuracy 0.83, not 83.0); correlations and MCC lie in [-1, 1].

Degenerate inputs never yield a silent NaN: a correlation that is undefined (fewer than two examples, or one of the
two sides constant, e.g. a model that always answers "2.0") is defined as 0.0, "no linear/rank relation shown".
MCC is 0.0 in the same case (scikit-learn's own convention). F1 with no positive prediction and no positive gold is
0.0 (``zero_division=0.0``), so a run can never look better by predicting nothing.

Invalid predictions are replaced by a wrong label BEFORE these functions run (see ``tasks.Task.compute_metrics``).

A task names its official score as one of the ``Metric`` objects at the end of this file (``ACCURACY``, ``MCC``,
``F1_ACCURACY``, ``PEARSON_SPEARMAN``, ``F1A_EM``): a main key the trainer tracks and a function giving every
reported key. A new score is one more ``Metric`` here; no code switches on a metric's name.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


def accuracy(predictions: Sequence[int], golds: Sequence[int]) -> float:
    _check_lengths(predictions, golds)
    return float(np.mean(np.asarray(predictions) == np.asarray(golds)))


def f1_binary(predictions: Sequence[int], golds: Sequence[int]) -> float:
    """F1 of the positive class 1 (MRPC "equivalent", QQP "duplicate", MultiRC "True")."""
    from sklearn.metrics import f1_score

    _check_lengths(predictions, golds)
    return float(f1_score(golds, predictions, labels=[1], pos_label=1, average="binary", zero_division=0.0))


def f1_macro(predictions: Sequence[int], golds: Sequence[int], num_classes: int) -> float:
    """Unweighted mean of the per-class F1 over classes 0..num_classes-1 (CB: 3 classes, as SuperGLUE scores it).

    A prediction outside 0..num_classes-1 (the invalid marker -1) is a miss for the gold class and nobody's false
    positive. Classes that occur neither in gold nor in predictions contribute F1 = 0.0.
    """
    from sklearn.metrics import f1_score

    _check_lengths(predictions, golds)
    return float(f1_score(golds, predictions, labels=list(range(num_classes)), average="macro", zero_division=0.0))


def matthews(predictions: Sequence[int], golds: Sequence[int]) -> float:
    """Matthews correlation (CoLA). 0.0 when undefined (constant predictions or constant gold)."""
    from sklearn.metrics import matthews_corrcoef

    _check_lengths(predictions, golds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 inside sklearn when a side is constant
        value = float(matthews_corrcoef(golds, predictions))
    return 0.0 if math.isnan(value) else value


def pearson_spearman(predictions: Sequence[float], golds: Sequence[float]) -> tuple[float, float]:
    """(Pearson r, Spearman rho) of STS-B; each is 0.0 where undefined (n < 2 or a constant side)."""
    from scipy.stats import pearsonr, spearmanr

    _check_lengths(predictions, golds)
    pred = np.asarray(predictions, dtype=np.float64)
    gold = np.asarray(golds, dtype=np.float64)
    if len(pred) < 2 or np.ptp(pred) == 0.0 or np.ptp(gold) == 0.0:
        return 0.0, 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's ConstantInputWarning / NearConstantInputWarning
        pearson = float(pearsonr(pred, gold)[0])
        spearman = float(spearmanr(pred, gold)[0])
    return (0.0 if math.isnan(pearson) else pearson), (0.0 if math.isnan(spearman) else spearman)


def multirc_scores(predictions: Sequence[int], golds: Sequence[int], groups: Sequence[str]) -> tuple[float, float]:
    """(F1a, EM) of MultiRC as SuperGLUE defines them.

    F1a: binary F1 over all answer options pooled (positive class True = 1).
    EM: fraction of questions (groups) whose every answer option is labelled correctly.
    """
    _check_lengths(predictions, golds)
    _check_lengths(groups, golds)
    f1a = f1_binary(predictions, golds)
    all_right: dict[str, bool] = defaultdict(lambda: True)
    for pred, gold, group in zip(predictions, golds, groups, strict=True):
        all_right[group] = all_right[group] and pred == gold
    em = sum(all_right.values()) / len(all_right) if all_right else 0.0
    return f1a, float(em)


# -- the official score of each task --------------------------------------------------------------------------

# (predictions, golds, groups, num_classes) -> every reported score. ``groups`` holds one key per example (MultiRC:
# its question; else a unique key per row); invalid predictions are already replaced by a wrong value.
ScoreFn = Callable[[Sequence, Sequence, Sequence[str], int], dict[str, float]]


@dataclass(frozen=True)
class Metric:
    """A task's official score: ``main`` is the key the trainer tracks (best adapter, summary), ``score`` computes
    it and the keys reported beside it."""

    main: str
    score: ScoreFn


def _accuracy_score(preds: Sequence[int], golds: Sequence[int], groups: Sequence[str], n: int) -> dict[str, float]:
    return {"accuracy": accuracy(preds, golds)}


def _mcc_score(preds: Sequence[int], golds: Sequence[int], groups: Sequence[str], n: int) -> dict[str, float]:
    return {"mcc": matthews(preds, golds), "accuracy": accuracy(preds, golds)}


def _f1_accuracy_score(preds: Sequence[int], golds: Sequence[int], groups: Sequence[str], n: int) -> dict[str, float]:
    """Mean of F1 and accuracy: F1 of class 1 for two classes (MRPC, QQP), macro-F1 over the classes else (CB)."""
    acc = accuracy(preds, golds)
    f1 = f1_binary(preds, golds) if n == 2 else f1_macro(preds, golds, n)
    return {"f1_accuracy": (f1 + acc) / 2, "f1": f1, "accuracy": acc}


def _pearson_spearman_score(
    preds: Sequence[float], golds: Sequence[float], groups: Sequence[str], n: int
) -> dict[str, float]:
    pearson, spearman = pearson_spearman(preds, golds)
    return {"pearson_spearman": (pearson + spearman) / 2, "pearson": pearson, "spearman": spearman}


def _f1a_em_score(preds: Sequence[int], golds: Sequence[int], groups: Sequence[str], n: int) -> dict[str, float]:
    f1a, em = multirc_scores(preds, golds, groups)
    return {"f1a_em": (f1a + em) / 2, "f1a": f1a, "em": em, "accuracy": accuracy(preds, golds)}


ACCURACY = Metric("accuracy", _accuracy_score)
MCC = Metric("mcc", _mcc_score)  # CoLA
F1_ACCURACY = Metric("f1_accuracy", _f1_accuracy_score)  # MRPC, QQP, CB
PEARSON_SPEARMAN = Metric("pearson_spearman", _pearson_spearman_score)  # STS-B
F1A_EM = Metric("f1a_em", _f1a_em_score)  # MultiRC


def _check_lengths(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"metric inputs differ in length: {len(a)} predictions vs {len(b)} gold labels")
    if len(a) == 0:
        raise ValueError("metric inputs are empty: need at least one prediction and gold label")
