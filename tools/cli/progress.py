"""Progress bars with a total and an ETA for long runs — on a terminal only.

`issue generate --workers`, the long fuzz (`python -m mynaemu.tools.harness.fuzz`) and the tearing
harness (`python -m mynaemu.tools.harness.tearing`) report through this. When the stream is a terminal
it draws click's progress bar (position / total, percentage, ETA); when it is a pipe or a file
(a CI log) it draws nothing and `enabled` is False, so callers can print their plain periodic
lines instead — a log never fills with carriage-return redraws.
"""
from __future__ import annotations

import sys

import click


def on_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class TerminalProgress:
    """`with TerminalProgress(total, "label") as p: p.set(done)`; nothing at all off a terminal."""

    def __init__(self, total: int, label: str, *, stream=None, force: bool | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.total = max(int(total), 0)
        self.enabled = on_terminal(self.stream) if force is None else force
        self._done = 0
        self._bar = None
        if self.enabled and self.total:
            self._bar = click.progressbar(length=self.total, label=label, file=self.stream, show_eta=True,
                                          show_percent=True, show_pos=True)
            # click hides the bar when it thinks the stream is no terminal; `force` overrides it
            self._bar._is_atty = True

    def __enter__(self) -> "TerminalProgress":
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def set(self, done: int) -> None:
        done = min(max(int(done), 0), self.total)
        if self._bar is not None and done > self._done:
            self._bar.update(done - self._done)
        self._done = max(self._done, done)

    def advance(self, n: int = 1) -> None:
        self.set(self._done + n)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
