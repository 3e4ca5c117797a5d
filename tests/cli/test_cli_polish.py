"""The rough edges a new user (or a plugin's author) meets first: --temperature with a
sampler that has none, --temperature 0 (greedy, with any sampler), where --debug goes, counts in messages, and what
charseq says about plugins it cannot load."""

from __future__ import annotations

import re

import pytest

from conftest import install_fake_distribution, run_cli

PLUGIN_SAMPLERS = '''
import numpy as np
from charseq import hookimpl


class Least:
    """The least likely symbol."""

    def __call__(self, logits, rng):
        return np.asarray(logits).argmin(axis=1)


class Told:
    """Argmax that prints the options it was given."""

    def __init__(self, **options):
        print("told", sorted(options.items()))

    def __call__(self, logits, rng):
        return np.asarray(logits).argmax(axis=1)


@hookimpl
def register_samplers(register):
    register("least", Least)
    register("told", Told)
'''


def _generate(checkpoint, *args, ok=True):
    return run_cli("generate", checkpoint, "--prime", "ABC", "--length", 5, *args, ok=ok)


def test_temperature_with_a_sampler_that_has_none_is_a_warning(alphabet_checkpoint):
    result = _generate(alphabet_checkpoint, "--sampler", "argmax", "--temperature", 0.5)
    assert result.stdout == "ABCDEFGH\n"
    assert result.stderr == "charseq: warning: --temperature is ignored: sampler 'argmax' takes no temperature\n"
    assert _generate(alphabet_checkpoint, "--sampler", "argmax").stderr == ""  # and nothing without it


def test_a_plugin_sampler_gets_the_temperature_only_if_it_takes_options(plugin_site, alphabet_checkpoint):
    install_fake_distribution(plugin_site, "throwaway-env", PLUGIN_SAMPLERS, "[charseq]\nleast = throwaway_env\n")
    least = _generate(alphabet_checkpoint, "--sampler", "least", "--temperature", 2)
    assert least.exit_code == 0 and "sampler 'least' takes no temperature" in least.stderr
    told = _generate(alphabet_checkpoint, "--sampler", "told", "--temperature", 2)
    assert "told [('temperature', 2.0)]" in told.stdout and told.stderr == ""


@pytest.mark.parametrize("sampler", ["argmax", "temperature", "top-k", "top-p:p=0.5", "temperature:temperature=0"])
def test_temperature_zero_is_greedy_decoding_with_any_sampler(alphabet_checkpoint, sampler):
    """As in OpenAI's API (and charseq's server): 0 is the most likely symbol, always."""
    greedy = _generate(alphabet_checkpoint, "--sampler", "argmax")
    result = _generate(alphabet_checkpoint, "--sampler", sampler, "--temperature", 0)
    assert (result.stdout, result.stderr) == (greedy.stdout, "")
    assert result.stdout == "ABCDEFGH\n"
    in_the_spec = _generate(alphabet_checkpoint, "--sampler", "top-k:temperature=0")
    assert (in_the_spec.stdout, in_the_spec.stderr) == (greedy.stdout, "")


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_other_temperatures_that_are_not_positive_stay_errors_with_any_sampler(alphabet_checkpoint, value):
    result = _generate(alphabet_checkpoint, "--sampler", "argmax", "--temperature", value, ok=False)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "temperature must be a positive number" in result.stderr


def test_help_says_what_temperature_and_patience_mean():
    generate = " ".join(run_cli("generate", "--help").output.split())
    assert "ignored, with a warning, by those that do not (argmax)" in generate
    assert "Greedy decoding is --sampler argmax or --temperature 0" in generate
    train = " ".join(run_cli("train", "--help").output.split())
    assert "--patience EPOCHS Stop after this many epochs without improvement" in train


def test_the_debug_hint_names_a_command_that_works(monkeypatch, alphabet_checkpoint):
    import charseq.decoding.generate

    def boom(*args, **kwargs):
        raise RuntimeError("something inside broke")

    monkeypatch.setattr(charseq.decoding.generate, "stream", boom)
    result = run_cli("generate", alphabet_checkpoint, ok=False)
    hint = re.search(r"\(for the traceback, run charseq (--debug generate) \.\.\.\)$", result.stderr.strip())
    assert result.exit_code == 1 and hint
    again = run_cli(*hint.group(1).split(), alphabet_checkpoint, ok=False)
    assert isinstance(again.exception, RuntimeError)  # the traceback, as promised
    misplaced = run_cli("generate", alphabet_checkpoint, "--debug", ok=False)
    assert misplaced.exit_code == 2 and misplaced.stderr.count("\n") == 1
    assert "--debug goes before the command: charseq --debug generate ..." in misplaced.stderr


def test_counts_take_the_right_number(tmp_path, alphabet_checkpoint):
    out = tmp_path / "d.npz"
    trained = run_cli("train", "--corpus", "digits:20", "--epochs", 1, "--out", out, "--sample-length", 0)
    assert f"saved {out} after 1 epoch, " in trained.stdout
    finished = run_cli("train", "--resume", out, "-q")
    assert "the run is complete (1 of 1 epoch)" in finished.stdout + finished.stderr
    one = _generate(alphabet_checkpoint, "--prime", "AB!", ok=False)
    assert "the prime has 1 character not in the model's vocabulary: '!'" in one.stderr
    two = _generate(alphabet_checkpoint, "--prime", "A!?", ok=False)
    assert "the prime has 2 characters not in" in two.stderr
    text = tmp_path / "one.txt"
    text.write_text("ABAB" * 50)
    evaluated = run_cli("eval", alphabet_checkpoint, "--corpus", f"text:{text}")
    assert "one: 200 characters, loss" in evaluated.stdout
    single = tmp_path / "a.txt"
    single.write_text("a" * 500)
    described = run_cli("train", "--corpus", f"text:{single}", "--hidden-size", 4, "--seq-len", 4, "--batch-size", 2,
                        "--epochs", 1, "--out", tmp_path / "a.npz", "--sample-length", 0)
    assert ", 1 symbol, " in described.stdout.splitlines()[0]


BROKEN = "import no_such_module_for_charseq\n"


def test_a_plugin_name_that_is_not_installed_is_a_warning_naming_those_that_are(plugin_site, monkeypatch):
    install_fake_distribution(plugin_site, "throwaway-env", PLUGIN_SAMPLERS, "[charseq]\nleast = throwaway_env\n")
    monkeypatch.setenv("CHARSEQ_LOAD_PLUGINS", "throwaway_env,charseq-nope")  # the package's name, spelt either way
    result = run_cli("samplers")
    warning = [line for line in result.stderr.splitlines() if "CHARSEQ_LOAD_PLUGINS" in line]
    assert len(warning) == 1 and result.stderr.count("\n") == 1, result.stderr
    assert warning[0].startswith("charseq: warning: CHARSEQ_LOAD_PLUGINS names 'charseq-nope', which is not "
                                 "installed; the installed plugins are ")
    assert "least (package throwaway-env)" in warning[0]
    assert "least" in result.stdout  # what is installed and named still loads


def test_debug_shows_why_a_plugin_failed_to_import(plugin_site):
    install_fake_distribution(plugin_site, "throwaway-broken", BROKEN, "[charseq]\nbroken = throwaway_broken\n")
    quiet = run_cli("samplers")
    assert quiet.stderr.count("\n") == 1 and "failed to import" in quiet.stderr and "Traceback" not in quiet.stderr
    import charseq

    charseq.reload_plugins()
    loud = run_cli("--debug", "samplers")
    assert "failed to import (ModuleNotFoundError: No module named 'no_such_module_for_charseq'); skipped" \
        in loud.stderr
    assert "Traceback (most recent call last)" in loud.stderr
    assert 'throwaway_broken.py", line 1, in <module>' in loud.stderr  # where, in the plugin's own file
    assert "argmax" in loud.stdout


def test_strict_mode_says_it_stopped_not_that_it_skipped(plugin_site, monkeypatch):
    install_fake_distribution(plugin_site, "throwaway-broken", BROKEN, "[charseq]\nbroken = throwaway_broken\n")
    monkeypatch.setenv("CHARSEQ_STRICT_PLUGINS", "1")
    result = run_cli("samplers", ok=False)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "plugin 'broken' (package 'throwaway-broken') failed to import" in result.stderr
    assert "an error, as CHARSEQ_STRICT_PLUGINS is set" in result.stderr
    assert "skipped" not in result.stderr
