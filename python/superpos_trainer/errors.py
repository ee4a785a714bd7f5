"""User-facing error types of the trainer, and the one rule for what counts as the user's error.

Every failure the user can fix raises a ``SuperposError`` (``ConfigError``, ``ModelLoadError``, ``RunFolderError``,
``data.DataError``, ``labels.RowError``) naming the problem and the fix. The CLI turns those, the library's own
``superpos_kernels.SuperPosInputError`` and two kinds of environment failure (see ``user_error``) into one line on
stderr and exit code 2; anything else is a bug and keeps its traceback (exit 1).
"""

from __future__ import annotations

import errno

# What the machine refused, not what the code got wrong: disk or quota full; no permission, read-only file system.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
_NOT_ALLOWED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
# Optional packages (the ``train`` extra) whose absence is an incomplete install, not a bug.
_OPTIONAL_MODULES = frozenset(
    {"datasets", "matplotlib", "yaml", "transformers", "sklearn", "scipy", "sentencepiece", "tqdm", "gguf"}
)


class SuperposError(ValueError):
    """A problem with what the user asked for (argument, file, folder), not a bug in the trainer."""


class ConfigError(SuperposError):
    """An option has a bad value, an unknown name, or options contradict each other."""


class ModelLoadError(SuperposError):
    """The model or tokenizer could not be found or loaded."""


class RunFolderError(SuperposError):
    """The run folder cannot be written, or holds a different run, or cannot be resumed."""


class TrainingDivergedError(SuperposError, FloatingPointError):
    """The loss or a trainable tensor became NaN/Inf (``guard.py``): the fix is the user's (a lower --lr)."""


def user_error(exc: BaseException) -> str | None:
    """The one line to show for an error the user can fix, or None for a bug (which must keep its traceback)."""
    from superpos_kernels import SuperPosInputError  # the library's input errors, by their own type

    if isinstance(exc, SuperposError | SuperPosInputError):
        return clip(str(exc), 2000) or type(exc).__name__  # one line, never a whole file
    if isinstance(exc, OSError) and exc.errno in _NO_SPACE | _NOT_ALLOWED:
        where = f" ({exc.filename})" if exc.filename else ""
        fix = "free some space" if exc.errno in _NO_SPACE else "fix the permissions or choose another folder"
        return clip(f"{exc.strerror or exc}{where}; {fix}, then run the command again")
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in _OPTIONAL_MODULES:
        return f"{exc}; install the trainer's dependencies: pip install 'superpos-kernels[train]'"
    return None


def short_repr(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: a message never quotes a whole file or a huge value."""
    try:
        text = repr(value) if not isinstance(value, int) or abs(value) < 10**60 else f"<{value.bit_length()}-bit int>"
    except ValueError:  # an int too long for repr (Python's digit limit)
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else f"{text[: limit - 15]}... ({len(text)} chars)"


def clip(message: str, limit: int = 600) -> str:
    """``message`` on one line, at most ``limit`` characters (its start and end kept)."""
    flat = " ".join(message.split())
    return flat if len(flat) <= limit else f"{flat[: limit - 120]} ... {flat[-100:]}"
