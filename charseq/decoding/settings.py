"""How text is made from a model: every setting of a generation, and its checks, in one place.

``Decoding`` is what the command line, the Python API and the server each build from their
own words (flags, keyword arguments, OpenAI's fields), so that a setting means the same
everywhere: a temperature of 0 is greedy decoding (always the most likely symbol), as in
OpenAI's API, whatever the sampler; a repetition penalty lies in PENALTY_RANGE.
"""

from __future__ import annotations

import sys

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from charseq.data.vocab import Vocabulary, show_characters
from charseq.errors import CharseqWarning, Notice, UsageError, counted, label, setting
from charseq.hooks.options import parse_options
from charseq.hooks.registry import Registry, get_registry, parse_spec

Sampler = Callable[[np.ndarray, np.random.Generator], np.ndarray]
PENALTY_RANGE = (1e-6, 1e6)  # beyond it a logit scaled by the penalty leaves float32's range: inf, then NaN
MAX_TEMPERATURE = 1e6  # past this every sampler is uniform, and the noise overflows float32


class DecodingError(UsageError):
    """A decoding setting that cannot be used: `setting` names it (the server's `param`)."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.setting = name


# Bounds that keep text held whole within memory (ids and text: about 5 bytes a character):
# the samples made in one batch, and the characters of text made whole (several samples, or
# generate()'s); one sample streamed may go on for ever.
MAX_SAMPLES = 100_000
MAX_CHARACTERS = 100_000_000


@dataclass(frozen=True)
class Decoding:
    """Every setting of a generation, checked when it is made.

    Its fields::

        sampler: a registered sampler by name with options (``top-k:k=20``), or a sampler
            object, ``sampler(logits, rng) -> ids``
        options: the named sampler's options, over those its name gives
        temperature: for a sampler that takes one and was not given its own in `options` or its
            name (another ignores it, with a warning); 0 is greedy decoding, whatever the sampler
        length: characters made after the prime, at most (a model of items: after its prime)
        num_samples: continuations made together, in one batch
        stop: texts that end a sample where they appear (not part of it)
        repetition_penalty: above 1, used symbols become less likely; below 1, likelier
        repetition_window: count only the last this many characters as used (None: all)
        skip_unknown: leave out the prime's characters the model does not know
    """

    sampler: str | Sampler = "temperature"
    options: Mapping[str, Any] = field(default_factory=dict)
    temperature: float | None = None
    length: int = 200
    num_samples: int = 1
    stop: tuple[str, ...] = ()
    repetition_penalty: float = 1.0
    repetition_window: int | None = None
    skip_unknown: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.stop, str) or self.stop is None:
            object.__setattr__(self, "stop", () if self.stop is None else (self.stop,))
        for problem in (self._temperature_problem(), _whole(self.length, "length", 0, sys.maxsize),
                        _whole(self.num_samples, "num_samples", 1, MAX_SAMPLES), self._size_problem(),
                        self._stop_problem(),
                        repetition_problem(self.repetition_penalty, self.repetition_window)):
            if problem is not None:
                raise DecodingError(*problem) if isinstance(problem, tuple) else UsageError(problem)
        if not isinstance(self.skip_unknown, (bool, np.bool_)):
            raise DecodingError("skip_unknown", f"{label('skip_unknown')} is true or false, got {self.skip_unknown!r}")
        if not (isinstance(self.sampler, str) or callable(self.sampler)):
            raise DecodingError("sampler", f"a sampler is a name (top-k:k=20) or an object called with (logits, "
                                           f"rng), got {self.sampler!r}")

    def _size_problem(self) -> tuple[str, str] | None:
        """Several samples made together are held whole: refused before any memory is asked
        for (one sample may stream for ever)."""
        if isinstance(self.length, (int, np.integer)) and isinstance(self.num_samples, (int, np.integer)) \
                and self.num_samples > 1 and self.length * self.num_samples > MAX_CHARACTERS:
            return "num_samples", (f"{label('num_samples')} times {label('length')} must be at most "
                                   f"{MAX_CHARACTERS:,} characters made together, got {self.num_samples:,} x "
                                   f"{self.length:,}")
        return None

    @classmethod
    def of(cls, decoding: Decoding | None = None, **settings: Any) -> Decoding:
        """`decoding` (or the defaults) with `settings` over it; a setting given as None is left as it is."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise TypeError(f"unknown decoding setting {unknown[0]!r}; the settings are {', '.join(sorted(known))}")
        given = {name: value for name, value in settings.items() if value is not None}
        return replace(decoding, **given) if decoding is not None else cls(**given)

    @property
    def greedy(self) -> bool:
        """A temperature of 0: always the most likely symbol."""
        return self.temperature == 0

    def make_sampler(self, registry: Registry | None = None, *, warn: bool = True) -> Sampler:
        """The sampler to call, new (a sampler may keep state between calls). A named one is
        built by its plugin (from `registry`, or the installed plugins'), with the temperature
        when it takes one and was not given its own. A temperature of 0, general or the
        sampler's own, is the argmax sampler whatever was named, once the named sampler has
        been built without it (so that its name and other options are checked all the same,
        and a plugin's sampler is never handed 0). A temperature the sampler cannot take, or
        one its own overrides, is ignored, with a warning unless `warn` is false (a server has
        no one to tell). A name or option the sampler refuses is a DecodingError("sampler")."""
        registry = registry or get_registry()
        argmax = registry.get("sampler", "argmax")
        if not isinstance(self.sampler, str):
            if self.greedy:
                return argmax.build()
            if self.options or self.temperature is not None:
                raise DecodingError("sampler", "a sampler object takes no options or temperature here: build it "
                                               "with them, or name a registered sampler")
            return self.sampler
        try:
            name, arg = parse_spec(self.sampler)
            registered = registry.get("sampler", name)
            from_name = parse_options(arg, registered)
            twice = sorted(set(from_name) & set(self.options))
            if twice:
                raise UsageError(f"sampler option {twice[0]!r} is given twice, in {self.sampler!r} and in the options")
            options = {**from_name, **self.options}
            own = options.get("temperature")
            if _is_zero(own):
                options.pop("temperature")
            if self.temperature is not None and own is not None and not self.greedy and warn \
                    and float(own) != self.temperature:
                warnings.warn(f"{label('temperature')} is ignored: the sampler's own temperature={own} is used",
                              CharseqWarning, stacklevel=2)
            if self.greedy or _is_zero(own):
                registered.build(**options)  # checked, then set aside: greedy decoding is argmax
                return argmax.build()
            if self.temperature is not None and own is None:
                if registered.takes("temperature"):
                    options["temperature"] = self.temperature
                elif warn:
                    warnings.warn(f"{label('temperature')} is ignored: sampler {registered.name!r} takes no "
                                  "temperature", CharseqWarning, stacklevel=2)
            return registered.build(**options)
        except DecodingError:
            raise
        except UsageError as exc:
            raise DecodingError("sampler", str(exc)) from None

    def built(self, registry: Registry | None = None, *, warn: bool = True) -> Decoding:
        """This decoding with its sampler made (see `make_sampler`): a sampler's bad options,
        and the warnings, come now, before anything is generated."""
        return replace(self, sampler=self.make_sampler(registry, warn=warn), options={}, temperature=None)

    def known_prime(self, prime: str, vocab: Vocabulary) -> str:
        """The prime, or with skip_unknown its characters the model knows; others are named
        (and with skip_unknown, said to be left out, in a warning)."""
        unknown = vocab.unknown(prime)
        if not unknown:
            return prime
        shown = show_characters(unknown)
        if not self.skip_unknown:
            raise DecodingError("prime", f"the prime has {counted(len(unknown), 'character')} not in the model's "
                                         f"vocabulary: {shown}; {setting('skip_unknown', True)} leaves them out")
        kept = "".join(c for c in prime if c in vocab)
        if not kept:
            raise DecodingError("prime", f"no character of the prime is in the model's vocabulary (it has {shown})")
        warnings.warn(f"left out {counted(len(unknown), 'unknown character')} of the prime: {shown}", Notice,
                      stacklevel=2)
        return kept

    def _temperature_problem(self) -> tuple[str, str] | None:
        temperature = self.temperature
        if temperature is None:
            return None
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.number)) \
                or not 0 <= temperature < math.inf:
            return "temperature", (f"{label('temperature')} must be a positive number, or 0 for greedy decoding "
                                   f"(between 0 and 1e6); got {temperature!r}")
        if temperature > MAX_TEMPERATURE:
            return "temperature", f"{label('temperature')} must be at most 1e6, got {temperature!r}"
        return None

    def _stop_problem(self) -> tuple[str, str] | None:
        if not all(isinstance(stop, str) for stop in self.stop):
            return "stop", f"a stop is text, got {self.stop!r}"
        if any(stop == "" for stop in self.stop):
            return "stop", "the stop text must not be empty"
        return None


def repetition_problem(penalty: float, window: int | None = None) -> tuple[str, str] | None:
    """What is wrong with a repetition penalty and window, and which it is; None when both
    are fine. A penalty below 1 makes used symbols likelier; one outside PENALTY_RANGE means
    nothing a float32 logit can hold."""
    low, high = PENALTY_RANGE
    if isinstance(penalty, bool) or not isinstance(penalty, (int, float, np.number)) or not low <= penalty <= high:
        return ("repetition_penalty", f"repetition penalty must be above 0, from {low:g} to {high:g} (1 is none), "
                                      f"got {penalty!r}")
    if window is not None and (isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1):
        return "repetition_window", f"repetition window must be at least 1, got {window!r}"
    return None


def _whole(value: Any, name: str, low: int, high: int) -> tuple[str, str] | None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        return name, f"{label(name)} must be a whole number, got {value!r}"
    if value < low:
        return name, f"{label(name)} must be at least {low}, got {value!r}"
    if value > high:
        return name, f"{label(name)} must be at most {high:,}, got {value:,}"
    return None


def _is_zero(value: Any) -> bool:
    """Whether a temperature is 0, as a number or as typed (``temperature=0`` of a sampler
    whose factory declares no type keeps the text "0")."""
    if value is None or isinstance(value, bool):
        return False
    try:
        return float(value) == 0
    except (TypeError, ValueError):
        return False
