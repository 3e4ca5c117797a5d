"""The page at / in a real headless browser (the distribution's Chromium, driven by
Playwright): it loads with nothing from elsewhere, takes a prime, and shows the text as
it streams. Skipped where no Chromium or no Playwright is installed; CI installs both."""

from __future__ import annotations

import os
import shutil
from urllib.parse import urlparse

import pytest

# CI sets CHARSEQ_REQUIRE_BROWSER, where a missing browser is a failure, not a skip.
REQUIRED = bool(os.environ.get("CHARSEQ_REQUIRE_BROWSER"))
if not REQUIRED:
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    pytest.importorskip("openai")  # test_serve's Server needs it
    pytest.importorskip("playwright.sync_api")
from playwright import sync_api  # noqa: E402

from test_serve import Server  # noqa: E402

CHROMIUM = next((path for path in (shutil.which("chromium"), shutil.which("chromium-browser"),
                                   shutil.which("google-chrome")) if path), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None and not REQUIRED,
                                reason="no Chromium installed (apt-get install chromium)")
# As root in a container, without a sandbox; and no calls home, which a closed network refuses.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail("CHARSEQ_REQUIRE_BROWSER is set and no Chromium is installed")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield launched
        launched.close()


def open_page(browser, url: str):
    page = browser.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(url + "/")
    return page, requested, problems


def test_the_page_streams_a_continuation_of_the_typed_prime(browser, alphabet_checkpoint):
    running = Server(alphabet_checkpoint)
    try:
        page, requested, problems = open_page(browser, running.url)
        sync_api.expect(page.locator("#model")).to_contain_text("alphabet: rnn")
        page.fill("#prompt", "GHI")
        page.select_option("#sampler", "argmax")
        page.fill("#max-tokens", "2000")
        page.click("#generate")
        text = page.locator(".sample .text").first
        sync_api.expect(text).not_to_be_empty()
        sync_api.expect(page.locator("#status")).to_contain_text("2000 characters", timeout=20_000)
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ" * 80
        assert text.text_content() == alphabet[9: 9 + 2000]
        assert page.locator(".sample .prime").first.text_content() == "GHI"
        assert {urlparse(u).netloc for u in requested} == {urlparse(running.url).netloc}  # nothing from elsewhere
        assert problems == []
    finally:
        assert running.stop()[0] == 0


def test_text_appears_before_the_stream_ends_and_stop_ends_it(browser, alphabet_checkpoint):
    running = Server(alphabet_checkpoint, "--max-tokens", 100000)
    try:
        page, _, problems = open_page(browser, running.url)
        sync_api.expect(page.locator("#model")).to_contain_text("alphabet")
        page.fill("#prompt", "A")
        page.fill("#max-tokens", "100000")
        page.fill("#n", "4")
        page.click("#generate")
        sync_api.expect(page.locator(".sample")).to_have_count(4)
        sync_api.expect(page.locator(".sample .text").first).not_to_be_empty()
        assert page.locator("#stop-button").is_enabled()  # still streaming, with text already shown
        page.click("#stop-button")
        sync_api.expect(page.locator("#status")).to_contain_text("stopped after")
        assert problems == []
    finally:
        assert running.stop()[0] == 0


def test_an_error_is_shown_on_the_page_and_a_key_is_asked_for(browser, alphabet_checkpoint):
    running = Server(alphabet_checkpoint, env={"CHARSEQ_API_KEY": "page-key"})
    try:
        page, _, _ = open_page(browser, running.url)
        sync_api.expect(page.locator("#key-label")).to_be_visible()
        page.fill("#prompt", "A")
        page.click("#generate")
        sync_api.expect(page.locator("#status")).to_contain_text("a valid API key is needed")
        page.fill("#api-key", "page-key")
        page.dispatch_event("#api-key", "change")
        sync_api.expect(page.locator("#model")).to_contain_text("alphabet: rnn")
        page.fill("#prompt", "abc")
        page.click("#generate")
        sync_api.expect(page.locator("#status")).to_contain_text("'a', 'b', 'c'")
        page.fill("#prompt", "X")
        page.select_option("#sampler", "argmax")
        page.fill("#max-tokens", "4")
        page.click("#generate")
        sync_api.expect(page.locator(".sample .text")).to_have_text("YZAB")
        page.select_option("#sampler", "temperature")
        page.fill("#temperature", "0")  # greedy, as the server takes it: the field allows it
        page.fill("#prompt", "K")
        page.click("#generate")
        sync_api.expect(page.locator(".sample .text")).to_have_text("LMNO")
    finally:
        assert running.stop()[0] == 0


def test_no_key_field_where_the_server_has_no_key(browser, alphabet_checkpoint):
    running = Server(alphabet_checkpoint)
    try:
        page, _, _ = open_page(browser, running.url)
        sync_api.expect(page.locator("#model")).to_contain_text("alphabet: rnn")
        sync_api.expect(page.locator("#key-label")).to_be_hidden()
    finally:
        assert running.stop()[0] == 0


NTH = '''
from typing import Annotated

import numpy as np

from charseq import Option, hookimpl


class Nth:
    """Always the n-th most likely symbol."""

    def __init__(self, rank: Annotated[int, Option("which, 1 the most likely", min=1)] = 2):
        self.rank = rank

    def __call__(self, logits, rng):
        return np.argsort(-logits, axis=1, kind="stable")[:, self.rank - 1]


class Loose:
    """Takes any option, and is greedy."""

    def __init__(self, **options):
        self.options = options

    def __call__(self, logits, rng):
        return logits.argmax(axis=1)


@hookimpl
def register_samplers(register):
    register("nth", Nth)
    register("loose", Loose)
'''


def test_the_header_reads_as_words_and_options_are_each_samplers_own(browser, alphabet_checkpoint, plugin_site):
    from conftest import install_fake_distribution

    install_fake_distribution(plugin_site, "throwaway-nth", NTH, "[charseq]\nnth = throwaway_nth\n")
    running = Server(alphabet_checkpoint, env={"PYTHONPATH": str(plugin_site)})
    try:
        page, _, problems = open_page(browser, running.url)
        sync_api.expect(page.locator("#model")).to_have_text(
            "alphabet: rnn, 1 layer of 64 units, trained on the alphabet corpus for 180 epochs; 26 symbols")
        options, temperature = page.locator("#options"), page.locator("#temperature")
        for sampler, shown in (("top-k", "k=40"), ("top-p", "p=0.9"), ("min-p", "p=0.05"), ("nth", "rank=2")):
            page.select_option("#sampler", sampler)
            sync_api.expect(options).to_be_enabled()
            sync_api.expect(options).to_have_attribute("placeholder", shown)
        sync_api.expect(options).to_have_attribute("title", "Always the n-th most likely symbol.\n"
                                                             "rank: which, 1 the most likely")
        sync_api.expect(temperature).to_be_disabled()  # it takes none
        page.select_option("#sampler", "loose")  # declares none, takes any
        sync_api.expect(options).to_be_enabled()
        sync_api.expect(options).to_have_attribute("placeholder", "key=value,…")
        for sampler in ("temperature", "argmax"):  # no options of their own: a temperature, or none at all
            page.select_option("#sampler", sampler)
            sync_api.expect(options).to_be_disabled()
            sync_api.expect(options).to_have_attribute("placeholder", "none")
        sync_api.expect(temperature).to_be_disabled()
        page.select_option("#sampler", "top-k")
        sync_api.expect(temperature).to_be_enabled()
        page.fill("#options", "k=1")
        page.fill("#temperature", "5")
        page.fill("#prompt", "GHI")
        page.fill("#max-tokens", "5")
        page.click("#generate")
        sync_api.expect(page.locator(".sample .text")).to_have_text("JKLMN")  # k=1 was sent: greedy at 5
        page.select_option("#sampler", "nth")
        page.fill("#options", "rank=1")
        page.click("#generate")
        sync_api.expect(page.locator(".sample .text")).to_have_text("JKLMN")
        assert problems == []
    finally:
        assert running.stop()[0] == 0


def test_unknown_characters_are_named_with_the_box_that_skips_them(browser, alphabet_checkpoint):
    running = Server(alphabet_checkpoint)
    try:
        page, _, problems = open_page(browser, running.url)
        sync_api.expect(page.locator("#model")).to_contain_text("alphabet: rnn")
        page.fill("#prompt", "GhI")
        page.select_option("#sampler", "argmax")
        page.fill("#max-tokens", "4")
        page.click("#generate")
        status = page.locator("#status")
        sync_api.expect(status).to_contain_text("'h'")
        sync_api.expect(status).to_contain_text("tick “Skip unknown characters” to leave them out")
        assert "charseq.skip_unknown" not in status.text_content()  # the API's name, which the page does not show
        page.check("#skip-unknown")
        page.click("#generate")
        sync_api.expect(page.locator(".sample .text")).to_have_text("JKLM")  # from "GI"
        assert problems == [] or all("400" in problem for problem in problems)  # the refused request's, logged
    finally:
        assert running.stop()[0] == 0
