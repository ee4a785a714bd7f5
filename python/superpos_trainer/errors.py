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
