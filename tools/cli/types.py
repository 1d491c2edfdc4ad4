"""click parameter types for the `mynaemu` commands: every option that takes text, a date, an
instant, a number of seconds or an output path is checked here, with the rules of
issuance/validate.py (docs/input-limits.md), so a bad value is one line and exit 2 before
anything runs. The domain checks the same rules again for callers of the Python API.
"""
from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

import click

from mynaemu.issuance import validate
from mynaemu.issuance.clock import JST
# The one-line command and group classes live in tools/cli/groups.py; importable from here too
# (tools/cli/kiosk.py takes them from this module).
from mynaemu.tools.cli.groups import one_line_group, one_line_usage  # noqa: F401


class InstantType(click.ParamType):
    """ISO 8601 date or datetime; a naive value is Japan time (clock.JST); a date is 00:00 JST.
    Only 1950-01-01 .. 2099-12-31 (validate.INSTANT_FIRST/LAST): checked before any time-zone
    shift, which would overflow at the ends of Python's calendar."""

    name = "DATETIME"

    def convert(self, value, param, ctx):
        if isinstance(value, _dt.datetime):
            instant = value if value.utcoffset() is not None else value.replace(tzinfo=JST)
        else:
            text = _text_arg(self, value, param, ctx, limit=64).strip()
            try:
                if len(text) == 10:
                    day = _dt.date.fromisoformat(text)
                    instant = _dt.datetime(day.year, day.month, day.day)
                else:
                    instant = _dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
            except ValueError as exc:
                self.fail(f"{validate.shown(text)} is not an ISO 8601 date or datetime ({exc})", param, ctx)
        try:
            validate.naive_in_range(instant, "the instant")
            if instant.utcoffset() is None:
                instant = instant.replace(tzinfo=JST)
            return validate.instant(instant, "the instant")
        except (validate.InputError, OverflowError) as exc:
            self.fail(str(exc), param, ctx)


class DateType(click.ParamType):
    name = "YYYY-MM-DD"

    def convert(self, value, param, ctx):
        if isinstance(value, _dt.date):
            return value
        text = _text_arg(self, value, param, ctx, limit=64).strip()
        if len(text) != 10:
            self.fail(f"{validate.shown(text)} is not a date in YYYY-MM-DD form", param, ctx)
        try:
            return _dt.date.fromisoformat(text)
        except ValueError as exc:
            self.fail(f"{validate.shown(text)} is not a valid date ({exc})", param, ctx)


class BirthType(DateType):
    """A birth date: on or after 明治 1868-01-25 (the age limit needs --at: the domain checks it)."""

    def convert(self, value, param, ctx):
        day = super().convert(value, param, ctx)
        try:
            return validate.check_birth(day, "birth date")
        except validate.InputError as exc:
            self.fail(str(exc), param, ctx)


class TextType(click.ParamType):
    """Free text under the rules of validate.text for `field` (its limit from validate.LIMITS)."""

    name = "TEXT"

    def __init__(self, field: str, *, optional: bool = False, ascii_only: bool = False):
        self.field = field
        self.optional = optional
        self.ascii_only = ascii_only

    def convert(self, value, param, ctx):
        text = _text_arg(self, value, param, ctx)
        try:
            if self.optional and text == "":
                return text
            if self.ascii_only:
                return validate.ascii_token(text, self.field)
            return validate.text(text, self.field)
        except validate.InputError as exc:
            self.fail(str(exc), param, ctx)


class FlagsType(click.ParamType):
    """代替文字 flags: '0'/'1' only (their count is checked against the text by the domain)."""

    name = "FLAGS"

    def convert(self, value, param, ctx):
        text = _text_arg(self, value, param, ctx, limit=validate.LIMITS["address"])
        if set(text) - {"0", "1"}:
            self.fail(f"{validate.shown(text)}: one 0/1 flag per character", param, ctx)
        return text


class IdType(click.ParamType):
    """An application / notice id as typed: valid text, at most validate.ID_LIMIT characters
    (the store then checks its alphabet and check character)."""

    name = "ID"

    def convert(self, value, param, ctx):
        try:
            return validate.form_id_text(value)
        except validate.InputError as exc:
            self.fail(str(exc), param, ctx)


class SecondsType(click.ParamType):
    """A finite number of seconds within low..high (nan and inf refused: float() takes them)."""

    name = "SECONDS"

    def __init__(self, low: float, high: float):
        self.low, self.high = low, high

    def convert(self, value, param, ctx):
        text = _text_arg(self, value, param, ctx, limit=64)
        try:
            number = float(text)
        except ValueError:
            self.fail(f"{validate.shown(text)} is not a number of seconds", param, ctx)
        try:
            return validate.finite_seconds(number, "the lease", low=self.low, high=self.high)
        except validate.InputError as exc:
            self.fail(str(exc), param, ctx)


class OutputPath(click.Path):
    """A file to write: checked up front, so a missing or unwritable folder is one line and
    exit 2 before any work is done (not found after a whole demo has run)."""

    def __init__(self):
        super().__init__(dir_okay=False, path_type=Path)

    def convert(self, value, param, ctx):
        if isinstance(value, str):
            try:
                validate.text(value, "the output path", limit=4096)
            except validate.InputError as exc:
                self.fail(str(exc), param, ctx)
        path = super().convert(value, param, ctx)
        folder = Path(path).parent
        if not folder.exists():
            self.fail(f"{validate.shown(str(folder), 200)}: no such directory", param, ctx)
        if not folder.is_dir():
            self.fail(f"{validate.shown(str(folder), 200)}: not a directory", param, ctx)
        if not os.access(folder, os.W_OK | os.X_OK):
            self.fail(f"{validate.shown(str(folder), 200)}: not writable", param, ctx)
        return path


def _text_arg(ptype, value, param, ctx, *, limit: int = 100_000) -> str:
    """The raw argument as text: argv bytes that are not UTF-8 (surrogate escapes) refused."""
    text = str(value)
    if len(text) > limit:
        ptype.fail(f"{validate.shown(text)} is too long (the limit is {limit} characters)", param, ctx)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        ptype.fail(f"{validate.shown(text)} is not valid text (bytes that are not UTF-8)", param, ctx)
    return text


INSTANT = InstantType()
DATE = DateType()
BIRTH = BirthType()
FLAGS = FlagsType()
FORM_ID = IdType()
OUTPUT = OutputPath()


def text_type(field: str, **kwargs) -> TextType:
    return TextType(field, **kwargs)

