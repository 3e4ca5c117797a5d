"""Loss curves from a --metrics file. Part of the CLI layer; matplotlib is optional."""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

from charseq.errors import CharseqError, UsageError, counted


def read_metrics(path: Path) -> list[dict]:
    records: list[dict] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{str(path)!r} is not text: is it a --metrics file?") from None
    except OSError as exc:
        raise UsageError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines) and records and not text.endswith("\n"):
                continue  # a last line cut short (a full disk while it was written): the rest stands
            raise UsageError(f"{str(path)!r} line {number} is not JSON: is it a --metrics file?") from None
        if not isinstance(record, dict) or "step" not in record or "loss" not in record:
            raise UsageError(f"{str(path)!r} line {number} has no step and loss: is it a --metrics file?")
        records.append(record)
    if not records:
        raise UsageError(f"{str(path)!r} holds no metrics")
    return records


def plot_metrics(path: Path, out: Path, force: bool = False) -> None:
    """Draw the curves into `out`. A file there is replaced when it is a picture drawn here
    (its metadata says so) or `force` allows it, and never when it is the metrics file, a
    checkpoint or metrics log, or anything that is not a regular file."""
    check_picture(out, "-o", force)  # (the metrics file is charseq's data: never replaced)
    records = read_metrics(path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CharseqError('plotting needs matplotlib: pip install "charseq[plot]"') from None
    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=120)
    steps = [_plottable(r["step"]) for r in records]
    axes.plot(steps, [_plottable(r["loss"]) for r in records], label="train", color="tab:blue")
    validation = [(_plottable(r["step"]), _plottable(r["val_loss"])) for r in records if r.get("val_loss") is not None]
    if validation:
        axes.plot(*zip(*validation), label="validation", color="tab:orange")
    axes.set_xlabel("step")
    axes.set_ylabel("loss (nats per character)")
    epoch = records[-1].get("epoch")
    axes.set_title(f"{path.name}: {counted(epoch, 'epoch') if isinstance(epoch, int) else '? epochs'}, "
                   f"{_plottable(records[-1].get('wall_time', 0)):.0f} s")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            save_picture(figure, out)
    except (OSError, ValueError, OverflowError) as exc:
        raise UsageError(f"cannot draw {str(path)!r} into {str(out)!r}: {str(exc).splitlines()[0]}") from None
    finally:
        plt.close(figure)


def _plottable(value) -> float:
    """A number a plot can place; anything else (text, null, huge) is left out as NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    value = float(value)
    return value if math.isfinite(value) and abs(value) < 1e100 else math.nan


def check_picture(out: Path, what: str, force: bool = False) -> None:
    """Refuse, in one line, a picture's path that the write policy does not allow: a file
    there is replaced when charseq drew it, another only with `force`, and charseq's data
    never (charseq.outputs.check_new_file)."""
    from charseq.outputs import check_new_file

    check_new_file(str(out), what, force=force, own=drawn_here)


def save_picture(figure, out: Path) -> None:
    """Save a matplotlib figure, marked in its metadata as charseq's (so a later drawing may
    replace it)."""
    figure.savefig(out, metadata=_marked(out))


_MARK = "charseq plot"
_MARK_KEY = {".png": "Software", ".pdf": "Creator", ".svg": "Creator", ".ps": "Creator", ".eps": "Creator"}


def _marked(out: Path) -> dict[str, str] | None:
    """The metadata that says a picture was drawn here, in the key its format keeps."""
    key = _MARK_KEY.get(out.suffix.lower())
    return {key: _MARK} if key else None


def drawn_here(path: Path) -> bool:
    """Whether `path` is a picture this command drew (what a file says of itself only ever
    makes that file replaceable): the mark is near the start of a PNG or an SVG, and in a
    PDF's trailer, near the end."""
    try:
        with path.open("rb") as picture:
            head = picture.read(1 << 16)
            picture.seek(max(0, os.fstat(picture.fileno()).st_size - (1 << 16)))
            tail = picture.read(1 << 16)
    except OSError:
        return False
    return _MARK.encode() in head or _MARK.encode() in tail
