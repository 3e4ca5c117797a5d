"""Every command's --help reads as written: no run of spaces inside a sentence, the text
indented as click indents it, and each example one whole command line with its quotes
paired (a "\\n" in a docstring once broke generate's)."""

from __future__ import annotations

import shlex

import pytest

from conftest import run_cli


def _commands() -> list[str]:
    listing = run_cli("--help").output.split("Commands:", 1)[1]
    return [line.split()[0] for line in listing.splitlines() if line.strip()]


def test_the_commands_are_listed():
    assert {"train", "generate", "eval", "plot", "cache", "plugins", "serve", "export", "sweep"} <= set(_commands())


def _paragraphs(lines: list[str]) -> list[list[str]]:
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    return [p for p in paragraphs if p]


@pytest.mark.parametrize("command", _commands())
def test_help_text_is_whole(command):
    text = run_cli(command, "--help").output
    description = text.split("\nOptions:", 1)[0].splitlines()[1:]  # after the usage line
    for paragraph in _paragraphs(description):
        if paragraph[0].strip() == "Examples:":
            for line in paragraph[1:]:
                body = line.strip()
                assert len(line) - len(line.lstrip(" ")) == 4, line
                words = shlex.split(body)  # quotes paired: a line broken inside a quote would fail here
                assert next(w for w in words if "=" not in w) == "charseq", line
            continue
        first = paragraph[0]
        if first.startswith("  ") and not first.startswith("   ") and "  " in first.strip() \
                and any(line.startswith("   ") for line in paragraph[1:]):
            continue  # a table click keeps as written (serve's routes): its columns are aligned on purpose
        for line in paragraph:  # prose, which click rewraps: indented two spaces, one space between words
            assert len(line) - len(line.lstrip(" ")) == 2 and "  " not in line.strip(), line


def test_the_command_list_says_each_command_whole():
    """click cuts a long first sentence short with "..." in `charseq --help`: each command says
    what it does in a line of its own instead."""
    listed = run_cli("--help").stdout.split("Commands:\n", 1)[1].splitlines()
    assert listed and all(not line.rstrip().endswith("...") for line in listed), listed
