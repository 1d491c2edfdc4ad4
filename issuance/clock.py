"""One home for time in the back office: Japan time, the wall clock, and the settable clock.

Every instant the back office stores or compares is timezone-aware. A naive time typed at the
command line is Japan time (JST, UTC+9, no daylight saving), and the calendar rules of
policy.py count days in JST. The settable clock is what `--at` starts: the instant given, then
running on in real time, shared by every service of a TEST stack (kiosk, centre, OCSP) so that
a demo or a test can live on any date.
"""
from __future__ import annotations

import datetime as _dt
import threading
import time

# Japan time (UTC+9, no daylight saving). Its one definition is with the calendar rules that count
# days in it (policy.py, which imports nothing outside the standard library); take it from here.
from mynaemu.issuance.policy import JST

__all__ = ["JST", "utc_now", "now", "SettableClock"]


def utc_now() -> _dt.datetime:
    """The machine's wall clock in UTC (the clock to give a live service)."""
    return _dt.datetime.now(_dt.timezone.utc)


def now() -> _dt.datetime:
    """The machine's wall clock in JST, to the whole second: the instant of a step given no --at."""
    return _dt.datetime.now(JST).replace(microsecond=0)


class SettableClock:
    """A clock that starts at `start` and runs in real time from there; `advance` jumps ahead.

    Shared by every service of a TEST stack so that `--at` moves kiosk, centre and OCSP together.
    Calling it gives the current instant (timezone-aware, like `start`).
    """

    def __init__(self, start: _dt.datetime | None = None):
        start = start or utc_now()
        if start.tzinfo is None:
            raise ValueError("the clock's start must be timezone-aware")
        self._start = start
        self._t0 = time.monotonic()
        self._offset = _dt.timedelta(0)
        self._lock = threading.Lock()

    def __call__(self) -> _dt.datetime:
        with self._lock:
            return self._start + _dt.timedelta(seconds=time.monotonic() - self._t0) + self._offset

    def advance(self, delta: _dt.timedelta | float) -> None:
        if not isinstance(delta, _dt.timedelta):
            delta = _dt.timedelta(seconds=delta)
        with self._lock:
            self._offset += delta
