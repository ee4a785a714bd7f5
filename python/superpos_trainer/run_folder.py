"""Who may write a run folder, what counts as "no run yet", and file modes that follow the user's umask.

* One writer at a time: the running process holds an advisory ``fcntl.flock`` on ``<run>/.lock`` (released by the
  kernel when the process ends, even on SIGKILL), and writes its pid there so a second writer can say who holds it.
* A run exists once ``config.json`` is in place (written after the model and method are built, see runner.py).
  A folder holding only the lock, a ``train.log`` and temporary files is an unfinished start: it may be restarted.
* Temporary files of atomic writes a kill interrupted (``.<name>.*.tmp``, ``.<name>.tmp-*``) are swept by the
  process that holds the lock, so a live run's temporaries are never touched.
* ``tempfile`` creates files 0600 and folders 0700; run files get the modes a plain ``open()``/``mkdir`` would give.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from .errors import RunFolderError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs there are unlocked (one writer is then up to the user)
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"
LOG_NAME = "train.log"


def _umask() -> int:
    try:  # Linux >= 4.7 reports it without changing it (no window in which another thread sees another umask)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere, reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def follow_umask(path: Path) -> None:
    """Give ``path`` (and, for a folder, everything in it) the mode ``open()``/``mkdir()`` would have given."""
    mask = _umask()
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in paths:
        if not p.is_symlink():
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def is_temporary(name: str) -> bool:
    """Names of atomic-write temporaries (superpos_kernels.io and checkpoints.write_folder)."""
    return name.startswith(".") and (name.endswith(".tmp") or ".tmp-" in name)


def sweep_temporaries(run_dir: Path) -> list[str]:
    """Remove what interrupted atomic writes left in ``run_dir``; call only while holding the lock."""
    removed = []
    for entry in run_dir.iterdir():
        if is_temporary(entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return removed


def is_unfinished_start(run_dir: Path) -> bool:
    """True when ``run_dir`` holds nothing but a lock, a log and temporaries (a start that never got going)."""
    return all(e.name in (LOCK_NAME, LOG_NAME) or is_temporary(e.name) for e in run_dir.iterdir())


class RunLock:
    """The advisory lock of one run folder, held from :meth:`acquire` until :meth:`release` (or process exit)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        if fcntl is None:
            self._fd = fd
            return self
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            who = f"pid {holder}" if holder.isdigit() else "another process"
            raise RunFolderError(
                f"run folder {self.path.parent} is in use by {who} (its lock {self.path} is held); wait for that "
                "run to end (or stop it), or choose another --output-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


__all__ = [
    "LOCK_NAME",
    "RunLock",
    "follow_umask",
    "is_temporary",
    "is_unfinished_start",
    "sweep_temporaries",
]
