"""The click parts of the `acol-eval` command line that are not commands: choices and help
read from the registries when asked for (so a command never imports another's registry),
and every error as one line on stderr with its exit status."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from enum import Enum

import click

from acol_eval.util.errors import AcolError


def registry_names(module: str, name: str) -> list[str]:
    """The names registry `name` of `module` holds: an Enum's values, a dict's keys or a
    sequence's items, read from the registry each time (so a new entry is a choice)."""
    registry = getattr(importlib.import_module(module), name)
    return [item.value if isinstance(item, Enum) else str(item) for item in registry]


def names_of(module: str, name: str) -> Callable[[], list[str]]:
    """What RegistryChoice asks for the names of registry `name` of `module`: the module
    is imported only then (the registries live beside numpy, pandas or torch)."""
    return lambda: registry_names(module, name)


class DerivedHelp(click.Option):
    """An option whose help text is made when the help is shown (`help_from()`), so
    that the lists it names come from their registries."""

    def __init__(self, *args, help_from: Callable[[], str], **kwargs):
        super().__init__(*args, **kwargs)
        self.help_from = help_from

    def get_help_record(self, ctx: click.Context):
        self.help = self.help_from()
        return super().get_help_record(ctx)


class RegistryChoice(click.Choice):
    """A choice among the names a registry holds, asked for only when a command parses
    its options or shows --help (so other commands never import the registry's module)."""

    def __init__(self, names) -> None:  # names: () -> list of str
        self._names = names
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self._names())


class OneLineErrors(click.Group):
    """Every error as one line on stderr with exit status 2 (bad usage or input): the library's
    AcolError (bad input, 2) and click's usage errors (a bad choice, a missing option, 2)."""

    def main(self, *args, **kwargs):
        kwargs.pop("standalone_mode", None)
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except AcolError as exc:
            click.echo(f"acol-eval: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help(), err=True)  # bare `acol-eval`: the help, as usual
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            where = f" {exc.ctx.info_name}" if getattr(exc, "ctx", None) and exc.ctx.parent else ""
            click.echo(f"acol-eval{where}: error: {exc.format_message()} (see --help)", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("acol-eval: interrupted", err=True)
            sys.exit(130)
