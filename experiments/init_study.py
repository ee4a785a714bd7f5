"""Where each initialisation starts: validation loss at step 0 (issue 15, "initialisation off the embedding manifold").

For each task and seed, the label loss (mean cross-entropy over the label tokens, as training minimises it) of the
untrained prompt of: SuperPos with each ``w`` init (``normal`` = today's, ``cone``, ``prompt``), simple prompt
tuning, Residual, and the model with no prompt at all. Also the prompt's geometry: mean ``|p_i|`` over the mean
row norm, and the share of prompt vectors with a positive cosine to the mean embedding row (where real tokens lie).
Forward passes only, no training, no timing: a busy machine is fine.

    python experiments/init_study.py --model smollm2-135m --tasks sst2 rte --eval-limit 64 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "python")]

import torch  # noqa: E402
from superpos_trainer import auto_defaults as auto  # noqa: E402
from superpos_trainer.collate import Encoder, auto_max_length, train_batch  # noqa: E402
from superpos_trainer.config import W_INITS, default_data_dir  # noqa: E402
from superpos_trainer.data import load_examples  # noqa: E402
from superpos_trainer.forward import label_logits, label_loss  # noqa: E402
from superpos_trainer.methods import Method, build_method  # noqa: E402
from superpos_trainer.models import load_model  # noqa: E402

VARIANTS = [("superpos", w) for w in W_INITS] + [("prompt", "-"), ("residual", "-"), ("none", "-")]


class NoPrompt(Method):
    """The frozen model alone (the loss every prompt starts against)."""

    name = "none"

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loaded.embedding(input_ids), attention_mask


def step0_loss(method: Method, encoded: list[Any], pad_id: int, batch_size: int) -> tuple[float, float]:
    """``(all label tokens, label word without its EOS)``: mean cross-entropy, token-weighted over all examples."""
    sums, counts = [0.0, 0.0], [0, 0]
    with torch.no_grad():
        for start in range(0, len(encoded), batch_size):
            batch = train_batch(encoded, list(range(start, min(start + batch_size, len(encoded)))), pad_id, False)
            logits = label_logits(method, batch)
            # Causal rows end with [label word tokens, EOS]: the last column is always the EOS.
            for i, (lg, lb) in enumerate([(logits, batch.labels), (logits[:, :-1], batch.labels[:, :-1])]):
                count = int((lb != -100).sum())
                sums[i] += float(label_loss(lg, lb)) * count
                counts[i] += count
    return sums[0] / counts[0], sums[1] / counts[1]


def geometry(method: Method, mean_row: torch.Tensor, row_norm: float) -> tuple[float, float, float]:
    """``(mean |p_i| / mean row norm, share of p_i with a positive cosine to the mean row, mean pairwise cosine)``."""
    if method.name == "none":
        return float("nan"), float("nan"), float("nan")
    with torch.no_grad():
        prompt = auto.prompt_of(method).float()
    stats = auto.embedding_stats(prompt)
    return stats.row_norm / row_norm, float((prompt @ mean_row > 0).float().mean()), stats.anisotropy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tasks", nargs="+", default=["sst2", "rte"])
    parser.add_argument("--eval-limit", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num-prompt-tokens", type=int, default=10)
    parser.add_argument("--num-sampled-tokens", type=int, default=128)
    parser.add_argument("--residual-hidden", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--data-dir", default=default_data_dir())
    parser.add_argument("--json", help="also write every number to this file")
    args = parser.parse_args(argv)

    loaded = load_model(args.model)
    rows = auto.scaled_rows(loaded)
    mean_row, row_norm = rows.mean(0), float(rows.norm(dim=1).mean())
    pad = loaded.tokenizer.pad_token_id
    results: list[dict[str, Any]] = []
    for task in args.tasks:
        # One fixed validation subset (data seed 0) for every seed: the seeds vary the prompt only.
        examples = load_examples(task, "validation", args.data_dir, limit=args.eval_limit, seed=0)
        sources = [e.source for e in examples]
        length = auto_max_length(loaded.tokenizer, sources, False, args.num_prompt_tokens, 8, coverage=1.0)
        encoder = Encoder(loaded.tokenizer, False, length, args.num_prompt_tokens, 8, loaded.max_positions, 0)
        encoded = [encoder.encode_example(e) for e in examples]
        assert not any(e.truncated for e in encoded)
        for seed in args.seeds:
            for name, w_init in VARIANTS:
                if name == "none":
                    method: Method = NoPrompt(loaded)
                else:
                    method = build_method(
                        name, loaded, args.num_prompt_tokens, args.num_sampled_tokens, args.residual_hidden, seed,
                        w_init if name == "superpos" else "normal",
                    )  # fmt: skip
                method.eval()
                loss, word_loss = step0_loss(method, encoded, pad, args.batch_size)
                norm_ratio, positive, cosine = geometry(method, mean_row, row_norm)
                results.append(
                    {"task": task, "seed": seed, "method": name, "w_init": w_init, "loss": loss, "word_loss": word_loss,
                     "norm_ratio": norm_ratio, "positive_share": positive, "pairwise_cosine": cosine}
                )  # fmt: skip
                line = f"{task} seed {seed} {name:8s} {w_init:6s} loss {loss:.4f} word {word_loss:.4f}"
                print(line, file=sys.stderr, flush=True)

    print(f"model {args.model}, {args.eval_limit} validation examples per task (fixed subset), seeds {args.seeds}")
    print(f"embedding rows: mean pairwise cosine {auto.embedding_stats(rows).anisotropy:.2f} (real tokens)")
    print("loss: cross-entropy before any training step over all label tokens (as trained) / over the label word")
    print("without its EOS; mean (min..max) over seeds\n")
    heads = [f"{t} loss | {t} word loss" for t in args.tasks]
    print("| method | w init | " + " | ".join(heads) + " | |p|/|row| | p on tokens' side | cos(p_i, p_j) |")
    print("|---|---|" + "---|---|" * len(args.tasks) + "---|---|---|")
    for name, w_init in VARIANTS:
        mine = [r for r in results if r["method"] == name and r["w_init"] == w_init]
        cells = []
        for task in args.tasks:
            for key in ("loss", "word_loss"):
                losses = [r[key] for r in mine if r["task"] == task]
                cells.append(f"{statistics.mean(losses):.3f} ({min(losses):.3f}..{max(losses):.3f})")
        ratio = statistics.mean(r["norm_ratio"] for r in mine)
        share = statistics.mean(r["positive_share"] for r in mine)
        cosine = statistics.mean(r["pairwise_cosine"] for r in mine)
        geo = "- | - | -" if name == "none" else f"{ratio:.2f} | {100 * share:.0f} % | {cosine:.2f}"
        print(f"| {name} | {w_init} | " + " | ".join(cells) + f" | {geo} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
