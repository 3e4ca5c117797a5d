"""A corpus by name: ``NAME[:ARG]`` built by the plugin that registered NAME, recording how
to load it again."""

from __future__ import annotations

import os
import shlex
from typing import Any

from charseq.data.corpus import Corpus
from charseq.errors import CharseqError, UsageError
from charseq.hooks.registry import get_registry, parse_spec


def get_corpus(spec: str, **options: Any) -> Corpus:
    """A corpus by ``NAME[:ARG]``: ``get_corpus("alphabet")``, ``get_corpus("text:novel.txt",
    encoding="latin-1")``; a file's bare name is answered with the specs that read it. The corpus records how to load it again (``source``), with a
    relative path made absolute when its provider says ARG is a path."""
    from charseq.data.corpus import Corpus

    name, arg = parse_spec(spec)
    try:
        registered = get_registry().get("corpus", name)
    except UsageError:
        if os.path.exists(spec):  # a file's name given as a corpus's (a:b.txt too: its name has a colon)
            what = "a folder" if os.path.isdir(spec) else "a file"
            raise UsageError(f"unknown corpus {spec!r}; {spec!r} is {what}: give it as {_spec('text', spec)} "
                             f"(running text) or {_spec('lines', spec)} (one item per line)") from None
        raise
    options = registered.effective(options)
    corpus = registered.build(arg, **options)  # with ARG as given, so its errors speak the user's words
    if not isinstance(corpus, Corpus):
        raise CharseqError(f"{get_registry().describe(registered.plugin)}: corpus {name!r} returned "
                           f"{type(corpus).__name__}, not a charseq.Corpus")
    corpus.spec = spec
    if arg is not None and getattr(registered.factory, "path_arg", False):
        arg = os.path.abspath(os.path.expanduser(arg))
    corpus.source = None if corpus.stream else name if arg is None else f"{name}:{arg}"  # a stream: nothing to find again
    corpus.spec_options = dict(options)
    return corpus


def _spec(name: str, path: str) -> str:
    """NAME:PATH as typed in a shell: quoted where it must be, PATH where it holds a line break."""
    if not path.isprintable():
        return f"{name}:PATH"
    return shlex.quote(f"{name}:{path}")
