"""`charseq generate`: text from a checkpoint, streamed, or whole items for a model of items."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click
import numpy as np

from charseq import blas
from charseq.checkpoints.format import load
from charseq.cli.options import complete_names, json_option, threads_option
from charseq.cli.output import drop_output, json_line, say
from charseq.data.vocab import Vocabulary
from charseq.decoding import generate as generation
from charseq.decoding.settings import MAX_CHARACTERS, Decoding
from charseq.decoding.steps import SamplerError
from charseq.errors import CharseqError, UsageError
from charseq.hooks.registry import get_registry, parse_spec


_SEPARATOR_WIDTH = 20


@click.command(short_help="Continue a prime with a trained model.")
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path(path_type=Path))
@click.option("--prime", help="Text to continue (a model of items: the start of every item).  "
                              "[default: one random symbol; items: none]")
@click.option("--length", "--max-length", "length", type=click.IntRange(min=0), default=200, show_default=True,
              help="Characters to generate at most.")
@click.option("--stop", help="End a sample where this text appears (it is not printed).")
@click.option("--sampler", "sampler_spec", default="temperature", show_default=True, metavar="NAME[:KEY=VALUE,...]",
              shell_complete=complete_names("sampler"), help="How to pick each character; see `charseq samplers`.")
@click.option("--temperature", type=float,
              help="Sampling temperature (lower is more conservative), for samplers that take one; ignored, with a "
                   "warning, by those that do not (argmax). 0 is greedy decoding whatever the sampler, as in "
                   "OpenAI's API. Greedy decoding is --sampler argmax or --temperature 0.")
@click.option("--repetition-penalty", type=float, default=1.0, show_default=True,
              help="Above 1, makes symbols already used less likely.")
@click.option("--repetition-window", type=int, metavar="N",
              help="Count only the last N characters as used.  [default: all]")
@click.option("--seed", type=click.IntRange(min=0), help="Makes sampling reproducible.")
@click.option("--skip-unknown", is_flag=True, help="Leave out prime characters the model does not know.")
@click.option("--num-samples", type=int, default=1, show_default=True,
              help="Samples, in one batch, printed apart: between two, a line of a character the model cannot "
                   "write (--json: one JSON object per sample).")
@click.option("--new-only", is_flag=True, help="A model of items: leave out items that are in its training file.")
@json_option
@threads_option
def generate(checkpoint_path, prime, length, stop, sampler_spec, temperature, repetition_penalty,
             repetition_window, seed, skip_unknown, num_samples, new_only, as_json, threads):
    """Continue a prime with a trained model; prints the prime and what follows.

    One sample is printed as it is generated; several once they are made, with a line of a
    character the model cannot write between two (a line no sample can hold, as nanoGPT's
    sample.py separates its samples). --json prints one JSON object per sample per line,
    {"prime": ..., "text": ...} (text: what was generated).

    A model trained on items (--corpus lines:PATH) prints whole new items, one per line,
    each from a fresh start to where the model ends it (--length caps it); a --prime starts
    each of them, and --new-only leaves out those in the training file.

    \b
    Examples:
      charseq generate alphabet.npz --prime ABCDEF --length 20 --sampler argmax
      charseq generate novel.npz --prime "The " --sampler top-p:p=0.9 --temperature 0.8 --stop $'\\n\\n'
      charseq generate names.npz --num-samples 20 --new-only
    """
    if as_json and length > MAX_CHARACTERS:  # --json holds a sample whole; printed, one streams for ever
        raise UsageError(f"--length must be at most {MAX_CHARACTERS:,} with --json, which prints a sample whole; "
                         f"got {length:,}")
    saved = load(checkpoint_path)
    asked = Decoding(sampler_spec, {}, temperature, length, num_samples, () if stop is None else (stop,),
                     repetition_penalty, repetition_window, skip_unknown)
    decoding = asked.built()  # a sampler's bad options, and the warnings, before anything is printed
    rng = np.random.default_rng(seed)
    if saved.item_end is not None:
        return _generate_items(saved, decoding, prime or "", rng, new_only, as_json, threads, asked)
    if new_only:
        raise UsageError("--new-only is for a model trained on items (--corpus lines:PATH); this one was trained "
                         "on running text")
    if prime is None:
        prime = saved.vocab.symbols[rng.integers(len(saved.vocab))]
    prime = decoding.known_prime(prime, saved.vocab)
    pieces = generation.stream(saved.model, saved.vocab, prime, rng=rng, decoding=decoding)
    if sys.stdout is None:
        raise UsageError("standard output is closed; there is nowhere to print the text")
    try:
        _print_samples(pieces, prime, num_samples, as_json, threads, _separator(saved.vocab))
    except SamplerError as exc:
        raise _misbehaved(asked, exc) from None


def _separator(vocab: Vocabulary) -> str:
    """The line between two samples: a character the model cannot write, so that no sample
    holds the line (box drawing first, for a terminal)."""
    boxes = "─═━=~#*-" + "".join(map(chr, range(0x2500, 0x2580)))
    # A vocabulary holds finitely many characters: past the boxes, the first code point it lacks.
    mark = vocab.unused(boxes) or vocab.unused(map(chr, range(0x2580, 0x110000)))
    return mark * _SEPARATOR_WIDTH


def _print_samples(pieces: Iterator[list[str]], prime: str, num_samples: int, as_json: bool, threads: int,
                   separator: str) -> None:
    """One sample as it is made; several once made, apart (--json: one object per line). A
    closed pipe ends quietly; Ctrl-C mid-sample ends its line first, so that the message and
    the prompt get their own."""
    line_open = False  # a sample's line is on stdout, not yet ended
    try:
        with blas.limited(threads):
            if as_json or num_samples > 1:
                texts: list[list[str]] = [[] for _ in range(num_samples)]
                for step in pieces:
                    for text, piece in zip(texts, step):
                        text.append(piece)
                for number, text in enumerate(texts):
                    if as_json:
                        say(json_line({"prime": prime, "text": "".join(text)}), essential=True)
                    else:
                        click.echo((f"{separator}\n" if number else "") + prime + "".join(text))
                return
            out = sys.stdout
            first = next(pieces)  # fails early on bad arguments, before anything is printed
            line_open = True
            out.write(prime + first[0])
            out.flush()
            for step in pieces:
                out.write(step[0])
                out.flush()
            out.write("\n")
            line_open = False
            out.flush()
    except BrokenPipeError:  # `charseq generate ... | head`: the reader has what it wanted
        drop_output(sys.stdout)
    except KeyboardInterrupt:
        if line_open:
            say("")
        raise
    except OSError as exc:  # a full disk, /dev/full
        drop_output(sys.stdout)
        raise CharseqError(f"cannot write the text to standard output: {exc.strerror or exc}") from None


def _misbehaved(decoding: Decoding, exc: SamplerError) -> CharseqError:
    """A sampler's fault, named with the plugin that registered it."""
    name = "argmax" if decoding.greedy else parse_spec(str(decoding.sampler))[0]
    return CharseqError(f"sampler {name!r} of {get_registry().describe(get_registry().get('sampler', name).plugin)} "
                        f"misbehaved: {exc}")


def _generate_items(saved, decoding: Decoding, prime: str, rng, new_only: bool, as_json: bool, threads,
                    asked: Decoding) -> None:
    """`generate` for a model of items: whole new items, one per line."""
    if prime:
        prime = decoding.known_prime(prime, saved.vocab)
    exclude = saved.seen_items if new_only else None
    if new_only and exclude is None:
        raise UsageError("this checkpoint does not record its training items, so --new-only cannot leave them out")
    try:
        with blas.limited(threads):
            items = generation.generate_items(saved.model, saved.vocab, saved.item_end, decoding, prime=prime, rng=rng,
                                   exclude=exclude)
    except SamplerError as exc:
        raise _misbehaved(asked, exc) from None
    for item in items:
        say(json_line({"prime": prime, "text": item}) if as_json else prime + item, essential=True)


_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}
