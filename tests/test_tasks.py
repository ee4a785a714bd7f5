"""The 13 tasks: names, input formats, label words, prediction parsing, and official metrics on hand-computed cases."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
from superpos_trainer.data import DataFileMissing, load_examples
from superpos_trainer.tasks import TASKS, Example, RowError, get_task

from .data_fixtures import shared_data_dir, write_tiny_data_dir

ALL = ("sst2", "cola", "stsb", "mrpc", "qqp", "qnli", "mnli", "rte", "cb", "copa", "wic", "boolq", "multirc")


def test_exactly_the_13_tasks():
    assert set(TASKS) == set(ALL)
    assert {t.name for t in TASKS.values()} == set(ALL)


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("SST-2", "sst2"),
        ("sst2", "sst2"),
        ("SST2", "sst2"),
        ("sts-b", "stsb"),
        ("STS_B", "stsb"),
        ("MultiRC", "multirc"),
    ],
)
def test_get_task_aliases(alias, name):
    assert get_task(alias) is TASKS[name]


def test_get_task_unknown_lists_known_names():
    with pytest.raises(ValueError, match=r"unknown task 'wnli'; known tasks: sst2, cola, stsb, .*multirc"):
        get_task("wnli")


# -- formatting ------------------------------------------------------------------------------------------------

FORMAT_CASES = [
    ("sst2", {"sentence": "a gripping film ", "label": 1, "idx": 3}, "sst2 sentence: a gripping film", "positive", 1),
    ("cola", {"sentence": "Him saw I.", "label": "0"}, "cola sentence: Him saw I.", "unacceptable", 0),
    (
        "stsb",
        {"sentence1": "A cat.", "sentence2": "A dog.", "label": "3.375"},
        "stsb sentence1: A cat. sentence2: A dog.",
        "3.4",
        3.375,
    ),
    (
        "mrpc",
        {"sentence1": "He said .", "sentence2": '" He said', "label": 1},
        'mrpc sentence1: He said . sentence2: " He said',
        "equivalent",
        1,
    ),
    (
        "qqp",
        {"question1": "Why?", "question2": "How?", "label": "0"},
        "qqp question1: Why? question2: How?",
        "not_duplicate",
        0,
    ),
    (
        "qnli",
        {"question": "Who?", "sentence": "Him.", "label": "not_entailment"},
        "qnli question: Who? sentence: Him.",
        "not_entailment",
        1,
    ),
    (
        "mnli",
        {"premise": "P.", "hypothesis": "H.", "label": "neutral"},
        "mnli hypothesis: H. premise: P.",
        "neutral",
        1,
    ),
    ("rte", {"premise": "P.", "hypothesis": "H.", "label": 0}, "rte hypothesis: H. premise: P.", "entailment", 0),
    (
        "cb",
        {"premise": "P.", "hypothesis": "H.", "label": "contradiction"},
        "cb hypothesis: H. premise: P.",
        "contradiction",
        1,
    ),
    (
        "copa",
        {"premise": "The man broke his toe.", "choice1": "He dropped a hammer.", "choice2": "He got a hole.",
         "question": "cause", "label": 0, "idx": 7},
        "copa choice1: He dropped a hammer. choice2: He got a hole. premise: The man broke his toe. question: cause",
        "choice1",
        0,
    ),
    (
        "wic",
        {"word": "place", "sentence1": "My place.", "sentence2": "No place.", "label": True, "start1": 3},
        "wic sentence1: My place. sentence2: No place. word: place",
        "True",
        1,
    ),
    (
        "boolq",
        {"question": "is it", "passage": "Long\ttext\n here.", "label": False},
        "boolq question: is it passage: Long text here.",
        "False",
        0,
    ),
    (
        "multirc",
        {"paragraph": "Para.", "question": "Q?", "answer": "A", "label": 1,
         "idx": {"paragraph": 2, "question": 5, "answer": 9}},
        "multirc question: Q? answer: A paragraph: Para.",
        "True",
        1,
    ),
]  # fmt: skip


@pytest.mark.parametrize(("name", "row", "source", "target", "label"), FORMAT_CASES, ids=[c[0] for c in FORMAT_CASES])
def test_format(name, row, source, target, label):
    example = get_task(name).format(row)
    assert example.source == source
    assert example.target == target
    assert example.label == label
    assert type(example.label) is type(label)
    assert example.target in get_task(name).label_words


def test_format_idx_and_group():
    assert get_task("copa").format(FORMAT_CASES[9][1]).idx == 7
    assert get_task("sst2").format({"sentence": "x", "label": 0}).idx is None
    multirc = get_task("multirc").format(FORMAT_CASES[-1][1])
    assert (multirc.group, multirc.idx) == ("2-5", 9)
    assert get_task("rte").format(FORMAT_CASES[7][1]).group is None


def test_zero_length_text_is_kept():
    example = get_task("sst2").format({"sentence": "", "label": 0})
    assert example == Example(source="sst2 sentence: ", target="negative", label=0)
    assert (
        get_task("rte").format({"premise": "  ", "hypothesis": "H", "label": 0}).source == "rte hypothesis: H premise: "
    )


@pytest.mark.parametrize(
    ("name", "row", "message"),
    [
        ("sst2", {"sentence": "x"}, r"missing field 'label' \(row has: sentence\)"),
        ("copa", {"premise": "p", "choice1": "a", "question": "cause", "label": 0}, r"missing field 'choice2'"),
        ("sst2", {"sentence": None, "label": 0}, r"field 'sentence' must be text, got NoneType"),
        ("sst2", {"sentence": "x", "label": "2"}, r"sst2: unknown label '2'; expected one of '0', '1'"),
        ("rte", {"premise": "p", "hypothesis": "h", "label": "maybe"}, r"rte: unknown label 'maybe'.*'entailment'"),
        ("cb", {"premise": "p", "hypothesis": "h", "label": 3}, r"cb: label 3 is outside 0..2"),
        ("qnli", {"question": "q", "sentence": "s", "label": -1}, r"outside 0..1 \(an unlabelled test row\?\)"),
        ("sst2", {"sentence": "x", "label": True}, r"sst2: label True is a boolean"),
        ("boolq", {"question": "q", "passage": "p", "label": "yes"}, r"boolq: unknown label 'yes'"),
        ("stsb", {"sentence1": "a", "sentence2": "b", "label": "high"}, r"stsb: label 'high' is not a number"),
        ("stsb", {"sentence1": "a", "sentence2": "b", "label": 5.5}, r"stsb: label 5.5 is outside \[0, 5\]"),
        ("stsb", {"sentence1": "a", "sentence2": "b", "label": float("nan")}, r"outside \[0, 5\]"),
        (
            "copa",
            {"premise": "p", "choice1": "a", "choice2": "b", "question": "why", "label": 0},
            r"'cause' or 'effect'",
        ),
        ("multirc", {"paragraph": "p", "question": "q", "answer": "a", "label": 0, "idx": 3}, r"field 'idx' must hold"),
    ],
)
def test_bad_rows_raise_row_error(name, row, message):
    with pytest.raises(RowError, match=message):
        get_task(name).format(row)


# -- label words and parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_label_words_round_trip(name):
    task = get_task(name)
    assert len(set(task.label_words)) == len(task.label_words)
    for i, word in enumerate(task.label_words):
        parsed = task.parse_prediction(f" {word}\n")
        assert parsed == (float(word) if name == "stsb" else i)
    for bad in ("", "maybe", "positive negative", "<pad>"):
        assert task.parse_prediction(bad) is None


def test_parse_is_case_sensitive_like_t5():
    assert get_task("boolq").parse_prediction("true") is None
    assert get_task("sst2").parse_prediction("Positive") is None
    assert get_task("rte").parse_prediction("not_entailment") == 1


def test_stsb_label_words_and_rounding():
    stsb = get_task("stsb")
    assert stsb.label_words == tuple(f"{i / 5:.1f}" for i in range(26))
    assert stsb.label_words[:3] == ("0.0", "0.2", "0.4") and stsb.label_words[-1] == "5.0"
    for score, text in [(0.0, "0.0"), (5.0, "5.0"), (3.8, "3.8"), (2.75, "2.8"), (0.09, "0.0"), (0.11, "0.2")]:
        assert stsb.label_text(score) == text
    assert stsb.parse_prediction("3.4") == pytest.approx(3.4)
    assert stsb.parse_prediction(" 4 ") == 4.0
    assert stsb.parse_prediction("3.45") == pytest.approx(3.45)
    for bad in ("5.2", "-0.2", "nan", "inf", "abc", "3.4.1"):
        assert stsb.parse_prediction(bad) is None


# -- metrics (hand-computed) -----------------------------------------------------------------------------------


def _examples(name: str, labels, groups=None) -> list[Example]:
    groups = groups or [None] * len(labels)
    return [Example(f"x{i}", "t", label, group=g) for i, (label, g) in enumerate(zip(labels, groups, strict=True))]


def test_accuracy_and_invalid_rate():
    out = get_task("sst2").compute_metrics([1, 0, None, 1], _examples("sst2", [1, 0, 0, 0]))
    assert out == {"accuracy": 0.5, "invalid_rate": 0.25}
    assert get_task("sst2").main_metric == "accuracy"


def test_binary_f1_invalid_is_wrong_both_ways():
    mrpc = get_task("mrpc")
    # TP=2, FP=1, FN=1 (the invalid answer on a gold 1), TN=1: F1 = 4/6, accuracy 3/5.
    out = mrpc.compute_metrics([1, 1, 1, 0, None], _examples("mrpc", [1, 1, 0, 0, 1]))
    assert out["f1"] == pytest.approx(2 / 3)
    assert out["accuracy"] == pytest.approx(0.6)
    assert out["f1_accuracy"] == pytest.approx((2 / 3 + 0.6) / 2)
    assert out["invalid_rate"] == pytest.approx(0.2)
    assert mrpc.main_metric == "f1_accuracy"
    # An invalid answer on a gold 0 is a false positive: TP=1, FP=1 -> F1 = 2/3.
    out = get_task("qqp").compute_metrics([None, 1], _examples("qqp", [0, 1]))
    assert out["f1"] == pytest.approx(2 / 3) and out["accuracy"] == 0.5


def test_cb_macro_f1_over_three_classes():
    # class 0: P=1 R=1/2 F1=2/3; class 1: P=1/2 R=1 F1=2/3; class 2: F1=0 (its only example was invalid).
    out = get_task("cb").compute_metrics([0, 1, 1, None], _examples("cb", [0, 0, 1, 2]))
    assert out["f1"] == pytest.approx(4 / 9)
    assert out["accuracy"] == 0.5
    assert out["f1_accuracy"] == pytest.approx((4 / 9 + 0.5) / 2)
    assert out["invalid_rate"] == 0.25


def test_mnli_invalid_never_matches_any_class():
    out = get_task("mnli").compute_metrics([None, None, None], _examples("mnli", [0, 1, 2]))
    assert out == {"accuracy": 0.0, "invalid_rate": 1.0}


def test_cola_mcc():
    # TP=1, TN=2, FP=0, FN=1: MCC = (1*2 - 0*1) / sqrt(1 * 2 * 2 * 3) = 2 / sqrt(12).
    out = get_task("cola").compute_metrics([1, 0, 0, 0], _examples("cola", [1, 1, 0, 0]))
    assert out["mcc"] == pytest.approx(2 / math.sqrt(12))
    assert out["accuracy"] == 0.75
    assert get_task("cola").main_metric == "mcc"


def test_cola_mcc_constant_predictions_is_zero_not_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = get_task("cola").compute_metrics([1, 1, 1, 1], _examples("cola", [1, 1, 0, 0]))
    assert out["mcc"] == 0.0


def test_stsb_pearson_spearman_with_invalid():
    stsb = get_task("stsb")
    perfect = stsb.compute_metrics([1.0, 2.0, 3.0], _examples("stsb", [1.0, 2.0, 3.0]))
    assert perfect["pearson"] == pytest.approx(1.0) and perfect["spearman"] == pytest.approx(1.0)
    assert perfect["pearson_spearman"] == pytest.approx(1.0) and perfect["invalid_rate"] == 0.0
    # The invalid third answer becomes -1.0: x = [1, 2, -1], y = [1, 2, 3].
    # Pearson: cov = -2, var_x = 42/9, var_y = 2 -> r = -6 / sqrt(84). Spearman: ranks [2,3,1] vs [1,2,3] -> -0.5.
    out = stsb.compute_metrics([1.0, 2.0, None], _examples("stsb", [1.0, 2.0, 3.0]))
    assert out["pearson"] == pytest.approx(-6 / math.sqrt(84))
    assert out["spearman"] == pytest.approx(-0.5)
    assert out["pearson_spearman"] == pytest.approx((-6 / math.sqrt(84) - 0.5) / 2)
    assert out["invalid_rate"] == pytest.approx(1 / 3)
    assert stsb.main_metric == "pearson_spearman"


def test_stsb_constant_predictions_are_zero_not_nan():
    stsb = get_task("stsb")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConstantInputWarning leaks either
        out = stsb.compute_metrics([2.0, 2.0, 2.0], _examples("stsb", [1.0, 2.0, 3.0]))
        assert out["pearson"] == 0.0 and out["spearman"] == 0.0 and out["pearson_spearman"] == 0.0
        assert stsb.compute_metrics([None, None], _examples("stsb", [1.0, 4.0]))["pearson_spearman"] == 0.0
        assert stsb.compute_metrics([3.0], _examples("stsb", [3.0]))["pearson"] == 0.0


def test_multirc_f1a_and_grouped_em():
    multirc = get_task("multirc")
    labels = [1, 0, 1, 1, 0]
    groups = ["0-1", "0-1", "0-2", "0-2", "0-2"]
    # q1 all right; q2 answers [1, 0, invalid->1] vs gold [1, 1, 0]: one FN and one FP.
    # TP=2, FP=1, FN=1 -> F1a = 2/3; EM = 1/2; accuracy 3/5.
    out = multirc.compute_metrics([1, 0, 1, 0, None], _examples("multirc", labels, groups))
    assert out["f1a"] == pytest.approx(2 / 3)
    assert out["em"] == 0.5
    assert out["f1a_em"] == pytest.approx((2 / 3 + 0.5) / 2)
    assert out["accuracy"] == pytest.approx(0.6)
    assert out["invalid_rate"] == pytest.approx(0.2)
    assert multirc.main_metric == "f1a_em"


@pytest.mark.parametrize("name", ALL)
def test_main_metric_is_reported(name):
    task = get_task(name)
    labels = [float(w) for w in ("1.0", "2.0")] if name == "stsb" else [0, 1]
    out = task.compute_metrics(labels, _examples(name, labels, ["g", "g"] if name == "multirc" else None))
    assert task.main_metric in out and "invalid_rate" in out
    assert all(isinstance(v, float) and not math.isnan(v) for v in out.values())


def test_compute_metrics_rejects_bad_predictions():
    sst2 = get_task("sst2")
    with pytest.raises(ValueError, match="got 1 predictions for 2 examples"):
        sst2.compute_metrics([1], _examples("sst2", [1, 0]))
    with pytest.raises(ValueError, match="no examples to score"):
        sst2.compute_metrics([], [])
    with pytest.raises(ValueError, match=r"prediction 1 is 'positive'; expected a class index 0..1 or None"):
        sst2.compute_metrics([1, "positive"], _examples("sst2", [1, 0]))
    with pytest.raises(ValueError, match=r"prediction 0 is 2"):
        sst2.compute_metrics([2, 0], _examples("sst2", [1, 0]))
    with pytest.raises(ValueError, match=r"stsb: prediction 0 is nan"):
        get_task("stsb").compute_metrics([float("nan")], _examples("stsb", [1.0]))


# -- every task on a slice of the real files (fixtures where shared/data lacks them) ---------------------------


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return write_tiny_data_dir(tmp_path_factory.mktemp("tiny"))


def _slice(name: str, tiny_dir: Path) -> tuple[list[Example], str]:
    shared = shared_data_dir()
    if shared is not None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # MNLI falls back to the TextFooler subset there (tested in test_data)
                return load_examples(name, "validation", shared, limit=40, seed=1), "shared"
        except DataFileMissing:
            pass  # QQP, COPA: not in shared/data
    return load_examples(name, "validation", tiny_dir), "fixture"


@pytest.mark.parametrize("name", ALL)
def test_every_task_formats_and_scores_real_slice(name, tiny_dir):
    task = get_task(name)
    examples, _origin = _slice(name, tiny_dir)
    assert examples
    for example in examples:
        assert example.source.startswith(f"{name} ")
        assert example.target in task.label_words
        assert (example.group is not None) == (name == "multirc")
    golds = [task.parse_prediction(e.target) for e in examples]
    perfect = task.compute_metrics(golds, examples)
    assert perfect["invalid_rate"] == 0.0
    if name == "stsb":  # targets are rounded to 0.2, so the correlation is high but not exactly 1
        assert 0.99 < perfect["pearson"] <= 1.0
    else:
        assert all(e.label == g for e, g in zip(examples, golds, strict=True))
        assert perfect[task.main_metric] == pytest.approx(1.0)
    garbage = task.compute_metrics([task.parse_prediction("garbage")] * len(examples), examples)
    assert garbage["invalid_rate"] == 1.0
    assert garbage[task.main_metric] <= 0.0
