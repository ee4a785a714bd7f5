"""The library's error type for input a caller can fix.

``SuperPosInputError`` is a ``ValueError`` (code that catches ``ValueError`` keeps working): a corrupt, incomplete
or mismatched adapter folder, or layer arguments that do not fit the model. Its message names the file or argument
and the fix, so an application (the ``superpos`` CLI) can show it as one line. Any other exception from the library
is a bug, and keeps its traceback there.
"""

from __future__ import annotations


class SuperPosInputError(ValueError):
    """Bad input to the library (adapter files, layer arguments), not a bug in it."""


__all__ = ["SuperPosInputError"]
