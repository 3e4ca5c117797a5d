"""Peak memory of training on a 100 MB text file, as a multiple of the file's size.

    python benchmarks/memory.py [--megabytes 100]

Each case runs in a new process (load the corpus with the `text` plugin, train 20 steps
with the text defaults), twice: the first run encodes the text into the cache, the second
maps it; with --copied a third maps it after its ids were given new times (as a copy of
the cache would), so that they are checked against the entry's digest once. Reported: the load time, the peak resident memory (interpreter and numpy included;
pages of the memory-mapped ids count while resident, though the kernel can drop them), and
the anonymous memory at the end, which the process cannot give back. The ASCII file is tiny-shakespeare repeated (../shared/data, or random
letters when it is absent); the other mixes in non-ASCII characters.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"

CHILD = """
import resource, sys, time
from charseq import TrainConfig, Trainer, VanillaRNN, hookimpl
from charseq.hooks.registry import get_registry

class StopAfter:
    @hookimpl
    def on_step_end(self, trainer, step, loss):
        trainer.stop_training = step >= 20

started = time.perf_counter()
corpus = get_registry().get("corpus", "text").build(sys.argv[1])
loaded = time.perf_counter() - started
config = TrainConfig.for_corpus(corpus, val_fraction=0.0005)  # evaluating 5 % of 2 GB would take minutes
Trainer(VanillaRNN(len(corpus.vocab), config.hidden_size), corpus, config, [StopAfter()]).fit()
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
anon = int(status["RssAnon"].split()[0]) * 1024
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, anon, len(corpus), len(corpus.vocab), loaded)
"""


def make_file(path: Path, megabytes: int, non_ascii: bool) -> None:
    seed = SHAKESPEARE.read_bytes() if SHAKESPEARE.is_file() else b"the quick brown fox jumps over the lazy dog\n" * 1000
    if non_ascii:
        seed = seed.replace(b"e", "é".encode()).replace(b"!", "✓".encode())
    target = megabytes * 1_000_000
    with open(path, "wb") as f:
        while f.tell() < target:
            f.write(seed[: target - f.tell()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--ascii-only", action="store_true", help="skip the slower non-ASCII file")
    parser.add_argument("--copied", action="store_true", help="a third run, after the cache's ids get new times")
    args = parser.parse_args()
    print("| text | file | characters | symbols | run | load | peak RSS (x file) | anonymous RSS at the end |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        env = dict(os.environ, CHARSEQ_CACHE=str(Path(work) / "cache"))
        for non_ascii in (False,) if args.ascii_only else (False, True):
            path = Path(work) / ("utf8.txt" if non_ascii else "ascii.txt")
            make_file(path, args.megabytes, non_ascii)
            size = path.stat().st_size
            runs = ["first (encodes)", "second (cached)"] + (["after a copy (checks the digest)"] if args.copied else [])
            for run in runs:
                if run.startswith("after"):  # new times on the ids, as a copy gives them: hashed once, then known
                    for ids in (Path(work) / "cache").glob("*.ids"):
                        os.utime(ids)
                # In the temp directory: `python -c` puts its working directory first on sys.path.
                out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True,
                                     check=True, cwd=work, env=env)
                peak, anon, chars, symbols, loaded = out.stdout.split()
                kind = "with non-ASCII" if non_ascii else "ASCII"
                print(f"| {kind} | {size / 1e6:.0f} MB | {int(chars):,} | {symbols} | {run} | {float(loaded):.2f} s | "
                      f"{int(peak) / 1e6:.0f} MB ({int(peak) / size:.2f}x) | {int(anon) / 1e6:.0f} MB |", flush=True)
            path.unlink()


if __name__ == "__main__":
    main()
