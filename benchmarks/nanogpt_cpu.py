"""nanoGPT's CPU configuration on tiny-shakespeare, in PyTorch, for a time budget: the
transformer quality table's reference (see docs/explanation/defaults.md).

    python benchmarks/nanogpt_cpu.py ../shared/data/tinyshakespeare.txt --minutes 5

nanoGPT's README runs `train.py config/train_shakespeare_char.py --device=cpu --block_size=64
--batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000
--dropout=0.0`: AdamW at 1e-3 (betas 0.9, 0.99; weight decay 0.1 on the matrices), 100
warmup steps, cosine decay to 1e-4, gradients clipped at norm 1, random windows. Here the
same model (benchmarks/reference_gpt.py, nanoGPT's initialisation) and recipe, with the
decay planned over as many steps as the budget holds (measured over the first 50), trained
on the text charseq trains on (all but its last 5 %) and scored on the same held-out 5 %
the same way as charseq scores a transformer: windows of 64 characters, each from scratch.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from machine import cpu_name  # noqa: E402
from reference_gpt import ReferenceGPT  # noqa: E402

LAYERS, HEADS, WIDTH, CONTEXT, BATCH = 4, 4, 128, 64, 12
LR, MIN_LR, WARMUP, WEIGHT_DECAY, CLIP = 1e-3, 1e-4, 100, 0.1, 1.0
HELD_OUT = 0.05  # charseq's val_fraction, its last part of the text (at most 100,000 characters)
MAX_HELD_OUT = 100_000


def initialise(model: ReferenceGPT) -> None:
    """nanoGPT's: normal(0, 0.02) weights, the residual projections 0.02 / sqrt(2L), zero biases."""
    for name, parameter in model.named_parameters():
        if parameter.dim() == 2:
            std = 0.02 / math.sqrt(2 * LAYERS) if name.endswith(("attn_proj.weight", "mlp_proj.weight")) else 0.02
            torch.nn.init.normal_(parameter, 0.0, std)
        elif name.endswith("bias"):
            torch.nn.init.zeros_(parameter)


@torch.no_grad()
def held_out_loss(model: ReferenceGPT, ids: torch.Tensor) -> float:
    """Mean loss per character over windows of CONTEXT, each read from scratch."""
    n = (len(ids) - 1) // CONTEXT * CONTEXT
    x, y = ids[:n].view(-1, CONTEXT), ids[1 : n + 1].view(-1, CONTEXT)
    losses = [torch.nn.functional.cross_entropy(model(xb).reshape(-1, model.head.out_features), yb.reshape(-1),
                                                reduction="sum") for xb, yb in zip(x.split(256), y.split(256))]
    return float(sum(losses)) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("text", type=Path)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    text = args.text.read_text(encoding="utf-8")
    symbols = sorted(set(text))
    ids = torch.tensor([symbols.index(c) for c in text], dtype=torch.long)
    held = min(int(len(ids) * HELD_OUT), MAX_HELD_OUT)
    train, val = ids[: len(ids) - held], ids[len(ids) - held :]
    model = ReferenceGPT(len(symbols), WIDTH, LAYERS, HEADS, CONTEXT).float()
    initialise(model)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": rest, "weight_decay": 0.0}],
                                  lr=LR, betas=(0.9, 0.99))
    rng = np.random.default_rng(0)
    budget, planned, step = args.minutes * 60, None, 0
    started = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - started
        if planned is None and step == 50:
            planned = int(budget / (elapsed / step))  # the pace of the first 50 steps, over the budget
        if (planned is not None and step >= planned) or elapsed >= budget:
            break
        total = planned or 10**9
        if step < WARMUP:
            lr = LR * (step + 1) / (WARMUP + 1)
        else:
            lr = MIN_LR + 0.5 * (1 + math.cos(math.pi * min(1.0, (step - WARMUP) / max(1, total - WARMUP)))) * (LR - MIN_LR)
        for group in optimizer.param_groups:
            group["lr"] = lr
        starts = torch.tensor(rng.integers(0, len(train) - CONTEXT - 1, BATCH))
        x = torch.stack([train[s : s + CONTEXT] for s in starts])
        y = torch.stack([train[s + 1 : s + CONTEXT + 1] for s in starts])
        loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, len(symbols)), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        step += 1
    trained = time.perf_counter() - started
    print(f"{cpu_name()}, {args.threads} threads, torch {torch.__version__}: nanoGPT CPU configuration, "
          f"{step:,} steps in {trained:.0f} s ({step * BATCH * CONTEXT / trained:,.0f} chars/s), "
          f"held-out loss {held_out_loss(model, val):.3f} nats/char")


if __name__ == "__main__":
    main()
