"""``superpos``: train, evaluate, predict, compare.

User errors (bad option, missing file, unknown task/model, unwritable folder) print one line on stderr and exit
with code 2, without a traceback; set ``SUPERPOS_DEBUG=1`` to see the traceback anyway. What counts as a user error
is ``errors.user_error``: the project's own error types (and two kinds of environment failure). Anything else is a
bug: it propagates with its traceback (exit code 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from .config import (
    FIELDS,
    TrainConfig,
    build_config,
    config_from_dict,
    parse_auto,
    read_config_file,
    read_json_file,
    read_text_file,
)
from .errors import ConfigError, SuperposError, clip, short_repr, user_error

EXIT_USER_ERROR = 2


def _type_of(field: dataclasses.Field) -> Any:
    kind = str(field.type)
    if field.metadata.get("auto"):  # a number or "auto"
        return parse_auto(int if kind.startswith("int") else float)
    if kind.startswith("int"):
        return int
    if kind.startswith("float"):
        return float
    return str


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    parser.add_argument("--config", help="YAML or JSON file with any of the options below (flags override it)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --output-dir from its last checkpoint (same options required)",
    )
    for name, field in FIELDS.items():
        flag = "--" + name.replace("_", "-")
        default = getattr(defaults, name)
        shown = "per method" if name in ("lr", "weight_decay") else default
        help_text = f"{field.metadata['help']} (default: {shown})"
        if field.metadata.get("flag"):
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(
                flag,
                dest=name,
                type=_type_of(field),
                choices=field.metadata.get("choices"),
                default=None,
                metavar=None if field.metadata.get("choices") else name.upper(),
                help=help_text,
            )


def _add_inference_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("adapter", help="adapter folder (e.g. <run>/best) or a run folder (its best adapter is used)")
    parser.add_argument("--model", help="base model (default: the one the adapter was trained on)")
    parser.add_argument("--task", help="task (default: the adapter's)")
    parser.add_argument("--eval-mode", choices=("generate", "rank"), help="default: the adapter's run setting")
    parser.add_argument("--rank-score", choices=("mean", "sum"), help="rank mode's label score (default: the run's)")
    parser.add_argument("--batch-size", type=int, default=64, help="examples per batch (default: 64)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default: auto)")


class _UsageError(SystemExit):
    """argparse's contract (``error`` exits with code 2) kept for direct users of ``build_parser``; ``main`` prints
    the one bounded line instead of argparse's usage block."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(EXIT_USER_ERROR)
        self.message = f"{prog}: error: {clip(message, 300)} (see {prog} --help)"

    def __str__(self) -> str:
        return self.message


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error contract: one bounded line and exit 2 (argparse quotes the whole bad value
    and prints the usage block first). ``main`` prints it; --help still exits through argparse."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(self.prog, message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="superpos",
        description="SuperPos-Prompt soft-prompt tuning of frozen language models (and its baselines).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = sub.add_parser(
        "train",
        help="train a soft prompt (or a baseline) on a task",
        description="Train and evaluate. With no arguments: SmolLM2-135M, SST-2 subset, one short epoch on the CPU.",
    )
    _add_train_options(train)
    evaluate = sub.add_parser(
        "evaluate",
        help="score a saved adapter on a task split",
        description="Score a saved adapter on the validation (or train) split of its task.",
    )
    _add_inference_options(evaluate)
    evaluate.add_argument(
        "--split", choices=("validation", "train"), default="validation", help="split to score (default: validation)"
    )
    evaluate.add_argument("--data-dir", help="data folder (default: the adapter's run setting, else auto)")
    evaluate.add_argument("--limit", type=int, default=0, help="score the first N shuffled examples (0 = all)")
    evaluate.add_argument("--output", help="also write the metrics to this JSON file")
    predict = sub.add_parser(
        "predict",
        help="label new text with a saved adapter",
        description="Predict labels for new inputs, one output line per input.",
    )
    _add_inference_options(predict)
    predict.add_argument(
        "--text",
        action="append",
        default=[],
        help="an input for a single-field task (e.g. an SST-2 sentence); repeat for more",
    )
    predict.add_argument(
        "--json",
        action="append",
        default=[],
        dest="rows",
        help='an input row with the task\'s field names, e.g. \'{"premise": "...", '
        '"hypothesis": "..."}\'; repeat for more',
    )
    predict.add_argument("--input", help="JSONL file, one input row per line (the task's field names)")
    compare = sub.add_parser(
        "compare",
        help="compare runs: a table and one plot",
        description="Lay finished (or running) runs side by side: a table and one plot.",
    )
    compare.add_argument("runs", nargs="+", help="run folders")
    compare.add_argument("--output", default="compare.png", help="plot file (default: compare.png)")
    compare.add_argument("--json", action="store_true", help="print the table as JSON instead")
    return parser


# ---- commands --------------------------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from .runner import run_training, saved_run_options

    file_options = read_config_file(args.config) if args.config else {}
    cli_options = {name: getattr(args, name) for name in FIELDS}
    # --resume continues a run with the options it was started with: defaults that changed since (or options added
    # since) never stop an old run folder; a flag or --config value that differs is still refused by the run check.
    saved_options = saved_run_options(Path(args.output_dir)) if args.resume and args.output_dir else {}
    try:
        config = build_config({**saved_options, **file_options}, cli_options)
    except ConfigError as exc:  # name the config file when the refused value came from it
        from_file = [n for n in file_options if cli_options.get(n) is None and f"--{n.replace('_', '-')} " in str(exc)]
        if from_file:
            raise ConfigError(f"{exc} (set in config file {args.config})") from None
        raise
    from .distributed import process_group

    with process_group(config.device):  # joins torchrun's process group when launched by it; else a no-op
        run_training(config, resume=args.resume)
    return 0


def _adapter_folder(path: str) -> Path:
    folder = Path(path).expanduser()
    if (folder / "config.json").is_file() and (folder / "best").exists():
        from .run_folder import find_folder

        found = find_folder(folder / "best")
        if found is None:
            raise SuperposError(f"run {folder} has no complete best adapter yet")
        return found
    if not folder.is_dir():
        raise SuperposError(f"adapter folder {folder} does not exist")
    return folder


def _saved_config(args: argparse.Namespace) -> tuple[Path, TrainConfig]:
    """``(adapter folder, its trainer config with the flags applied)``: everything checked before a model loads."""
    folder = _adapter_folder(args.adapter)
    saved_path = folder / "trainer_config.json"
    saved = read_json_file(saved_path) if saved_path.is_file() else {}
    config = config_from_dict(saved, str(saved_path))
    for key in ("model", "task", "eval_mode", "rank_score"):
        if getattr(args, key, None):
            setattr(config, key, getattr(args, key))
    if not saved and not (args.model and args.task):
        raise SuperposError(f"{folder} has no trainer_config.json; pass --model and --task")
    if args.batch_size < 1:
        raise SuperposError(f"--batch-size must be a positive integer, got {args.batch_size}")
    return folder, config


def _inference_setup(args: argparse.Namespace) -> tuple[TrainConfig, Any, Any, Any, Any]:
    """``(config, task, method, encoder, eval settings)`` for a saved adapter, flags overriding its saved settings."""
    from .collate import Encoder
    from .methods import load_method
    from .models import load_model
    from .precision import prepare_model
    from .runner import check_device
    from .tasks import get_task

    folder, config = _saved_config(args)
    task = get_task(config.task)
    device = check_device(args.device)
    loaded = load_model(config.model, config.model_type, device)
    method = load_method(folder, loaded)
    encoder = Encoder.from_config(config, loaded, method.num_prompt_tokens)
    settings = _inference_options(config, device, args.batch_size)
    prepare_model(loaded.model, config, settings.bf16, device, trains_backbone=False)  # as the run evaluated
    return config, task, method, encoder, settings


def _inference_options(config: TrainConfig, device: Any, batch_size: int) -> Any:
    """The saved run's evaluation settings (precision rule, eval mode, rank score), ``--batch-size`` and progress
    on stderr (issue 14)."""
    from .evaluate import EvalSettings

    return EvalSettings.from_config(config, device, batch_size=batch_size, progress=True)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .config import default_data_dir
    from .data import load_examples
    from .evaluate import evaluate

    if args.limit < 0:
        raise SuperposError(f"--limit must be >= 0 (0 = all), got {args.limit}")
    config, task, method, encoder, settings = _inference_setup(args)
    data_dir = args.data_dir or config.data_dir or default_data_dir()
    examples = load_examples(task, args.split, data_dir, limit=args.limit or None, seed=config.seed)
    encoded = [encoder.encode_example(e) for e in examples]
    metrics, _ = evaluate(method, encoder, task, examples, encoded, settings)
    result = {"adapter": str(Path(args.adapter)), "task": task.name, "split": args.split, **metrics}
    print(json.dumps(result, indent=2, sort_keys=True))
    if args.output:
        from .run_folder import write_json

        write_json(Path(args.output), result)
    return 0


def _predict_rows(args: argparse.Namespace, task: Any) -> list[str]:
    """The model inputs of ``predict``: --text values, then --json rows, then --input lines, each checked."""
    sources = _text_sources(args.text, task) + [_row_source(where, row, task) for where, row in _json_rows(args)]
    if not sources:
        raise SuperposError("nothing to predict: pass --text, --json or --input")
    return sources


def _text_sources(texts: list[str], task: Any) -> list[str]:
    from .data import check_text

    if texts and len(task.fields) != 1:
        names = ", ".join(key for _, key in task.fields)
        raise SuperposError(f"task {task.name} reads several fields ({names}); pass --json rows instead of --text")
    for text in texts:
        check_text(text, "--text")
    return [task.source_text({task.fields[0][1]: t}) for t in texts]


def _json_rows(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """``(where, parsed JSON)`` of every --json value and --input line."""
    from .data import check_text, parse_json_line

    rows: list[tuple[str, Any]] = []
    for raw in args.rows:
        where = f"--json {short_repr(raw, 60)}"
        check_text(raw, where)
        rows.append((where, parse_json_line(raw, where)))
    if args.input:
        path = Path(args.input)
        if not path.is_file():
            raise SuperposError(f"--input file {path} does not exist")
        for n, line in enumerate(read_text_file(path).split("\n"), 1):
            if line.strip():
                where = f"--input {path}:{n}"
                if "\r" in line.rstrip("\r"):
                    raise SuperposError(f"{where}: carriage return inside a line (CR-only line endings?)")
                rows.append((where, parse_json_line(line, where)))
    return rows


def _row_source(where: str, row: Any, task: Any) -> str:
    from .labels import RowError

    if not isinstance(row, dict):
        raise SuperposError(
            f"{where}: an input row must be a JSON object with the task's fields, got {type(row).__name__}"
        )
    missing = [key for _, key in task.fields if key not in row]
    if missing:
        raise SuperposError(f"{where}: the row lacks field(s) {', '.join(missing)} of task {task.name}")
    try:
        return task.source_text(row)
    except RowError as exc:  # a field of the wrong type, or a value the task does not allow
        raise SuperposError(f"{where}: {clip(str(exc), 200)}") from None


def cmd_predict(args: argparse.Namespace) -> int:
    from .evaluate import predict_texts
    from .tasks import get_task

    sources = _predict_rows(args, get_task(_saved_config(args)[1].task))  # bad input fails before the model loads
    _, task, method, encoder, settings = _inference_setup(args)
    encoded = [encoder.encode(s, task.label_words[0]) for s in sources]
    texts = predict_texts(method, encoder, encoded, task.label_words, settings)
    for source, text in zip(sources, texts, strict=True):
        label = task.parse_prediction(text)
        shown = text if label is not None else f"{text!r} (invalid: not a label of {task.name})"
        print(f"{shown}\t{source}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare_runs

    compare_runs(args.runs, args.output, as_json=args.json)
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "compare": cmd_compare}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("superpos: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = user_error(exc)
        if message is None or os.environ.get("SUPERPOS_DEBUG"):
            raise  # a bug: its traceback is the report
        print(f"superpos {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
