"""The exceptions and warnings users see: the CLI turns each into one line."""

from __future__ import annotations


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """A count and its noun, for messages: 1 epoch, 2 epochs, 1,000 characters (never "1 epochs")."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


class CharseqError(Exception):
    """A failure the user can act on; the CLI exits with code 1."""

    exit_code = 1


class UsageError(CharseqError):
    """Bad input from the user (an option, a path, a name, a damaged file); the CLI exits with code 2."""

    exit_code = 2


class SaveError(CharseqError):
    """A file could not be written (disk full, file-size limit, permissions); what was at
    the path before is still there, whole."""

    def __init__(self, path: object, reason: str, os_error: OSError | None = None):
        super().__init__(f"cannot write {str(path)!r}: {reason}")
        self.path, self.reason, self.os_error = path, reason, os_error


class CharseqWarning(UserWarning):
    """Something went wrong that charseq worked around (a metrics line it could not write);
    the CLI prints it as one line."""


class PluginWarning(CharseqWarning):
    """A plugin misbehaved (failed to import, raised in a hook, took a taken name) and
    was skipped; everything else keeps working. CHARSEQ_STRICT_PLUGINS=1 makes these
    errors instead, for plugin authors."""
