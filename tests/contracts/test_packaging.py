"""The installed package, not the source tree: a built wheel and an editable install,
each in a fresh virtual environment, give the same working `charseq` command."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
needs_source = pytest.mark.skipif(not (ROOT / "pyproject.toml").is_file(), reason="needs the source checkout")


def _run(*args, cwd=None, env=None) -> str:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out, ROOT)
    (built,) = out.glob("charseq-*.whl")
    return built


def _venv(path: Path) -> Path:
    _run(sys.executable, "-m", "venv", path)
    return path / ("Scripts" if os.name == "nt" else "bin")


def _alphabet_task(bin_dir: Path, work: Path) -> None:
    """The README's main job, from the installed command, in a directory away from the source."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CHARSEQ_LOAD_PLUGINS")}
    charseq = bin_dir / "charseq"
    _run(charseq, "train", "--corpus", "alphabet", "--out", "m.npz", "-q", cwd=work, env=env)
    out = _run(charseq, "generate", "m.npz", "--prime", "ABCDEF", "--length", 20, "--sampler", "argmax",
               cwd=work, env=env)
    assert out == "ABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
    plugins = _run(charseq, "plugins", cwd=work, env=env)
    for name in ("charseq.plugins.corpora", "charseq.plugins.samplers", "charseq.plugins.callbacks"):
        assert name in plugins
    # Nothing may install a top-level module called plain `plugins` or `corpora`.
    probe = "import importlib.util as u; print(u.find_spec('plugins'), u.find_spec('corpora'))"
    assert _run(bin_dir / "python", "-c", probe, cwd=work, env=env).strip() == "None None"


@needs_source
@pytest.mark.slow
def test_wheel_holds_every_plugin_and_data_file_under_charseq(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("charseq/cli/main.py", "charseq/plugins/corpora.py", "charseq/plugins/samplers.py",
                     "charseq/plugins/callbacks.py", "charseq/corpora/alphabet.txt",
                     "charseq/corpora/digits.txt", "charseq/py.typed", "charseq/serving/web/index.html",
                     "charseq/models/gru.py", "charseq/training/run.py"):
        assert expected in names
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"charseq"}
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "charseq = charseq.console:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@needs_source
@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_the_alphabet_task(wheel, tmp_path):
    bin_dir = _venv(tmp_path / "venv")
    _run(bin_dir / "python", "-m", "pip", "install", "--quiet", wheel)
    _alphabet_task(bin_dir, tmp_path)
    assert _install_hint(bin_dir, tmp_path) == f"{bin_dir / 'python'} -m pip install '{wheel}[serve]'"


@needs_source
@pytest.mark.slow
def test_editable_install_in_a_fresh_venv_runs_the_alphabet_task(tmp_path):
    bin_dir = _venv(tmp_path / "venv")
    _run(bin_dir / "python", "-m", "pip", "install", "--quiet", "-e", ROOT)
    _alphabet_task(bin_dir, tmp_path)
    assert _install_hint(bin_dir, tmp_path) == f"{bin_dir / 'python'} -m pip install -e '{ROOT}[serve]'"
    # docs/plugins.md: a plugin that depends on "charseq" installs beside a checkout's charseq
    # with no index at all (charseq is on none yet): the one installed meets the dependency.
    plugin = tmp_path / "charseq-hello"
    plugin.mkdir()
    (plugin / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "charseq-hello"\nversion = "0.1.0"\ndependencies = ["charseq"]\n\n'
        '[project.entry-points.charseq]\nhello = "charseq_hello"\n')
    (plugin / "charseq_hello.py").write_text("")
    _run(bin_dir / "python", "-m", "pip", "install", "--quiet", "setuptools>=69", "wheel")  # to build it, below
    _run(bin_dir / "python", "-m", "pip", "install", "--quiet", "--no-index", "--no-build-isolation", plugin)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CHARSEQ_LOAD_PLUGINS")}
    assert "hello (charseq-hello 0.1.0)" in _run(bin_dir / "charseq", "plugins", cwd=tmp_path, env=env)


def _install_hint(bin_dir: Path, work: Path) -> str:
    """What a "needs the serve extra" message tells this installation to run."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = "from charseq.installation import install_command; print(install_command('serve'))"
    return _run(bin_dir / "python", "-c", probe, cwd=work, env=env).strip()


def test_core_imports_neither_click_nor_tqdm(tmp_path):
    core = ("charseq", "charseq.models.base", "charseq.models.recurrent", "charseq.models.rnn", "charseq.models.gru", "charseq.models.lstm",
            "charseq.training.run", "charseq.training.trainer", "charseq.data.vocab", "charseq.checkpoints.format",
            "charseq.data.corpus", "charseq.decoding.generate", "charseq.hooks.registry", "charseq.hooks.specs")
    code = (f"import sys\nfor m in {core!r}: __import__(m)\n"
            "from charseq.hooks.registry import load_registry; load_registry()\n"
            "print(sorted(m for m in ('click', 'tqdm') if m in sys.modules))")
    # Away from the checkout: `python -c` puts the working directory first on sys.path.
    assert _run(sys.executable, "-c", code, cwd=tmp_path).strip() == "[]"


@pytest.mark.parametrize("args", [["--version"], ["train", "--help"], ["generate", "--help"]])
def test_built_in_commands_start_without_loading_plugins(tmp_path, args):
    code = (f"import sys\nfrom charseq.cli import cli\ntry:\n    cli({args!r})\nexcept SystemExit:\n    pass\n"
            "print('charseq.plugins.corpora' in sys.modules)")
    assert _run(sys.executable, "-c", code, cwd=tmp_path).strip().endswith("False")
