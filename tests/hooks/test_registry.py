import re

import pytest

from charseq import PluginWarning, UsageError, hookimpl
from charseq.hooks.options import parse_options
from charseq.hooks.registry import get_registry, load_registry, parse_spec
from conftest import install_fake_distribution


class Duplicate:
    @hookimpl
    def register_samplers(self, register):
        register("argmax", lambda: None)


class Misspelt:
    @hookimpl
    def register_sampler(self, register):  # the hook is register_samplers
        pass


class BadName:
    @hookimpl
    def register_corpora(self, register):
        register("with:colon", lambda arg=None: None)


def test_bundled_plugins_register_everything():
    registry = load_registry()
    assert set(registry.all("corpus")) == {"alphabet", "digits", "lines", "text"}
    assert set(registry.all("sampler")) >= {"argmax", "temperature"}
    assert set(registry.all("callback")) >= {"early-stopping", "checkpoint"}
    assert registry.get("corpus", "alphabet").plugin == "charseq.plugins.corpora"


class Raises:
    @hookimpl
    def register_samplers(self, register):
        register("half-done", lambda: None)
        raise RuntimeError("the plugin broke here")


def test_duplicate_name_is_a_warning_naming_both_plugins_and_the_first_is_kept():
    with pytest.warns(PluginWarning, match=r"Duplicate.*'argmax'.*charseq\.plugins\.samplers"):
        registry = load_registry(extra_plugins=(Duplicate(),))
    assert registry.get("sampler", "argmax").plugin == "charseq.plugins.samplers"


def test_hook_matching_no_spec_skips_the_plugin_with_a_warning():
    with pytest.warns(PluginWarning, match=r"Misspelt.*register_sampler"):
        registry = load_registry(extra_plugins=(Misspelt(),))
    assert "Misspelt" not in [name for name, _ in registry.plugin_manager.list_name_plugin()]
    assert "argmax" in registry.all("sampler")


def test_names_with_colons_are_skipped_with_a_warning():
    with pytest.warns(PluginWarning, match="with:colon"):
        registry = load_registry(extra_plugins=(BadName(),))
    assert "with:colon" not in registry.all("corpus") and "alphabet" in registry.all("corpus")


def test_a_hook_that_raises_loses_its_registrations_and_nothing_else():
    with pytest.warns(PluginWarning, match="Raises.*raised in register_samplers.*the plugin broke here"):
        registry = load_registry(extra_plugins=(Raises(),))
    assert "half-done" not in registry.all("sampler") and "argmax" in registry.all("sampler")


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UsageError, match="unknown sampler 'nope'; known: argmax, min-p, temperature, top-k, top-p"):
        load_registry().get("sampler", "nope")


def test_options_a_factory_does_not_take_are_usage_errors():
    with pytest.raises(UsageError, match="sampler 'argmax'.*temperature"):
        load_registry().get("sampler", "argmax").build(temperature=0.5)


@pytest.mark.parametrize("spec,expected", [("alphabet", ("alphabet", None)),
                                           ("text:a:b.txt", ("text", "a:b.txt"))])
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("spec", ["", ":x", "text:"])
def test_parse_spec_refuses_malformed(spec):
    with pytest.raises(UsageError, match="malformed"):
        parse_spec(spec)


def test_parse_options_leaves_the_types_to_the_factory():
    assert parse_options("patience=3,min-delta=0.5,restore_best_weights=true,monitor=loss") == {
        "patience": "3", "min_delta": "0.5", "restore_best_weights": "true", "monitor": "loss"}
    built = load_registry().get("callback", "early-stopping").build(
        **parse_options("patience=3,min-delta=0.5,restore_best_weights=true,monitor=loss"))
    assert (built.patience, built.min_delta, built.restore_best_weights, built.monitor) == (3, 0.5, True, "loss")
    with pytest.raises(UsageError, match="key=value"):
        parse_options("patience")
    with pytest.raises(UsageError, match="'patience' is given twice"):
        parse_options("patience=1,patience=2")
    with pytest.raises(UsageError, match="'path' has no value"):
        parse_options("path=")


@pytest.mark.parametrize("kind,name,options,words", [
    ("callback", "checkpoint", {"every": "abc"}, "callback 'checkpoint': every must be a whole number, got 'abc'"),
    ("callback", "early-stopping", {"restore_best_weights": "maybe"}, "must be true or false"),
    ("callback", "early-stopping", {"min_delta": "lots"}, "min_delta must be a number"),
    ("callback", "early-stopping", {"patience": 2.5}, "patience must be a whole number, got 2.5"),
    ("sampler", "top-k", {"k": "many"}, "k must be a whole number"),
    ("callback", "metrics", {"nope": "1"}, "callback 'metrics' has no option 'nope'; its options are path"),
])
def test_options_are_converted_and_checked_by_the_factorys_types(kind, name, options, words):
    with pytest.raises(UsageError, match=re.escape(words)):
        load_registry().get(kind, name).build(**options)


def test_a_text_option_stays_text():
    """path=2024_01 is a file name, not the number 202401; true is a name, not a boolean."""
    registry = load_registry()
    assert registry.get("callback", "checkpoint").convert({"path": "2024_01", "monitor": "true"}) == \
        {"path": "2024_01", "monitor": "true"}
    assert registry.get("callback", "early-stopping").convert({"baseline": "none"}) == {"baseline": None}


PLUGIN = """
from charseq import hookimpl

@hookimpl
def register_samplers(register):
    register("first", lambda: (lambda logits, rng: logits.argmin(axis=1)), "Picks the least likely.")
"""


def test_environment_variable_chooses_installed_plugins(plugin_site, monkeypatch):
    install_fake_distribution(plugin_site, "throwaway-env", PLUGIN, "[charseq]\nthrowaway_env = throwaway_env\n")
    monkeypatch.delenv("CHARSEQ_LOAD_PLUGINS")
    assert "first" in load_registry().all("sampler")  # unset: every installed plugin loads
    monkeypatch.setenv("CHARSEQ_LOAD_PLUGINS", "")
    registry = load_registry()
    assert "first" not in registry.all("sampler") and "argmax" in registry.all("sampler")
    monkeypatch.setenv("CHARSEQ_LOAD_PLUGINS", "throwaway-env")
    assert "first" in load_registry().all("sampler")


def test_plugin_that_fails_to_import_is_a_warning_naming_its_package(plugin_site):
    install_fake_distribution(plugin_site, "throwaway-broken", "import no_such_module\n",
                              "[charseq]\nbroken = throwaway_broken\n")
    install_fake_distribution(plugin_site, "throwaway-env", PLUGIN, "[charseq]\nthrowaway_env = throwaway_env\n")
    with pytest.warns(PluginWarning, match=r"'broken' \(package 'throwaway-broken'\) failed to import.*no_such_module"):
        registry = get_registry()
    assert "first" in registry.all("sampler")  # the other installed plugin still works


def test_strict_mode_makes_misbehaviour_an_error(monkeypatch):
    from charseq import CharseqError

    monkeypatch.setenv("CHARSEQ_STRICT_PLUGINS", "1")
    with pytest.raises(CharseqError, match=r"Duplicate.*'argmax'"):
        load_registry(extra_plugins=(Duplicate(),))
