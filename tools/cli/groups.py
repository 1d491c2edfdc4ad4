"""click command and group classes of the `mynaemu` CLI.

- one-line usage errors: click prints three or four lines for a bad argument; every command of
  this CLI prints one, `PROG: command: message`, and exits 2 (errors.CliFail);
- lazy subcommands (click's "lazy loading" pattern): a group names some subcommands as
  "module:attribute" and imports that module only when the subcommand is run or its help is
  shown, so `mynaemu card apdu` loads neither the kiosk nor reportlab nor pyhanko.
"""
from __future__ import annotations

import importlib

import click

from mynaemu.tools.cli.errors import CliFail, ExitCode

__all__ = ["one_line_usage", "one_line_group"]


def one_line_usage(prog: str):
    """A click.Command class whose bad arguments are one line with exit 2 (click prints four)."""

    class OneLineCommand(click.Command):
        def make_context(self, info_name, args, parent=None, **extra):
            try:
                return super().make_context(info_name, args, parent=parent, **extra)
            except click.UsageError as exc:
                raise CliFail(f"{info_name or self.name}: {exc.format_message()}", ExitCode.USAGE,
                              prog=prog) from None

        def invoke(self, ctx):
            try:
                return super().invoke(ctx)
            except click.UsageError as exc:
                raise CliFail(f"{ctx.info_name or self.name}: {exc.format_message()}", ExitCode.USAGE,
                              prog=prog) from None

    return OneLineCommand


def one_line_group(prog: str):
    """A click.Group whose commands (and unknown command names) give one-line usage errors.

    It takes `lazy_subcommands={name: "module:attribute"}`: those subcommands are imported on
    first use (listed in the help like the others, in the same sorted order)."""

    class OneLineGroup(click.Group):
        command_class = one_line_usage(prog)

        def __init__(self, *args, lazy_subcommands: dict[str, str] | None = None, **kwargs):
            super().__init__(*args, **kwargs)
            self.lazy_subcommands = dict(lazy_subcommands or {})

        def list_commands(self, ctx):
            return sorted({*super().list_commands(ctx), *self.lazy_subcommands})

        def get_command(self, ctx, cmd_name):
            if cmd_name in self.lazy_subcommands:
                self._load(cmd_name)
            return super().get_command(ctx, cmd_name)

        def _load(self, cmd_name: str) -> None:
            module_name, _, attribute = self.lazy_subcommands[cmd_name].partition(":")
            command = getattr(importlib.import_module(module_name), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{module_name}:{attribute} is not a click command")
            del self.lazy_subcommands[cmd_name]
            self.add_command(command, cmd_name)

        def make_context(self, info_name, args, parent=None, **extra):
            try:  # the group's own options
                return super().make_context(info_name, args, parent=parent, **extra)
            except click.exceptions.NoArgsIsHelpError:
                raise  # no arguments at all: the help, as before
            except click.UsageError as exc:
                raise CliFail(exc.format_message(), ExitCode.USAGE, prog=prog) from None

        def resolve_command(self, ctx, args):
            try:
                return super().resolve_command(ctx, args)
            except click.UsageError as exc:
                raise CliFail(exc.format_message(), ExitCode.USAGE, prog=prog) from None

    return OneLineGroup
