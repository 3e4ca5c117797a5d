"""A third party's model that breaks the contract is refused in one line that names its
plugin, before anything is trained or written; one that keeps it trains and resumes
exactly, whatever kind of mapping its params are."""

import numpy as np
import pytest

import charseq
from conftest import install_fake_distribution, run_cli

MODELS = '''
import os
import numpy as np
from charseq import Parameters, hookimpl


class Bigram:
    """A bigram, as the plugin guide's."""

    name = "bigram"
    input_weights = ("L",)

    def __init__(self, vocab_size, hidden_size, seed=0, dtype=np.float32):
        self.vocab_size, self.hidden_size, self.dtype = vocab_size, hidden_size, np.dtype(dtype)
        self.flat, self.params = self.gradient_buffer()

    def options(self):
        return {}

    def gradient_buffer(self):
        flat = np.zeros(self.vocab_size**2, self.dtype)
        return flat, Parameters({"L": flat.reshape(self.vocab_size, self.vocab_size)})

    def state_shape(self, batch_size):
        return (batch_size, 0)

    def _log_probs(self, x):
        logits = self.params["L"][x]
        logits = logits - logits.max(axis=-1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))

    def loss(self, x, y, state=None):
        loss = -np.take_along_axis(self._log_probs(x), y[..., None], axis=-1).mean()
        return float(loss), np.zeros(self.state_shape(len(x)), self.dtype)

    def loss_and_grads(self, x, y, state=None, out=None, dropout=0.0, rng=None):
        log_p = self._log_probs(x)
        loss = -np.take_along_axis(log_p, y[..., None], axis=-1).mean()
        dlogits = np.exp(log_p)
        np.put_along_axis(dlogits, y[..., None], np.take_along_axis(dlogits, y[..., None], -1) - 1, -1)
        grads = out if out is not None else self.gradient_buffer()[1]
        grads["L"][...] = 0.0
        np.add.at(grads["L"], x.ravel(), dlogits.reshape(-1, self.vocab_size) / y.size)
        return float(loss), grads, np.zeros(self.state_shape(len(x)), self.dtype)

    def stepper(self, batch_size):
        table = self.params["L"].copy()

        class Lookup:
            def __call__(self, ids):
                return table[ids]

            def feed(self, x):
                return table[x[:, -1]]

        return Lookup()


def named(name, **overrides):
    return type(name, (Bigram,), {"name": name, **overrides})


class PlainDict(Bigram):
    name = "plain-dict"

    def gradient_buffer(self):  # a plain dict of views: assigning to it would replace a view
        flat = np.zeros(self.vocab_size**2, self.dtype)
        return flat, {"L": flat.reshape(self.vocab_size, self.vocab_size)}


def no_seed(vocab_size, hidden_size):
    return Bigram(vocab_size, hidden_size)


@hookimpl
def register_models(register):
    register("bigram", Bigram)
    register("plain-dict", PlainDict)
    register("options-list", named("options-list", options=lambda self: {"x": [1, 2]}))
    register("options-unknown", named("options-unknown", options=lambda self: {"smoothing": 0.5}))
    register("options-none", named("options-none", options=lambda self: None))
    register("half", named("half", __init__=lambda self, vocab_size, hidden_size, seed=0, dtype=None:
                           Bigram.__init__(self, vocab_size, hidden_size, seed, np.float16)))
    register("no-seed", no_seed)
    register("bad-inputs", named("bad-inputs", input_weights=("M",)))
    register("two-values", named("two-values", loss_and_grads=lambda self, *a, **k: (1.0, None)))
    register("no-stepper", named("no-stepper", stepper=lambda self, b: None))
    register("nan", named("nan", loss=lambda self, x, y, state=None: (float("nan"), np.zeros((len(x), 0))),
                          stepper=lambda self, b: type("S", (), {
                              "__call__": lambda s, ids: np.full((len(ids), 3), np.nan),
                              "feed": lambda s, x: np.full((len(x), 3), np.nan)})()))
    register("diverges", named("diverges", loss_and_grads=lambda self, x, y, state=None, **k: (
        float("nan"), self.gradient_buffer()[1], np.zeros((len(x), 0)))))
    register("narrow", named("narrow", stepper=lambda self, b: type("S", (), {
        "__call__": lambda s, ids: np.zeros((len(ids), 2)), "feed": lambda s, x: np.zeros((len(x), 2))})()))
'''

TEXT = "abab abba baab " * 200


@pytest.fixture
def place(plugin_site, tmp_path, monkeypatch):
    install_fake_distribution(plugin_site, "throwaway-models", MODELS, "[charseq]\nmodels = throwaway_models\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text(TEXT)
    return tmp_path


SMALL = ["--corpus", "text:notes.txt", "--seq-len", 16, "--batch-size", 8, "--lr", 0.1, "--schedule", "constant",
         "--input-lr-scale", 1, "--sample-length", 0, "-q"]


@pytest.mark.parametrize("model,words", [
    ("options-list", "its options() {'x': [1, 2]} are not a mapping of names to plain values"),
    ("options-unknown", "its options() cannot rebuild it from a checkpoint (model 'options-unknown' has no option "
                        "'smoothing'"),
    ("options-none", "its options() None are not a mapping"),
    ("half", "its flat parameters are not a 1-d array of float32 or float64"),
    ("no-seed", "its factory does not take what charseq gives it"),
    ("bad-inputs", "its input_weights ('M',) are not names of its parameters"),
])
def test_a_model_that_breaks_the_contract_is_refused_before_training(place, model, words):
    result = run_cli("train", *SMALL, "--hidden-size", 1, "--model", model, "--out", "m.npz", ok=False)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert "plugin 'models' (package 'throwaway-models')" in result.stderr and words in result.stderr, result.stderr
    assert not (place / "m.npz").exists()


def test_a_model_whose_step_returns_nonsense_is_named_and_the_checkpoint_kept(place):
    run_cli("train", *SMALL, "--model", "bigram", "--epochs", 1, "--out", "m.npz")
    before = (place / "m.npz").read_bytes()
    result = run_cli("train", *SMALL, "--model", "two-values", "--out", "m.npz", "--force", ok=False)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert "model 'two-values' of plugin 'models' (package 'throwaway-models'): loss_and_grads returned tuple" \
        in result.stderr
    assert (place / "m.npz").read_bytes() == before


@pytest.mark.parametrize("model,words", [("no-stepper", "stepper() returned NoneType"),
                                         ("nan", "gives logits that are not finite numbers"),
                                         ("narrow", "its stepper returned logits of shape (1, 2); they must be (1, 3)")])
def test_a_model_that_cannot_generate_says_so(place, model, words):
    run_cli("train", *SMALL, "--model", model, "--epochs", 1, "--out", "m.npz")
    result = run_cli("generate", "m.npz", "--prime", "ab", ok=False)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and words in result.stderr, result.output
    assert f"model {model!r} of plugin 'models' (package 'throwaway-models')" in result.stderr


def test_a_model_whose_params_are_a_plain_dict_resumes_exactly(place):
    """Loading puts the weights into the model's own arrays, never in place of them."""
    run_cli("train", *SMALL, "--model", "plain-dict", "--epochs", 2, "--out", "whole.npz")
    from conftest import InterruptAt

    run = charseq.Run.start("text:notes.txt", model="plain-dict", out="cut.npz", seq_len=16, batch_size=8, lr=0.1,
                            schedule="constant", input_lr_scale=1.0, epochs=2, extra_callbacks=[InterruptAt(30)])
    assert run.fit().status == "interrupted"
    run_cli("train", "--resume", "cut.npz", "-q", "--sample-length", 0)
    whole, resumed = charseq.load("whole.npz"), charseq.load("cut.npz")
    assert np.array_equal(whole.model.params["L"], resumed.model.params["L"])
    assert np.array_equal(whole.arrays["optimizer.m"], resumed.arrays["optimizer.m"])


def test_a_loss_that_is_not_a_number_is_an_error_for_eval(place):
    run_cli("train", *SMALL, "--model", "nan", "--epochs", 1, "--val-fraction", 0, "--out", "m.npz")
    result = run_cli("eval", "m.npz", "--corpus", "text:notes.txt", ok=False)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert "the loss of model 'nan' of plugin 'models' (package 'throwaway-models') on 'notes' is nan" in result.stderr


def test_a_plugin_models_divergence_names_the_plugin(place):
    result = run_cli("train", *SMALL, "--model", "diverges", "--epochs", 1, "--out", "m.npz", ok=False)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert "training diverged at step 1 (loss is nan); try a lower --lr, or ask after model 'diverges' of plugin " \
           "'models' (package 'throwaway-models')" in result.stderr
