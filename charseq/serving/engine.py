"""Many completions at once: the sequences of every request in flight share one batched
stepper, so thirty-two clients cost about what one batch of thirty-two costs, not
thirty-two separate runs.

A request is cut into jobs (one per prompt, each with its n sequences) that a single
engine thread advances one character per tick. Each tick every live row reads one id: the
next prompt character while its job is still reading its prompt, else the character it
sampled last; one stepper call gives every row's logits; then each job samples its own
rows with its own sampler and random generator. A job's text goes to its `Output`, which
the waiting side (a web server's coroutine, or a plain thread) takes from when woken.

Rows are rows of the stepper's state, so a model whose stepper lets its ``state`` be
assigned (the bundled ones) is batched across requests: new rows start at zeros, and the
batch grows and shrinks by powers of two as requests come and go. A plugin model without
that runs each job on a stepper of its own, still interleaved tick by tick. So does a job
that asks for a seed: a batch's arithmetic can differ in a float's last bit with its size,
and alone its text is what `charseq generate --seed` prints, whatever else runs.

A job that asks for log-probabilities (`Job.logprobs`) gets, with each character, the
model's own: the log-softmax of the logits its stepper gave, before the repetition penalty,
the temperature or a sampler's filter changed them (as OpenAI reports its models'), and
its `logprobs` likeliest characters. With `score_from` it gets them for its prompt too, and
with a length of 0 only those: a text scored. A job that asks for neither costs nothing more.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from charseq.decoding.settings import Decoding, Sampler
from charseq.decoding.steps import RepetitionPenalty, SamplerError, StopScanner, checked_ids
from charseq.models.base import Model
from charseq.data.vocab import Vocabulary
from charseq.serving.logprobs import Scored, log_softmax, scores


class JobFailed(Exception):
    """A job ended without its text: `kind` says why, for the status a server answers."""

    STATUS = {"timeout": 408, "busy": 429, "shutdown": 503, "internal": 500}

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.status = self.STATUS[kind]


@dataclass
class Taken:
    """What an Output held since it was last taken from."""

    texts: dict[int, str]  # choice index -> new text
    finished: dict[int, str]  # choice index -> finish reason ("stop", "length")
    error: JobFailed | None
    done: bool  # every choice has finished, or the request failed
    # choice index -> its characters' log-probabilities, for a job that asks: a prompt's
    # (all of it at once, before any of the choice's text), then one per character of text
    scored: dict[int, list[Scored]] = field(default_factory=dict)


class Gathered:
    """What an Output gave, gathered whole, for a caller that answers at the end: each
    choice's text, why it ended, and its characters' log-probabilities (for a job that asks)."""

    def __init__(self, choices: int):
        self._parts: list[list[str]] = [[] for _ in range(choices)]
        self.reasons = ["length"] * choices
        self.scored: list[list[Scored]] = [[] for _ in range(choices)]

    def add(self, taken: Taken) -> None:
        for index, text in taken.texts.items():
            self._parts[index].append(text)
        for index, reason in taken.finished.items():
            self.reasons[index] = reason
        for index, each in taken.scored.items():
            self.scored[index] += each

    @property
    def texts(self) -> list[str]:
        return ["".join(parts) for parts in self._parts]


class Output:
    """The text of one request's choices, handed from the engine's thread to its reader.

    `wake` is called (from the engine's thread) when something new arrives and the reader
    has not been woken since it last took; a reader in another thread may instead `wait`.
    """

    def __init__(self, choices: int, wake: Callable[[], None] | None = None, interval: float = 0.0):
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._wake = wake
        self._woken = False
        self.interval = interval  # seconds between wakes while it is still going (inf: only at the end)
        self._last_wake = -math.inf
        self._texts: dict[int, list[str]] = {}
        self._finished: dict[int, str] = {}
        self._scored: dict[int, list[Scored]] = {}
        self._open = choices  # choices not yet finished
        self._error: JobFailed | None = None
        self.cancelled = False  # set by the reader: the engine drops its jobs at the next tick

    def add(self, index: int, text: str, scored: list[Scored] | None = None) -> None:
        """New text of a choice, with its characters' log-probabilities when the job asks
        (or only those: its prompt's)."""
        with self._lock:
            if text:
                self._texts.setdefault(index, []).append(text)
            if scored:
                self._scored.setdefault(index, []).extend(scored)

    def finish(self, index: int, reason: str) -> None:
        with self._lock:
            self._finished[index] = reason
            self._open -= 1

    def fail(self, error: JobFailed) -> None:
        with self._lock:
            if self._error is None and self._open > 0:
                self._error = error
        self.notify()

    def notify(self) -> None:
        """Wake the reader once for everything added since it last took, and at most once
        per `interval` until the end: a reader woken for every character would spend more
        time being woken than the engine spends making them."""
        with self._lock:
            if self._woken or not (self._texts or self._finished or self._error or self._scored):
                return
            now = time.monotonic()
            if self._open > 0 and self._error is None and now - self._last_wake < self.interval:
                return
            self._woken, self._last_wake = True, now
        self._event.set()
        if self._wake is not None:
            self._wake()

    def take(self) -> Taken:
        with self._lock:
            texts = {index: "".join(parts) for index, parts in self._texts.items()}
            finished, error, scored = self._finished, self._error, self._scored
            self._texts, self._finished, self._scored, self._woken = {}, {}, {}, False
            self._event.clear()
            return Taken(texts, finished, error, self._open <= 0 or error is not None, scored)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until there is something to take (for readers in a plain thread)."""
        return self._event.wait(timeout)


@dataclass(eq=False)
class Job:
    """One prompt's sequences, as its `decoding` asks: read `prompt_ids`, then sample up to
    `decoding.length` characters for each of its `num_samples` sequences, ending one where
    a stop appears."""

    prompt_ids: np.ndarray
    decoding: Decoding
    sampler: Sampler  # the decoding's, made for this job (a sampler may keep state)
    rng: np.random.Generator
    output: Output
    first_index: int = 0  # its first sequence's choice index in the output
    deadline: float = float("inf")  # time.monotonic() past which it fails
    # Jobs with the same key (and no seed of their own) are sampled in one call from the
    # engine's generator; None: the job samples alone, with its own `rng`.
    pool: tuple[Any, ...] | None = None
    # Run on a stepper of its own: a batch's arithmetic can differ in a float's last bit
    # with its size, and a seeded request is to give the same text whatever else runs.
    alone: bool = False
    # How many of the likeliest characters to report with each one's log-probability; None:
    # no log-probabilities (nothing computed).
    logprobs: int | None = None
    # Score the prompt from this index of `prompt_ids` on (a model of items: 1, past the end
    # symbol); None: not the prompt.
    score_from: int | None = None
    # the engine's
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.intp))
    fed: int = 0
    produced: int = 0
    live: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # its sequences still going
    open: int = 0  # how many (live.sum(), kept as a count: it is read every tick)
    scanners: list[StopScanner] = field(default_factory=list)
    penalty: RepetitionPenalty | None = None
    group: _Group | None = None
    prompt_scored: list[Scored] = field(default_factory=list)
    held: list[list[Scored]] = field(default_factory=list)  # each sequence's, for text its scanner holds back
    n: int = field(init=False)  # the decoding's, read every tick
    max_tokens: int = field(init=False)
    stops: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if len(self.prompt_ids) < 1:
            raise ValueError("a job needs at least one prompt id")
        if self.score_from is not None and self.logprobs is None:
            raise ValueError("a job scores its prompt only when it asks for log-probabilities")
        self.n, self.max_tokens, self.stops = self.decoding.num_samples, self.decoding.length, self.decoding.stop


class _Group:
    """A stepper and the jobs whose sequences are its rows."""

    def __init__(self, model: Model, size: int, shared: bool = False):
        self.step = model.stepper(size)
        self.size = size
        self.shared = shared  # rows of many jobs; else one job's alone
        self.ids = np.zeros(size, dtype=np.intp)
        self.jobs: list[Job] = []
        self.fresh: list[np.ndarray] = []  # rows to set to the zero state before the next step

    @property
    def used(self) -> int:
        return sum(job.n for job in self.jobs)


def batchable(model: Model) -> bool:
    """Whether the model's stepper lets its state be assigned, so that sequences of different
    requests can share it."""
    prop = getattr(type(model.stepper(1)), "state", None)
    return isinstance(prop, property) and prop.fset is not None


class Engine:
    """Advances every admitted job one character per tick, in a thread of its own.

    At most `max_batch` sequences run at once; jobs beyond wait, in order, and at most
    `max_waiting` sequences may wait (beyond, `submit` refuses: busy).
    """

    def __init__(self, model: Model, vocab: Vocabulary, max_batch: int = 256, max_waiting: int = 1024):
        self.model, self.vocab = model, vocab
        self.max_batch, self.max_waiting = max_batch, max_waiting
        self.symbols = np.array(vocab.symbols, dtype=object)
        self.shared = batchable(model)
        self.groups: list[_Group] = []
        self._waiting: collections.deque[Job] = collections.deque()
        self._waiting_rows = 0
        self._cond = threading.Condition()
        self._stopping: str | None = None
        self._thread: threading.Thread | None = None
        self.characters = 0  # sampled, over the engine's life
        self.rng = np.random.default_rng()  # for pooled jobs, which asked for no seed
        self.ticks = 0

    # -- the readers' side (any thread) -------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="charseq-engine", daemon=True)
        self._thread.start()

    def submit(self, jobs: list[Job]) -> None:
        """Queue one request's jobs (all or none); JobFailed("busy") when too many wait."""
        rows = sum(job.n for job in jobs)
        with self._cond:
            if self._stopping is not None:
                raise JobFailed("shutdown", self._stopping)
            if self._waiting_rows + rows > self.max_waiting and self._waiting_rows:
                raise JobFailed("busy", f"the server has {self._waiting_rows} sequences waiting; try again soon")
            self._waiting.extend(jobs)
            self._waiting_rows += rows
            self._cond.notify()

    def stop(self, reason: str = "the server is shutting down") -> None:
        """End every job, running or waiting, with `reason`; the thread exits."""
        with self._cond:
            self._stopping = reason
            self._cond.notify()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """Whether its thread runs (or it was never started: a test drives it)."""
        return self._thread is None or self._thread.is_alive()

    @property
    def running(self) -> int:
        return sum(group.used for group in self.groups)

    @property
    def waiting(self) -> int:
        return self._waiting_rows

    # -- the engine's thread -----------------------------------------------------------

    def advance(self) -> bool:
        """One round: admit waiting jobs, drop ended ones, and step every live sequence once.
        The engine's thread calls it in a loop; a test may call it instead of `start`.
        False when there was nothing to do."""
        admitted: list[Job] = []
        if self._waiting:  # read without the lock, every tick: a request just queued is seen next tick
            with self._cond:
                admitted = self._admit()
        for job in admitted:
            self._place(job)
        self._drop_ended()
        if self.groups:
            self._tick()
        return bool(self.groups or admitted)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._stopping is None and not self._waiting and not self.groups:
                    self._cond.wait()
                if self._stopping is not None:
                    break
            try:
                self.advance()
            except BaseException as exc:  # a fault of the engine's own, or a plugin's SystemExit: keep serving
                error = JobFailed("internal", f"the engine failed: {type(exc).__name__}: {exc}")
                for job in [job for group in self.groups for job in group.jobs]:
                    job.output.fail(error)
                self.groups = []
        error = JobFailed("shutdown", self._stopping)
        for job in [job for group in self.groups for job in group.jobs] + list(self._waiting):
            job.output.fail(error)
        self.groups, self._waiting = [], collections.deque()

    def _admit(self) -> list[Job]:
        """The waiting jobs that fit, in order (called holding the lock)."""
        room = self.max_batch - self.running
        admitted: list[Job] = []
        while self._waiting and (self._waiting[0].n <= room or not self.groups and not admitted):
            job = self._waiting.popleft()
            self._waiting_rows -= job.n
            room -= job.n
            admitted.append(job)
        return admitted

    def _place(self, job: Job) -> None:
        """Give the job rows in a group, or finish it at once when it is to make nothing."""
        job.live, job.open = np.ones(job.n, dtype=bool), job.n
        job.scanners = [StopScanner(job.stops) for _ in range(job.n)]
        try:
            job.penalty = RepetitionPenalty.create(job.decoding.repetition_penalty, job.decoding.repetition_window,
                                                   len(self.vocab), job.prompt_ids, job.n)
        except Exception as exc:  # checked when the request was read; a plugin's misuse lands here
            job.output.fail(JobFailed("internal", str(exc)))
            return
        job.held = [[] for _ in range(job.n)] if job.logprobs is not None else []
        if job.score_from == 0:  # nothing predicts a text's first character
            job.prompt_scored = [Scored(str(self.symbols[job.prompt_ids[0]]), None, None)]
        if job.max_tokens == 0 and job.score_from is None or job.output.cancelled:
            for j in range(job.n):
                job.output.finish(job.first_index + j, "length")
            job.output.notify()
            return
        if not self.shared or job.alone:
            group = _Group(self.model, job.n)
            job.rows = np.arange(job.n)
            self.groups.append(group)
        else:
            shared = next((g for g in self.groups if g.shared), None)
            if shared is None:
                shared = _Group(self.model, _power_of_two(job.n), shared=True)
                self.groups.append(shared)
            group = shared
            if group.size - group.used < job.n:
                group = self._resize(group, _power_of_two(group.used + job.n))
            taken = np.zeros(group.size, dtype=bool)
            for other in group.jobs:
                taken[other.rows] = True
            job.rows = np.flatnonzero(~taken)[: job.n]
            group.fresh.append(job.rows)
        job.group = group
        group.jobs.append(job)

    def _resize(self, group: _Group, size: int) -> _Group:
        """A group of `size` rows holding the same sequences, packed from row 0."""
        bigger = _Group(self.model, size, shared=True)
        state = group.step.state  # type: ignore[attr-defined]  # (checked by batchable)
        self._zero(group, state)
        new_state = np.zeros(state.shape[:1] + (size,) + state.shape[2:], dtype=state.dtype)  # the batch: axis 1
        start = 0
        for job in group.jobs:
            rows = np.arange(start, start + job.n)
            new_state[:, rows] = state[:, job.rows]
            bigger.ids[rows] = group.ids[job.rows]
            job.rows, job.group = rows, bigger
            start += job.n
        bigger.step.state = new_state  # type: ignore[attr-defined]
        bigger.jobs = group.jobs
        self.groups[self.groups.index(group)] = bigger
        return bigger

    def _zero(self, group: _Group, state: np.ndarray | None = None) -> None:
        """Start the rows of newly placed jobs from the zero state."""
        if not group.fresh:
            return
        write = state is None
        if state is None:
            state = group.step.state  # type: ignore[attr-defined]
        state[:, np.concatenate(group.fresh)] = 0.0
        group.fresh = []
        if write:
            group.step.state = state  # type: ignore[attr-defined]

    def _drop_ended(self) -> None:
        """Remove jobs that finished, were cancelled or ran out of time; shrink the batch."""
        now = time.monotonic()
        for group in list(self.groups):
            kept = []
            for job in group.jobs:
                if job.output.cancelled:
                    continue
                if now > job.deadline:
                    job.output.fail(JobFailed("timeout", "the request ran past the server's time limit"))
                    continue
                if job.open:
                    kept.append(job)
            group.jobs = kept
            if not kept:
                self.groups.remove(group)
            elif group.shared and group.size > 1 and group.used <= group.size // 4:
                self._resize(group, _power_of_two(group.used))
        if not self._waiting:
            return
        with self._cond:
            for job in list(self._waiting):
                if job.output.cancelled or now > job.deadline:
                    self._waiting.remove(job)
                    self._waiting_rows -= job.n
                    if not job.output.cancelled:
                        job.output.fail(JobFailed("timeout", "the request waited past the server's time limit"))

    def _tick(self) -> None:
        self.ticks += 1
        for group in self.groups:
            for job in group.jobs:
                if job.fed < len(job.prompt_ids):
                    group.ids[job.rows] = job.prompt_ids[job.fed]
            self._zero(group)
            try:
                logits = group.step(group.ids)
                if np.shape(logits) != (group.size, len(self.vocab)):
                    raise ValueError(f"the stepper returned logits of shape {np.shape(logits)}")
            except BaseException as exc:  # a plugin model's fault: its requests fail, the server goes on
                for job in group.jobs:
                    job.output.fail(JobFailed("internal", f"the model failed: {exc}"))
                    job.live[:], job.open = False, 0
                continue
            ready: list[Job] = []
            for job in group.jobs:
                if job.fed < len(job.prompt_ids):
                    job.fed += 1
                    if job.score_from is not None and job.fed >= job.score_from:
                        if not self._score_prompt(job, logits):
                            continue
                    elif job.fed < len(job.prompt_ids):
                        continue
                ready.append(job)
            pools: dict[tuple[Any, ...], list[Job]] = {}
            for job in ready:
                if job.pool is None:
                    self._sampled(group, [job], logits[job.rows], job.sampler, job.rng)
                else:
                    pools.setdefault(job.pool, []).append(job)
            for jobs in pools.values():  # one sampler call for every job that samples alike
                rows = jobs[0].rows if len(jobs) == 1 else np.concatenate([job.rows for job in jobs])
                self._sampled(group, jobs, logits[rows], jobs[0].sampler, self.rng)

    def _score_prompt(self, job: Job, logits: np.ndarray) -> bool:
        """Score the prompt character the job's latest logits predict (its sequences all
        read the same prompt: the first one's are enough); at the prompt's end, pass the
        scores on, and end a job that is to make nothing. Whether it goes on to sample."""
        if job.fed < len(job.prompt_ids):
            [scored] = scores(log_softmax(logits[job.rows[:1]]), job.prompt_ids[job.fed: job.fed + 1], self.symbols,
                              job.logprobs or 0)
            job.prompt_scored.append(scored)
            return False
        for j in range(job.n):
            job.output.add(job.first_index + j, "", job.prompt_scored)
        if job.max_tokens == 0:
            job.live[:], job.open = False, 0
            for j in range(job.n):
                job.output.finish(job.first_index + j, "length")
            job.output.notify()
            return False
        return True

    def _sampled(self, group: _Group, jobs: list[Job], logits: np.ndarray, sampler: Sampler,
                 rng: np.random.Generator) -> None:
        """Sample the next ids of `jobs` (their rows' `logits`, in order) and pass them on;
        a sampler that fails fails these jobs only."""
        try:
            job = jobs[0]
            # The model's own log-probabilities, before the penalty or the sampler (which
            # may change the logits it is given) has touched them.
            logprobs: list[np.ndarray | None] = []
            start = 0
            for each in jobs:
                logprobs.append(None if each.logprobs is None else log_softmax(logits[start: start + each.n]))
                start += each.n
            if job.penalty is not None:  # (a job with a penalty samples alone)
                logits = job.penalty.apply(logits)
            ids = checked_ids(sampler(logits, rng), len(logits), len(self.vocab))
        except BaseException as exc:  # SystemExit too: this thread is the server's, not a plugin's to end
            reason = str(exc) if isinstance(exc, SamplerError) else f"{type(exc).__name__}: {exc}"
            for job in jobs:
                job.output.fail(JobFailed("internal", f"the sampler failed: {reason}"))
                job.live[:], job.open = False, 0
            return
        start = 0
        for job, job_logprobs in zip(jobs, logprobs):
            job_ids = ids[start: start + job.n]
            self._emit(group, job, job_ids,
                       None if job_logprobs is None else scores(job_logprobs, job_ids, self.symbols, job.logprobs or 0))
            start += job.n
            job.output.notify()

    def _emit(self, group: _Group, job: Job, ids: np.ndarray, scored: list[Scored] | None = None) -> None:
        """Feed a job's sampled ids back and pass their characters to its output (with
        their `scored` log-probabilities, one per sequence, when it asks)."""
        if job.penalty is not None:
            job.penalty.add(ids)
        group.ids[job.rows] = ids
        job.produced += 1
        last = job.produced >= job.max_tokens
        output, chars = job.output, self.symbols[ids]
        if not job.stops and not last and job.open == job.n:  # the common case, without the scanners
            self.characters += job.n
            for j in range(job.n):
                output.add(job.first_index + j, chars[j], None if scored is None else [scored[j]])
            return
        self.characters += job.open
        for j in np.flatnonzero(job.live).tolist():
            scanner = job.scanners[j]
            piece = scanner.feed(chars[j])
            if last and not scanner.done:
                piece += scanner.flush()
            if scored is not None:  # the scores of what the scanner lets go of, in order
                held = job.held[j]
                held.append(scored[j])
                output.add(job.first_index + j, piece, held[: len(piece)])
                del held[: len(piece)]
            elif piece:
                output.add(job.first_index + j, piece)
            if scanner.done or last:
                job.live[j] = False
                job.open -= 1
                output.finish(job.first_index + j, "stop" if scanner.done else "length")


def _power_of_two(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())


@dataclass
class Completion:
    """One choice's whole text and why it ended (for callers that wait for the end)."""

    text: str
    finish_reason: str


def collect(output: Output, choices: int, timeout: float | None = None) -> list[Completion]:
    """Wait in this thread for every choice of `output`; JobFailed if the request failed."""
    gathered = Gathered(choices)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        taken = output.take()
        gathered.add(taken)
        if taken.error is not None:
            raise taken.error
        if taken.done:
            return [Completion(text, reason) for text, reason in zip(gathered.texts, gathered.reasons)]
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise JobFailed("timeout", "no answer in time")
        output.wait(left)


def describe(engine: Engine) -> dict[str, Any]:
    """What a health check reports."""
    return {"running": engine.running, "waiting": engine.waiting, "batched": engine.shared,
            "characters": engine.characters}
