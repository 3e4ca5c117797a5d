"""`charseq serve` under load, beside `charseq generate`: characters per second for one
sample, for N samples in one batch, and for N clients streaming at once from a server.

    python benchmarks/serve.py                      # a 2x192 GRU over 65 symbols, 32 clients
    python benchmarks/serve.py --clients 8 --length 200 --model rnn --hidden-size 64

The model has random weights of the given shape (a step costs what a trained one's does).
The server is a process of its own on a loopback port; the clients are threads of this
process, each with the official `openai` client, streaming at temperature 1 without a seed
(a seeded request runs on a stepper of its own, outside the shared batch). Run it alone:
on a 2-core machine the clients and the server already share the cores.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import numpy as np
from machine import cpu_name

SYMBOLS = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # tiny-shakespeare's 65


def make_checkpoint(path: Path, spec: str, hidden: int) -> None:
    import charseq
    from charseq.models.build import build_model

    vocab = charseq.Vocabulary(SYMBOLS)
    charseq.save(path, charseq.Checkpoint(build_model(spec, {}, len(vocab), hidden, seed=0), vocab))


def generate_rate(path: Path, samples: int, length: int, threads: int) -> float:
    """Characters per second of `charseq generate` (the whole command, start-up excluded)."""
    import charseq
    from charseq.decoding.generate import generate
    from charseq.hooks.registry import get_registry
    from threadpoolctl import threadpool_limits

    saved = charseq.load(path)
    sampler = get_registry().get("sampler", "temperature").build()
    with threadpool_limits(threads, user_api="blas"):
        started = time.perf_counter()
        generate(saved.model, saved.vocab, "T", length, sampler, 0, num_samples=samples)
        return samples * length / (time.perf_counter() - started)


def raw_stream(url: str, body: dict) -> tuple[int, float]:
    """A streaming request over plain http.client, its server-sent events read line by line:
    a client that costs little, to see the server's own rate. (Characters, first one's time.)"""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    started = time.perf_counter()
    connection.request("POST", parts.path + "/completions", json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    made, first = 0, None
    for line in response:
        if line.startswith(b"data: {"):
            made += sum(len(choice["text"]) for choice in json.loads(line[6:])["choices"])
            if first is None and made:
                first = time.perf_counter() - started
    connection.close()
    return made, first or 0.0


def serve_rate(path: Path, clients: int, length: int, threads: int, client: str = "openai") -> dict:
    """Start a server, run `clients` streaming requests at once; rates and latencies."""
    import openai

    proc = subprocess.Popen([sys.executable, "-m", "charseq", "serve", str(path), "--port", "0", "--threads",
                             str(threads), "--max-tokens", str(length)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=path.parent)  # (not a checkout's charseq/)
    try:
        select.select([proc.stdout], [], [], 60)
        url = "http://" + re.search(r"http://(\S+?)/ ", proc.stdout.readline()).group(1) + "/v1"

        def one(k: int) -> tuple[int, float, float]:
            started = time.perf_counter()
            if client == "raw":
                made, first = raw_stream(url, {"prompt": "T", "max_tokens": length, "stream": True})
                return made, first, time.perf_counter() - started
            api = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)
            first, made = None, 0
            for chunk in api.completions.create(model=path.stem, prompt="T", max_tokens=length, stream=True):
                for choice in chunk.choices:
                    made += len(choice.text)
                    if first is None and choice.text:
                        first = time.perf_counter() - started
            return made, first or 0.0, time.perf_counter() - started

        one(0)  # warm: the first request pays for imports and allocation
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            done = list(pool.map(one, range(clients)))
        seconds = time.perf_counter() - started
        made = sum(d[0] for d in done)
        if made != clients * length:
            raise SystemExit(f"only {made} of {clients * length} characters arrived")
        return {"chars_per_s": made / seconds, "seconds": seconds, "first_char_ms": 1000 * float(np.median(
            [d[1] for d in done])), "per_client_chars_per_s": float(np.median([length / d[2] for d in done]))}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gru:layers=2")
    parser.add_argument("--hidden-size", type=int, default=192)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads, for both")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs of each")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.npz"
        make_checkpoint(path, args.model, args.hidden_size)
        # This machine's speed varies from run to run: each figure is the best of --repeat.
        one = max(generate_rate(path, 1, args.length, args.threads) for _ in range(args.repeat))
        batch = max(generate_rate(path, args.clients, args.length, args.threads) for _ in range(args.repeat))
        single, served, raw = (max((serve_rate(path, clients, args.length, args.threads, client)
                                    for _ in range(args.repeat)), key=lambda r: r["chars_per_s"])
                               for clients, client in ((1, "openai"), (args.clients, "openai"), (args.clients, "raw")))
    result = {"machine": cpu_name(), "cores": os.cpu_count(), "model": f"{args.model} H={args.hidden_size}",
              "clients": args.clients, "length": args.length, "generate_1": one, "generate_batch": batch,
              "serve_1": single, "serve_clients": served,
              "serve_clients_raw": raw}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['machine']}, {result['cores']} cores; {result['model']}, 65 symbols, {args.length} characters "
          f"per sample, {args.threads} BLAS thread(s), best of {args.repeat}")
    print(f"{'':44} {'chars/s':>10}")
    print(f"{'charseq generate, 1 sample':44} {one:>10,.0f}")
    print(f"{f'charseq generate --num-samples {args.clients}':44} {batch:>10,.0f}")
    print(f"{'charseq serve, 1 streaming client':44} {single['chars_per_s']:>10,.0f}")
    print(f"{f'charseq serve, {args.clients} streaming clients at once':44} {served['chars_per_s']:>10,.0f}   "
          f"(each {served['per_client_chars_per_s']:,.0f} chars/s, first character after "
          f"{served['first_char_ms']:.0f} ms)")
    print(f"{'  the same, clients reading with http.client':44} {raw['chars_per_s']:>10,.0f}   "
          f"(each {raw['per_client_chars_per_s']:,.0f} chars/s, first character after {raw['first_char_ms']:.0f} ms)")


if __name__ == "__main__":
    main()
