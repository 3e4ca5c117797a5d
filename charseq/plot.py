"""Loss curves from a --metrics file. Part of the CLI layer; matplotlib is optional."""

from __future__ import annotations

import json
from pathlib import Path

from charseq.errors import CharseqError, UsageError


def read_metrics(path: Path) -> list[dict]:
    records = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{str(path)!r} is not text: is it a --metrics file?") from None
    except OSError as exc:
        raise UsageError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise UsageError(f"{str(path)!r} line {number} is not JSON: is it a --metrics file?") from None
        if not isinstance(record, dict) or "step" not in record or "loss" not in record:
            raise UsageError(f"{str(path)!r} line {number} has no step and loss: is it a --metrics file?")
        records.append(record)
    if not records:
        raise UsageError(f"{str(path)!r} holds no metrics")
    return records


def plot_metrics(path: Path, out: Path) -> None:
    records = read_metrics(path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CharseqError('plotting needs matplotlib: pip install "charseq[plot]"') from None
    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=120)
    steps = [r["step"] for r in records]
    axes.plot(steps, [r["loss"] for r in records], label="train", color="tab:blue")
    validation = [(r["step"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
    if validation:
        axes.plot(*zip(*validation), label="validation", color="tab:orange")
    axes.set_xlabel("step")
    axes.set_ylabel("loss (nats per character)")
    axes.set_title(f"{path.name}: {records[-1].get('epoch', '?')} epochs, "
                   f"{records[-1].get('wall_time', 0):.0f} s")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    try:
        figure.savefig(out)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot write {str(out)!r}: {exc}") from None
    finally:
        plt.close(figure)
