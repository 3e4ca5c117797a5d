"""A sampler by name: ``sampler(logits, rng) -> ids``, built by the plugin that registered it."""

from __future__ import annotations

from typing import Any

from charseq.hooks.registry import named


def get_sampler(spec: str, **options: Any) -> Any:
    """A sampler by name, with options: ``get_sampler("top-p", p=0.9)`` or ``get_sampler("top-p:p=0.9")``."""
    registered, options = named("sampler", spec, options)
    return registered.build(**options)
