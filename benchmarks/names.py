"""makemore's task: `charseq train --corpus lines:names.txt` with its suggested settings, timed
as a user runs it (the whole command, start-up and evaluations included), then 20 new names.

    python benchmarks/names.py                       # ../shared/data/names.txt, seeds 0 and 1
    python benchmarks/names.py --names names.txt --seeds 0 1 2

makemore's published figure for its default transformer is 1.92 nats per character on 1,000
held-out names, each name's end counted; charseq holds out and counts the same way. Run it
alone: two CPU-heavy jobs on a 2-core machine slow each other many times over.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_name

DEFAULT_NAMES = Path(__file__).resolve().parents[2] / "shared" / "data" / "names.txt"


def charseq(*args: str, cwd: Path) -> str:
    """Run the installed CLI as a user would; its stdout."""
    command = [sys.executable, "-m", "charseq", *args]
    return subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True).stdout


def run(names: Path, seed: int, extra: list[str], workdir: Path) -> dict:
    """One training run: its wall time, validation loss and epochs, and 20 new names."""
    out = workdir / f"names-{seed}.npz"
    started = time.perf_counter()
    charseq("train", "--corpus", f"lines:{names}", "--seed", str(seed), "--out", str(out), "--force",
            "--no-progress", "--sample-length", "0", *extra, cwd=workdir)
    seconds = time.perf_counter() - started
    import charseq as api

    saved = api.load(out)
    last = saved.training["history"][-1]
    samples = charseq("generate", str(out), "--num-samples", "20", "--new-only", "--seed", str(seed),
                      cwd=workdir).split()
    return {"seed": seed, "seconds": seconds, "val_loss": last["val_loss"], "epochs": last["epoch"],
            "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=Path, default=DEFAULT_NAMES)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("extra", nargs="*", help="more training options, after --")
    args = parser.parse_args()
    if not args.names.is_file():
        sys.exit(f"no names file at {args.names}; pass --names PATH")
    with tempfile.TemporaryDirectory() as directory:
        results = [run(args.names.resolve(), seed, args.extra, Path(directory)) for seed in args.seeds]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"Machine: {cpu_name()}")
    print("| seed | wall time | epochs | validation nats/char |")
    print("| --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['seed']} | {r['seconds']:.1f} s | {r['epochs']} | {r['val_loss']:.4f} |")
    print()
    print("20 new names (seed %d): %s" % (results[0]["seed"], ", ".join(results[0]["samples"])))


if __name__ == "__main__":
    main()
