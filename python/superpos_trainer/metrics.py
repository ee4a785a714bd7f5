"""Official GLUE / SuperGLUE metrics on already-parsed labels (scikit-learn / scipy; no network).

All scores are fractions (accuracy 0.83, not 83.0); correlations and MCC lie in [-1, 1].

Degenerate inputs never yield a silent NaN: a correlation that is undefined (fewer than two examples, or one of the
two sides constant, e.g. a model that always answers "2.0") is defined as 0.0, "no linear/rank relation shown".
MCC is 0.0 in the same case (scikit-learn's own convention). F1 with no positive prediction and no positive gold is
0.0 (``zero_division=0.0``), so a run can never look better by predicting nothing.

Invalid predictions are replaced by a wrong label BEFORE these functions run (see ``tasks.Task.compute_metrics``).
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Sequence

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


def _check_lengths(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"metric inputs differ in length: {len(a)} predictions vs {len(b)} gold labels")
    if len(a) == 0:
        raise ValueError("metric inputs are empty: need at least one prediction and gold label")
