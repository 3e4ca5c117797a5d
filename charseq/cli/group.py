"""The `charseq` group: one line for every error, warnings in the same voice, Ctrl-C that
ends quietly, and the commands plugins register, added on demand."""

from __future__ import annotations

import sys
import warnings
from typing import cast

import click

from charseq.cli.output import drop_output, say, settle
from charseq.cli.words import WORDS
from charseq.errors import CallbackDeprecation, CharseqError, CharseqWarning, Notice, spoken
from charseq.hooks.registry import get_registry, set_debug
from charseq.training.interrupt import Aborted


class Failure(click.ClickException):
    """A CharseqError on its way out: one line on stderr, exit 1 or 2."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click's stub makes it a ClassVar; here it varies


class CharseqGroup(click.Group):
    """Turns CharseqError into one line, and adds the commands plugins register, on demand:
    running a built-in command never loads plugins."""

    # The registry the plugin commands came from, and the names they were added under.
    _plugin_commands: tuple[object, frozenset[str]] = (None, frozenset())

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.add_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands or name in self._plugin_commands[1]:
            self.add_plugin_commands()
        return super().get_command(ctx, name)

    def add_plugin_commands(self) -> None:
        """The installed plugins' commands, refusing those that take a built-in's name."""
        try:
            registry = get_registry()
        except CharseqError as exc:
            raise Failure(str(exc), exc.exit_code) from None
        source, added = self._plugin_commands
        if source is registry:
            return
        for name in added:  # from plugins that an earlier registry loaded
            self.commands.pop(name, None)
        builtin = set(self.commands)
        try:
            commands = registry.commands(reserved=builtin)
        except CharseqError as exc:  # strict mode
            raise Failure(str(exc), exc.exit_code) from None
        for name, registered in commands.items():
            self.commands[name] = cast(click.Command, registered.factory)  # a command registers itself
        self._plugin_commands = (registry, frozenset(commands))

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """click's main, with Ctrl-C anywhere (parsing, loading plugins, training) ending
        quietly with 130 where click would print "Aborted!" and exit 1."""
        with warnings.catch_warnings(), spoken(WORDS):  # the core's messages name settings by their flags
            others = warnings.showwarning

            def show(message, category, *rest, **options):
                """charseq's warnings as one line on stderr, like its errors; others as Python shows them."""
                if issubclass(category, CharseqWarning):
                    say(f"charseq: {'' if issubclass(category, Notice) else 'warning: '}{message}", err=True)
                else:
                    others(message, category, *rest, **options)

            warnings.showwarning = show
            warnings.simplefilter("default", CallbackDeprecation)  # shown, where a DeprecationWarning would not be
            if not standalone_mode:
                return super().main(args, prog_name, complete_var, False, **extra)
            try:
                result = super().main(args, prog_name, complete_var, False, **extra)
            except click.exceptions.Abort as exc:
                interrupted = isinstance(exc.__cause__, KeyboardInterrupt)
                say("charseq: interrupted" if interrupted else "Aborted!", err=True)
                sys.exit(130 if interrupted else 1)
            except click.ClickException as exc:
                exc.show()
                sys.exit(exc.exit_code)
            except BrokenPipeError:
                drop_output(sys.stdout)
                sys.exit(0)
            sys.exit(result if isinstance(result, int) else 0)

    def make_context(self, *args, **kwargs) -> click.Context:
        try:
            ctx = super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            raise one_line(exc) from None
        set_debug(bool(ctx.params.get("debug")))  # before any plugin loads: --debug shows why one failed to import
        return ctx

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a subcommand's options, parsed here
            raise one_line(exc) from None
        except CharseqError as exc:
            raise Failure(str(exc), exc.exit_code) from None
        except Aborted as exc:  # a second Ctrl-C or SIGTERM while training
            say(exc.message or "aborted", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:  # Ctrl-C while starting up, loading, generating or evaluating
            settle(sys.stdout)
            say("charseq: interrupted", err=True)
            sys.exit(130)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            detail = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
            culprit = get_registry().culprit(exc) if get_registry.cache_info().currsize else None
            what = f"{culprit} failed" if culprit else "internal error"
            command = f"{ctx.command_path} --debug {ctx.invoked_subcommand or 'COMMAND'} ..."  # --debug goes first
            raise Failure(f"{what}: {detail} (for the traceback, run {command})", 1) from None


def one_line(exc: click.UsageError) -> click.ClickException:
    """Click's usage errors as one line, like every other error, pointing to --help."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # `charseq` alone shows the help
        return exc
    hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    if isinstance(exc, click.NoSuchOption) and exc.option_name == "--debug" and exc.ctx is not None \
            and exc.ctx.parent is not None:  # `charseq generate ... --debug`: it is the group's option
        hint = f" (--debug goes before the command: {exc.ctx.parent.command_path} --debug {exc.ctx.info_name} ...)"
    return Failure(exc.format_message() + hint, exc.exit_code)

