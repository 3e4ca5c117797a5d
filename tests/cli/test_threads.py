"""--threads sets how many threads BLAS uses while charseq works."""

import pytest
from threadpoolctl import threadpool_info

import charseq.blas
from conftest import run_cli


def _blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


@pytest.mark.parametrize("threads", [1, 2])
def test_train_runs_with_the_requested_blas_threads(threads, monkeypatch, tmp_path):
    seen = []
    original = charseq.blas.limited

    def spy(n):
        context = original(n)
        seen.append(n)
        return context

    monkeypatch.setattr(charseq.blas, "limited", spy)
    before = _blas_threads()
    run_cli("train", "--corpus", "digits:20", "--epochs", 1, "-q", "--out", tmp_path / "m.npz",
            "--threads", threads)
    assert seen == [threads]
    assert _blas_threads() == before  # restored afterwards


def test_limit_is_in_force_during_training(monkeypatch, tmp_path):
    from charseq import Trainer

    during = []
    original_fit = Trainer.fit

    def fit(self):
        during.append(_blas_threads())
        return original_fit(self)

    monkeypatch.setattr(Trainer, "fit", fit)
    run_cli("train", "--corpus", "digits:20", "--epochs", 1, "-q", "--out", tmp_path / "m.npz", "--threads", 1)
    assert during and all(n == 1 for n in during[0])


def test_threads_must_be_positive(tmp_path):
    result = run_cli("train", "--corpus", "digits", "--threads", 0, ok=False)
    assert result.exit_code == 2 and "--threads" in result.output
