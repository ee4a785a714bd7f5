"""Bad-input corpus, part 3: options, config files, data files and ``predict`` inputs an attacker or a careless user
would write. Each CLI case: exit 2, one bounded line naming the option or the file (and line), no traceback, and no
run folder created (bad input is caught before it). The property tests below feed generated values to the same
readers in process: every outcome is a valid result or the readers' own one-line error, never another exception.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from superpos_trainer import checkpoints as ckpt
from superpos_trainer import run_folder
from superpos_trainer.config import FIELDS, build_config, read_config_file
from superpos_trainer.data import DataError, load_examples
from superpos_trainer.errors import ConfigError, RunFolderError
from superpos_trainer.train import TrainState

from .bad_input_tools import FUZZ_EXAMPLES, Ctx, cli_fails, finished_run, train_args
from .data_fixtures import write_tiny_data_dir
from .model_fixtures import tiny_data, tiny_t5  # noqa: F401

DEEP = "[" * 100_000 + "]" * 100_000
DIGITS = "1" * 5001


def _out(ctx: Ctx) -> Path:
    return ctx.tmp / "out"


def _train_fails(ctx: Ctx, extra: list[str], *needles: str, data: Path | None = None) -> None:
    cli_fails(ctx, train_args(ctx, _out(ctx), *extra, data=data), *needles)
    assert not _out(ctx).exists()  # refused before the run folder was made


# ---- options on the command line -----------------------------------------------------------------------------------


def _flag_case(*args_and_needle: str) -> Callable[[Ctx], None]:
    *args, needle = args_and_needle
    return lambda ctx: _train_fails(ctx, list(args), needle)


flag_epochs_1e400 = _flag_case("--epochs", "1e400", "argument --epochs: invalid int value")
flag_seed_5001_digits = _flag_case("--seed", DIGITS, "argument --seed: invalid int value")
flag_seed_overflow = _flag_case("--seed", str(2**70), "--seed must be an integer in [0, 4294967295]")
flag_seed_negative = _flag_case("--seed", "-1", "--seed must be an integer in [0, 4294967295]")
flag_lr_inf = _flag_case("--lr", "inf", "--lr must be a finite number > 0, got inf")
flag_weight_decay_nan = _flag_case("--weight-decay", "nan", "--weight-decay must be a finite number >= 0, got nan")
flag_weight_decay_inf = _flag_case("--weight-decay", "inf", "--weight-decay must be a finite number >= 0, got inf")
flag_holdout_nan = _flag_case("--holdout-fraction", "nan", "--holdout-fraction must be a finite number in [0, 1)")
flag_empty_model = _flag_case("--model", "", "--model must be a non-empty text")
flag_max_length_huge = _flag_case("--max-length", str(10**30), "--max-length must be a positive integer (at most")
# A typo that asks for a prompt larger than the machine: refused by its size before anything is allocated.
flag_prompt_beyond_memory = _flag_case(
    "--num-prompt-tokens", "1000000000", "--max-length", "auto", "num_prompt_tokens=1000000000 x"
)
flag_max_steps_huge = _flag_case("--max-steps", str(2**31), "--max-steps must be an integer in [0, 2147483647]")


# ---- config files --------------------------------------------------------------------------------------------------


def _config_case(name: str, text: str | bytes, *needles: str) -> Callable[[Ctx], None]:
    def case(ctx: Ctx) -> None:
        path = ctx.tmp / name
        path.write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
        _train_fails(ctx, ["--config", str(path)], str(path), *needles)

    return case


config_yaml_epochs_inf = _config_case("c.yaml", "epochs: .inf\n", "'epochs' expects int, got inf")
config_json_epochs_1e400 = _config_case("c.json", '{"epochs": 1e400}', "'epochs' expects int, got inf")
config_yaml_epochs_1e400 = _config_case("c.yaml", "epochs: 1.0e+400\n", "'epochs' expects int, got inf")
config_json_epochs_huge_int = _config_case("c.json", '{"epochs": ' + DIGITS + "}", "not valid json")
config_yaml_weight_decay_nan = _config_case("c.yaml", "weight_decay: .nan\n", "--weight-decay must be a finite")
config_json_seed_overflow = _config_case("c.json", '{"seed": 1e30}', "--seed must be an integer in [0, 4294967295]")
config_bad_utf8 = _config_case("c.yaml", b"task: sst2\nepochs: 1\nmodel: caf\xe9\n", ":3: not valid UTF-8")
config_json_deep = _config_case("c.json", '{"epochs": ' + DEEP + "}", "nested too deeply")
config_yaml_deep = _config_case("c.yaml", "epochs: " + "[" * 5000 + "]" * 5000 + "\n", "not valid yaml")
config_lone_surrogate = _config_case("c.json", '{"task": "\\ud800"}', "'task' expects str")
config_not_a_mapping = _config_case("c.yaml", "- epochs\n- 3\n", "must hold a mapping")
config_number_key = _config_case("c.yaml", "1: 2\n", "unknown option 1")
config_list_for_text = _config_case("c.yaml", "model: [a, b]\n", "'model' expects str")
config_too_big = _config_case("c.yaml", "# " + "x" * (1 << 20) + "\n", "a config file is at most")
config_cr_only = _config_case("c.yaml", "epochs: 1\rlr: [\r", "not valid yaml")


def config_yaml_alias_bomb(ctx: Ctx) -> None:
    """The 9-level "billion laughs": 10^9 list items from a few hundred bytes. Refused at the first alias."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in "bcdefghi":
        prev = chr(ord(level) - 1)
        lines.append(f"{level}: &{level} [{','.join(['*' + prev] * 9)}]")
    start = time.perf_counter()
    _config_case("bomb.yaml", "\n".join(lines) + "\n", "bomb.yaml:2: YAML aliases (*name) are not supported")(ctx)
    assert time.perf_counter() - start < 30  # generous: the point is seconds, not the 25 s + 5 GB of expanding it


def config_huge_value_is_not_quoted_whole(ctx: Ctx) -> None:
    path = ctx.tmp / "c.json"
    path.write_text(json.dumps({"method": "x" * 500_000}))
    line = cli_fails(ctx, ["train", "--config", str(path), "--output-dir", str(_out(ctx))], "unknown method")
    assert len(line) < 400


# ---- data files ----------------------------------------------------------------------------------------------------


def _data_case(rel: str, edit: Callable[[bytes], bytes], *needles: str, task: str = "sst2") -> Callable[[Ctx], None]:
    def case(ctx: Ctx) -> None:
        data = write_tiny_data_dir(ctx.tmp / "data", n_train=12, n_val=8)
        path = data / rel
        path.write_bytes(edit(path.read_bytes()))
        cli_fails(ctx, train_args(ctx, _out(ctx), data=data, task=task), *needles)
        assert not _out(ctx).exists()

    return case


def _rte_line(text: bytes) -> Callable[[bytes], bytes]:
    return lambda b: b + text + b"\n"


data_jsonl_deep = _data_case(
    "superglue/rte/train.jsonl", _rte_line(DEEP.encode()), "train.jsonl:13: invalid JSON: nested too deeply", task="rte"
)
data_jsonl_5001_digit_label = _data_case(
    "superglue/rte/train.jsonl",
    _rte_line(b'{"premise": "a", "hypothesis": "b", "label": ' + DIGITS.encode() + b', "idx": 99}'),
    "train.jsonl:13: invalid JSON",
    task="rte",
)
data_tsv_5001_digit_label = _data_case(
    "glue/sst2/train.tsv", lambda b: b + b"a film\t" + DIGITS.encode() + b"\n", "train.tsv:14: sst2: unknown label"
)
data_jsonl_lone_surrogate = _data_case(
    "superglue/rte/train.jsonl",
    _rte_line(b'{"premise": "a \\ud800 b", "hypothesis": "b", "label": "entailment", "idx": 99}'),
    "train.jsonl:13: text holds a lone surrogate",
    task="rte",
)
data_tsv_cr_only = _data_case(
    "glue/sst2/train.tsv", lambda b: b.replace(b"\n", b"\r"), "train.tsv:1: carriage return inside a line"
)
data_jsonl_cr_only = _data_case(
    "superglue/rte/val.jsonl", lambda b: b.replace(b"\n", b"\r"), "val.jsonl:1: carriage return", task="rte"
)
data_jsonl_row_is_a_list = _data_case(
    "superglue/rte/train.jsonl", _rte_line(b"[1, 2]"), "train.jsonl:13: expected a JSON object", task="rte"
)


# ---- predict inputs ------------------------------------------------------------------------------------------------


def _predict_case(content: bytes | None, *needles: str, extra: tuple[str, ...] = ()) -> Callable[[Ctx], None]:
    def case(ctx: Ctx) -> None:
        args = ["predict", str(ctx.finished / "best"), *extra]
        if content is not None:
            path = ctx.tmp / "in.jsonl"
            path.write_bytes(content)
            args += ["--input", str(path)]
        cli_fails(ctx, args, *needles, run=ctx.finished)

    return case


predict_input_bad_utf8 = _predict_case(b'{"sentence": "ok"}\n{"sentence": "caf\xe9"}\n', "in.jsonl:2: not valid UTF-8")
predict_input_deep = _predict_case(DEEP.encode() + b"\n", "--input", "in.jsonl:1: invalid JSON: nested too deeply")
predict_input_surrogate = _predict_case(b'{"sentence": "\\udfff"}\n', "in.jsonl:1: text holds a lone surrogate")
predict_input_cr_only = _predict_case(b'{"sentence": "a"}\r{"sentence": "b"}\r', "in.jsonl:1: carriage return")
predict_input_huge_number = _predict_case(b'{"sentence": ' + DIGITS.encode() + b"}\n", "in.jsonl:1: invalid JSON")
predict_input_not_an_object = _predict_case(b'"just text"\n', "in.jsonl:1: an input row must be a JSON object")
predict_input_wrong_field_type = _predict_case(b'{"sentence": ["a"]}\n', "in.jsonl:1:")
predict_json_surrogate = _predict_case(None, "--json", "lone surrogate", extra=("--json", '{"sentence": "\\ud83d"}'))
predict_text_surrogate = _predict_case(None, "--text", "lone surrogate", extra=("--text", "caf\udce9"))


_CASE_NAMES = """
flag_epochs_1e400 flag_seed_5001_digits flag_seed_overflow flag_seed_negative flag_lr_inf flag_weight_decay_nan
flag_weight_decay_inf flag_holdout_nan flag_empty_model flag_max_length_huge flag_max_steps_huge
flag_prompt_beyond_memory
config_yaml_epochs_inf config_json_epochs_1e400 config_yaml_epochs_1e400 config_json_epochs_huge_int
config_yaml_weight_decay_nan config_json_seed_overflow config_bad_utf8 config_json_deep config_yaml_deep
config_lone_surrogate config_not_a_mapping config_number_key config_list_for_text config_too_big config_cr_only
config_yaml_alias_bomb config_huge_value_is_not_quoted_whole
data_jsonl_deep data_jsonl_5001_digit_label data_tsv_5001_digit_label data_jsonl_lone_surrogate data_tsv_cr_only
data_jsonl_cr_only data_jsonl_row_is_a_list
predict_input_bad_utf8 predict_input_deep predict_input_surrogate predict_input_cr_only predict_input_huge_number
predict_input_not_an_object predict_input_wrong_field_type predict_json_surrogate predict_text_surrogate
""".split()
CASES: dict[str, Callable[[Ctx], None]] = {name.replace("_", "-"): globals()[name] for name in _CASE_NAMES}


@pytest.fixture(scope="module")
def finished(tiny_t5, tiny_data, tmp_path_factory) -> Path:  # noqa: F811
    ctx = Ctx(tmp_path_factory.mktemp("options"), tiny_t5, tiny_data, Path(), None, None)  # type: ignore[arg-type]
    return finished_run(ctx, ctx.tmp / "finished")


def test_corpus_size():
    assert len(CASES) >= 40, len(CASES)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_option_or_input(case, tiny_t5, tiny_data, finished, tmp_path, capsys, monkeypatch):  # noqa: F811
    CASES[case](Ctx(tmp_path, tiny_t5, tiny_data, finished, capsys, monkeypatch))


# ---- property-based: generated values through the same readers ------------------------------------------------------

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["\ud800", "auto", "rank", "on", "superpos", "1e400", "8", ""]),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
)
PROPERTY = settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _one_line(message: str, *any_of: str) -> None:
    assert "\n" not in message and len(message) < 1000, message[:300]
    assert any(needle in message for needle in any_of), (any_of, message[:300])


@PROPERTY
@given(options=st.dictionaries(st.sampled_from(sorted(FIELDS)), JSON_VALUES, min_size=1, max_size=3))
def test_any_config_file_is_valid_or_one_line_naming_the_option(options):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.json"
        path.write_text(json.dumps(options))  # surrogates become \ud800 escapes, NaN/Infinity literals
        try:
            config = build_config(read_config_file(path), {})
        except ConfigError as exc:
            names = [n for name in options for n in (name, "--" + name.replace("_", "-"))]
            _one_line(str(exc), *names, "--max-length")  # a bad n is reported with the --max-length it must fit
            return
    for name, value in config.to_dict().items():  # what was accepted is well-typed and finite
        if isinstance(value, float):
            assert math.isfinite(value), name


VALID_STATE = {f.name: f.default for f in TrainState.__dataclass_fields__.values()} | {"step": 3, "epoch": 1}


@PROPERTY
@given(field=st.sampled_from(sorted(VALID_STATE)), value=JSON_VALUES, drop=st.booleans())
def test_any_trainer_state_is_valid_or_one_line_naming_the_field(field, value, drop):
    state = {k: v for k, v in VALID_STATE.items() if not (drop and k == field)}
    if not drop:
        state[field] = value
    fields = TrainState.__dataclass_fields__.values()
    try:
        checked = ckpt.checked_state(fields, state, Path("run/checkpoint/trainer_state.json"))
    except RunFolderError as exc:
        _one_line(str(exc), f"'{field}'")
        assert "trainer_state.json" in str(exc)
        return
    TrainState(**checked)  # accepted: builds the state
    assert all(not isinstance(v, float) or math.isfinite(v) for v in checked.values())


RTE_ROWS = st.fixed_dictionaries(
    {"premise": JSON_VALUES, "hypothesis": JSON_VALUES, "label": JSON_VALUES},
    optional={"idx": JSON_VALUES},
)


@PROPERTY
@given(rows=st.lists(RTE_ROWS | JSON_VALUES, min_size=1, max_size=4))
def test_any_data_row_loads_or_is_one_line_naming_file_and_line(rows):
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        path = data / "superglue" / "rte" / "train.jsonl"
        path.parent.mkdir(parents=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        try:
            examples = load_examples("rte", "train", data)
        except DataError as exc:
            _one_line(str(exc), f"{path}:")
            return
    for example in examples:
        example.source.encode("utf-8")  # what reaches the tokenizer is real text
        assert example.target in ("entailment", "not_entailment")


@PROPERTY
@given(lines=st.lists(st.binary(max_size=30) | JSON_VALUES.map(json.dumps).map(str.encode), min_size=1, max_size=4))
def test_any_metrics_file_reads_or_is_one_line_naming_it(lines):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "metrics.jsonl"
        path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n")
        try:
            rows = run_folder.read_metrics(path)
        except RunFolderError as exc:
            _one_line(str(exc), f"{path} line ")
            return
    assert all(isinstance(r["step"], int) and r["step"] >= 0 for r in rows)
