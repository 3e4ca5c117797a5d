"""The whole plugin contract. A plugin is a module or object with functions marked
`@hookimpl`, named after the hooks below; an installed package exposes it through an
entry point in the group ``charseq``:

    [project.entry-points.charseq]
    my-plugin = "my_package.my_module"

Each register hook receives a ``register(name, factory, help="")`` function and may call
it any number of times. Names are unique across all plugins and contain no ``:``.
"""

import pluggy

hookspec = pluggy.HookspecMarker("charseq")
hookimpl = pluggy.HookimplMarker("charseq")

# What charseq itself gives a factory, apart from the user's options: a corpus its ARG, a
# model these (everything else a model factory takes is a model option).
CORE_ARGUMENTS = ("vocab_size", "hidden_size", "seed", "dtype")
SET_BY_CHARSEQ = {"corpus": ("arg",), "model": CORE_ARGUMENTS}


@hookspec
def register_corpora(register):
    """Register corpus providers: ``factory(arg: str | None) -> charseq.Corpus``.

    ``arg`` is what follows the colon in ``--corpus NAME:ARG``, or None.
    """


@hookspec
def register_samplers(register):
    """Register samplers: ``factory(**options) -> sampler``, where
    ``sampler(logits, rng) -> ids`` maps float logits (B, V) to int ids (B,)."""


@hookspec
def register_callbacks(register):
    """Register training callbacks: ``factory(**options) -> callback``, an object with
    any of the CallbackSpec hooks below, each marked ``@hookimpl``."""


@hookspec
def register_models(register):
    """Register models: ``factory(vocab_size, hidden_size, seed=0, dtype=numpy.float32,
    **options) -> model``, an object that keeps the contract of ``charseq.Model``
    (docs/plugins.md). ``options`` are what follows the colon in ``--model NAME:k=v,...``;
    ``seed=None`` means the weights are about to be loaded from a checkpoint."""


@hookspec
def register_commands(cli):
    """Add subcommands to ``charseq``: ``cli`` is a click group that collects them, so
    ``@cli.command()`` adds one. Each is registered like a corpus or a sampler: a name
    that is taken, or is a built-in command's, is refused with a warning."""


class CallbackSpec:
    """Hooks the Trainer calls on the callbacks chosen for one run, in the order the run
    lists them (Keras semantics).

    A callback asks training to stop by setting ``trainer.stop_training = True``.
    A callback with state that a resumed run must continue from also has
    ``state_dict() -> dict`` (JSON values and numpy arrays) and
    ``load_state_dict(state)``; checkpoints carry the state, and a resumed run hands it
    back after ``on_train_begin``.
    """

    @hookspec
    def on_train_begin(self, trainer):
        """Training is about to start (or resume)."""

    @hookspec
    def on_step_end(self, trainer, step, loss):
        """One optimisation step is done; ``loss`` is its mean loss per character."""

    @hookspec
    def on_evaluation(self, trainer, metrics):
        """An evaluation is done: at each epoch's end and every ``eval_every`` steps.
        ``metrics`` has ``step``, ``epoch``, ``loss``, ``bpc``, ``perplexity``, ``lr``,
        ``chars_per_sec`` and ``wall_time``, and ``val_loss``, ``val_bpc`` and
        ``val_perplexity`` when part of the text is held out."""

    @hookspec
    def on_epoch_end(self, trainer, epoch, metrics):
        """Epoch ``epoch`` (from 1) is done; ``metrics`` are its last evaluation's."""

    @hookspec
    def on_train_end(self, trainer, metrics):
        """Training is over, stopped early or not; ``metrics`` are the last epoch's."""
