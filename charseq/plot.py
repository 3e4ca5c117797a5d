"""Loss curves from a --metrics file. Part of the CLI layer; matplotlib is optional."""

from __future__ import annotations

import json
import math
import os
import re
import stat
import warnings
from pathlib import Path

from charseq.errors import CharseqError, UsageError, counted


_LONGEST_LINE = 1 << 20  # a metrics line is a few hundred bytes


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics log, read line by line (never a device or a pipe, never a
    line longer than any charseq writes)."""
    records: list[dict] = []
    with _open_metrics(path) as lines:
        number = 0
        while True:
            try:
                line = lines.readline(_LONGEST_LINE)
            except UnicodeDecodeError:
                raise UsageError(f"{str(path)!r} is not text: is it a --metrics file?") from None
            if not line:
                break
            number += 1
            if len(line) >= _LONGEST_LINE and not line.endswith("\n"):
                raise UsageError(f"{str(path)!r} line {number} is longer than any metrics line: is it a --metrics "
                                 "file?")
            if not line.strip():
                continue
            record = _record(path, number, line, lines)
            if record is not None:
                records.append(record)
    if not records:
        raise UsageError(f"{str(path)!r} holds no metrics")
    return records


def _record(path: Path, number: int, line: str, lines) -> dict | None:
    """One line's record; None for a last line cut short (a full disk while it was
    written: the lines before it stand)."""
    try:
        record = json.loads(line)
    except ValueError:
        if not line.endswith("\n") and number > 1 and not lines.read(1):
            return None
        raise UsageError(f"{str(path)!r} line {number} is not JSON: is it a --metrics file?") from None
    if not isinstance(record, dict) or "step" not in record or "loss" not in record:
        raise UsageError(f"{str(path)!r} line {number} has no step and loss: is it a --metrics file?")
    return record


def _open_metrics(path: Path):
    """The file as text, opened without waiting on a pipe and refused unless it is a
    regular file."""
    from charseq.files import kind_of

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise UsageError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UsageError(f"{str(path)!r} is {kind_of(path) or 'not a regular file'}, not a --metrics file")
    return open(fd, encoding="utf-8")


def plot_metrics(path: Path, out: str | os.PathLike, force: bool = False) -> None:
    """Draw the curves into `out`. A file there is replaced when it is a picture drawn here
    (its metadata says so) or `force` allows it, and never when it is the metrics file, a
    checkpoint or metrics log, or anything that is not a regular file."""
    check_picture(out, "-o", force)  # (the metrics file is charseq's data: never replaced)
    out = Path(out)
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


def check_picture(out: str | os.PathLike, what: str, force: bool = False, force_option: str | None = "--force") -> None:
    """Refuse, in one line, a picture's path that the write policy does not allow: a file
    there is replaced when charseq drew it, another only with `force`, and charseq's data
    never (charseq.outputs.check_new_file)."""
    from charseq.outputs import check_new_file

    check_new_file(os.fspath(out), what, force=force, own=drawn_here, force_option=force_option)


def save_picture(figure, out: Path) -> None:
    """Save a matplotlib figure whole or not at all, marked in its metadata as drawn here
    (so that a later drawing may replace it)."""
    import io

    from charseq.files import atomic_write

    picture = io.BytesIO()
    kind = out.suffix.lower().lstrip(".") or "png"
    figure.savefig(picture, format=kind, metadata=_marked(kind))
    atomic_write(out, lambda f: f.write(picture.getvalue()))


_MARK = "charseq plot"
_MARK_KEY = {"png": "Software", "pdf": "Creator", "svg": "Creator", "ps": "Creator", "eps": "Creator"}
# Where each format keeps the mark, exactly as matplotlib writes it: a file that merely
# holds the words is not a picture drawn here.
_MARKED = {
    "pdf": re.compile(rb"/Creator \(charseq plot\)"),
    "svg": re.compile(rb"<dc:creator>\s*<cc:Agent>\s*<dc:title>charseq plot</dc:title>"),
    "ps": re.compile(rb"\A%!PS-Adobe-[^\n]*\n(?:%%[^\n]*\n)*?%%Creator: charseq plot\n"),
}


def _marked(kind: str) -> dict[str, str] | None:
    """The metadata that says a picture was drawn here, in the key its format keeps."""
    key = _MARK_KEY.get(kind)
    return {key: _MARK} if key else None


def drawn_here(path: Path) -> bool:
    """Whether `path` is a picture this command drew: a regular file (not a link) whose
    format's own metadata holds the mark (what a file says of itself only ever makes that
    file replaceable)."""
    kind = path.suffix.lower().lstrip(".")
    try:
        if path.is_symlink() or not path.is_file():
            return False
        with path.open("rb") as picture:
            head = picture.read(1 << 16)
            picture.seek(max(0, os.fstat(picture.fileno()).st_size - (1 << 16)))
            tail = picture.read(1 << 16)
    except OSError:
        return False
    if kind == "png":
        return _png_text(head).get(_MARK_KEY["png"]) == _MARK
    if kind == "pdf":
        return head.startswith(b"%PDF-") and bool(_MARKED["pdf"].search(tail))
    if kind == "svg":
        return b"<svg" in head and bool(_MARKED["svg"].search(head))
    if kind in ("ps", "eps"):
        return bool(_MARKED["ps"].match(head))
    return False


def _png_text(data: bytes) -> dict[str, str]:
    """The tEXt entries of a PNG's chunks before its image data (where matplotlib puts them)."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return {}
    found, at = {}, 8
    while at + 8 <= len(data):
        length, kind = int.from_bytes(data[at : at + 4], "big"), data[at + 4 : at + 8]
        if kind == b"IDAT":
            break
        if kind == b"tEXt":
            key, _, value = data[at + 8 : at + 8 + length].partition(b"\0")
            found[key.decode("latin-1")] = value.decode("latin-1")
        at += 12 + length
    return found
