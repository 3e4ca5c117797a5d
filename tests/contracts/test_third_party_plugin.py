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
    assert "\naeio»uaeiouaeio\n" in train.stdout
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
    result = run_cli("--help")  # lists the commands, so it loads the plugins' commands
    assert result.stderr == ("charseq: warning: plugin 'greedy' (package 'throwaway-greedy') registered command "
                             "'train', which is a built-in command; its command is left out\n")
    assert "Train a model on a corpus" in result.stdout  # the built-in train


BROKEN_IMPORT = "import no_such_module\n"

RAISES_LATER = '''
from charseq import hookimpl

class Fragile:
    """Fails when asked for a character."""
    def __call__(self, logits, rng):
        raise ValueError("fragile sampler gave up")

@hookimpl
def register_samplers(register):
    register("fragile", Fragile)
    register("argmax", Fragile)  # taken by the bundled sampler
'''


def test_broken_plugins_warn_and_everything_else_keeps_working(plugin_site, alphabet_checkpoint):
    install_fake_distribution(plugin_site, "throwaway-broken", BROKEN_IMPORT, "[charseq]\nbroken = throwaway_broken\n")
    install_fake_distribution(plugin_site, "throwaway-env", RAISES_LATER, "[charseq]\nfragile = throwaway_env\n")
    result = run_cli("generate", alphabet_checkpoint, "--prime", "ABC", "--length", 3, "--sampler", "argmax")
    assert result.stdout == "ABCDEF\n"
    assert result.stderr.splitlines() == [
        "charseq: warning: plugin 'broken' (package 'throwaway-broken') failed to import "
        "(ModuleNotFoundError: No module named 'no_such_module'); skipped",
        "charseq: warning: plugin 'fragile' (package 'throwaway-env') registered sampler 'argmax', already registered "
        "by plugin 'charseq.plugins.samplers' (bundled with charseq); the first one is kept",
    ]


def test_a_plugin_raising_at_run_time_is_named_in_one_line(plugin_site, alphabet_checkpoint):
    install_fake_distribution(plugin_site, "throwaway-env", RAISES_LATER, "[charseq]\nfragile = throwaway_env\n")
    result = run_cli("generate", alphabet_checkpoint, "--prime", "ABC", "--sampler", "fragile", ok=False)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "Error: plugin 'fragile' (package 'throwaway-env') failed: ValueError: fragile sampler gave up "
        "(for the traceback, run charseq --debug generate ...)")


def test_one_sample_streams_to_stdout_as_it_is_generated(plugin_site, alphabet_checkpoint):
    install_fake_distribution(plugin_site, "throwaway-vowels", THROWAWAY, "[charseq]\nvowels = throwaway_vowels\n")
    result = run_cli("generate", alphabet_checkpoint, "--prime", "ABC", "--length", 5, "--sampler", "watch")
    assert result.output == "ABCDEFGH\n"
    import throwaway_vowels  # the module the plugin loader imported

    # Before picking each character, the ones before it were already on stdout.
    assert throwaway_vowels.Watcher.seen == ["", "ABCD", "ABCDE", "ABCDEF", "ABCDEFG"]


def test_in_strict_mode_a_command_taking_a_built_in_name_is_an_error(plugin_site, monkeypatch):
    install_fake_distribution(plugin_site, "throwaway-greedy", GREEDY, "[charseq]\ngreedy = throwaway_greedy\n")
    monkeypatch.setenv("CHARSEQ_STRICT_PLUGINS", "1")
    result = run_cli("plugins", ok=False)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "registered command 'train', which is a built-in command" in result.stderr


TWO_COMMANDS = """
from charseq import hookimpl

@hookimpl
def register_commands(cli):
    @cli.command(name="hello")
    def hello():
        '''Say hello.'''
        print("hello from the first")
"""

SAME_COMMAND = """
from charseq import hookimpl

@hookimpl
def register_commands(cli):
    @cli.command(name="hello")
    def hello():
        '''Say hello too.'''
        print("hello from the second")

    cli.commands.clear()  # a plugin cannot reach charseq's own commands through `cli`
"""


def test_commands_register_like_every_other_kind(plugin_site):
    """A second plugin's command of a taken name is refused with a warning naming both, and
    the `cli` a plugin receives is not charseq's group."""
    install_fake_distribution(plugin_site, "throwaway-env", TWO_COMMANDS, "[charseq]\nfirst = throwaway_env\n")
    install_fake_distribution(plugin_site, "throwaway-vowels", SAME_COMMAND, "[charseq]\nsecond = throwaway_vowels\n")
    result = run_cli("hello")
    winner = "first" if result.stdout == "hello from the first\n" else "second"  # whichever loaded first
    assert result.stdout == f"hello from the {winner}\n"
    assert f"registered command 'hello', already registered by plugin '{winner}'" in result.stderr
    assert "Train a model" in run_cli("train", "--help").stdout
    assert f"{winner} (throwaway-" in run_cli("plugins").stdout


ORDERED = """
from charseq import hookimpl

class Say:
    '''Prints its word at each epoch's end.'''
    def __init__(self, word="?"):
        self.word = word

    @hookimpl
    def on_epoch_end(self, epoch):
        print(f"{epoch} {self.word}")

@hookimpl
def register_callbacks(register):
    register("say", Say)
"""


def test_callbacks_from_the_command_line_run_in_the_order_given(plugin_site, tmp_path):
    install_fake_distribution(plugin_site, "throwaway-env", ORDERED, "[charseq]\nsay = throwaway_env\n")
    result = run_cli("train", "--corpus", "digits:20", "--epochs", 2, "--out", tmp_path / "m.npz", "-q",
                     "--callback", "say:word=third", "--callback", "say:word=first", "--callback", "say:word=second")
    assert [line for line in result.stdout.splitlines() if line[:1].isdigit() and "»" not in line] == [
        "1 third", "1 first", "1 second", "2 third", "2 first", "2 second"]
    resumed = run_cli("train", "--resume", tmp_path / "m.npz", "--epochs", 3, "-q")  # the same callbacks come back
    assert [line for line in resumed.stdout.splitlines() if line[:1].isdigit() and "»" not in line] == ["3 third", "3 first", "3 second"]
