"""Validation loss on tiny-shakespeare at fixed training-time budgets: a charseq model
(by default the text defaults) against PyTorch's nn.RNN / nn.GRU / nn.LSTM with the same
settings.

    python benchmarks/quality.py [--budgets 60,120,300] [--text PATH] [--threads 2]
    python benchmarks/quality.py --model gru:layers=2 --set hidden_size=256,epochs=12 --no-torch

Both read the same text as B parallel streams of T-character windows with the hidden state
carried, hold out the same last 5 % for validation, and are evaluated the same way (the
whole held-out text, as streams of at least 4096 characters). PyTorch gets the same
optimizer, clipping, learning-rate schedule and dropout (on the states, before the output
layer); it has no input_lr_scale, as its embedding matrix does that job. The clock counts
training only: evaluations pause it.
PyTorch is optional (`pip install torch==2.13.0`). The two run one after the other, never
at the same time: on two cores they would slow each other down.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from charseq import TrainConfig, Trainer, get_model, hookimpl
from charseq.runs.settings import DEFAULT_MODEL
from charseq.training.evaluation import EVAL_STREAM_CHARS
from charseq.hooks.options import parse_options
from charseq.hooks.registry import get_registry
from charseq.models.build import model_choice

sys.path.insert(0, str(Path(__file__).parent))
from machine import cpu_name  # noqa: E402

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"

try:
    import torch
except ImportError:
    torch = None


class _Budgets:
    """Evaluates at each training-time budget and stops after the last."""

    def __init__(self, budgets):
        self.budgets, self.results = list(budgets), {}
        self.training_seconds, self._since = 0.0, None

    @hookimpl
    def on_train_begin(self, trainer):
        self._since = time.perf_counter()

    @hookimpl
    def on_step_end(self, trainer, step, loss):
        now = time.perf_counter()
        self.training_seconds += now - self._since
        while self.budgets and self.training_seconds >= self.budgets[0]:
            self.results[self.budgets.pop(0)] = (trainer.evaluate(trainer.val_ids), step, self.training_seconds)
        if not self.budgets:
            trainer.stop_training = True
        self._since = time.perf_counter()  # evaluation time does not count

    @hookimpl
    def on_evaluation(self, trainer, metrics):
        self._since = time.perf_counter()  # nor does the trainer's own evaluation

    @hookimpl
    def on_train_end(self, trainer, metrics):
        # The defaults' schedule may end before the last budget: report where it ended.
        for budget in self.budgets:
            self.results[budget] = (trainer.evaluate(trainer.val_ids), trainer.step, self.training_seconds)


def run_charseq(path: Path, budgets: list[float], model: str, settings: dict) -> tuple:
    corpus = get_registry().get("corpus", "text").build(str(path))
    config = TrainConfig.for_corpus(corpus, **settings)  # the defaults, unless set: the budgets end the run
    budget = _Budgets(budgets)
    name, options = model_choice(model)
    trainer = Trainer(get_model(name, len(corpus.vocab), config.hidden_size, seed=config.seed, **options), corpus,
                      config, [budget])
    trainer.fit()
    return budget.results, config, trainer.batches.train_ids, trainer.val_ids, len(corpus.vocab)


def run_torch(config: TrainConfig, model: str, train_ids, val_ids, vocab_size: int, budgets: list[float]) -> dict:
    torch.manual_seed(config.seed)
    V, H, B, T = vocab_size, config.hidden_size, config.batch_size, config.seq_len
    name, options = model_choice(model)
    layers = options.get("layers", 1)
    cell = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[name]
    # nn's own dropout between layers, as charseq's
    rnn = cell(H, H, num_layers=layers, dropout=config.dropout if layers > 1 else 0.0, batch_first=True)
    embed, head = torch.nn.Embedding(V, H), torch.nn.Linear(H, V)
    dropout = torch.nn.Dropout(config.dropout)
    params = [*embed.parameters(), *rnn.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    stream = (len(train_ids) - 1) // B
    inputs = torch.from_numpy(np.asarray(train_ids[: B * stream], dtype=np.int64).reshape(B, stream))
    targets = torch.from_numpy(np.asarray(train_ids[1 : B * stream + 1], dtype=np.int64).reshape(B, stream))

    def val_loss():
        streams = max(1, min(B, (len(val_ids) - 1) // max(T, EVAL_STREAM_CHARS)))  # as charseq's evaluate
        length = (len(val_ids) - 1) // streams
        x = torch.from_numpy(np.asarray(val_ids[: streams * length], dtype=np.int64).reshape(streams, length))
        y = torch.from_numpy(np.asarray(val_ids[1 : streams * length + 1], dtype=np.int64).reshape(streams, length))
        total, count, h = 0.0, 0, None
        with torch.no_grad():
            for start in range(0, length - T + 1, T):
                out, h = rnn(embed(x[:, start : start + T]), h)
                loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, V), y[:, start : start + T].reshape(-1))
                total += loss.item() * streams * T
                count += streams * T
        return total / count

    results, pending, seconds, step = {}, list(budgets), 0.0, 0
    while pending:
        h = None
        for start in range(0, (stream // T) * T, T):
            began = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = config.lr_at(step, stream // T)
            optimizer.zero_grad(set_to_none=True)
            out, h = rnn(embed(inputs[:, start : start + T]), h)
            out = dropout(out)
            h = tuple(part.detach() for part in h) if isinstance(h, tuple) else h.detach()
            loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, V), targets[:, start : start + T].reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.clip_norm)
            optimizer.step()
            step += 1
            seconds += time.perf_counter() - began
            while pending and seconds >= pending[0]:
                results[pending.pop(0)] = (val_loss(), step)
            if not pending:
                break
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", default="60,120,300", help="seconds of training, comma-separated")
    parser.add_argument("--text", type=Path, default=SHAKESPEARE)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="a bundled model: rnn, gru:layers=2, ...")
    parser.add_argument("--set", default="", metavar="KEY=VALUE,...", help="training settings other than the defaults")
    parser.add_argument("--no-torch", action="store_true", help="charseq only")
    args = parser.parse_args()
    settings = {k: _number(v) for k, v in parse_options(args.set).items()}
    if not args.text.is_file():
        raise SystemExit(f"{args.text} not found: pass --text PATH")
    budgets = sorted(float(b) for b in args.budgets.split(","))
    with threadpool_limits(args.threads):
        ours, config, train_ids, val_ids, vocab_size = run_charseq(args.text, budgets, args.model, settings)
        theirs = {}
        if torch is not None and not args.no_torch:
            torch.set_num_threads(args.threads)
            theirs = run_torch(config, args.model, train_ids, val_ids, vocab_size, budgets)
    print(f"{time.strftime('%Y-%m-%d')}, {cpu_name()}, {args.text.name}, {args.threads} threads; "
          f"model {args.model}; settings: H={config.hidden_size} "
          f"T={config.seq_len} B={config.batch_size} {config.optimizer} lr={config.lr:g} clip-norm={config.clip_norm:g} "
          f"schedule={config.schedule} over {config.epochs} epochs, dropout={config.dropout:g}, "
          f"input-lr-scale={config.input_lr_scale:g}" + (f" (set: {args.set})" if args.set else " (the text defaults)"))
    print()
    print(f"| training time | charseq val nats/char (bits) | steps | PyTorch {args.model} val nats/char (bits) | steps |")
    print("|---|---|---|---|---|")
    for budget in budgets:
        loss, steps, seconds = ours[budget]
        ended = f" (training ended at {seconds / 60:.1f} min)" if seconds < budget else ""
        row = f"| {budget / 60:g} min | {loss:.3f} ({loss / math.log(2):.3f}){ended} | {steps:,} |"
        if budget in theirs:
            t_loss, t_steps = theirs[budget]
            row += f" {t_loss:.3f} ({t_loss / math.log(2):.3f}) | {t_steps:,} |"
        else:
            row += " | |"
        print(row)


def _number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


if __name__ == "__main__":
    main()
