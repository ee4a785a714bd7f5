"""Where a training step and an evaluation of the long-budget run spend their time (issue 16); not a test.

Builds the trainer ``superpos train`` builds for docs/EXPERIMENTS.md's long-budget run (SmolLM2-135M, SST-2,
SuperPos n=10 m=128, batch 8, max length 64, rank evaluation of 64 examples) and reports, per phase:

* ``steps``: the first ``--steps`` planned optimizer steps (``Trainer.run_step``, the real batches), each timed, then
  the same steps replayed: a first pass much slower than the replay means per-shape warm-up (new sequence lengths).
* ``eval``: ``--evals`` evaluations of the validation subset.
* ``--ab-rounds N``: forward+backward with the frozen weights' bf16 copies (frozen_weights.py) vs autocast casting
  them at every call (the code before it), alternated N rounds on the same trainer; the median CPU-time ratio.
* ``--torch-profile FILE``: a torch.profiler table (self CPU time per op) of ``--profile-steps`` more steps and
  one evaluation, written to FILE.

Wall and CPU seconds are both printed; on a busy machine only the CPU seconds and the shares mean anything, and
none of it is a result (bench/RESULTS.md says how figures are taken). About 1-2 minutes at 1 thread.

    OMP_NUM_THREADS=1 python bench/e2e_profile.py --steps 8 --evals 2 --torch-profile /tmp/profile.txt
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def long_budget_trainer(model: str, bf16: str) -> Any:
    """The trainer of the long-budget run (docs/EXPERIMENTS.md's options), without a run folder."""
    from superpos_trainer.config import TrainConfig, default_data_dir
    from superpos_trainer.models import load_model
    from superpos_trainer.runner import check_device, load_task_data
    from superpos_trainer.train import Trainer

    config = TrainConfig(
        model=model,
        task="sst2",
        method="superpos",
        batch_size=8,
        max_steps=160,
        epochs=100,
        train_limit=512,
        eval_limit=64,
        eval_steps=20,
        eval_mode="rank",
        num_prompt_tokens=10,
        num_sampled_tokens=128,
        dropout="off",
        save_steps=20,
        seed=0,
        max_length=64,
        bf16=bf16,
        progress=False,
        data_dir=default_data_dir(),
    ).resolved()
    task, train, evaluation, holdout = load_task_data(config)
    device = check_device(config.device)
    torch.manual_seed(config.seed)
    loaded = load_model(config.model, config.model_type, device)
    return Trainer.from_config(config, task, (train, evaluation, holdout), loaded, device=device)


def timed(fn: Callable[[], Any]) -> tuple[float, float, float, int]:
    """``(wall s, process CPU s, of it system s, minor page faults)`` of one call (faults: fresh memory touched)."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_SELF)
    return wall, cpu, after.ru_stime - before.ru_stime, after.ru_minflt - before.ru_minflt


def report(name: str, times: list[tuple[float, float, float, int]]) -> None:
    if not times:
        return
    walls, cpus, system, faults = ([t[i] for t in times] for i in range(4))
    print(
        f"{name:<24} n={len(times):<3} wall median {statistics.median(walls):.3f} s (sum {sum(walls):.2f}), "
        f"cpu median {statistics.median(cpus):.3f} s (sum {sum(cpus):.2f}, system {sum(system):.2f}), "
        f"minor page faults per call {[f for f in faults]}",
        flush=True,
    )


def copies_vs_casts(trainer: Any, batches: list[Any], rounds: int) -> None:
    """Forward+backward of ``batches`` with the frozen weights' bf16 copies (frozen_weights.py) and with autocast
    casting them at every call (the code before), alternated round by round on the same trainer and batches;
    prints the median of the per-round CPU-time ratios (copies / casts)."""
    from superpos_trainer.frozen_weights import cache_frozen_bf16, plain_linears

    def one_round(cached: bool) -> float:
        if cached:
            cache_frozen_bf16(trainer.loaded.model, True)
        else:
            plain_linears(trainer.loaded.model)
        trainer.accumulate(batches[0])  # untimed: makes the copies (cached) and warms the allocator
        trainer.optimizer.zero_grad(set_to_none=True)
        cpu = sum(timed(lambda b=b: trainer.accumulate(b))[1] for b in batches)
        trainer.optimizer.zero_grad(set_to_none=True)
        return cpu

    ratios = []
    for r in range(rounds):
        order = (True, False) if r % 2 == 0 else (False, True)
        seconds = {cached: one_round(cached) for cached in order}
        ratios.append(seconds[True] / seconds[False])
        print(f"round {r}: copies {seconds[True]:.2f} s, casts {seconds[False]:.2f} s CPU", flush=True)
    cache_frozen_bf16(trainer.loaded.model, trainer.bf16)
    print(
        f"forward+backward CPU time, bf16 copies / cast per call: median {statistics.median(ratios):.3f} "
        f"over {rounds} rounds ({min(ratios):.3f}-{max(ratios):.3f})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--bf16", default="auto", choices=("auto", "on", "off"))
    parser.add_argument("--steps", type=int, default=8, help="planned steps timed, then replayed")
    parser.add_argument("--evals", type=int, default=2)
    parser.add_argument("--torch-profile", default=None, help="write a torch.profiler table here")
    parser.add_argument("--profile-steps", type=int, default=3)
    parser.add_argument("--fp32-frozen", action="store_true", help="leave the frozen weights fp32 (the old way)")
    parser.add_argument("--ab-rounds", type=int, default=0, help="interleaved rounds: bf16 copies vs cast per call")
    args = parser.parse_args()
    if args.fp32_frozen:  # autocast then casts every frozen weight at every forward, as before frozen_weights.py
        import superpos_trainer.train

        superpos_trainer.train.cache_frozen_bf16 = lambda model, enabled: 0

    trainer = long_budget_trainer(args.model, args.bf16)
    print(f"bf16 autocast: {trainer.bf16}; threads {torch.get_num_threads()}", flush=True)
    plan = trainer.epoch_plan(0)[: args.steps]
    lengths = [max(len(trainer.train_encoded[i].source_ids) for i in g[0]) for g in plan]
    print(f"longest source per step: {lengths}", flush=True)
    first = [timed(lambda g=g: trainer.run_step(g)) for g in plan]
    replay = [timed(lambda g=g: trainer.run_step(g)) for g in plan]
    report("steps, first pass", first)
    report("steps, replayed", replay)
    batches = [trainer.make_batch(g[0]) for g in plan]
    bare = [timed(lambda b=b: trainer.accumulate(b)) for b in batches]
    report("forward+backward only", bare)
    trainer.optimizer.zero_grad(set_to_none=True)
    report("evaluation", [timed(trainer.evaluate) for _ in range(args.evals)])

    if args.ab_rounds:
        copies_vs_casts(trainer, batches, args.ab_rounds)

    if args.torch_profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for g in plan[: args.profile_steps]:
                trainer.run_step(g)
        steps_table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            trainer.evaluate()
        eval_table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30)
        with open(args.torch_profile, "w", encoding="utf-8") as f:
            f.write(f"== {args.profile_steps} training steps ==\n{steps_table}\n== one evaluation ==\n{eval_table}\n")
        print(f"torch.profiler tables in {args.torch_profile}", flush=True)


if __name__ == "__main__":
    main()
