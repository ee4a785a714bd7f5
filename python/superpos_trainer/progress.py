"""Progress while scoring examples: a bar on a terminal, else one line every ``every_s`` seconds (logs, CI).

``superpos evaluate`` on 872 examples took minutes with no output (issue 14). On a TTY stderr this shows a tqdm bar
with the example count; when stderr is a file or a pipe it writes ``<desc>: <done>/<total> examples (<rate>/s)``
at most every ``every_s`` seconds, so short runs and tests stay quiet.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class Progress:
    def __init__(
        self,
        total: int,
        desc: str,
        enabled: bool = True,
        every_s: float = 10.0,
        stream: TextIO | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.total, self.desc, self.every_s, self.clock = total, desc, every_s, clock
        self.stream = sys.stderr if stream is None else stream
        self.done, self.start = 0, clock()
        self.last = self.start
        self.enabled = enabled and total > 0
        self.bar: Any = None
        if self.enabled and _is_tty(self.stream):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="ex", leave=False, file=self.stream, dynamic_ncols=True)

    def update(self, count: int) -> None:
        self.done += count
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(count)
            return
        now = self.clock()
        if now - self.last >= self.every_s and self.done < self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            print(f"{self.desc}: {self.done}/{self.total} examples ({rate:.1f}/s)", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams (pytest capture) are not terminals
        return False


__all__ = ["Progress"]
