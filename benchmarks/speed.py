"""Training and generation speed of charseq, side by side with PyTorch and the seed loop.

    python benchmarks/speed.py                # 1 and 2 BLAS threads, every model and config
    python benchmarks/speed.py --threads 2 --models gru,lstm --quick
    python benchmarks/speed.py --shapes 128x32x64,256x64x64 --no-generate --no-alphabet

Figures are best-of-rounds, with charseq and PyTorch measured alternately in each round so
that machine noise hits both alike; compare ratios, not absolute numbers. PyTorch's side
is nn.Embedding + nn.RNN / nn.GRU / nn.LSTM + nn.Linear with the same optimizer, and for the
transformer the parity test's reference (reference_gpt.py). PyTorch is optional
(`pip install torch==2.13.0`); without it those columns are blank.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from charseq import Corpus, TrainConfig, Trainer, Vocabulary, get_model
from charseq.decoding.generate import generate

sys.path.insert(0, str(Path(__file__).parent))
from machine import cpu_name  # noqa: E402
from seed_loop import train_seed_style  # noqa: E402

try:
    import torch

    from reference_gpt import ReferenceGPT, generate_recomputing
except ImportError:  # PyTorch is an optional reference
    torch = None

V = 65  # tiny-shakespeare's vocabulary size
TRAIN_CONFIGS = [  # (H, B, T): overhead-bound first, then compute-bound
    (64, 1, 6),
    (128, 1, 64),
    (128, 32, 64),
    (256, 64, 64),
    (512, 64, 128),
]
COMPUTE_BOUND = {(256, 64, 64), (512, 64, 128)}
GENERATE_HIDDEN = [256, 512]
# The transformer: 4 layers of 4 heads, context T, at widths 128 and 256 (nanoGPT's CPU
# configuration is 4x4, width 128, context 64).
TRANSFORMER = "transformer:layers=4,heads=4,context={T}"
TRANSFORMER_CONFIGS = [(128, 32, 64), (128, 32, 128), (256, 32, 64), (256, 32, 128)]
TRANSFORMER_GENERATE = [(128, 64), (256, 128)]  # (width, context)
GATES = {"rnn": 1, "gru": 3, "lstm": 4}
CHARS_PER_CALL = 20_000  # each timed call trains on at least this many characters


@dataclass
class Row:
    what: str
    threads: int
    charseq: float
    torch: float | None = None
    peak: float | None = None  # % of float32 matmul rate at the step's (B,H)x(H,G*H) shape

    def cells(self) -> list[str]:
        ratio = f"{self.charseq / self.torch:.2f}x" if self.torch else ""
        torch_cell = f"{self.torch:,.0f}" if self.torch else ""
        peak = f"{self.peak:.0f} %" if self.peak is not None else ""
        return [self.what, str(self.threads), f"{self.charseq:,.0f}", torch_cell, ratio, peak]


def best_rate(fn, units: float, min_seconds: float) -> float:
    """Units per second of fn's fastest run in a window of at least min_seconds."""
    fn()  # warm up: buffers, caches, BLAS threads
    best = float("inf")
    deadline = time.perf_counter() + min_seconds
    runs = 0
    while runs < 3 or time.perf_counter() < deadline:
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
        runs += 1
    return units / best


def charseq_trainer(kind: str, H: int, B: int, T: int) -> tuple[Trainer, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    symbols = [chr(0x21 + i) for i in range(V)]
    text = "".join(rng.choice(symbols, size=B * T + 1))
    corpus = Corpus.from_text("bench", "".join(symbols) + text)
    # The same work as the PyTorch side: SGD with value clipping, nothing else.
    config = TrainConfig(hidden_size=H, seq_len=T, batch_size=B, epochs=1, optimizer="sgd", lr=0.01, clip=5.0,
                         clip_norm=0.0, dropout=0.0, input_lr_scale=1.0, val_fraction=0.0)
    spec = TRANSFORMER.format(T=T) if kind == "transformer" else kind
    trainer = Trainer(get_model(spec, V, H), corpus, config)
    x = rng.integers(0, V, (B, T)).astype(np.uint8)
    y = rng.integers(0, V, (B, T)).astype(np.uint8)
    return trainer, x, y


def torch_cell(kind: str, H: int):
    return {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[kind](H, H, batch_first=True)


def torch_step(kind: str, H: int, B: int, T: int):
    x = torch.randint(0, V, (B, T))
    y = torch.randint(0, V, (B, T))
    if kind == "transformer":  # the parity test's reference, in float32
        gpt = ReferenceGPT(V, H, 4, 4, T).float()
        params = list(gpt.parameters())

        def logits():
            return gpt(x)
    else:
        embed, rnn, head = torch.nn.Embedding(V, H), torch_cell(kind, H), torch.nn.Linear(H, V)
        params = [*embed.parameters(), *rnn.parameters(), *head.parameters()]

        def logits():
            return head(rnn(embed(x))[0])
    optimizer = torch.optim.SGD(params, lr=0.01)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(logits().reshape(-1, V), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_value_(params, 5.0)
        optimizer.step()

    return step


def matmul_rate(B: int, H: int, G: int, min_seconds: float) -> float:
    """The machine's float32 FLOP/s for one (B,H)x(H,G*H) matmul, the recurrent step's shape."""
    a = np.random.default_rng(0).standard_normal((B, H)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((H, G * H)).astype(np.float32)
    out = np.empty((B, G * H), dtype=np.float32)
    reps = max(1, int(2e8 // (2 * B * H * G * H)))

    def run():
        for _ in range(reps):
            np.matmul(a, w, out=out)

    return best_rate(run, reps * 2 * B * H * G * H, min_seconds)


def bench_training(kind: str, threads: int, min_seconds: float, rounds: int,
                   shapes: list[tuple[int, int, int]] | None = None) -> list[Row]:
    rows = []
    default = TRANSFORMER_CONFIGS if kind == "transformer" else TRAIN_CONFIGS
    for H, B, T in shapes or default:
        trainer, x, y = charseq_trainer(kind, H, B, T)
        ours, theirs = 0.0, 0.0
        step = torch_step(kind, H, B, T) if torch else None
        repeat = max(1, CHARS_PER_CALL // (B * T))

        def run_ours():
            for _ in range(repeat):
                trainer.train_step(x, y)

        def run_theirs():
            for _ in range(repeat):
                step()

        for _ in range(rounds):  # alternate, so noise hits both alike
            ours = max(ours, best_rate(run_ours, repeat * B * T, min_seconds))
            if step:
                theirs = max(theirs, best_rate(run_theirs, repeat * B * T, min_seconds))
        peak = None
        if kind == "transformer":
            # per character and layer, forward: q k v, the output projection and the MLP
            # (24 H^2), and attention's two products over all T positions (4 T H); backward twice that
            flops_per_char = 3 * (4 * (24 * H * H + 4 * T * H) + 2 * H * V)
            peak = 100 * ours * flops_per_char / matmul_rate(B * T, H, 4, min_seconds)
        elif (H, B, T) in COMPUTE_BOUND:
            # what a step must compute per character: the recurrent matmul forward, and its two
            # backward (the state's and the weights' gradients); the output layer likewise.
            # Layer 0's input term is a gather, no FLOPs.
            G = GATES[kind]
            flops_per_char = 6 * G * H * H + 6 * H * V
            peak = 100 * ours * flops_per_char / matmul_rate(B, H, G, min_seconds)
        rows.append(Row(f"{kind} train H={H} B={B} T={T}", threads, ours, theirs or None, peak))
        print("  ", *rows[-1].cells(), flush=True)
    return rows


def bench_generation(kind: str, threads: int, min_seconds: float, rounds: int, length: int = 2000) -> list[Row]:
    """At batch 1 against PyTorch's own: its cell step by step, or for the transformer a
    nanoGPT-style loop that reads the whole context again at every character."""
    from charseq.plugins.samplers import Temperature

    rows = []
    vocab = Vocabulary([chr(0x21 + i) for i in range(V)])
    sizes = TRANSFORMER_GENERATE if kind == "transformer" else [(H, None) for H in GENERATE_HIDDEN]
    for H, context in sizes:
        model = get_model(TRANSFORMER.format(T=context) if context else kind, V, H)
        sampler = Temperature(1.0)

        def run_ours():
            generate(model, vocab, "!", length, sampler, rng=0)

        if torch and context:
            gpt = ReferenceGPT(V, H, 4, 4, context).float()

            def run_theirs():
                generate_recomputing(gpt, length, context)
        else:
            run_theirs = torch_generate(kind, H, length) if torch else None
        ours, theirs = 0.0, 0.0
        for _ in range(rounds):
            ours = max(ours, best_rate(run_ours, length, min_seconds))
            if run_theirs:
                theirs = max(theirs, best_rate(run_theirs, length, min_seconds))
        where = f"H={H} C={context}" if context else f"H={H}"
        rows.append(Row(f"{kind} generate {where} B=1, temperature 1", threads, ours, theirs or None))
        print("  ", *rows[-1].cells(), flush=True)
    return rows


def torch_generate(kind: str, H: int, length: int):
    embed, rnn, head = torch.nn.Embedding(V, H), torch_cell(kind, H), torch.nn.Linear(H, V)

    @torch.no_grad()
    def run():
        x = torch.zeros((1, 1), dtype=torch.long)
        h = None
        for _ in range(length):
            out, h = rnn(embed(x), h)
            probs = torch.softmax(head(out[:, -1]), dim=-1)
            x = torch.multinomial(probs, 1)

    return run


def bench_alphabet_end_to_end(threads: int) -> list[str]:
    """`charseq train --corpus alphabet` in a new process against the seed loop, same task."""
    seed_seconds, seed_loss = train_seed_style()
    charseq_cmd = Path(sys.executable).with_name("charseq")
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory() as work:
        started = time.perf_counter()
        subprocess.run([str(charseq_cmd), "train", "--corpus", "alphabet", "-q", "--sample-length", "0",
                        "--out", "m.npz", "--threads", str(threads)], cwd=work, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        cli_seconds = time.perf_counter() - started
        import charseq

        cli_loss = charseq.load(Path(work) / "m.npz").progress["loss"]
    seq_len = 6
    return [
        f"seed-style loop (one window, (H,1) columns): {seed_seconds:.2f} s, final loss {seed_loss:.5f} per window",
        f"charseq train --corpus alphabet (new process, start-up included): {cli_seconds:.2f} s, "
        f"final loss {cli_loss * seq_len:.5f} per window",
        f"ratio: {cli_seconds / seed_seconds:.3f} of the seed loop's time ({seed_seconds / cli_seconds:.1f}x faster)",
    ]


def markdown_table(rows: list[Row]) -> str:
    header = ["config", "threads", "charseq chars/s", "PyTorch chars/s", "ratio", "% of matmul peak"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated BLAS thread counts")
    parser.add_argument("--models", default="rnn,gru,lstm,transformer", help="comma-separated bundled models")
    parser.add_argument("--no-alphabet", action="store_true", help="skip the end-to-end alphabet task")
    parser.add_argument("--quick", action="store_true", help="shorter timing windows (noisier)")
    parser.add_argument("--shapes", help="comma-separated training shapes HxBxT (default: each model's own)")
    parser.add_argument("--no-generate", action="store_true", help="skip the generation rows")
    args = parser.parse_args()
    shapes = None  # each model's own
    if args.shapes:
        shapes = [tuple(int(n) for n in shape.split("x")) for shape in args.shapes.split(",")]  # type: ignore[misc]
    min_seconds, rounds = (0.2, 2) if args.quick else (0.5, 3)
    print(f"{time.strftime('%Y-%m-%d')}, {cpu_name()}, {os.cpu_count()} cores, numpy {np.__version__}, "
          f"torch {torch.__version__ if torch else 'not installed'}", flush=True)
    rows, notes = [], []
    for threads in [int(t) for t in args.threads.split(",")]:
        print(f"-- {threads} thread(s)", flush=True)
        if torch:
            torch.set_num_threads(threads)
        with threadpool_limits(threads):
            for kind in args.models.split(","):
                rows += bench_training(kind, threads, min_seconds, rounds, shapes)
                if not args.no_generate:
                    rows += bench_generation(kind, threads, min_seconds, rounds)
        if not args.no_alphabet:
            notes += [f"{threads} thread(s): {line}" for line in bench_alphabet_end_to_end(threads)]
    print()
    print(markdown_table(rows))
    print()
    print("\n".join(notes))


if __name__ == "__main__":
    main()
