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
"""


def test_throwaway_corpus_and_sampler_work_through_the_cli(plugin_site, tmp_path):
    install_fake_distribution(plugin_site, "throwaway-vowels", THROWAWAY,
                              "[charseq]\nvowels = throwaway_vowels\n")
    plugins = run_cli("plugins").output
    assert "vowels (throwaway-vowels 0.1)  corpus: vowels; sampler: backwards" in plugins
    assert re.search(r"^vowels +The cycle a e i o u, repeated\.  \[vowels\]$", run_cli("corpora").output, re.M)

    out = tmp_path / "v.npz"
    train = run_cli("train", "--corpus", "vowels:200", "--out", out, "--sample-length", 10)
    assert "sample: aeiouaeiouaeio" in train.stdout
    argmax = run_cli("generate", out, "--prime", "ou", "--length", 8, "--sampler", "argmax").output
    assert argmax == "ouaeiouaei\n"
    backwards = run_cli("generate", out, "--prime", "ou", "--length", 8, "--sampler", "backwards").output
    assert backwards.startswith("ou") and backwards != argmax
