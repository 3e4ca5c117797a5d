"""Loss curves from a --metrics file. Part of the CLI layer; matplotlib is optional."""

from __future__ import annotations

import json
import math
import os
import re
import stat
import warnings
from pathlib import Path

import click

from charseq.cli.output import say
from charseq.errors import CharseqError, UsageError, counted
from charseq.installation import install_command


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
    except (ValueError, RecursionError):  # (nested past Python's recursion limit: no metrics line is)
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
    existed = check_picture(out, "-o", force)  # (the metrics file is charseq's data: never replaced)
    out = Path(out)
    records = read_metrics(path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CharseqError(f"plotting needs matplotlib: {install_command('plot')}") from None
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
            save_picture(figure, out, follow_links=existed)
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


def check_picture(out: str | os.PathLike, what: str, force: bool = False, can_force: bool = True) -> bool:
    """Refuse, in one line, a picture's path that the write policy does not allow: a file
    there is replaced when charseq drew it, another only with `force`, and charseq's data
    never (charseq.training.outputs.check_new_file). Whether something was there: save_picture
    writes through a link only when it was checked."""
    from charseq.training.outputs import check_new_file

    check_new_file(os.fspath(out), what, force=force, own=drawn_here, can_force=can_force)
    return os.path.lexists(out)


def save_picture(figure, out: Path, follow_links: bool = False) -> None:
    """Save a matplotlib figure whole or not at all, marked in its metadata as drawn here
    (so that a later drawing may replace it). A link at `out` is written through only with
    `follow_links` (it was there when the path was checked), else replaced."""
    import io

    from charseq.files import atomic_write

    picture = io.BytesIO()
    kind = out.suffix.lower().lstrip(".") or "png"
    figure.savefig(picture, format=kind, metadata=_marked(kind))
    atomic_write(out, lambda f: f.write(picture.getvalue()), follow_links=follow_links)


_MARK = "charseq plot"
_MARK_KEY = {"png": "Software", "pdf": "Creator", "svg": "Creator", "ps": "Creator", "eps": "Creator"}
_LARGEST_PICTURE = 64 << 20  # read whole to find its mark; a larger file is no picture this command drew
_PS = re.compile(rb"\A%!PS-Adobe-[^\n]*\n(?:%%[^\n]*\n)*?%%Creator: charseq plot\n")
_DC, _CC = "{http://purl.org/dc/elements/1.1/}", "{http://creativecommons.org/ns#}"


def _marked(kind: str) -> dict[str, str] | None:
    """The metadata that says a picture was drawn here, in the key its format keeps."""
    key = _MARK_KEY.get(kind)
    return {key: _MARK} if key else None


def drawn_here(path: Path) -> bool:
    """Whether `path` is a picture this command drew: a regular file (not a link) whose
    format's own metadata, read as that format reads it, holds the mark (a comment or a
    page's text that quotes it does not count; what a file says of itself only ever makes
    that file replaceable)."""
    kind = path.suffix.lower().lstrip(".")
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _LARGEST_PICTURE:
            return False
        data = path.read_bytes()
    except OSError:
        return False
    if kind == "png":
        return _png_text(data).get(_MARK_KEY["png"]) == _MARK
    if kind == "pdf":
        return _pdf_creator(data) == _MARK.encode()
    if kind == "svg":
        return _svg_creator(data) == _MARK
    if kind in ("ps", "eps"):
        return bool(_PS.match(data))
    return False


def _png_text(data: bytes) -> dict[str, str]:
    """The tEXt entries (with their checksums right) of a PNG's chunks before its image data,
    where matplotlib puts them."""
    import zlib

    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return {}
    found, at = {}, 8
    while at + 12 <= len(data):
        length, kind = int.from_bytes(data[at : at + 4], "big"), data[at + 4 : at + 8]
        body, crc = data[at + 8 : at + 8 + length], data[at + 8 + length : at + 12 + length]
        if kind == b"IDAT" or zlib.crc32(kind + body).to_bytes(4, "big") != crc:
            break
        if kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            found[key.decode("latin-1")] = value.decode("latin-1")
        at += 12 + length
    return found


def _pdf_creator(data: bytes) -> bytes | None:
    """The Creator of a PDF's document information dictionary: the object its last trailer
    names as /Info."""
    if not data.startswith(b"%PDF-"):
        return None
    trailers = re.findall(rb"trailer\s*<<(.*?)>>", data[-(1 << 16):], re.S)
    info = re.search(rb"/Info\s+(\d+)\s+0\s+R", trailers[-1]) if trailers else None
    if info is None:
        return None
    found = re.search(rb"(?:^|\s)" + info.group(1) + rb"\s+0\s+obj\s*<<(.*?)>>\s*endobj", data, re.S)
    creator = re.search(rb"/Creator\s*\(([^()\\]*)\)", found.group(1)) if found else None
    return creator.group(1) if creator else None


def _svg_creator(data: bytes) -> str | None:
    """The creator an SVG's Dublin Core metadata names (comments are no part of the tree)."""
    import xml.etree.ElementTree as ElementTree

    try:
        root = ElementTree.fromstring(data)
    except (ElementTree.ParseError, ValueError):
        return None
    title = root.find(f".//{_DC}creator/{_CC}Agent/{_DC}title")
    return None if title is None else title.text


@click.command(short_help="Draw the loss curves of a --metrics file.")
@click.argument("metrics_path", metavar="METRICS", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False), default="loss.png", show_default=True,
              help="The picture to write (PNG, SVG or PDF by its suffix); one it drew before is replaced.")
@click.option("--force", is_flag=True, help="Replace a file at -o that this command did not draw (never charseq's "
                                            "checkpoints or metrics).")
def plot(metrics_path, out, force):
    """Draw the training and validation loss of a --metrics file."""
    if out.endswith(os.sep) or out.endswith(os.sep + "."):
        raise UsageError(f"-o {out!r} names a directory; give a picture's file name")
    plot_metrics(metrics_path, out, force)
    say(f"wrote {out}")

