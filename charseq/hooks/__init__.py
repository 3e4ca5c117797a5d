"""The plugin host: the hooks a plugin implements (specs), and the registry of what the
installed plugins register, found by name."""

from charseq.hooks.specs import hookimpl, hookspec

__all__ = ["hookimpl", "hookspec"]
