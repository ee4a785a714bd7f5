"""TEST-ONLY fault injection: ``SUPERPOS_FAULT_INJECT="<point>:<n>"`` SIGKILLs the process the n-th time (1-based,
counted in this process) it reaches ``<point>``. Unset (always, outside the fault tests) it costs one env lookup.

Points: ``write:<folder>`` (a run-folder write, e.g. ``write:checkpoint``: its files are in the temporary folder,
the COMPLETE marker and the swap are not done yet), ``swap:<folder>`` (between the two renames of the swap: the old
folder is already ``<folder>.old``, the new one not yet in place), ``eval`` (an evaluation has computed its
metrics; nothing of it is written yet), ``step:<N>`` (optimizer step N is done, nothing after it is: ``step:5:1``
kills right after step 5). A SIGKILL is a real crash: no cleanup, no atexit, nothing flushed.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV_VAR = "SUPERPOS_FAULT_INJECT"
_hits: Counter[str] = Counter()


def fault_point(point: str) -> None:
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return
    target, _, count = spec.rpartition(":")
    if target != point:
        return
    _hits[point] += 1
    if _hits[point] == int(count):
        os.kill(os.getpid(), signal.SIGKILL)


__all__ = ["ENV_VAR", "fault_point"]
