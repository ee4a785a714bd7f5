"""Data loading: official local formats (real shared/data slices and fixtures), malformed input, subsets, hub path."""

from __future__ import annotations

import json
import sys
import types
import warnings
from pathlib import Path

import pytest
from superpos_trainer.data import DataError, DataFileMissing, load_examples, train_holdout_split
from superpos_trainer.tasks import TASKS, Example, get_task

from .data_fixtures import shared_data_dir, write_tiny_data_dir

SHARED = shared_data_dir()
needs_shared = pytest.mark.skipif(SHARED is None, reason="shared/data not present (set SUPERPOS_DATA_DIR)")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return write_tiny_data_dir(tmp_path_factory.mktemp("tiny"), n_train=8, n_val=6)


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


# -- the tiny official-format data_dir (QQP, COPA, BoolQ train, MNLI come only from here) ----------------------


@pytest.mark.parametrize("name", sorted(TASKS))
def test_tiny_dir_loads_every_task(name, tiny_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the GLUE MNLI dev_matched.tsv is present: no TextFooler fallback
        train = load_examples(name, "train", tiny_dir)
        val = load_examples(name, "validation", tiny_dir)
    assert (len(train), len(val)) == (8, 6)
    task = get_task(name)
    assert {e.target for e in train} >= set(task.label_words[:2]) or name == "stsb"
    assert [e.idx for e in val] == list(range(6))


def test_tiny_dir_sizes_are_arguments(tmp_path):
    root = write_tiny_data_dir(tmp_path, n_train=5, n_val=3)
    assert len(load_examples("multirc", "train", root)) == 5
    assert len(load_examples("copa", "validation", root)) == 3


def test_fixture_formats_are_official(tiny_dir):
    assert (tiny_dir / "glue/mrpc/dev.tsv").read_bytes().startswith(b"\xef\xbb\xbfQuality\t#1 ID")
    assert (tiny_dir / "glue/cola/train.tsv").read_text().split("\n")[0] == "tiny\t0\t\tThe alpha sentence 0 is here."
    copa = json.loads((tiny_dir / "superglue/copa/val.jsonl").read_text().splitlines()[0])
    assert set(copa) == {"premise", "choice1", "choice2", "question", "label", "idx"}
    header = (tiny_dir / "glue/mnli/dev_matched.tsv").read_text().splitlines()[0].split("\t")
    assert header[-6:] == ["label1", "label2", "label3", "label4", "label5", "gold_label"] and len(header) == 16


def test_qqp_copa_boolq_mnli_from_fixture_files(tiny_dir):
    qqp = load_examples("qqp", "validation", tiny_dir)[1]
    assert (qqp.source, qqp.target, qqp.label) == ("qqp question1: How do I 1? question2: How beta 1?", "duplicate", 1)
    copa = load_examples("copa", "train", tiny_dir)[2]
    assert (
        copa.source
        == "copa choice1: It alpha broke. choice2: It beta bounced. premise: The glass 2 fell. question: effect"
    )
    assert (copa.target, copa.idx) == ("choice1", 2)
    boolq = load_examples("boolq", "train", tiny_dir)[1]
    assert (boolq.source, boolq.target) == ("boolq question: is it beta 1 passage: Passage 1 -- text.", "True")
    mnli = load_examples("mnli", "train", tiny_dir)[2]
    assert (mnli.source, mnli.target) == (
        "mnli hypothesis: The man is gamma. premise: The man 2 walks.",
        "contradiction",
    )


# -- real files (shared/data) ----------------------------------------------------------------------------------


@needs_shared
@pytest.mark.parametrize(
    ("name", "count"),
    [("sst2", 872), ("cola", 1043), ("stsb", 1500), ("mrpc", 408), ("rte", 277), ("cb", 56), ("wic", 638)],
)
def test_real_dev_row_counts(name, count):
    examples = load_examples(name, "validation", SHARED)
    assert len(examples) == count
    assert [e.idx for e in examples[:3]] == [0, 1, 2]


@needs_shared
def test_real_multirc_groups_by_question():
    examples = load_examples("multirc", "validation", SHARED)
    assert len(examples) == 4848
    assert len({e.group for e in examples}) == 953
    first = examples[0]
    assert first.source.startswith("multirc question: Would the mass of a baseball affect")
    assert " paragraph: What causes a change in motion?" in first.source
    assert (first.group, first.idx, first.target) == ("0-0", 0, "False")


@needs_shared
def test_real_mrpc_bom_and_stray_quotes():
    first = load_examples("mrpc", "validation", SHARED)[0]
    assert first.source.endswith(
        'sentence2: " The foodservice pie business does not fit our long-term growth strategy .'
    )
    assert first.target == "equivalent"
    quoted = [e for e in load_examples("stsb", "validation", SHARED) if '"' in e.source]
    assert quoted  # kept verbatim: reading with quoting on would merge these rows and lose examples


@needs_shared
def test_real_cola_has_no_header_and_labels():
    examples = load_examples("cola", "validation", SHARED)
    assert examples[0] == Example(
        "cola sentence: The sailors rode the breeze clear of the rocks.", "acceptable", 1, None, 0
    )
    assert sum(e.label == 0 for e in examples) == 322


@needs_shared
def test_real_mnli_falls_back_to_textfooler_subset_with_warning():
    with pytest.warns(UserWarning, match="TextFooler subset .* not the official MNLI-m number"):
        examples = load_examples("mnli", "validation", SHARED)
    assert len(examples) == 1000
    assert examples[0].source == (
        "mnli hypothesis: There is a bookshop at the gallery . premise: In Temple Bar , the bookshop at the Gallery "
        "of Photography carries a large selection of photographic publications , and the Flying Pig is a "
        "secondhand bookshop ."
    )
    assert examples[0].target == "entailment"


@needs_shared
@pytest.mark.parametrize(
    ("name", "split", "relpath", "hint"),
    [
        ("qqp", "train", "glue/qqp/train.tsv", "GLUE QQP is not in shared/data"),
        ("qnli", "train", "glue/qnli/train.tsv", "QNLI train is not in shared/data"),
        ("mnli", "train", "glue/mnli/train.tsv", "MNLI train is not in shared/data"),
        ("boolq", "train", "superglue/boolq/train.jsonl", "BoolQ train is not in shared/data"),
        ("copa", "validation", "superglue/copa/val.jsonl", "COPA is not in shared/data at all"),
    ],
)
def test_real_missing_files_name_path_and_fix(name, split, relpath, hint):
    with pytest.raises(DataFileMissing) as info:
        load_examples(name, split, SHARED)
    message = str(info.value)
    assert f"expected {SHARED / relpath}" in message
    assert hint in message
    assert "Fix: put the official" in message and "data_dir=None" in message


# -- local format details --------------------------------------------------------------------------------------


def test_glue_alternatives(tmp_path):
    # MNLI validation also reads a dev.tsv; RTE falls back to the GLUE TSV when superglue/rte is absent.
    tiny = write_tiny_data_dir(tmp_path / "t", n_train=3, n_val=3)
    (tiny / "glue/mnli/dev_matched.tsv").rename(tiny / "glue/mnli/dev.tsv")
    assert len(load_examples("mnli", "validation", tiny)) == 3
    for f in (tiny / "superglue/rte").iterdir():
        f.unlink()
    rte = load_examples("rte", "validation", tiny)[1]
    assert (rte.source, rte.target) == ("rte hypothesis: Hypothesis beta. premise: Premise 1.", "not_entailment")


def test_stray_quotes_crlf_empty_lines_and_zero_length_text(tmp_path):
    _write(tmp_path / "glue/sst2/dev.tsv", 'sentence\tlabel\r\n"a film \t1\r\n\r\n\t0\r\nb" end\t0')
    examples = load_examples("sst2", "validation", tmp_path)
    assert [e.source for e in examples] == ['sst2 sentence: "a film', "sst2 sentence: ", 'sst2 sentence: b" end']
    assert [e.label for e in examples] == [1, 0, 0]
    assert [e.idx for e in examples] == [0, 1, 2]


def _error(tmp_path: Path, relpath: str, content: str | bytes, name: str, split: str = "validation") -> str:
    _write(tmp_path / relpath, content)
    with pytest.raises(DataError) as info:
        load_examples(name, split, tmp_path)
    return str(info.value)


@pytest.mark.parametrize(
    ("name", "relpath", "content", "line", "message"),
    [
        ("sst2", "glue/sst2/dev.tsv", "sentence\tlabel\nok\t1\nbad\t1\textra\n", 3,
         "expected 2 tab-separated columns, found 3"),
        ("sst2", "glue/sst2/dev.tsv", "sentence\tlabel\nok\t1\nbad\t2\n", 3, "sst2: unknown label '2'"),
        ("sst2", "glue/sst2/dev.tsv", "sentence\tlabel\nok\t1\ncut", 3,
         "expected 2 tab-separated columns, found 1 (last line has no newline: the file may be truncated)"),
        ("sst2", "glue/sst2/dev.tsv", "text\tlabel\nok\t1\n", 1,
         "header lacks column(s) 'sentence'; found 'text', 'label'"),
        ("cola", "glue/cola/dev.tsv", "gj04\t1\t\tfine\ngj04\t1\tshort\n", 2,
         "expected 4 tab-separated columns, found 3"),
        ("stsb", "glue/stsb/dev.tsv",
         "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
         "0\tg\tf\ty\t0\tn\tn\ta\tb\thigh\n", 2, "stsb: label 'high' is not a number"),
        ("qnli", "glue/qnli/dev.tsv", b"index\tquestion\tsentence\tlabel\n0\tq\t\xff\tentailment\n", 2,
         "not valid UTF-8"),
        ("rte", "superglue/rte/val.jsonl",
         '{"premise": "p", "hypothesis": "h", "label": "entailment", "idx": 0}\n'
         '{"premise": "p", "hypothesis": "h", "label": "maybe", "idx": 1}\n', 2, "rte: unknown label 'maybe'"),
        ("cb", "superglue/cb/val.jsonl", '{"premise": "p", "hypothesis": "h", "label": "neutral"}\n{"premise": \n', 2,
         "invalid JSON: Expecting value (column 13)"),
        ("cb", "superglue/cb/val.jsonl",
         '{"premise": "p", "hypothesis": "h", "label": "neutral"}\n{"premise": "p", "hy', 2,
         "invalid JSON: Unterminated string starting at (column 18) "
         "(last line has no newline: the file may be truncated)"),
        ("copa", "superglue/copa/val.jsonl",
         '{"premise": "p", "choice1": "a", "question": "cause", "label": 0, "idx": 0}\n', 1,
         "missing field 'choice2'"),
        ("boolq", "superglue/boolq/val.jsonl", '[1, 2]\n', 1, "expected a JSON object per line, found list"),
        ("wic", "superglue/wic/val.jsonl", '{"word": "w", "sentence1": "a", "sentence2": 3, "label": true}\n', 1,
         "field 'sentence2' must be text, got int 3"),
        ("multirc", "superglue/multirc/val.jsonl",
         '{"idx": 0, "passage": {"text": "t", "questions": [{"question": "q", "idx": 0, "answers": '
         '[{"text": "a", "idx": 0, "label": 1}, {"text": "b", "idx": 1}]}]}}\n', 1,
         "multirc: missing field 'passage.questions[0].answers[1].label'"),
        ("multirc", "superglue/multirc/val.jsonl", '{"idx": 0, "passage": {"text": "t"}}\n', 1,
         "multirc: missing field 'passage.questions'"),
        ("multirc", "superglue/multirc/val.jsonl",
         '{"idx": "zero", "passage": {"text": "t", "questions": []}}\n', 1,
         "multirc: field 'idx' must be an integer, got 'zero'"),
    ],
)  # fmt: skip
def test_malformed_input_names_file_and_line(tmp_path, name, relpath, content, line, message):
    text = _error(tmp_path, relpath, content, name)
    assert text.startswith(f"{tmp_path / relpath}:{line}: ")
    assert message in text


@pytest.mark.parametrize(
    ("name", "relpath", "content"),
    [
        ("sst2", "glue/sst2/dev.tsv", ""),
        ("sst2", "glue/sst2/dev.tsv", "sentence\tlabel\n"),
        ("cb", "superglue/cb/val.jsonl", "\n\n"),
        ("multirc", "superglue/multirc/val.jsonl", '{"idx": 0, "passage": {"text": "t", "questions": []}}\n'),
    ],
)
def test_empty_split_is_an_error(tmp_path, name, relpath, content):
    text = _error(tmp_path, relpath, content, name)
    assert text == f"{tmp_path / relpath}: no examples in the validation split of {name} (empty file or header only)"


def test_bad_arguments(tiny_dir, tmp_path):
    with pytest.raises(ValueError, match=r"split must be one of train, validation \(or 'dev'/'val'\), got 'test'"):
        load_examples("sst2", "test", tiny_dir)
    assert len(load_examples("sst2", "dev", tiny_dir)) == len(load_examples(get_task("SST-2"), "validation", tiny_dir))
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="limit must be a positive integer or None"):
            load_examples("sst2", "train", tiny_dir, limit=bad)
    with pytest.raises(ValueError, match="unknown task 'sst3'"):
        load_examples("sst3", "train", tiny_dir)
    with pytest.raises(DataFileMissing, match="is not a folder; pass a folder laid out like shared/data"):
        load_examples("sst2", "train", tmp_path / "nowhere")


# -- limit and holdout -----------------------------------------------------------------------------------------


def _many_sst2(tmp_path: Path, n: int = 50) -> Path:
    rows = "".join(f"film {i}\t{i % 2}\n" for i in range(n))
    _write(tmp_path / "glue/sst2/train.tsv", "sentence\tlabel\n" + rows)
    return tmp_path


def test_limit_is_a_fixed_seeded_subset_in_file_order(tmp_path):
    root = _many_sst2(tmp_path)
    a = load_examples("sst2", "train", root, limit=10, seed=3)
    assert a == load_examples("sst2", "train", root, limit=10, seed=3)
    assert len(a) == 10
    assert [e.idx for e in a] == sorted(e.idx for e in a)
    assert {e.idx for e in a} != {e.idx for e in load_examples("sst2", "train", root, limit=10, seed=4)}
    assert {e.idx for e in a} != set(range(10))  # random, not the first rows
    assert len(load_examples("sst2", "train", root, limit=500)) == 50


def test_limit_keeps_multirc_questions_whole(tiny_dir):
    full = load_examples("multirc", "train", tiny_dir)  # 4 questions x 2 answers
    for limit in (1, 3, 5):
        subset = load_examples("multirc", "train", tiny_dir, limit=limit, seed=0)
        assert 1 <= len(subset) <= max(limit, 2)
        for group in {e.group for e in subset}:
            assert [e for e in subset if e.group == group] == [e for e in full if e.group == group]


def test_train_holdout_split(tmp_path):
    examples = load_examples("sst2", "train", _many_sst2(tmp_path))
    train, holdout = train_holdout_split(examples, 0.2, seed=0)
    assert (len(train), len(holdout)) == (40, 10)
    assert sorted(e.idx for e in train + holdout) == list(range(50))
    assert [e.idx for e in holdout] == sorted(e.idx for e in holdout)
    assert (train, holdout) == train_holdout_split(examples, 0.2, seed=0)
    assert holdout != train_holdout_split(examples, 0.2, seed=1)[1]
    assert len(train_holdout_split(examples[:3], 0.01)[1]) == 1  # at least one held out
    assert len(train_holdout_split(examples[:3], 0.99)[0]) == 1  # at least one kept


def test_train_holdout_split_keeps_groups_and_checks_arguments(tiny_dir):
    examples = load_examples("multirc", "train", tiny_dir)
    train, holdout = train_holdout_split(examples, 0.5, seed=0)
    assert len(holdout) == 4 and not {e.group for e in train} & {e.group for e in holdout}
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="holdout_fraction must be strictly between 0 and 1"):
            train_holdout_split(examples, bad)
    with pytest.raises(TypeError, match="holdout_fraction must be a number"):
        train_holdout_split(examples, "0.1")
    with pytest.raises(ValueError, match=r"cannot hold out part of 2 example\(s\) in 1 group\(s\)"):
        train_holdout_split(examples[:2], 0.5)


# -- hub path (datasets.load_dataset replaced by a recorder: the hub is unreachable here) ----------------------


@pytest.fixture
def fake_hub(monkeypatch):
    calls: list[tuple] = []
    tables: dict[str, list[dict]] = {}

    def load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        if name not in tables:
            raise ConnectionError("hub unreachable")
        return tables[name]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    return calls, tables


def test_hub_rows_in_hf_form(fake_hub):
    calls, tables = fake_hub
    tables["mnli"] = [{"premise": "P.", "hypothesis": "H.", "label": 2, "idx": 0}]
    tables["multirc"] = [
        {"paragraph": "Para", "question": "Q", "answer": "A", "idx": {"paragraph": 0, "question": 0, "answer": i},
         "label": i % 2}
        for i in range(3)
    ]  # fmt: skip
    tables["stsb"] = [{"sentence1": "a", "sentence2": "b", "label": 4.4, "idx": 0}]
    mnli = load_examples("mnli", "validation")
    assert (mnli[0].source, mnli[0].target) == ("mnli hypothesis: H. premise: P.", "contradiction")
    assert [(e.group, e.idx, e.target) for e in load_examples("multirc", "train")] == [
        ("0-0", 0, "False"),
        ("0-0", 1, "True"),
        ("0-0", 2, "False"),
    ]
    assert load_examples("stsb", "train")[0].target == "4.4"
    assert calls == [
        ("nyu-mll/glue", "mnli", "validation_matched"),
        ("aps/super_glue", "multirc", "train"),
        ("nyu-mll/glue", "stsb", "train"),
    ]


def test_hub_errors_are_clear(fake_hub):
    _calls, tables = fake_hub
    with pytest.raises(DataError, match=r"could not load aps/super_glue/copa split 'train' from the Hugging Face hub "
                       r"\(ConnectionError: hub unreachable\); offline\? pass data_dir="):  # fmt: skip
        load_examples("copa", "train")
    tables["qnli"] = [{"question": "q", "sentence": "s", "label": 0}, {"question": "q", "sentence": "s", "label": -1}]
    with pytest.raises(DataError, match=r"nyu-mll/glue/qnli validation row 1: qnli: label -1 .*unlabelled test row"):
        load_examples("qnli", "validation")
    tables["cb"] = []
    with pytest.raises(DataError, match=r"hub dataset aps/super_glue/cb validation: no examples"):
        load_examples("cb", "validation")
