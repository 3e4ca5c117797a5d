"""The benchmarks still run (on tiny sizes; nothing here is timed) and the seed loop they
compare against still learns its task."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
pytestmark = pytest.mark.skipif(not BENCHMARKS.is_dir(), reason="needs the source checkout")


@pytest.fixture
def benchmarks_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))


def test_seed_loop_learns_the_alphabet(benchmarks_on_path):
    from seed_loop import train_seed_style

    _, loss = train_seed_style(hidden=16, windows=60, epochs=15)
    assert loss < 1.0  # per window of 6; guessing among 26 letters costs 6 ln 26 = 19.5


def test_speed_harness_runs_on_tiny_configs(benchmarks_on_path, monkeypatch):
    import speed

    monkeypatch.setattr(speed, "TRAIN_CONFIGS", [(8, 2, 3), (8, 4, 3)])
    monkeypatch.setattr(speed, "COMPUTE_BOUND", {(8, 4, 3)})
    monkeypatch.setattr(speed, "GENERATE_HIDDEN", [8])
    monkeypatch.setattr(speed, "CHARS_PER_CALL", 24)
    rows = [row for kind in ("rnn", "gru", "lstm") for row in
            speed.bench_training(kind, 1, 0.0, 1) + speed.bench_generation(kind, 1, 0.0, 1, length=20)]
    assert [row.what for row in rows] == [f"{kind} {what}" for kind in ("rnn", "gru", "lstm") for what in
                                          ("train H=8 B=2 T=3", "train H=8 B=4 T=3", "generate H=8 B=1, temperature 1")]
    assert all(row.charseq > 0 for row in rows) and all(row.peak > 0 for row in rows[1::3])
    table = speed.markdown_table(rows)
    assert table.count("\n") == len(rows) + 1


def test_memory_benchmark_runs_on_a_small_file():
    out = subprocess.run([sys.executable, str(BENCHMARKS / "memory.py"), "--megabytes", "1"],
                         capture_output=True, text=True, check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith("| ASCII") or line.startswith("| with")]
    assert len(rows) == 4  # ASCII and not, each encoded then cached
    assert sum("first (encodes)" in row for row in rows) == 2


def test_names_benchmark_runs_on_a_small_list(benchmarks_on_path, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("".join(f"{'ab' * (1 + i % 3)}{'cd'[i % 2]}\n" for i in range(200)))
    result = subprocess.run([sys.executable, str(BENCHMARKS / "names.py"), "--names", str(names), "--seeds", "3",
                             "--json", "--", "--epochs", "1", "--hidden-size", "8", "--threads", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    import json

    (row,) = json.loads(result.stdout)
    assert row["seed"] == 3 and row["epochs"] == 1 and row["val_loss"] > 0 and len(row["samples"]) == 20


def test_serve_benchmark_runs_with_a_few_clients():
    for module in ("starlette", "uvicorn", "openai"):
        pytest.importorskip(module)
    import json

    result = subprocess.run([sys.executable, str(BENCHMARKS / "serve.py"), "--clients", "3", "--length", "40",
                             "--model", "rnn", "--hidden-size", "16", "--repeat", "1", "--json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert row["clients"] == 3 and row["generate_1"] > 0 and row["serve_clients"]["chars_per_s"] > 0
    assert row["serve_clients_raw"]["chars_per_s"] > 0
