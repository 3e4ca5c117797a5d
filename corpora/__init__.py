"""Corpus data bundled with charseq, read with importlib.resources."""
