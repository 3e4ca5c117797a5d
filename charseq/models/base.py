"""What a model is to charseq: the contract every model plugin keeps, and the parts
the bundled models share (named views of one flat buffer, the softmax head, dropout).

A model turns int ids (B, T) into a mean cross-entropy per character and its
gradients, carrying a state from one window to the next; and runs one character at
a time for generation. The Trainer, checkpoints, `generate`, `eval` and resuming use
a model through ``Model`` below and nothing else, so a plugin's model trains,
saves, resumes and samples like a bundled one. ``docs/plugins.md`` has a worked
example.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np

from charseq.hooks.specs import CORE_ARGUMENTS

# Up to this many symbols the input-weight gradient is one matmul against a per-batch
# one-hot; beyond, the one-hot would be large and a sort + reduceat scatter is used.
ONE_HOT_SCATTER_MAX_VOCAB = 256
DTYPES = ("float32", "float64")  # what checkpoints hold
ARRAY_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")  # what a checkpoint's member may be called
W = TypeVar("W")


@runtime_checkable
class Stepper(Protocol):
    """Runs B sequences one character at a time (generation), from a zero state."""

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        """Read ids (B,); return the logits of the next character (B, V)."""

    def feed(self, x: np.ndarray) -> np.ndarray:
        """Read sequences x (B, T), T >= 1; return the logits after the last character."""


@runtime_checkable
class Model(Protocol):
    """The contract of a model plugin. A factory registered with ``register_models``
    is called as ``factory(vocab_size, hidden_size, seed=0, dtype=np.float32, **options)``;
    ``seed=None`` means the weights are about to be overwritten (a checkpoint is being
    loaded), so they need no initialising."""

    if TYPE_CHECKING:
        # To a type checker the attributes are read-only (charseq never sets them), so a
        # model may declare narrower types: ``input_weights = ("L",)``, a ``Parameters``.
        @property
        def name(self) -> str: ...
        @property
        def vocab_size(self) -> int: ...
        @property
        def hidden_size(self) -> int: ...
        @property
        def dtype(self) -> np.dtype: ...
        @property
        def flat(self) -> np.ndarray: ...
        @property
        def params(self) -> MutableMapping[str, np.ndarray]: ...
        @property
        def input_weights(self) -> tuple[str, ...]: ...
    else:  # at run time, plain annotations
        name: str  # the name it is registered under: checkpoints record it
        vocab_size: int
        hidden_size: int
        dtype: np.dtype
        flat: np.ndarray  # every parameter, in one 1-d buffer: an optimizer updates it in one call
        params: MutableMapping[str, np.ndarray]  # views of `flat` by name; assigning copies into the view
        input_weights: tuple[str, ...]  # parameters applied to the one-hot input (--input-lr-scale)

    def options(self) -> dict[str, Any]:
        """Its options (JSON scalars): with vocab_size and hidden_size, what rebuilds it."""

    def gradient_buffer(self) -> tuple[np.ndarray, MutableMapping[str, np.ndarray]]:
        """A zeroed flat buffer laid out like `flat`, and its views by parameter name."""

    def state_shape(self, batch_size: int) -> tuple[int, ...]:
        """The shape of the state carried between windows of `batch_size` sequences."""

    def loss(self, x: np.ndarray, y: np.ndarray, state: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """Mean cross-entropy (nats per character) of targets y (B, T) after inputs x (B, T),
        from `state` (None: zeros), and the state after the window."""

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray, state: np.ndarray | None = None,
                       out: MutableMapping[str, np.ndarray] | None = None, dropout: float = 0.0,
                       rng: np.random.Generator | None = None) -> tuple[float, Any, np.ndarray]:
        """As `loss`, with the gradients written into `out` (views from gradient_buffer()):
        (loss, gradients, state). Gradients stop at `state` (truncated BPTT). `dropout`
        is the training dropout, its masks drawn from `rng`."""

    def stepper(self, batch_size: int) -> Stepper:
        """A one-character-at-a-time runner over a snapshot of the weights."""


class Parameters(MutableMapping[str, np.ndarray]):
    """Parameter arrays by name, each a view of one flat buffer, so that an optimiser can
    update them all in one numpy call. Assigning to a name copies into its view; no method
    (``update`` included) can replace a view or remove one, so the buffer stays whole."""

    def __init__(self, views: dict[str, np.ndarray]):
        self._views = views

    def __getitem__(self, name: str) -> np.ndarray:
        return self._views[name]

    def __setitem__(self, name: str, value: Any) -> None:
        current = self._views[name]  # KeyError for a name that is not a parameter
        if np.shape(value) != current.shape:
            raise ValueError(f"parameter {name} has shape {current.shape}, got {np.shape(value)}")
        current[...] = value

    def __delitem__(self, name: str) -> None:
        raise TypeError("parameters cannot be removed")

    def __iter__(self) -> Iterator[str]:
        return iter(self._views)

    def __len__(self) -> int:
        return len(self._views)

    def __repr__(self) -> str:
        return f"Parameters({', '.join(f'{n}{list(v.shape)}' for n, v in self._views.items())})"


class Layout:
    """Where each named parameter lies in a flat buffer. A parameter may be stored
    transposed: an input weight is stored (V, ...) so that the rows the input gather reads
    and the gradient scatter writes are contiguous, and seen in its mathematical shape."""

    def __init__(self, stored: Mapping[str, tuple[tuple[int, ...], bool]]):
        self.stored = dict(stored)  # name -> (stored shape, seen transposed)
        self.slices: dict[str, slice] = {}
        offset = 0
        for name, (shape, _) in self.stored.items():
            size = int(np.prod(shape))
            self.slices[name] = slice(offset, offset + size)
            offset += size
        self.size = offset

    def views(self, flat: np.ndarray) -> Parameters:
        views = {}
        for name, (shape, transposed) in self.stored.items():
            block = flat[self.slices[name]].reshape(shape)
            views[name] = block.T if transposed else block
        return Parameters(views)

    def allocate(self, dtype: np.dtype) -> tuple[np.ndarray, Parameters]:
        flat = np.zeros(self.size, dtype=dtype)
        return flat, self.views(flat)


def flat_slice(flat: np.ndarray, view: np.ndarray) -> slice:
    """The slice of `flat` that `view` (a parameter of any layout) occupies."""
    start = (view.__array_interface__["data"][0] - flat.__array_interface__["data"][0]) // flat.itemsize
    part = slice(start, start + view.size)
    if not (0 <= start and part.stop <= flat.size and np.shares_memory(flat[part], view)):
        raise ValueError("a parameter is not a contiguous block of the model's flat buffer")
    return part


def check_model(model: Any, what: str) -> None:
    """Refuse, in one line, an object that does not keep the model contract."""
    from charseq.errors import CharseqError

    missing = [name for name in ("name", "vocab_size", "hidden_size", "dtype", "flat", "params", "options",
                                 "gradient_buffer", "state_shape", "loss", "loss_and_grads", "stepper")
               if not hasattr(model, name)]
    if missing:
        raise CharseqError(f"{what} returned {type(model).__name__}, which lacks {', '.join(missing)} of the model "
                           "contract (see docs/plugins.md)")
    flat = model.flat
    if not isinstance(flat, np.ndarray) or flat.ndim != 1 or flat.dtype.name not in DTYPES:
        raise CharseqError(f"{what}: its flat parameters are not a 1-d array of {' or '.join(DTYPES)}")
    for name, view in model.params.items():
        if not isinstance(name, str) or not ARRAY_NAME.match(name):
            raise CharseqError(f"{what}: parameter name {name!r} is not letters, digits and . _ - (a checkpoint "
                               "could not hold it)")
        try:
            flat_slice(flat, view)
        except (ValueError, AttributeError, TypeError):
            raise CharseqError(f"{what}: parameter {name!r} is not a view of its flat buffer") from None
    window = getattr(model, "max_window", None)
    if window is not None and (isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1):
        raise CharseqError(f"{what}: its max_window {window!r} is not a whole number of characters of at least 1")
    inputs = getattr(model, "input_weights", ())
    if not isinstance(inputs, (tuple, list)) or not all(isinstance(n, str) and n in model.params for n in inputs):
        raise CharseqError(f"{what}: its input_weights {inputs!r} are not names of its parameters")
    options = model.options()
    if not isinstance(options, dict) or not all(
            isinstance(k, str) and k not in CORE_ARGUMENTS and (v is None or isinstance(v, (bool, int, float, str)))
            for k, v in options.items()):
        raise CharseqError(f"{what}: its options() {options!r} are not a mapping of names to plain values (numbers, "
                           "text, true/false, None)")


# -- what the bundled models share ---------------------------------------------------------


class Head:
    """Buffers of the output layer for one (B, T) shape: logits = states V.T + c, softmax,
    cross-entropy, and their gradients, over all T*B rows at once."""

    def __init__(self, B: int, T: int, H: int, V: int, dtype: np.dtype):
        self.probs = np.empty((T * B, V), dtype=dtype)  # logits, then probabilities, then their gradient
        self.row_stat = np.empty((T * B, 1), dtype=dtype)  # per-row max
        self.row_sum = np.empty(T * B, dtype=dtype)
        self.vocab_ones = np.ones(V, dtype=dtype)
        self.rows = np.arange(T * B)
        self.ones = np.ones(T * B, dtype=dtype)
        self.dstates = np.empty((T, B, H), dtype=dtype)  # the gradient reaching the states below, as rows or columns
        self.dropout = Dropout()

    def loss(self, states: np.ndarray, V: np.ndarray, c: np.ndarray, ys: np.ndarray) -> float:
        """Mean cross-entropy of softmax(states V.T + c) against ys; leaves the softmax in probs.

        Softmax is shift-invariant. One shift by the global max is cheaper than a max per row
        and cannot overflow; should a row then underflow to all zeros (its logits far below
        another row's), the exact per-row shift is taken instead.
        """
        probs = self.probs
        for shift_per_row in (False, True):
            np.dot(states, V.T, out=probs)  # (T*B, V) logits
            probs += c
            if shift_per_row:
                np.max(probs, axis=1, keepdims=True, out=self.row_stat)
                probs -= self.row_stat
            else:
                probs -= probs.max()
            target_logits = probs[self.rows, ys]
            np.exp(probs, out=probs)
            np.dot(probs, self.vocab_ones, out=self.row_sum)  # row sums as a gemv
            if shift_per_row or self.row_sum.min() > 0.0:
                break
        loss = float(np.log(self.row_sum).sum() - target_logits.sum()) / len(probs)
        probs /= self.row_sum[:, None]
        return loss

    def backward(self, states: np.ndarray, V: np.ndarray, ys: np.ndarray, dV: np.ndarray, dc: np.ndarray,
                 out: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Gradients of V and c, and into `out`, (T, H, B), the gradient reaching the states as
        columns, the layout the recurrent layers' backward passes read. `mask`: the dropout
        mask (T*B, H) the states were multiplied by, whose gradient is taken too."""
        dlogits = self.probs  # of mean softmax cross-entropy: (p - onehot(y)) / (T*B)
        dlogits[self.rows, ys] -= 1.0
        dlogits *= 1.0 / len(dlogits)
        np.dot(dlogits.T, states, out=dV)  # (V, H)
        np.dot(self.ones, dlogits, out=dc)  # column sums as a gemv: faster than np.sum
        T, H, B = out.shape
        if mask is None:  # the transposed product, (H, T*B), then a copy of (B,) blocks
            columns = self.dstates.reshape(H, T * B)
            np.dot(V.T, dlogits.T, out=columns)
            np.copyto(out, columns.reshape(H, T, B).transpose(1, 0, 2))
            return
        rows = self.dstates.reshape(T * B, H)
        np.dot(dlogits, V, out=rows)
        rows *= mask
        np.copyto(out, rows.reshape(T, B, H).transpose(0, 2, 1))


class Workspaces(Generic[W]):
    """The buffers of the last KEPT (B, T) shapes a model ran: training, evaluation and
    generation each use a shape or two, every one reused from step to step, and a caller
    that tries many shapes must not hold the buffers of them all."""

    KEPT = 4

    def __init__(self) -> None:
        self._kept: dict[tuple[int, int], W] = {}

    def get(self, B: int, T: int, make: Callable[[], W]) -> W:
        """The buffers of shape (B, T), made now when they are not kept (the oldest then go)."""
        kept = self._kept.get((B, T))
        if kept is None:
            if len(self._kept) >= self.KEPT:
                self._kept.pop(next(iter(self._kept)))
            kept = self._kept[(B, T)] = make()
        return kept

    def clear(self) -> None:
        """Forget every shape's buffers (the next call of each makes them again)."""
        self._kept.clear()


class Dropout:
    """A reusable dropout mask: 0 with probability p, 1 / (1 - p) otherwise."""

    def __init__(self) -> None:
        # Made on first use: most shapes never drop out.
        self.mask: np.ndarray | None = None
        self.dropped: np.ndarray | None = None
        self.keep: np.ndarray | None = None

    def apply(self, states: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
        """states * a fresh mask (kept for backward).

        p is rounded to a multiple of 1/65536: comparing random 16-bit integers is twice as
        fast as drawing floats, and the mask is half of dropout's cost.
        """
        mask, dropped, keep = self.mask, self.dropped, self.keep
        if mask is None or dropped is None or keep is None:
            mask, dropped = np.empty_like(states), np.empty_like(states)
            keep = np.empty(states.shape, dtype=bool)
            self.mask, self.dropped, self.keep = mask, dropped, keep
        bits = np.frombuffer(rng.bytes(2 * states.size), dtype=np.uint16).reshape(states.shape)
        np.greater_equal(bits, round(p * 65536), out=keep)
        np.multiply(keep, mask.dtype.type(1.0 / (1.0 - p)), out=mask)
        return np.multiply(states, mask, out=dropped)


class Scatter:
    """out[v] = sum of rows[i] over i with ids[i] == v: the transpose of the input gather.

    A matmul against the batch's one-hot is 2-5x faster than sorting (and 2-9x faster than
    np.add.at) at every benchmarked shape; past 256 symbols the one-hot would be large, so
    rows are sorted by id and summed with one np.add.reduceat.
    """

    def __init__(self, n: int, vocab_size: int, dtype: np.dtype):
        self.vocab_size = vocab_size
        self.rows = np.arange(n)
        self.one_hot = np.zeros((n, vocab_size), dtype=dtype) if vocab_size <= ONE_HOT_SCATTER_MAX_VOCAB else None

    def __call__(self, ids: np.ndarray, rows: np.ndarray, out: np.ndarray) -> None:
        if self.one_hot is not None:
            self.one_hot.fill(0.0)
            self.one_hot[self.rows, ids] = 1.0
            np.dot(self.one_hot.T, rows, out=out)
            return
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        starts = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
        out.fill(0.0)
        out[sorted_ids[starts]] = np.add.reduceat(rows[order], starts, axis=0)
