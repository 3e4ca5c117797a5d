"""Training on text holds the encoded corpus once, never a one-hot of it."""

import tracemalloc

import numpy as np

from charseq import TrainConfig, Trainer, VanillaRNN, hookimpl
from charseq.plugins.corpora import text


class StopAfter:
    def __init__(self, steps):
        self.steps = steps

    @hookimpl
    def on_step_end(self, trainer, step, loss):
        if step >= self.steps:
            trainer.stop_training = True


def test_peak_memory_stays_under_three_times_the_file(tmp_path):
    rng = np.random.default_rng(0)
    alphabet = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ.,;:!?'\n-0123456789", np.uint8)
    path = tmp_path / "big.txt"
    path.write_bytes(alphabet[rng.integers(0, len(alphabet), 4_000_000)].tobytes())
    size = path.stat().st_size

    tracemalloc.start()  # numpy reports its array allocations here too
    try:
        corpus = text(str(path))
        config = TrainConfig.for_corpus(corpus, hidden_size=32, seq_len=32, batch_size=16)
        Trainer(VanillaRNN(len(corpus.vocab), 32), corpus, config, [StopAfter(5)]).fit()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(corpus.vocab) > 60  # a one-hot of this corpus would be over 60x its size
    assert peak < 3 * size, f"peak {peak / size:.2f}x the file"
