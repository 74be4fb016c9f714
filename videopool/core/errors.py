"""The one type of a user's mistake.

:class:`UserError` is what validation code next to the user's input raises: a flag, a ``--set`` key, a
configuration value, a device, a file that cannot be what it was given as. Its message names the bad value and
the fix; the command line prints it on one line (``videopool <command>: error: <message>``) and exits with
status 2, without a traceback (``videopool.cli.main``). Anything else that escapes a command is a bug and keeps
its traceback. It subclasses :class:`ValueError`, so callers that catch ``ValueError`` keep working.
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake in what the user gave, with a message that names the bad value and how to fix it."""
