"""`charseq serve` as a real process on a loopback port, driven by the official `openai`
client and by plain HTTP: completions, streams, errors and their statuses, the API key,
many clients at once, and Ctrl-C. Skipped without the serve extra and the openai client."""

from __future__ import annotations

import ast
import concurrent.futures
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from charseq.installation import install_command
from conftest import run_cli
import pages

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

# Away from the checkout: `python -m charseq` puts the working directory first on sys.path,
# and the source tree's charseq/ is not the installed package (its plugins live beside it).
AWAY = tempfile.gettempdir()
NAMES = ("anna ava bella bob cara cleo dana dora ella emma fay flora gina gwen hana hope ida iris jane june kate "
         "kira lana lily mara mia nora nina olga opal pia pam rosa ruth sara sofia tara tina uma una vera vivi "
         "wanda willa xena yara yoko zara zoe").split()


class Server:
    """`charseq serve CHECKPOINT --port 0 ...` in a process of its own, until stop()."""

    def __init__(self, *args: object, env: dict[str, str] | None = None):
        self.proc = subprocess.Popen([sys.executable, "-m", "charseq", "serve", *map(str, args), "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=AWAY,
                                     env={**os.environ, **(env or {})})
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else ""
        found = re.search(r"http://(\S+?)/ ", line)
        if not found:
            self.proc.kill()
            raise AssertionError(f"no address printed: {line!r} {self.proc.stderr.read()}")
        self.url = f"http://{found.group(1)}"
        self.banner = line

    def client(self, api_key: str = "unused", **options):
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, **options)

    def stop(self, timeout: float = 20) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err


def post(url: str, body: bytes | dict, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data, {"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def server(alphabet_checkpoint):
    running = Server(alphabet_checkpoint, "--max-tokens", 2000, "--max-n", 8, "--max-prompt", 500,
                     "--max-body", 4096)
    yield running
    code, err = running.stop()
    assert code == 0, err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def names_checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("names")
    (folder / "names.txt").write_text("\n".join(NAMES * 4) + "\n", encoding="utf-8")
    run_cli("train", "--corpus", f"lines:{folder / 'names.txt'}", "--model", "gru", "--hidden-size", 32, "--epochs", 4,
            "--out", folder / "names.npz", "--quiet")
    return folder / "names.npz"


def test_the_official_client_lists_the_model_and_completes_greedily_as_generate_does(server, alphabet_checkpoint):
    client = server.client()
    [model] = client.models.list().data
    assert model.id == "alphabet" and model.owned_by == "charseq"
    assert model.model_extra["charseq"]["vocabulary_size"] == 26
    completion = client.completions.create(model="alphabet", prompt="HIJ", max_tokens=30, temperature=0)
    printed = run_cli("generate", alphabet_checkpoint, "--prime", "HIJ", "--length", 30, "--sampler", "argmax").output
    assert "HIJ" + completion.choices[0].text == printed.strip()
    assert completion.choices[0].finish_reason == "length"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 30)


def test_a_stream_arrives_in_pieces_that_add_up_to_the_whole(server):
    client = server.client()
    whole = client.completions.create(model="alphabet", prompt="A", max_tokens=500, temperature=0, n=2)
    chunks = list(client.completions.create(model="alphabet", prompt="A", max_tokens=500, temperature=0, n=2,
                                            stream=True, stream_options={"include_usage": True}))
    for index in range(2):
        pieces = [c.text for chunk in chunks for c in chunk.choices if c.index == index]
        assert "".join(pieces) == whole.choices[index].text
        reasons = [c.finish_reason for chunk in chunks for c in chunk.choices if c.index == index]
        assert reasons[-1] == "length" and set(reasons[:-1]) <= {None}
    assert chunks[-1].usage.completion_tokens == 1000


def test_stops_seeds_echo_and_several_prompts(server):
    client = server.client()
    stopped = client.completions.create(model="alphabet", prompt="ABC", max_tokens=100, temperature=0,
                                        stop=["XYZ", "KL"])
    assert (stopped.choices[0].text, stopped.choices[0].finish_reason) == ("DEFGHIJ", "stop")
    first, again = (client.completions.create(model="alphabet", prompt="Q", max_tokens=40, n=3, seed=7,
                                              temperature=3.0) for _ in range(2))
    assert [c.text for c in first.choices] == [c.text for c in again.choices]
    echoed = client.completions.create(model="alphabet", prompt=["AB", "MN"], max_tokens=3, temperature=0, echo=True,
                                       n=2)
    assert [c.text for c in echoed.choices] == ["ABCDE", "ABCDE", "MNOPQ", "MNOPQ"]
    assert [c.index for c in echoed.choices] == [0, 1, 2, 3]


def test_charseq_samplers_travel_in_an_extra_field(server):
    client = server.client()
    top1 = client.completions.create(model="alphabet", prompt="AB", max_tokens=20, temperature=5.0,
                                     extra_body={"charseq": {"sampler": "top-k:k=1"}})
    assert top1.choices[0].text == "CDEFGHIJKLMNOPQRSTUV"
    with pytest.raises(openai.BadRequestError, match="top-k"):
        client.completions.create(model="alphabet", prompt="AB", extra_body={"charseq": {"sampler": "top-k:k=-1"}})


@pytest.mark.parametrize("options,error,words", [
    ({"prompt": "abc"}, "BadRequestError", "'a', 'b', 'c'"),
    ({"prompt": "A", "max_tokens": 2001}, "BadRequestError", "max_tokens must be between 0 and 2,000"),
    ({"prompt": "A", "n": 9}, "BadRequestError", "n must be between 1 and 8"),
    ({"prompt": "A" * 501}, "BadRequestError", "at most 500"),
    ({"prompt": "A", "logprobs": 6}, "BadRequestError", "logprobs must be a whole number from 0 to 5"),
])
def test_bad_requests_get_the_clients_exception_and_a_message_that_says_why(server, options, error, words):
    options = {"model": "alphabet", **options}
    with pytest.raises(openai.APIStatusError) as failed:
        server.client().completions.create(**options)
    assert type(failed.value).__name__ == error
    assert words in failed.value.message


def test_any_model_name_is_answered_and_the_served_name_reported(server):
    """Tools with a model name written in them work: a server of one model answers to any."""
    client = server.client()
    for name in ("gpt-3.5-turbo-instruct", "alphabet", "text-davinci-003"):
        completion = client.completions.create(model=name, prompt="HIJ", max_tokens=3, temperature=0)
        assert (completion.model, completion.choices[0].text) == ("alphabet", "KLM")
        streamed = list(client.completions.create(model=name, prompt="HIJ", max_tokens=3, temperature=0, stream=True))
        assert {chunk.model for chunk in streamed} == {"alphabet"}
    assert [model.id for model in client.models.list().data] == ["alphabet"]
    assert client.models.retrieve("gpt-4").id == "alphabet"


def test_logprobs_with_the_official_client_whole_and_streamed(server):
    client = server.client()
    asked = dict(model="gpt-3.5-turbo-instruct", prompt="HIJ", max_tokens=20, temperature=0, logprobs=3)
    whole = client.completions.create(**asked)
    [choice] = whole.choices
    logprobs = choice.logprobs
    assert "".join(logprobs.tokens) == choice.text == "KLMNOPQRSTUVWXYZABCD"
    assert logprobs.text_offset == list(range(3, 23))  # in the prompt followed by the text, as OpenAI's
    for token, own, top in zip(logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs):
        assert len(top) == 3 and next(iter(top)) == token and own == max(top.values())
        assert -0.1 < own < 0  # a model that has learnt the alphabet is sure of it
    chunks = list(client.completions.create(**asked, stream=True))
    pieces = [c.logprobs for chunk in chunks for c in chunk.choices if c.logprobs is not None]
    assert [t for piece in pieces for t in piece.tokens] == logprobs.tokens
    assert [v for piece in pieces for v in piece.token_logprobs] == logprobs.token_logprobs
    assert [o for piece in pieces for o in piece.text_offset] == logprobs.text_offset
    echoed = list(client.completions.create(**{**asked, "max_tokens": 5, "n": 2}, echo=True, stream=True))
    for index in range(2):
        text = "".join(c.text for chunk in echoed for c in chunk.choices if c.index == index)
        tokens = [t for chunk in echoed for c in chunk.choices if c.index == index and c.logprobs
                  for t in c.logprobs.tokens]
        offsets = [o for chunk in echoed for c in chunk.choices if c.index == index and c.logprobs
                   for o in c.logprobs.text_offset]
        assert text == "".join(tokens) == "HIJKLMNO" and offsets == list(range(8))
    assert get(f"{server.url}/healthz")[1]["characters"] > 0


def test_the_metadata_lists_each_samplers_declared_options_as_the_cli_does(server):
    [model] = server.client().models.list().data
    listed = json.loads(run_cli("samplers", "--json").stdout)
    details = model.model_extra["charseq"]["sampler_details"]
    assert [{k: v for k, v in sampler.items() if k != "any_options"} for sampler in details] == listed
    assert not any(sampler["any_options"] for sampler in details)  # each declares its own
    top_k = next(s for s in listed if s["name"] == "top-k")
    assert [o["name"] for o in top_k["options"]] == ["k", "temperature"]
    assert model.model_extra["charseq"]["description"] == ("rnn, 1 layer of 64 units, trained on the alphabet corpus "
                                                           "for 180 epochs; 26 symbols")


def test_errors_over_plain_http_are_json_with_the_right_status(server):
    url = server.url
    assert post(f"{url}/v1/completions", b"{not json")[0] == 400
    status, body = post(f"{url}/v1/completions", {"prompt": "A" * 5000})
    assert status == 413 and "4,096" in body["error"]["message"]
    status, body = post(f"{url}/v1/chat/completions", {"messages": []})
    assert status == 404 and "/v1/completions" in body["error"]["message"]
    assert get(f"{url}/v1/nothing")[0] == 404
    status, body = get(f"{url}/v1/completions")
    assert status == 405 and body["error"]["message"]
    status, body = get(f"{url}/healthz")
    assert status == 200 and body["status"] == "ok" and body["batched"] is True


def test_a_request_past_the_time_limit_is_a_408(tmp_path):
    import charseq
    from charseq.models.build import build_model

    saved = charseq.load(Path(__file__).resolve().parents[1] / "fixtures" / "alphabet-0.3.0.npz")
    big = build_model("lstm:layers=3", {}, len(saved.vocab), 256, seed=0)
    charseq.save(tmp_path / "big.npz", charseq.Checkpoint(big, saved.vocab))
    running = Server(tmp_path / "big.npz", "--timeout", 0.3)
    try:
        status, body = post(f"{running.url}/v1/completions", {"prompt": "A", "max_tokens": 4096, "n": 16})
        assert status == 408 and "time limit" in body["error"]["message"]
        for _ in range(50):  # the engine lets go of it just after it answers
            if get(f"{running.url}/healthz")[1]["running"] == 0:
                break
            time.sleep(0.05)
        assert get(f"{running.url}/healthz")[1]["running"] == 0
    finally:
        assert running.stop()[0] == 0


def test_an_api_key_guards_the_api_but_not_the_page(alphabet_checkpoint):
    running = Server(alphabet_checkpoint, env={"CHARSEQ_API_KEY": "s3cret-key"})
    try:
        with pytest.raises(openai.AuthenticationError):
            running.client().models.list()
        with pytest.raises(openai.AuthenticationError):
            running.client("s3cret-kez").completions.create(model="alphabet", prompt="A", max_tokens=2)
        done = running.client("s3cret-key").completions.create(model="alphabet", prompt="A", max_tokens=2,
                                                               temperature=0)
        assert done.choices[0].text == "BC"
        assert get(f"{running.url}/healthz")[1]["auth"] is True
        with urllib.request.urlopen(f"{running.url}/", timeout=10) as page:
            assert page.status == 200 and b"<textarea" in page.read()
    finally:
        assert running.stop()[0] == 0


@pytest.mark.parametrize("args,env,words", [
    (["--host", "0.0.0.0"], {}, "--host 0.0.0.0 lets other machines reach the model: set an API key"),
    (["--api-key", " "], {}, "the API key is empty"),
])
def test_listening_beyond_loopback_needs_a_key(alphabet_checkpoint, args, env, words):
    result = subprocess.run([sys.executable, "-m", "charseq", "serve", alphabet_checkpoint, *args], cwd=AWAY, text=True,
                            capture_output=True, env={**os.environ, "CHARSEQ_API_KEY": "", **env}, timeout=60)
    assert result.returncode == 2
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_port_in_use_is_one_line(server, alphabet_checkpoint):
    port = server.url.rsplit(":", 1)[1]
    result = subprocess.run([sys.executable, "-m", "charseq", "serve", alphabet_checkpoint, "--port", port], cwd=AWAY,
                            text=True, capture_output=True, timeout=60)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_without_the_serve_extra_it_says_what_to_install(alphabet_checkpoint, monkeypatch):
    monkeypatch.setitem(sys.modules, "starlette", None)
    monkeypatch.delitem(sys.modules, "charseq.serving.app", raising=False)
    result = run_cli("serve", alphabet_checkpoint, ok=False)
    assert result.exit_code == 1
    assert install_command("serve") in result.output


def test_a_model_of_items_answers_one_item_per_choice(names_checkpoint):
    running = Server(names_checkpoint)
    try:
        client = running.client()
        items = client.completions.create(model="names", prompt="", max_tokens=12, n=8, seed=1)
        for choice in items.choices:
            assert "\n" not in choice.text
            assert choice.finish_reason == ("length" if len(choice.text) == 12 else "stop")
        for prime in ("", "b", "ka"):
            greedy = client.completions.create(model="names", prompt=prime, max_tokens=20, temperature=0)
            printed = run_cli("generate", names_checkpoint, "--prime", prime, "--length", 20, "--sampler", "argmax")
            assert prime + greedy.choices[0].text == printed.output.strip()
        with pytest.raises(openai.BadRequestError, match="end of an item"):
            client.completions.create(model="names", prompt="an\nb")
    finally:
        assert running.stop()[0] == 0


def test_echo_with_no_tokens_scores_texts_so_two_names_can_be_compared(names_checkpoint):
    """Which of two names is the more likely: the sum of their characters' log-probabilities."""
    running = Server(names_checkpoint)
    try:
        client = running.client()
        scored = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=["sofia", "xfosi"], max_tokens=0,
                                           echo=True, logprobs=0)
        assert [choice.text for choice in scored.choices] == ["sofia", "xfosi"]
        totals = [sum(choice.logprobs.token_logprobs) for choice in scored.choices]  # an item's first is scored too
        assert totals[0] > totals[1] + 1, totals  # a name it was trained on, and its letters shuffled
        assert scored.usage.completion_tokens == 0
        description = client.models.list().data[0].model_extra["charseq"]["description"]
        assert description.startswith("gru, 1 layer of 32 units, trained on names.txt for 4 epochs; ")
        assert description.endswith(" symbols, one item per line")
    finally:
        assert running.stop()[0] == 0


def test_thirty_two_streaming_clients_all_finish_and_none_is_refused(alphabet_checkpoint):
    """The load test, bounded: a fixed count of clients and characters, on loopback."""
    running = Server(alphabet_checkpoint)
    clients, length = 32, 300

    def one(k: int) -> tuple[str, str | None]:
        stream = running.client(timeout=60).completions.create(model="alphabet", prompt="ABCDEFGHIJ"[k % 10],
                                                               max_tokens=length, temperature=0, stream=True)
        text, reason = [], None
        for chunk in stream:
            for choice in chunk.choices:
                text.append(choice.text)
                reason = choice.finish_reason or reason
        return "".join(text), reason

    try:
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            done = list(pool.map(one, range(clients)))
        seconds = time.perf_counter() - started
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ" * 20
        for k, (text, reason) in enumerate(done):
            start = alphabet.index("ABCDEFGHIJ"[k % 10]) + 1
            assert (text, reason) == (alphabet[start: start + length], "length")
        health = get(f"{running.url}/healthz")[1]
        assert health["running"] == 0 and health["waiting"] == 0
        assert health["characters"] == clients * length
        print(f"{clients} streams of {length} characters in {seconds:.2f} s")
    finally:
        assert running.stop()[0] == 0


def test_ctrl_c_ends_open_streams_and_the_server_within_seconds(alphabet_checkpoint):
    running = Server(alphabet_checkpoint, "--max-tokens", 100000)
    stream = running.client(timeout=30).completions.create(model="alphabet", prompt="A", max_tokens=100000, n=8,
                                                           stream=True)
    first = next(iter(stream))
    assert first.choices
    started = time.perf_counter()
    running.proc.send_signal(signal.SIGINT)
    with pytest.raises(openai.APIError, match="shutting down"):
        for _ in stream:
            pass
    _, err = running.proc.communicate(timeout=20)
    assert running.proc.returncode == 0
    assert time.perf_counter() - started < 10
    assert "Traceback" not in err and "server stopped" in err


def test_a_client_that_goes_away_frees_its_rows(server):
    stream = server.client().completions.create(model="alphabet", prompt="A", max_tokens=2000, n=8, stream=True)
    next(iter(stream))
    stream.close()
    for _ in range(100):
        health = get(f"{server.url}/healthz")[1]
        if health["running"] == 0:
            break
        time.sleep(0.1)
    assert health["running"] == 0


def test_a_seeded_request_on_a_busy_server_prints_what_generate_with_the_seed_prints(server, alphabet_checkpoint):
    """Sampling at a high temperature, so that the text depends on every draw."""
    printed = run_cli("generate", alphabet_checkpoint, "--prime", "KQ", "--length", 300, "--temperature", 4,
                      "--seed", 9, "--num-samples", 2, "--json").output.splitlines()
    expected = [json.loads(line)["text"] for line in printed]

    def busy(k: int) -> str:
        return server.client().completions.create(model="alphabet", prompt="AB", max_tokens=1500, n=4,
                                                  temperature=2).choices[0].text

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        others = [pool.submit(busy, k) for k in range(4)]
        time.sleep(0.05)
        seeded = server.client().completions.create(model="alphabet", prompt="KQ", max_tokens=300, n=2, seed=9,
                                                    temperature=4)
        assert all(len(other.result()) == 1500 for other in others)
    assert [choice.text for choice in seeded.choices] == expected
    assert expected[0] != expected[1]


def test_with_a_key_it_listens_on_every_address(alphabet_checkpoint):
    running = Server(alphabet_checkpoint, "--host", "0.0.0.0", "--api-key", "k3y")
    try:
        assert running.url.startswith("http://0.0.0.0:")
        local = running.url.replace("0.0.0.0", "127.0.0.1")
        assert get(f"{local}/v1/models")[0] == 401
        assert get(f"{local}/v1/models", {"Authorization": "Bearer k3y"})[0] == 200
    finally:
        assert running.stop()[0] == 0


def test_the_client_examples_run(names_checkpoint):
    """The documentation's blocks that use the official client: the completions one, and one
    that scores names with echo and logprobs (which prints each name with its total)."""
    if not pages.INDEX.is_file():
        pytest.skip("needs the source checkout")
    blocks = [b for b in pages.blocks("python") if "from openai" in b]
    assert blocks
    running = Server(names_checkpoint)
    try:
        for block in blocks:
            code = block.replace("127.0.0.1:8000", running.url.removeprefix("http://"))
            result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stderr
            if "echo=True" in block:  # a name per line, with its total log-probability: the likelier first
                totals = [float(line.rsplit(" ", 1)[1]) for line in result.stdout.splitlines()]
                assert len(totals) == 2 and totals[0] > totals[1], result.stdout
                continue
            first, second, _ = result.stdout.split("\n")  # five names, then a streamed one (it may be empty)
            names = ast.literal_eval(first)
            assert len(names) == 5 and all(isinstance(name, str) and "\n" not in name for name in names)
            assert "\n" not in second
    finally:
        assert running.stop()[0] == 0


# A request whose body is to be 100 bytes long.
HEAD = (b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n")


def raw_request(url: str, data: bytes) -> tuple[int, dict]:
    """Bytes over a plain socket (headers and body as given); the status and JSON answer."""
    import socket

    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize("body,headers,status,words", [
    (b'{"prompt": "A", "\\ud800": 1}', {}, 400, "unrecognized request argument supplied: \ud800"),
    (b'{"prompt": "A", "charseq": {"\\udc80": 1}}', {}, 400, "charseq has no field"),
    (b"[" * 4000, {}, 400, "nested too deeply"),  # under the 4 KB limit, past Python's recursion limit
    (b'{"prompt": "A"}', {"Content-Type": "text/plain"}, 415, "Content-Type: application/json"),
])
def test_odd_bodies_get_json_errors(server, body, headers, status, words):
    got, answer = post(f"{server.url}/v1/completions", body, headers)
    assert (got, words in answer["error"]["message"]) == (status, True), answer


@pytest.mark.parametrize("data", [b"GARBAGE\r\n\r\n", b"GET /healthz HTTP/1.1\r\n\r\n",
                                  b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n"
                                  b"Content-Length: 3\r\n\r\n{}"])
def test_a_request_that_is_not_http_it_can_read_is_a_json_400(server, data):
    """Not HTTP at all, no Host, two lengths: h11 refuses them before the app sees them, and
    the answer is OpenAI's error shape, as every other."""
    status, answer = raw_request(server.url, data)
    assert status == 400 and "is not HTTP/1.1 this server can read" in answer["error"]["message"], answer


def test_a_trailing_slash_is_a_json_404_not_a_redirect(server):
    status, answer = post(f"{server.url}/v1/completions/", {"prompt": "A"})
    assert status == 404 and "no route" in answer["error"]["message"]


def test_without_a_key_only_requests_addressed_to_this_machine_are_answered(server, alphabet_checkpoint):
    for host in ("evil.example", "evil.example:80", "10.0.0.1"):
        status, answer = get(f"{server.url}/v1/models", {"Host": host})
        assert status == 403 and "API key" in answer["error"]["message"]
    for host in ("localhost:1234", "127.0.0.1", "[::1]:80"):
        assert get(f"{server.url}/v1/models", {"Host": host})[0] == 200
    keyed = Server(alphabet_checkpoint, "--api-key", "k")
    try:  # a server with a key may sit behind any name
        assert get(f"{keyed.url}/v1/models", {"Host": "models.example", "Authorization": "Bearer k"})[0] == 200
    finally:
        assert keyed.stop()[0] == 0


def test_a_body_that_never_finishes_arriving_is_a_408(alphabet_checkpoint):
    running = Server(alphabet_checkpoint, "--timeout", 1)
    try:
        started = time.perf_counter()
        status, answer = raw_request(running.url, HEAD + b'{"prompt": "A",')
        assert status == 408 and "did not arrive" in answer["error"]["message"]
        assert time.perf_counter() - started < 5
    finally:
        assert running.stop()[0] == 0


def test_sigterm_and_ctrl_c_while_a_body_arrives_stop_cleanly_with_exit_0(alphabet_checkpoint):
    for sig in (signal.SIGTERM, signal.SIGINT):
        running = Server(alphabet_checkpoint)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            answer = pool.submit(raw_request, running.url, HEAD + b"{")
            time.sleep(0.5)
            started = time.perf_counter()
            running.proc.send_signal(sig)
            _, err = running.proc.communicate(timeout=20)
            assert answer.result()[0] == 503
        assert running.proc.returncode == 0, err
        assert time.perf_counter() - started < 3
        assert "Traceback" not in err and "server stopped" in err


@pytest.mark.parametrize("args,words", [
    (["--timeout", "nan"], "--timeout must be a number of seconds"),
    (["--name", ""], "give one with --name"),
    (["--name", " a"], "give one with --name"),
    (["--api-key", "has space"], "the API key must be letters, digits"),
    (["--api-key", "clé"], "the API key must be letters, digits"),
])
def test_bad_serve_options_are_one_line(alphabet_checkpoint, args, words):
    result = subprocess.run([sys.executable, "-m", "charseq", "serve", alphabet_checkpoint, *args], cwd=AWAY, text=True,
                            capture_output=True, timeout=60)
    assert result.returncode == 2
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_file_name_that_is_not_text_needs_a_name(alphabet_checkpoint, tmp_path):
    odd = tmp_path / os.fsdecode(b"caf\xe9.npz")
    odd.write_bytes(alphabet_checkpoint.read_bytes())
    result = subprocess.run([sys.executable, "-m", "charseq", "serve", odd], cwd=AWAY, text=True, capture_output=True,
                            timeout=60)
    assert result.returncode == 2 and "give one with --name" in result.stderr
    running = Server(odd, "--name", "cafe")
    try:
        assert running.client().models.list().data[0].id == "cafe"
    finally:
        assert running.stop()[0] == 0


def test_max_batch_holds_and_the_rest_wait(alphabet_checkpoint):
    running = Server(alphabet_checkpoint, "--max-batch", 1, "--max-tokens", 100000)
    try:
        first = running.client().completions.create(model="alphabet", prompt="A", max_tokens=100000, n=4,
                                                    stream=True)
        next(iter(first))
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            second = pool.submit(lambda: running.client().completions.create(model="alphabet", prompt="B",
                                                                             max_tokens=5, n=4, temperature=0))
            for _ in range(50):
                health = get(f"{running.url}/healthz")[1]
                if health["waiting"]:
                    break
                time.sleep(0.05)
            assert (health["running"], health["waiting"]) == (4, 4)  # n=4 > 1 runs, but alone
            first.close()
            assert [c.text for c in second.result(timeout=30).choices] == ["CDEFG"] * 4
    finally:
        assert running.stop()[0] == 0


# -- what a hostile client can do to the server: bodies held, slow headers, connections, digits


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def until_closed(sock, within: float = 15) -> bytes:
    """What the server sends on `sock` until it closes it (b"" if it sends nothing first);
    AssertionError if it keeps the connection open for `within` seconds."""
    answer, deadline = b"", time.monotonic() + within
    while time.monotonic() < deadline:
        if not select.select([sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
            break
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:  # closed with bytes of ours unread: what it sent first still came
            return answer
        if not chunk:
            return answer
        answer += chunk
    raise AssertionError(f"the server kept the connection open for {within} s; it sent {answer[:200]!r}")


def http_answer(answer: bytes) -> tuple[int, dict[str, str], dict]:
    """The status, headers (names in lower case) and JSON body of a whole HTTP response."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


def resident_bytes(pid: int) -> int:
    """The process's resident memory (VmRSS), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads resident memory from /proc")
def test_request_bodies_held_at_once_are_capped_and_their_bytes_given_back(alphabet_checkpoint):
    """Bodies that never finish, more than the cap holds: those past it get a 503, and the
    server's memory does not grow with them; once they go, a request is answered again."""
    max_body, total, count = 1 << 20, 4 << 20, 96
    running = Server(alphabet_checkpoint, "--max-body", max_body, "--max-body-total", total, "--timeout", 120)
    almost = (b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % max_body) + b" " * (max_body - 1)  # all but the last byte

    def send(sock) -> None:
        try:
            sock.sendall(almost)
        except OSError:  # refused (503) and closed while it was sending
            pass

    sockets = []
    try:
        assert get(f"{running.url}/healthz")[0] == 200
        before = resident_bytes(running.proc.pid)
        sockets = [socket.create_connection(address(running.url), timeout=60) for _ in range(count)]
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            list(pool.map(send, sockets))
        answered, deadline = {}, time.monotonic() + 60
        while len(answered) < count - total // max_body and time.monotonic() < deadline:
            waiting = [sock for sock in sockets if sock not in answered]
            for sock in select.select(waiting, [], [], 1)[0]:
                answered[sock] = until_closed(sock)
        grown = resident_bytes(running.proc.pid) - before
        refused = [http_answer(answer) for answer in answered.values()]
        assert len(refused) >= count - total // max_body
        for status, headers, body in refused:
            assert (status, headers["retry-after"]) == (503, "1") and "retry" in body["error"]["message"]
        assert grown < 48 << 20, f"{grown / 2 ** 20:.0f} MiB more resident memory"  # not the 96 MiB sent
        for sock in sockets:
            sock.close()
        for _ in range(100):  # what the bodies held is given back as they go
            status, body = post(f"{running.url}/v1/completions", {"prompt": "A", "max_tokens": 3, "temperature": 0})
            if status != 503:
                break
            time.sleep(0.1)
        assert (status, body["choices"][0]["text"]) == (200, "BCD")
    finally:
        for sock in sockets:
            sock.close()
        code, err = running.stop()
        assert code == 0 and "Traceback" not in err, err


def dribble(url: str, first: bytes, then: bytes, within: float = 15) -> tuple[bytes, float]:
    """Send `first`, then `then` every quarter second until the server closes the connection:
    what it answered, and after how many seconds it closed (AssertionError if not `within`)."""
    with socket.create_connection(address(url), timeout=0.25) as sock:
        sock.sendall(first)
        started, answer = time.monotonic(), b""
        while time.monotonic() - started < within:
            try:
                sock.sendall(then)
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            except (BrokenPipeError, ConnectionResetError):
                chunk = b""
            if not chunk:
                return answer, time.monotonic() - started
            answer += chunk
    raise AssertionError(f"the connection is still open after {within} s; the server sent {answer[:200]!r}")


def test_slow_clients_are_cut_off_by_the_time_limit(alphabet_checkpoint):
    """Headers that dribble in and a connection that sends nothing get a 408; the body of a
    request answered without reading it cannot keep the connection either."""
    running = Server(alphabet_checkpoint, "--timeout", 1)
    try:
        headers_start = b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        answer, dribbled = dribble(running.url, headers_start, b"X-Slow: 1\r\n")
        status, headers, body = http_answer(answer)
        assert (status, headers["connection"]) == (408, "close") and "time limit" in body["error"]["message"]
        with socket.create_connection(address(running.url), timeout=15) as sock:
            started = time.monotonic()
            status, headers, body = http_answer(until_closed(sock))
            silent = time.monotonic() - started
        assert status == 408 and body["error"]["type"] == "timeout"
        answer, trickled = dribble(running.url, b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                                b"Content-Length: 100000\r\n\r\n", b"x")
        assert http_answer(answer)[0] == 405
        assert max(dribbled, silent, trickled) < 8  # with --timeout 1: the limit, not a client's patience, closed them
    finally:
        assert running.stop()[0] == 0


def test_connections_are_capped_by_closing_idle_ones_first_then_refusing(alphabet_checkpoint):
    most, idle_count = 32, 200
    running = Server(alphabet_checkpoint, "--max-connections", most, "--max-tokens", 100000)
    idle, streams = [], []
    stream = json.dumps({"prompt": "A", "max_tokens": 100000, "stream": True}).encode()
    request = (b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(stream)) + stream
    try:
        idle = [socket.create_connection(address(running.url), timeout=30) for _ in range(idle_count)]
        assert get(f"{running.url}/healthz")[0] == 200  # a client that sends its request at once gets through
        deadline, closed = time.monotonic() + 30, set()
        while len(closed) < idle_count - most and time.monotonic() < deadline:
            for sock in select.select([s for s in idle if s not in closed], [], [], 1)[0]:
                assert until_closed(sock) == b""
                closed.add(sock)
        assert len(closed) >= idle_count - most
        for sock in idle:
            sock.close()
        for _ in range(most):
            streams.append(socket.create_connection(address(running.url), timeout=30))
            streams[-1].sendall(request)
        for sock in streams:  # each has a request in progress: none is idle
            seen = b""
            while b"data: " not in seen:
                chunk = sock.recv(65536)
                assert chunk, f"a stream's connection was closed: {seen[:300]!r}"
                seen += chunk
        with socket.create_connection(address(running.url), timeout=30) as extra:
            status, headers, body = http_answer(until_closed(extra))
        assert (status, headers["retry-after"], headers["connection"]) == (503, "1", "close")
        assert "connections" in body["error"]["message"] and body["error"]["type"] == "server_error"
        for sock in streams:
            sock.close()
        for _ in range(100):  # refused (503) until the server sees the streams' clients went away
            try:
                status = get(f"{running.url}/healthz")[0]
            except (urllib.error.URLError, ConnectionError):
                status = None
            if status == 200:
                break
            time.sleep(0.1)
        assert status == 200
    finally:
        for sock in idle + streams:
            sock.close()
        code, err = running.stop()
        assert code == 0 and "Traceback" not in err, err


def test_numbers_of_thousands_of_digits_are_a_400(alphabet_checkpoint):
    running = Server(alphabet_checkpoint)
    try:
        for field in ("seed", "max_tokens"):
            status, body = post(f"{running.url}/v1/completions", b'{"prompt": "A", "%s": %s}' % (field.encode(),
                                                                                               b"9" * 5000))
            assert status == 400 and "too many digits" in body["error"]["message"]
        for options in ({"temperature": 10 ** 400}, {"top_p": 10 ** 400},
                        {"charseq": {"repetition_penalty": 10 ** 400}},
                        {"charseq": {"sampler": "temperature", "options": {"temperature": 10 ** 400}}}):
            status, body = post(f"{running.url}/v1/completions", {"prompt": "A", **options})
            assert status == 400 and "too many digits" in body["error"]["message"], body
    finally:
        code, err = running.stop()
        assert code == 0 and "Traceback" not in err, err


def test_the_access_log_prints_a_line_per_request(alphabet_checkpoint):
    running = Server(alphabet_checkpoint, "--access-log")
    assert get(f"{running.url}/healthz")[0] == 200
    assert get(f"{running.url}/v1/nothing")[0] == 404
    running.proc.send_signal(signal.SIGINT)
    out, err = running.proc.communicate(timeout=20)
    assert running.proc.returncode == 0, err
    assert re.search(r'"GET /healthz HTTP/1\.1" 200', out) and re.search(r'"GET /v1/nothing HTTP/1\.1" 404', out), out


@pytest.mark.parametrize("args,words", [
    (["--max-body", 8192, "--max-body-total", 4096], "--max-body-total (4,096) must be at least --max-body (8,192)"),
    (["--max-connections", 10 ** 9], "is more than the open-file limit holds"),
])
def test_body_and_connection_caps_that_cannot_hold_are_one_line(alphabet_checkpoint, args, words):
    result = subprocess.run([sys.executable, "-m", "charseq", "serve", alphabet_checkpoint, *map(str, args)],
                            cwd=AWAY, text=True, capture_output=True, timeout=60)
    assert result.returncode == 2
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1
