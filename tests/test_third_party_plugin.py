"""A plugin from outside the package, installed as a distribution with an entry point,
is picked up and used through the CLI with no change to charseq."""

import re

from conftest import install_fake_distribution, run_cli

THROWAWAY = """
import numpy as np
from charseq import Corpus, Vocabulary, hookimpl

def vowels(arg=None):
    '''The cycle a e i o u, repeated.'''
    vocab = Vocabulary("aeiou")
    return Corpus("vowels", vocab, vocab.encode("aeiou"), random_windows=int(arg or 100),
                  defaults={"hidden_size": 16, "seq_len": 4, "lr": 0.1, "epochs": 60, "batch_size": 1})

class Backwards:
    '''The least likely symbol, to prove this sampler and no other ran.'''
    def __call__(self, logits, rng):
        return np.asarray(logits).argmin(axis=1)

@hookimpl
def register_corpora(register):
    register("vowels", vowels)

@hookimpl
def register_samplers(register):
    register("backwards", Backwards)
    register("watch", Watcher)


class Watcher:
    '''Argmax that records what stdout held each time it was asked for a character.'''
    seen = []

    def __call__(self, logits, rng):
        import sys
        Watcher.seen.append(sys.stdout.buffer.getvalue().decode())  # only what was flushed
        return np.asarray(logits).argmax(axis=1)


@hookimpl
def register_commands(cli):
    import click

    @cli.command(name="vowel-count")
    @click.argument("text")
    def vowel_count(text):
        '''Count the vowels in TEXT.'''
        click.echo(sum(text.count(v) for v in "aeiou"))
"""

GREEDY = """
from charseq import hookimpl

@hookimpl
def register_commands(cli):
    @cli.command(name="train")
    def train():
        pass
"""


def test_throwaway_corpus_and_sampler_work_through_the_cli(plugin_site, tmp_path):
    install_fake_distribution(plugin_site, "throwaway-vowels", THROWAWAY,
                              "[charseq]\nvowels = throwaway_vowels\n")
    plugins = run_cli("plugins").output
    assert "vowels (throwaway-vowels 0.1)  corpus: vowels; sampler: backwards, watch; command: vowel-count" in plugins
    assert re.search(r"^vowels +The cycle a e i o u, repeated\.  \[vowels\]$", run_cli("corpora").output, re.M)

    out = tmp_path / "v.npz"
    train = run_cli("train", "--corpus", "vowels:200", "--out", out, "--sample-length", 10)
    assert "sample: aeiouaeiouaeio" in train.stdout
    argmax = run_cli("generate", out, "--prime", "ou", "--length", 8, "--sampler", "argmax").output
    assert argmax == "ouaeiouaei\n"
    backwards = run_cli("generate", out, "--prime", "ou", "--length", 8, "--sampler", "backwards").output
    assert backwards.startswith("ou") and backwards != argmax


def test_a_plugin_adds_a_subcommand(plugin_site):
    install_fake_distribution(plugin_site, "throwaway-vowels", THROWAWAY, "[charseq]\nvowels = throwaway_vowels\n")
    assert run_cli("vowel-count", "a quiet evening").output == "7\n"
    assert "vowel-count" in run_cli("--help").output


def test_a_plugin_cannot_take_a_built_in_command(plugin_site):
    install_fake_distribution(plugin_site, "throwaway-greedy", GREEDY, "[charseq]\ngreedy = throwaway_greedy\n")
    result = run_cli("plugins", ok=False)
    assert result.exit_code == 1 and "plugin 'greedy' registered command 'train', which is taken" in result.output


def test_one_sample_streams_to_stdout_as_it_is_generated(plugin_site, alphabet_checkpoint):
    install_fake_distribution(plugin_site, "throwaway-vowels", THROWAWAY, "[charseq]\nvowels = throwaway_vowels\n")
    result = run_cli("generate", alphabet_checkpoint, "--prime", "ABC", "--length", 5, "--sampler", "watch")
    assert result.output == "ABCDEFGH\n"
    import throwaway_vowels  # the module the plugin loader imported

    # Before picking each character, the ones before it were already on stdout.
    assert throwaway_vowels.Watcher.seen == ["", "ABCD", "ABCDE", "ABCDEF", "ABCDEFG"]
