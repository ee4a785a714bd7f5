"""Test helpers: a tiny data_dir of all 13 tasks in the official file formats, and the real shared/data location.

``write_tiny_data_dir(root)`` is reused by the trainer's end-to-end tests: every task gets a train and a validation
file laid out like shared/data (GLUE TSV with the real headers, CoLA without header, MRPC with a UTF-8 BOM, MNLI
with the full GLUE column set, SuperGLUE JSONL with the official fields, MultiRC nested). Labels cycle through all
classes; each text carries a cue word of its class, so a model can in principle fit the tiny sets.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
_CUES = ("alpha", "beta", "gamma")  # class 0, 1, 2
_STSB_META = ["0", "main-captions", "MSRvid", "2012test", "0000", "none", "none"]  # the 7 columns before the texts


def shared_data_dir() -> Path | None:
    """The real GLUE/SuperGLUE files: $SUPERPOS_DATA_DIR, else <repo>/../shared/data; None when absent."""
    env = os.environ.get("SUPERPOS_DATA_DIR")
    candidate = Path(env) if env else REPO_ROOT.parent / "shared" / "data"
    return candidate if (candidate / "glue").is_dir() and (candidate / "superglue").is_dir() else None


def _write(path: Path, text: str, bom: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))


def _tsv(header: list[str] | None, rows: list[list[object]]) -> str:
    lines = (["\t".join(header)] if header else []) + ["\t".join(str(c) for c in row) for row in rows]
    return "\n".join(lines) + "\n"


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def write_tiny_data_dir(root: Path, n_train: int = 8, n_val: int = 6) -> Path:
    """Write glue/<task>/{train,dev}.tsv and superglue/<task>/{train,val}.jsonl for all 13 tasks under root."""
    root = Path(root)
    sizes = {"train": n_train, "dev": n_val}

    for split, n in sizes.items():
        glue = root / "glue"
        # CoLA: no header; source, label, original label (empty), sentence.
        _write(
            glue / "cola" / f"{split}.tsv",
            _tsv(None, [["tiny", i % 2, "", f"The {_CUES[i % 2]} sentence {i} is here."] for i in range(n)]),
        )
        _write(
            glue / "sst2" / f"{split}.tsv",
            _tsv(["sentence", "label"], [[f'a "{_CUES[i % 2]} film {i} ', i % 2] for i in range(n)]),
        )
        stsb_header = "index genre filename year old_index source1 source2 sentence1 sentence2 score".split()
        _write(
            glue / "stsb" / f"{split}.tsv",
            _tsv(
                stsb_header,
                [[*_STSB_META, f"A man plays {i}.", f"A man plays {i % 3}.", f"{(i * 0.7) % 5:.3f}"] for i in range(n)],
            ),
        )
        _write(
            glue / "mrpc" / f"{split}.tsv",
            _tsv(
                ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                [[i % 2, 1000 + i, 2000 + i, f"He said {i} .", f'" {_CUES[i % 2]} he said {i} .'] for i in range(n)],
            ),
            bom=True,
        )
        _write(
            glue / "qqp" / f"{split}.tsv",
            _tsv(
                ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
                [[i, 2 * i, 2 * i + 1, f"How do I {i}?", f"How {_CUES[i % 2]} {i}?", i % 2] for i in range(n)],
            ),
        )
        nli2 = ("entailment", "not_entailment")
        _write(
            glue / "qnli" / f"{split}.tsv",
            _tsv(
                ["index", "question", "sentence", "label"],
                [[i, f"What is {i}?", f"It is {_CUES[i % 2]} {i}.", nli2[i % 2]] for i in range(n)],
            ),
        )
        _write(
            glue / "rte" / f"{split}.tsv",
            _tsv(
                ["index", "sentence1", "sentence2", "label"],
                [[i, f"Premise {i}.", f"Hypothesis {_CUES[i % 2]}.", nli2[i % 2]] for i in range(n)],
            ),
        )

    # MNLI: the GLUE column set (train: label1 + gold_label; dev_matched: label1..label5 + gold_label).
    mnli_labels = ("entailment", "neutral", "contradiction")
    base = "index promptID pairID genre sentence1_binary_parse sentence2_binary_parse sentence1_parse".split()
    base += ["sentence2_parse", "sentence1", "sentence2"]
    for filename, n, label_cols in (("train.tsv", n_train, 1), ("dev_matched.tsv", n_val, 5)):
        header = base + [f"label{k}" for k in range(1, label_cols + 1)] + ["gold_label"]
        rows = []
        for i in range(n):
            label = mnli_labels[i % 3]
            premise, hypothesis = f"The man {i} walks.", f"The man is {_CUES[i % 3]}."
            rows.append(
                [i, 100 + i, f"{100 + i}e", "fiction", f"( {premise} )", f"( {hypothesis} )"]
                + [f"(ROOT {premise})", f"(ROOT {hypothesis})", premise, hypothesis]
                + [label] * label_cols
                + [label]
            )
        _write(root / "glue" / "mnli" / filename, _tsv(header, rows))

    for split, n in {"train": n_train, "val": n_val}.items():
        sg = root / "superglue"
        _write(
            sg / "rte" / f"{split}.jsonl",
            _jsonl(
                [
                    {"premise": f"Premise {i}.", "hypothesis": f"Hyp {_CUES[i % 2]}.", "label": nli2[i % 2], "idx": i}
                    for i in range(n)
                ]
            ),
        )
        cb_labels = ("entailment", "contradiction", "neutral")
        _write(
            sg / "cb" / f"{split}.jsonl",
            _jsonl(
                [
                    {
                        "premise": f"She said {i}.",
                        "hypothesis": f"It is {_CUES[i % 3]}.",
                        "label": cb_labels[i % 3],
                        "idx": i,
                    }
                    for i in range(n)
                ]
            ),
        )
        _write(
            sg / "copa" / f"{split}.jsonl",
            _jsonl(
                [
                    {
                        "premise": f"The glass {i} fell.",
                        "choice1": f"It {_CUES[0]} broke.",
                        "choice2": f"It {_CUES[1]} bounced.",
                        "question": ("cause", "effect")[(i // 2) % 2],
                        "label": i % 2,
                        "idx": i,
                    }
                    for i in range(n)
                ]
            ),
        )
        _write(
            sg / "wic" / f"{split}.jsonl",
            _jsonl(
                [
                    {
                        "word": "bank",
                        "sentence1": f"The bank {i}.",
                        "sentence2": f"The {_CUES[i % 2]} bank.",
                        "idx": i,
                        "label": bool(i % 2),
                        "start1": 4,
                        "start2": 5 + len(_CUES[i % 2]),
                        "end1": 8,
                        "end2": 9 + len(_CUES[i % 2]),
                        "version": 1.1,
                    }
                    for i in range(n)
                ]
            ),
        )
        _write(
            sg / "boolq" / f"{split}.jsonl",
            _jsonl(
                [
                    {
                        "question": f"is it {_CUES[i % 2]} {i}",
                        "passage": f"Passage {i} -- text.",
                        "idx": i,
                        "label": bool(i % 2),
                    }
                    for i in range(n)
                ]
            ),
        )
        _write(sg / "multirc" / f"{split}.jsonl", _jsonl(_multirc_paragraphs(n)))
    return root


def _multirc_paragraphs(n_answers: int) -> list[dict]:
    """n_answers answer options in the official nested form: 2 answers per question, 2 questions per paragraph."""
    paragraphs: list[dict] = []
    answer_idx = question_idx = 0
    while answer_idx < n_answers:
        questions = []
        while len(questions) < 2 and answer_idx < n_answers:
            answers = []
            while len(answers) < 2 and answer_idx < n_answers:
                label = answer_idx % 2
                answers.append({"text": f"Answer {_CUES[label]} {answer_idx}", "idx": answer_idx, "label": label})
                answer_idx += 1
            questions.append({"question": f"What is {question_idx}?", "answers": answers, "idx": question_idx})
            question_idx += 1
        paragraphs.append(
            {
                "idx": len(paragraphs),
                "version": 1.1,
                "passage": {"text": f"Paragraph {len(paragraphs)}.", "questions": questions},
            }
        )
    return paragraphs
