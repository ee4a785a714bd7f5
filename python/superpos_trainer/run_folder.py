"""A run folder (``superpos train --output-dir``): the one owner of its paths and files, writer and reader alike.

A run folder holds::

    config.json          the resolved configuration (written once the model and method are built)
    metrics.jsonl        one JSON line per evaluation (step, main metric, invalid_rate, train_loss, is_best, ...)
    results.json         the run's summary, written at its end: its presence marks a finished run
    best/  last/         adapters (the best evaluation's and the last one's), swapped in whole
    checkpoint/          the exact-resume checkpoint (its content: checkpoints.py), swapped in whole
    train.log            the log
    learning_curve.png   the plot of metrics.jsonl
    .lock                the advisory lock of the process writing the run

:class:`RunFolder` is the writer the trainer goes through and the reader of ``superpos compare`` (compare.py), the
plots (plots.py) and ``experiments/report.py``. Its writes happen on rank 0 only (``main``; under torchrun the
other ranks get the same object and write nothing).

Crash safety, file by file:

* ``metrics.jsonl`` is appended, one line per evaluation, flushed and fsynced; a write that fails (disk full) is
  cut back to the previous end, so the file never keeps half a line of ours. A last line without its newline is an
  append a kill interrupted: readers skip it, and a resumed run cuts the file back to the rows up to its
  checkpoint's step (kept byte for byte) before it appends the redone ones.
* Single files (config.json, results.json) are replaced atomically (``superpos_kernels.io.atomic_write``).
* A folder (adapter, checkpoint) is built under a temporary name and swapped in with renames: ``target`` is renamed
  to ``target.old`` (kept until the new one is in place), then ``target.tmp-*`` to ``target``. A reader that finds
  only ``target.old`` (killed between the two renames) uses that (:func:`find_folder`).
* One writer at a time: the running process holds an advisory ``fcntl.flock`` on ``<run>/.lock`` (released by the
  kernel when the process ends, even on SIGKILL) and writes its pid there so a second writer can say who holds it.
* A run exists once ``config.json`` is in place. A folder holding only the lock, a ``train.log`` and temporary files
  is an unfinished start: it may be restarted. Temporaries of interrupted writes (``.<name>.*.tmp``,
  ``.<name>.tmp-*``) are swept by the lock's holder, so a live run's temporaries are never touched.
* ``tempfile`` creates files 0600 and folders 0700; run files get the modes a plain ``open()``/``mkdir`` would give.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from superpos_kernels.io import atomic_write

from .errors import RunFolderError, clip, short_repr
from .faults import fault_point

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs there are unlocked (one writer is then up to the user)
    fcntl = None  # type: ignore[assignment]

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"
BEST_DIR = "best"
LAST_DIR = "last"
CHECKPOINT_DIR = "checkpoint"
LOG_FILE = "train.log"
LEARNING_CURVE_FILE = "learning_curve.png"
LOCK_NAME = ".lock"
ADAPTER_TRAINER_CONFIG = "trainer_config.json"  # inside an adapter folder: the options it was trained with
COMPLETE_MARKER = "COMPLETE"  # the last file of a swapped-in folder


# ---- file modes, temporaries ---------------------------------------------------------------------------------------


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
    """Names of atomic-write temporaries (superpos_kernels.io and :func:`write_folder`)."""
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
    return all(e.name in (LOCK_NAME, LOG_FILE) or is_temporary(e.name) for e in run_dir.iterdir())


# ---- atomic single files and folders -------------------------------------------------------------------------------


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    """``superpos_kernels.io.atomic_write`` with the umask's file mode (its temporary file is created 0600); a
    failed write (disk full, read-only folder) leaves the previous file whole and says so in one line."""

    def write_with_mode(tmp: str) -> None:
        write(tmp)
        follow_umask(Path(tmp))

    try:
        atomic_write(path, write_with_mode)
    except OSError as exc:
        raise RunFolderError(
            f"cannot write {path}: {exc.strerror or exc}; the previous {path.name} (if any) is kept. Free space "
            "(or fix the folder) and run the command again (a training run: with --resume)"
        ) from exc


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented, key-sorted JSON, replacing ``path`` atomically."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    _atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_folder(target: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_folder)`` then swap it in as ``target`` (see the module docstring)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Temp folders of writes killed earlier (SIGKILL skips the cleanup below); only the run lock's holder writes here.
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        write(tmp)
        fault_point(f"write:{target.name}")  # test-only (faults.py)
        (tmp / COMPLETE_MARKER).write_text("ok\n")
        follow_umask(tmp)  # mkdtemp made it 0700, atomic writes inside 0600
        _swap_in(tmp, target)
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        error = _write_error(target, exc)
        if error is exc:
            raise
        raise error from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(tmp: Path, target: Path) -> None:
    old = target.with_name(target.name + ".old")
    if target.exists():  # a lone .old (earlier kill between renames) stays until the new folder is in place
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
        fault_point(f"swap:{target.name}")  # test-only (faults.py)
    os.replace(tmp, target)
    if old.exists():
        shutil.rmtree(old)


def _write_error(target: Path, exc: Exception) -> Exception:
    """Disk full, a folder gone read-only...: one line (safetensors reports it as SafetensorError, torch.save as a
    RuntimeError "file write failed"); anything else is a bug and keeps its own type and traceback."""
    from safetensors import SafetensorError

    if isinstance(exc, RuntimeError) and not isinstance(exc, SafetensorError):
        text = str(exc).lower()
        if not any(word in text for word in ("write", "space", "i/o", "disk", "quota", "serializ")):
            return exc
    elif not isinstance(exc, OSError | SafetensorError):
        return exc
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else clip(str(exc), 200)
    return RunFolderError(
        f"cannot write {target}: {reason}; the previous complete {target.name} (if any) is kept. "
        "Free space (or fix the folder) and continue with --resume"
    )


def find_folder(target: Path) -> Path | None:
    """The complete folder for ``target`` (or its ``.old`` twin after an ill-timed kill), else None."""
    for candidate in (Path(target), Path(target).with_name(Path(target).name + ".old")):
        if (candidate / COMPLETE_MARKER).is_file():
            return candidate
    return None


# ---- metrics.jsonl ---------------------------------------------------------------------------------------------------

_NUMERIC = frozenset({"epoch", "train_loss", "wall_time", "train_examples_per_s"})  # plotted / compared as numbers


def _complete_lines(data: bytes) -> list[bytes]:
    """The newline-terminated lines of ``data`` (a last line without its newline is an interrupted append)."""
    lines = data.split(b"\n")
    return lines[:-1]


def _check_row(path: Path, n: int, line: bytes) -> dict[str, Any]:
    try:
        row = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):  # not JSON, not UTF-8, a 5000-digit number, nested too deeply
        raise RunFolderError(f"{path} line {n} is not JSON; the run folder is corrupt") from None
    step = row.get("step") if isinstance(row, dict) else None
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise RunFolderError(
            f"{path} line {n} is not a metrics row (a JSON object with an integer step); the run folder is corrupt"
        )
    bad = [k for k, v in row.items() if isinstance(v, list | dict) or (k in _NUMERIC and not _is_number(v))]
    if bad:
        raise RunFolderError(
            f"{path} line {n}: {short_repr(bad[0], 40)} holds {short_repr(row[bad[0]], 40)}, not a number; "
            "the run folder is corrupt"
        )
    return row


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _metrics_lines(path: Path) -> list[tuple[bytes, dict[str, Any]]]:
    """``(raw line, row)`` for every complete line of ``metrics.jsonl`` (blank lines skipped), each row checked."""
    if not path.is_file():
        return []
    out = []
    for n, line in enumerate(_complete_lines(path.read_bytes()), 1):
        if line.strip():
            out.append((line, _check_row(path, n, line)))
    return out


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of ``metrics.jsonl``: each a JSON object whose ``step`` is an integer >= 0."""
    return [row for _, row in _metrics_lines(path)]


def append_line(path: Path, data: bytes) -> None:
    """Append ``data`` and fsync; on failure the file is cut back to its previous end (no half line stays)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # a new file gets the umask's mode
    try:
        end = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, end)
            raise
    finally:
        os.close(fd)


# ---- JSON objects ----------------------------------------------------------------------------------------------


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; anything else (missing, unreadable, not JSON, not an object) is one line."""
    from .config import read_json_file  # the one JSON reader (bad UTF-8, deep nesting, huge numbers); lazy: torch
    from .errors import ConfigError

    if not path.is_file():
        raise RunFolderError(f"{path} does not exist")
    try:
        data = read_json_file(path)
    except ConfigError as exc:
        raise RunFolderError(str(exc)) from None
    if not isinstance(data, dict):
        raise RunFolderError(
            f"{path} must hold a JSON object, found a JSON {type(data).__name__}; the run folder is corrupt"
        )
    return data


# ---- the lock --------------------------------------------------------------------------------------------------


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


# ---- the run folder --------------------------------------------------------------------------------------------


class RunFolder:
    """One run folder: the path of each of its files, readers that fail with one line naming the file, and the
    trainer's writers (no-ops unless ``main``: rank 0 under torchrun; default: whether this process is rank 0)."""

    def __init__(self, path: str | Path, main: bool | None = None) -> None:
        self.path = Path(path).expanduser()
        self._main = main

    @property
    def writes(self) -> bool:
        """The rank-0 gate: only this process's writes reach the folder."""
        if self._main is None:
            from .distributed import is_main

            self._main = is_main()
        return self._main

    # -- paths

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS_FILE

    @property
    def best_dir(self) -> Path:
        return self.path / BEST_DIR

    @property
    def last_dir(self) -> Path:
        return self.path / LAST_DIR

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    @property
    def learning_curve_path(self) -> Path:
        return self.path / LEARNING_CURVE_FILE

    # -- readers

    @property
    def finished(self) -> bool:
        """True once the trainer wrote ``results.json`` (at the end of the run)."""
        return self.results_path.is_file()

    def config(self) -> dict[str, Any]:
        """``config.json``; its absence means the folder is no run folder at all."""
        if not self.config_path.is_file():
            raise RunFolderError(f"{self.path} is not a run folder (no {CONFIG_FILE})")
        return read_json_object(self.config_path)

    def metrics(self) -> list[dict[str, Any]]:
        """The ``metrics.jsonl`` rows in order; ``[]`` before the first evaluation (no file yet).

        A complete line that is not a metrics row is a :class:`RunFolderError` naming the line (a damaged folder);
        a last line without its newline is an append in progress (or one a kill interrupted) and is not a row yet.
        """
        return read_metrics(self.metrics_path)

    def results(self) -> dict[str, Any]:
        """``results.json``; only a finished run has one (see :attr:`finished`)."""
        if not self.finished:
            raise RunFolderError(f"{self.path} holds no {RESULTS_FILE}: the run has not finished")
        return read_json_object(self.results_path)

    def main_metric(self) -> str:
        """The metric the run selected its best evaluation by: from ``results.json``, else from its task."""
        if self.finished:
            metric = self.results().get("main_metric")
            if metric is not None:
                return str(metric)
        from .tasks import get_task  # only runs without results need the task table

        task = self.config().get("task")
        if not isinstance(task, str):
            raise RunFolderError(f"{self.config_path} names no task (field 'task'); the run folder is corrupt")
        return get_task(task).main_metric

    def adapter(self, name: str) -> Path | None:
        """The complete adapter folder ``best`` or ``last`` (or its ``.old`` twin), None before the first one."""
        return find_folder(self.path / name)

    def load_checkpoint(self) -> Any:
        """The complete checkpoint (checkpoints.Checkpoint, every file checked), None when there is none yet."""
        from . import checkpoints

        return checkpoints.load_checkpoint(self.checkpoint_dir)

    # -- writers (rank 0 only)

    def write_config(self, config: dict[str, Any]) -> None:
        """config.json: from now on the folder holds a run."""
        if self.writes:
            write_json(self.config_path, config)

    def append_metrics(self, row: dict[str, Any]) -> None:
        """One evaluation's row, appended as one line and fsynced (a failed write leaves the file as it was)."""
        if not self.writes:
            return
        try:
            append_line(self.metrics_path, (json.dumps(row, sort_keys=True) + "\n").encode("utf-8"))
        except OSError as exc:
            raise RunFolderError(
                f"cannot write {self.metrics_path}: {exc.strerror or exc}; the previous {METRICS_FILE} is kept. "
                "Free space (or fix the folder) and continue with --resume"
            ) from exc

    def truncate_metrics(self, step: int | None) -> None:
        """Keep the rows up to ``step`` (a resumed checkpoint's) byte for byte, or none (``None``: no checkpoint);
        the evaluations after it are redone. A broken complete line is refused (the run folder is damaged)."""
        if not self.writes or not self.metrics_path.exists():
            return
        kept = b""
        if step is not None:
            kept = b"".join(raw + b"\n" for raw, row in _metrics_lines(self.metrics_path) if row["step"] <= step)
        if kept != self.metrics_path.read_bytes():
            _atomic(self.metrics_path, lambda tmp: Path(tmp).write_bytes(kept))

    def write_results(self, results: dict[str, Any]) -> None:
        if self.writes:
            write_json(self.results_path, results)

    def save_adapter(self, name: str, method: Any, trainer_config: dict[str, Any]) -> None:
        """``best/`` or ``last/``: the method's adapter files plus the options it was trained with."""
        if not self.writes:
            return

        def write(tmp: Path) -> None:
            method.save_adapter(tmp)
            write_json(tmp / ADAPTER_TRAINER_CONFIG, trainer_config)

        write_folder(self.path / name, write)

    def save_checkpoint(self, trainable: Any, optimizer: Any, state: dict[str, Any], fingerprint: Any) -> None:
        """``checkpoint/`` (its content: checkpoints.save_checkpoint), swapped in whole."""
        if self.writes:
            from . import checkpoints

            checkpoints.save_checkpoint(self.checkpoint_dir, trainable, optimizer, state, fingerprint)

    def lock(self) -> RunLock:
        """Take the run's lock (:class:`RunLock`); the caller releases it when the run ends."""
        return RunLock(self.path).acquire()


__all__ = [
    "BEST_DIR",
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "LAST_DIR",
    "LEARNING_CURVE_FILE",
    "LOCK_NAME",
    "LOG_FILE",
    "METRICS_FILE",
    "RESULTS_FILE",
    "RunFolder",
    "RunLock",
    "append_line",
    "find_folder",
    "follow_umask",
    "is_temporary",
    "is_unfinished_start",
    "read_json_object",
    "read_metrics",
    "sweep_temporaries",
    "write_folder",
    "write_json",
]
