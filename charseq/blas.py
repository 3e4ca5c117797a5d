"""How many threads BLAS uses for the matrix products: one place to ask, and to set it.

BLAS splits a product's sums by its thread count, so the count is part of what makes a run
exact (a run records it), and several workers on one machine share its cores between them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


MAX_THREADS = 4096  # more than any machine's cores; past it a count is a typing slip


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def limited(threads: int | None) -> Iterator[None]:
    """BLAS uses at most `threads` threads inside (None: as it is); as before, afterwards."""
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        yield


def threads_in_use() -> int | None:
    """How many threads BLAS uses now (None where threadpoolctl sees no BLAS)."""
    from threadpoolctl import threadpool_info

    counts = [entry["num_threads"] for entry in threadpool_info() if entry.get("user_api") == "blas"]
    return max(counts) if counts else None
