"""Ctrl-C in `generate` and `eval` ends quietly with 130, as in `train`; and in a real
terminal, Ctrl-C during training leaves no progress bar (nor its "^C") on the screen.
These run `charseq` in processes of their own, as a user would."""

from __future__ import annotations

import os
import random
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.name != "posix", reason="signals and pseudo-terminals as POSIX has them")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "CHARSEQ_LOAD_PLUGINS": ""}


def _default_sigint() -> None:
    """In the child: Ctrl-C as a terminal's user has it, even if this test runs where it is ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _charseq(*args, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "charseq", *map(str, args)], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_default_sigint)


def test_ctrl_c_mid_sample_ends_its_line_and_exits_130_quietly(alphabet_checkpoint, tmp_path):
    run = _charseq("generate", alphabet_checkpoint, "--prime", "ABC", "--length", 10**9, "--sampler", "argmax",
                   "--threads", 1, cwd=tmp_path)
    first = run.stdout.read(200)  # it is printing, character by character
    assert first.startswith(b"ABCDEF")
    time.sleep(0.2)
    run.send_signal(signal.SIGINT)
    rest, stderr = run.communicate(timeout=60)
    assert run.returncode == 130, stderr
    assert stderr == b"charseq: interrupted\n"
    text = first + rest
    assert text.endswith(b"\n") and text.count(b"\n") == 1  # the sample's line is ended, once
    assert set(text.strip()) <= set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def test_ctrl_c_mid_eval_exits_130_quietly(alphabet_checkpoint, tmp_path):
    text = tmp_path / "letters.txt"
    text.write_text("ABCDEFGHIJKLMNOPQRSTUVWXYZ" * 20_000)  # at one character a window, minutes of work
    run = _charseq("eval", alphabet_checkpoint, "--corpus", f"text:{text}", "--batch-size", 1, "--seq-len", 1,
                   "--threads", 1, cwd=tmp_path)
    time.sleep(3)  # started, loaded, evaluating
    assert run.poll() is None
    run.send_signal(signal.SIGINT)
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 130, stderr
    assert (stdout, stderr) == (b"", b"charseq: interrupted\n")


def screen(output: str, width: int) -> list[str]:
    """What a terminal `width` columns wide shows after `output`: carriage returns, line feeds,
    backspaces, cursor-up and erase-in-line; a character written in the last column leaves
    the cursor there, and the next one wraps to a new line (as xterm and its kin do)."""
    rows: dict[int, dict[int, str]] = {}
    row = col = 0
    wrap_pending = False
    i = 0
    while i < len(output):
        char = output[i]
        escape = re.match(r"\x1b\[([0-9;?]*)([A-Za-z])", output[i:])
        if escape:
            arg, op = escape.groups()
            count = int(arg) if arg.isdigit() else 1
            if op == "A":
                row = max(0, row - count)
            elif op == "K":
                line = rows.setdefault(row, {})
                for column in list(line):
                    if arg == "2" or (arg == "1" and column <= col) or (arg in ("", "0") and column >= col):
                        del line[column]
            wrap_pending = False
            i += len(escape.group(0))
            continue
        if char == "\r":
            col, wrap_pending = 0, False
        elif char == "\n":
            row, wrap_pending = row + 1, False
        elif char == "\b":
            col, wrap_pending = max(0, col - 1), False
        elif char >= " ":
            if wrap_pending:
                row, col, wrap_pending = row + 1, 0, False
            rows.setdefault(row, {})[col] = char
            if col == width - 1:
                wrap_pending = True
            else:
                col += 1
        i += 1
    last = max(rows, default=-1)
    return ["".join(rows.get(r, {}).get(c, " ") for c in range(width)).rstrip() for r in range(last + 1)]


def test_the_screen_model_wraps_as_a_terminal_does():
    assert screen("ab\rc", 4) == ["cb"]
    assert screen("abcd^C\r    \rx", 4) == ["abcd", "x"]  # "^C" after a full line wraps: the line stays
    assert screen("ab^C\r    \rx", 5) == ["x"]


@pytest.fixture
def words(tmp_path) -> Path:
    rng = random.Random(0)
    vocabulary = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "runs", "far", "away"]
    path = tmp_path / "words.txt"
    path.write_text(" ".join(rng.choice(vocabulary) for _ in range(60_000)))
    return path


def _read(fd: int, until: float) -> bytes | None:
    """What the terminal has to show, waiting until `until` at most; None at its end."""
    ready, _, _ = select.select([fd], [], [], max(0.0, until - time.monotonic()))
    if not ready:
        return b""
    try:
        return os.read(fd, 65536) or None
    except OSError:  # EIO: every process holding the terminal is gone
        return None


@pytest.mark.parametrize("width", [80, 123])
def test_ctrl_c_in_a_terminal_clears_the_progress_bar(words, tmp_path, width):
    """`charseq train` in a terminal `width` columns wide; Ctrl-C is typed while the bar is
    drawn. The terminal echoes "^C" where the cursor is, at the bar's end: were the bar the
    terminal's full width, the echo would wrap to a new line and clearing the bar's line
    would leave the bar above it."""
    pty = pytest.importorskip("pty")
    import fcntl
    import struct
    import termios

    argv = [sys.executable, "-m", "charseq", "train", "--corpus", f"text:{words}", "--hidden-size", 48,
            "--seq-len", 16, "--batch-size", 8, "--epochs", 20, "--threads", 1, "--out", tmp_path / "m.npz"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: charseq, its terminal the pseudo-terminal
        try:
            _default_sigint()
            os.chdir(tmp_path)
            os.execve(sys.executable, [str(a) for a in argv], _env())
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, width, 0, 0))
    output = b""
    deadline = time.monotonic() + 120
    while not re.search(rb"step/s, loss", output) and time.monotonic() < deadline:
        chunk = _read(fd, deadline)
        if chunk is None:
            break
        output += chunk
    assert re.search(rb"step/s, loss", output), output  # the bar is drawn, with the live loss
    os.write(fd, b"\x03")  # Ctrl-C, typed: the terminal sends SIGINT and echoes "^C"
    while (chunk := _read(fd, deadline)) is not None and time.monotonic() < deadline:
        output += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 130, output

    shown = screen(output.decode("utf-8", "replace"), width)
    on_screen = "\n".join(shown)
    assert "step/s" not in on_screen and "%|" not in on_screen, on_screen  # no bar left, whole or in part
    assert "^C" not in on_screen and not re.search(r"^C$", on_screen, re.M), on_screen
    assert shown[0].startswith("training on words:")
    assert "interrupted at step " in "".join(shown) and "--resume" in [line for line in shown if line][-1], on_screen
