"""Run the whole benchmark suite (op microbenchmarks + end-to-end) in one call and write a Markdown report.

Meant for a machine with a CUDA GPU::

    python bench/run_gpu_suite.py                      # -> bench-results/<date>/{bench.json,junit.xml,RESULTS.md}
    python bench/run_gpu_suite.py --long --out DIR     # SUPERPOS_E2E_LONG=1: more rounds, 256-example epoch
    python bench/run_gpu_suite.py -- -k e2e            # anything after -- goes to pytest

It runs ``python -m pytest bench/ --benchmark-json=... --junitxml=...`` (skipped benchmarks keep pytest's reason
and are listed in the report), then ``bench/to_markdown.py`` on the JSON. Without a GPU it refuses unless
``--allow-cpu`` is given (a CPU run is useful to check the pipeline; its numbers are CPU numbers).
Exit status: pytest's (the report is still written when some benchmarks failed, as long as the JSON exists).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def pytest_command(out: Path, extra: Sequence[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        str(HERE.relative_to(REPO)),
        "-p",
        "no:cacheprovider",
        "-rs",
        f"--benchmark-json={out / 'bench.json'}",
        f"--junitxml={out / 'junit.xml'}",
        *extra,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description="Run pytest bench/ with --benchmark-json and render Markdown.")
    parser.add_argument("--out", help="output folder (default: bench-results/<UTC date-time>)")
    parser.add_argument("--long", action="store_true", help="SUPERPOS_E2E_LONG=1: more rounds, steadier medians")
    parser.add_argument("--allow-cpu", action="store_true", help="run even without a CUDA GPU (pipeline check)")
    args = parser.parse_args(argv)

    if not args.allow_cpu and not _cuda_available():
        print(
            "run_gpu_suite: torch sees no CUDA GPU; run this on a GPU machine, or pass --allow-cpu to run the suite "
            "on CPU anyway (then the numbers are CPU numbers)",
            file=sys.stderr,
        )
        return 2
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else REPO / "bench-results" / stamp
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if args.long:
        env["SUPERPOS_E2E_LONG"] = "1"
    cmd = pytest_command(out, extra)
    shown = ("SUPERPOS_E2E_LONG=1 " if args.long else "") + shlex.join(["python", *cmd[1:]])
    print(f"run_gpu_suite: {shown}", flush=True)
    code = subprocess.call(cmd, cwd=REPO, env=env)

    report = out / "bench.json"
    if not report.is_file():
        print(f"run_gpu_suite: pytest exited {code} without writing {report}; no report", file=sys.stderr)
        return code or 1
    sys.path.insert(0, str(HERE))
    import to_markdown

    junit = out / "junit.xml"
    md = out / "RESULTS.md"
    args_md = [str(report), "--command", shown, "-o", str(md)] + (["--junit", str(junit)] if junit.is_file() else [])
    status = to_markdown.main(args_md)
    if status == 0:
        print(md.read_text(encoding="utf-8"))
        print(f"run_gpu_suite: wrote {md}")
    return code or status


if __name__ == "__main__":
    raise SystemExit(main())
