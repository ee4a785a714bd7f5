"""How far one learning rate moves each method's prompt, on a real model (issue 15, "equal lr is not equal treatment").

For each method (SuperPos with each ``w`` init, simple prompt tuning, Residual), built as ``superpos train`` builds
it, this runs ``--steps`` AdamW steps with ONE fixed random gradient on the prompt (no data, no forward pass
through the model) and prints the relative movement ``|P_k - P_0| / |P_0|`` after step 1 and after the last step,
with the method's default weight decay. It also prints the embedding statistics the movement depends on and what
``--lr auto`` would choose (``superpos_trainer.auto_defaults``). Numbers only, no timing: a busy machine is fine.

    python experiments/update_size.py --model smollm2-135m --lr 1e-2 --steps 5 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "python")]

from superpos_trainer import auto_defaults as auto  # noqa: E402
from superpos_trainer.config import METHOD_DEFAULTS, W_INITS, TrainConfig  # noqa: E402
from superpos_trainer.methods import build_method  # noqa: E402
from superpos_trainer.models import load_model  # noqa: E402

VARIANTS = [("superpos", w_init) for w_init in W_INITS] + [("prompt", None), ("residual", None)]


def measure(loaded: Any, lr: float, steps: int, n: int, m: int, hidden: int, seed: int) -> list[dict[str, Any]]:
    rows = []
    for method_name, w_init in VARIANTS:
        method = build_method(method_name, loaded, n, m, hidden, seed, w_init or "normal")
        decay = METHOD_DEFAULTS[method_name][1]
        moves = auto.prompt_movement(method, lr, steps, decay, seed)
        config = TrainConfig(
            method=method_name, num_prompt_tokens=n, num_sampled_tokens=m, residual_hidden=hidden,
            w_init=w_init or "normal",
        ).resolved()  # fmt: skip
        rows.append(
            {
                "method": method_name + (f" (w_init {w_init})" if w_init else ""),
                "lr": lr,
                "weight_decay": decay,
                "move_step1": moves[0],
                f"move_step{steps}": moves[-1],
                "unit_move": auto.unit_movement(method),
                "auto_lr": auto.auto_lr(method, config),
                "t5_reference_move": auto.reference_move(method_name, n, m, hidden, w_init or "normal"),
                "paper_lr": METHOD_DEFAULTS[method_name][0],
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--lr", type=float, default=1e-2, help="the one learning rate given to every method")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--num-prompt-tokens", type=int, default=10)
    parser.add_argument("--num-sampled-tokens", type=int, default=128)
    parser.add_argument("--residual-hidden", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)

    loaded = load_model(args.model)
    stats = auto.embedding_stats(auto.scaled_rows(loaded))
    rows = measure(
        loaded, args.lr, args.steps, args.num_prompt_tokens, args.num_sampled_tokens, args.residual_hidden, args.seed
    )
    print(f"model {args.model}: embedding rows (4096 sampled, as the model scales them)")
    print(
        f"  row norm {stats.row_norm:.3f}, element std {stats.element_std:.4f}, anisotropy (mean pairwise cosine) "
        f"{stats.anisotropy:.3f}, rows with positive cosine to the mean row {100 * stats.positive_share:.1f} %"
    )
    print(f"\nAdamW, one fixed random gradient on the prompt, lr {args.lr:g}, n={args.num_prompt_tokens}, "
          f"m={args.num_sampled_tokens}, residual hidden {args.residual_hidden}, seed {args.seed}\n")  # fmt: skip
    last = f"move_step{args.steps}"
    print(f"| method | weight decay | move after step 1 | move after step {args.steps} | move per unit lr | "
          "paper lr | T5 reference: move of one step at the paper lr | --lr auto |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['method']} | {r['weight_decay']:g} | {100 * r['move_step1']:.1f} % | {100 * r[last]:.1f} % | "
            f"{r['unit_move']:.2f} | {r['paper_lr']:g} | {100 * r['t5_reference_move']:.1f} % | {r['auto_lr']:.3g} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "stats": vars(stats), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
