"""User-facing error types of the trainer.

The CLI turns these (and the data layer's ``DataError``) into one line on stderr and exit code 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations


class SuperposError(ValueError):
    """A problem with what the user asked for (argument, file, folder), not a bug in the trainer."""


class ConfigError(SuperposError):
    """An option has a bad value, an unknown name, or options contradict each other."""


class ModelLoadError(SuperposError):
    """The model or tokenizer could not be found or loaded."""


class RunFolderError(SuperposError):
    """The run folder cannot be written, or holds a different run, or cannot be resumed."""


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
