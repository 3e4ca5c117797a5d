"""The one exception type users see: the CLI turns it into a one-line message."""


class CharseqError(Exception):
    """A failure the user can act on; the CLI exits with code 1."""

    exit_code = 1


class UsageError(CharseqError):
    """Bad input from the user (an option, a path, a name); the CLI exits with code 2."""

    exit_code = 2


class PluginWarning(UserWarning):
    """A plugin misbehaved (failed to import, raised in a hook, took a taken name) and
    was skipped; everything else keeps working. CHARSEQ_STRICT_PLUGINS=1 makes these
    errors instead, for plugin authors."""
