"""Padded vs padding-free training steps (``--padding-free``) on the long-budget trainer, and the cost model's fit.

For batches of 8 rows with chosen real lengths (SST-2-like, RTE-like, equal lengths, one long row), one training
step's forward+backward (SuperPos, the run's precision) padded and flattened, interleaved round by round, CPU time
of this process (1 thread by default). Then least squares of ``time = a * positions + c * pairs`` over every timed
configuration gives the measured cost of an attended (query, key) pair relative to a position's matmuls, and
``padding_free.ATTENTION_PAIR_OVERHEAD`` is checked against it: the column "auto" says what the policy chooses.

    python bench/padding_free_speed.py [--model smollm2-135m] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

CASES: dict[str, list[int]] = {  # real text tokens per row (the 10 prompt tokens come on top)
    "sst2-like": [12, 18, 25, 30, 22, 15, 40, 28],
    "equal 40": [40] * 8,
    "equal 100, one 120": [100] * 7 + [120],
    "rte-like": [60, 90, 120, 80, 200, 70, 150, 100],
    "one long row": [40, 50, 60, 45, 250, 55, 65, 50],
}


def _batch(lengths: list[int], label_tokens: int = 3):
    from superpos_trainer.collate import Batch

    rows, longest = len(lengths), max(lengths)
    ids = torch.randint(100, 40000, (rows, longest), generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(rows, longest, dtype=torch.long)
    for i, length in enumerate(lengths):
        mask[i, longest - length :] = 1  # left padding, as the trainer's causal batches
    return Batch(ids, mask, ids[:, -label_tokens:].clone())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from e2e_profile import long_budget_trainer
    from superpos_trainer.forward import autocast, label_logits, label_loss
    from superpos_trainer.padding_free import ATTENTION_PAIR_OVERHEAD, flatten_policy

    trainer = long_budget_trainer(args.model, "auto")
    always = flatten_policy("on", trainer.loaded, trainer.device)
    auto = flatten_policy("auto", trainer.loaded, trainer.device)
    n = trainer.method.num_prompt_tokens

    def step(batch, flat) -> float:
        start = time.process_time()
        trainer.optimizer.zero_grad(set_to_none=True)
        with autocast(trainer.device, trainer.bf16):
            label_loss(label_logits(trainer.method, batch, flat), batch.labels).backward()
        return time.process_time() - start

    print(f"load average before: {os.getloadavg()}; bf16 {trainer.bf16}; threads {args.threads}", flush=True)
    samples: list[tuple[int, int, float]] = []  # (positions, pairs, seconds)
    for name, text_lengths in CASES.items():
        batch = _batch(text_lengths)
        lengths = torch.tensor(text_lengths) + n
        padded_shape = (len(lengths) * int(lengths.max()), len(lengths) * int(lengths.max()) ** 2)
        flat_shape = (int(lengths.sum()), int(lengths.sum()) ** 2)
        step(batch, None), step(batch, always)  # warm-up
        times: dict[str, list[float]] = {"padded": [], "flat": []}
        for r in range(args.rounds):
            order = (("padded", None), ("flat", always)) if r % 2 == 0 else (("flat", always), ("padded", None))
            for key, flat in order:
                times[key].append(step(batch, flat))
        padded, flat = statistics.median(times["padded"]), statistics.median(times["flat"])
        samples += [(*padded_shape, padded), (*flat_shape, flat)]
        print(
            f"{name:<20} padded {padded:.3f} s ({padded_shape[0]} positions), flat {flat:.3f} s ({flat_shape[0]}): "
            f"flat/padded {flat / padded:.3f}; auto flattens: {auto.worth_it(lengths)}",
            flush=True,
        )
    x = torch.tensor([[p, q] for p, q, _ in samples], dtype=torch.float64)
    y = torch.tensor([t for _, _, t in samples], dtype=torch.float64)
    a, c = torch.linalg.lstsq(x, y.unsqueeze(1)).solution.flatten().tolist()
    mac_ratio = auto.pair_cost / ATTENTION_PAIR_OVERHEAD / auto.position_cost
    print(
        f"fit: {a * 1e3:.3f} ms per position, {c * 1e6:.3f} us per pair; a pair costs {c / a / mac_ratio:.2f}x its "
        f"multiply-adds relative to a position (the policy assumes {ATTENTION_PAIR_OVERHEAD})",
        flush=True,
    )
    print(f"load average after: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
