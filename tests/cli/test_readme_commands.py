"""Every `charseq` command in the shell examples of the README and of the documentation's
pages runs as written, with the installed `charseq`: the README's in order in a fresh
directory, and the site's page by page in the order of its contents in another, as a reader
who follows the tutorial and then the guides would run them (the texts the pages fetch with
curl are stood in for by small ones, so that everything trains in about a minute)."""

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pages import INDEX, README, example_pages

pytestmark = [pytest.mark.skipif(not (README.is_file() and INDEX.is_file()), reason="needs the source checkout"),
              pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")]

WORDS = ("the quick brown fox jumps over the lazy dog while a king and his queen walk slowly through "
         "their cold castle asking what the night may bring").split()


def _novel() -> str:
    lines = []
    for i in range(400):
        words = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(6 + i % 5)]
        lines.append(("CHAPTER " if i % 40 == 0 else "It was " if i % 3 == 0 else "The ") + " ".join(words) + ".")
    return "\n\n".join(lines) + "\n"


def _names() -> str:
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "an", "el"]
    return "".join("".join(syllables[(i * 7 + k * 3) % 10] for k in range(1 + i % 3)) + "\n" for i in range(600))


# Each runs in a fresh directory of its own: the README alone, and the site's pages together.
DOCUMENTS = {"README": [README], "site": example_pages()[1:]} if INDEX.is_file() else {}


def readme_commands(pages: list[Path] | None = None) -> list[str]:
    """The pages' shell commands that run charseq, in order (a console block's `$ ` lines);
    every page's without `pages`."""
    commands = []
    found = [block for page in (example_pages() if pages is None else pages)
             for block in re.findall(r"```(sh|console)\n(.*?)```", page.read_text(), re.S)]
    for language, block in found:
        for line in block.splitlines():
            if language == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            if line.startswith("charseq ") and "_COMPLETE" not in line or line.startswith("curl -s") and \
                    "localhost:8000" in line:
                commands.append(line)
    return commands


def _installed(*modules: str) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(module) is not None for module in modules)


def _serve(command: str, cwd: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """Start the README's `charseq serve` on a free port; the process and its host:port."""
    import re
    import select

    command = command.split(" #")[0]  # its comment, which would swallow the port
    proc = subprocess.Popen(["bash", "-c", f"exec {command} --port 0"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    found = re.search(r"http://(\S+?)/ ", proc.stdout.readline() if ready else "")
    if found is None:
        proc.kill()
        raise AssertionError(f"{command}: no address printed\n{proc.stderr.read()}")
    return proc, found.group(1)


def test_the_readme_has_the_examples_this_test_runs():
    commands = readme_commands()
    assert any("lines:names.txt" in c for c in commands) and any("names.npz" in c for c in commands)
    assert any("runs/ckpt-" in c and "--resume" in c for c in commands)


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_readme_command_runs_as_written_in_a_fresh_directory(tmp_path, document):
    (tmp_path / "novel.txt").write_text(_novel())
    (tmp_path / "other.txt").write_text(_novel()[::-1])
    (tmp_path / "names.txt").write_text(_names())
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    try:
        import matplotlib  # noqa: F401  (the plot extra: without it, `charseq plot` alone is left out)
        plots = True
    except ImportError:
        plots = False
    serving, exporting, sweeping = _installed("starlette", "uvicorn"), _installed("onnx"), _installed("optuna")
    server: subprocess.Popen | None = None
    try:
        for command in readme_commands(DOCUMENTS[document]):
            if ("charseq plot" in command and not plots or "charseq export" in command and not exporting
                    or "charseq sweep" in command and not sweeping):
                continue
            if command.startswith("charseq serve"):  # in the background, for the curl lines that follow
                if serving:
                    server, address = _serve(command, tmp_path, env)
                continue
            if command.startswith("curl"):
                if server is None:
                    continue
                command = command.replace("localhost:8000", address)
            result = subprocess.run(["bash", "-c", command + " --threads 1" * _takes_threads(command)],
                                    cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            if command.startswith("curl"):
                assert result.stdout.startswith(("{", "data: {")) and '"error"' not in result.stdout, result.stdout
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)
            _, err = server.communicate(timeout=30)
            assert server.returncode == 0, err
    assert document != "site" or not serving or server is not None, "the pages have no charseq serve command"


def _takes_threads(command: str) -> bool:
    """Commands that take --threads run on one here, beside other tests (a comment would swallow it)."""
    return "#" not in command and command.split()[1] in ("train", "generate", "eval")
