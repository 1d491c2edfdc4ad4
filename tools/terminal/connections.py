"""The doors a terminal talks to a card through: a `Connection` moves APDU bytes.

`InProcessConnection` powers a `mynaemu.card.core.Card` in this process (optionally recording
the session as a card script, tools/terminal/record.py); `PcscConnection` reaches a card in a
PC/SC reader through pyscard with T=1 (spec §1.1). `CardClient` (tools/terminal/client.py)
drives either.
"""
from __future__ import annotations

from typing import Protocol

from mynaemu.tools.terminal.errors import TransportError


class Connection(Protocol):
    """Moves one command APDU to the card and returns the response APDU (data + SW1 SW2)."""

    def transmit(self, apdu: bytes) -> bytes: ...

    def close(self) -> None: ...


class InProcessConnection:
    """A `mynaemu.card.core.Card` in this process: powered on here, powered off by close().

    record: a path; the session is written there as a card script (tools/terminal/record.py) with PINs
    and 照合番号 as placeholders, so `mynaemu card script FILE --card IMAGE` replays it.
    """

    def __init__(self, card, *, record=None):
        self.card = card
        self._recorder = None
        if record is not None:
            from mynaemu.tools.terminal.record import Recorder
            self._recorder = Recorder.for_image(record, card.image, source="InProcessConnection(record=…)")
        self.atr = card.power_on()
        self._open = True

    @classmethod
    def from_image(cls, image, **card_kwargs) -> "InProcessConnection":
        from mynaemu.card.core import Card
        return cls(Card(image, **card_kwargs))

    def transmit(self, apdu: bytes) -> bytes:
        if not self._open:
            raise TransportError("connection closed")
        response = self.card.transmit(bytes(apdu))
        if self._recorder is not None:
            self._recorder.exchange(bytes(apdu), response)
        return response

    def reset(self, warm: bool = True) -> bytes:
        """Warm reset (status kept, §4.5) or cold reset (power cycle: status cleared)."""
        if not self._open:
            raise TransportError("connection closed")
        self.atr = self.card.reset(warm=warm)
        if self._recorder is not None:
            self._recorder.reset(warm)
        return self.atr

    def close(self) -> None:
        """Power the card off; a card opened on an image file is also released (its lock)."""
        if self._open:
            self._open = False
            close = getattr(self.card, "close", None)
            (close or self.card.power_off)()
            if self._recorder is not None:
                self._recorder.close()


def _pyscard():
    try:
        from smartcard import Exceptions, System, scard
        from smartcard.CardConnection import CardConnection
    except ImportError:
        raise TransportError("pyscard is not installed (pip install 'mynaemu[pcsc]')") from None
    return System, CardConnection, Exceptions, scard


def _listing_errors(exceptions) -> tuple:
    """What listing the readers raises when pcscd is not there: pyscard's SmartcardException, and
    its PC/SC layer's own BaseSCardException (SCardEstablishContext failing: "Service not
    available"), which does not derive from it."""
    try:
        from smartcard.pcsc.PCSCExceptions import BaseSCardException
    except ImportError:  # an older pyscard without the module
        return exceptions.SmartcardException, OSError
    return exceptions.SmartcardException, BaseSCardException, OSError


def list_readers() -> list[str]:
    """Names of the PC/SC readers; TransportError when pyscard or pcscd is missing."""
    system, _, exceptions, _ = _pyscard()
    try:
        return [str(r) for r in system.readers()]
    except _listing_errors(exceptions) as exc:
        raise TransportError(f"cannot list PC/SC readers (is pcscd running?): {_one_line(exc)}") from None


def _one_line(exc) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class PcscConnection:
    """A card in a PC/SC reader, through pyscard, with T=1 (spec §1.1; GEBO connects T=1 only).

    reader: the reader name (exact, or a substring naming exactly one reader); None takes the
    first reader that holds a card.
    """

    def __init__(self, reader: str | None = None):
        system, card_connection, exceptions, scard = _pyscard()
        self._exceptions = exceptions
        self._scard = scard
        try:
            readers = system.readers()
        except _listing_errors(exceptions) as exc:
            raise TransportError(f"cannot list PC/SC readers (is pcscd running?): {_one_line(exc)}") from None
        if not readers:
            raise TransportError("no PC/SC reader found")
        names = [str(r) for r in readers]
        if reader is None:
            candidates = readers
        else:
            exact = [r for r in readers if str(r) == reader]
            candidates = exact or [r for r in readers if reader in str(r)]
            if not candidates:
                raise TransportError(f"no reader named {reader!r} (readers: {', '.join(names)})")
            if len(candidates) > 1:
                raise TransportError(f"{reader!r} names {len(candidates)} readers: "
                                     f"{', '.join(str(r) for r in candidates)}")
        last = None
        for candidate in candidates:
            conn = candidate.createConnection()
            try:
                conn.connect(card_connection.T1_protocol)
            except (exceptions.SmartcardException, OSError) as exc:
                last = exc
                continue
            self._conn = conn
            self.reader = str(candidate)
            self.atr = bytes(conn.getATR())
            return
        if reader is None:
            raise TransportError(f"no card in any reader (readers: {', '.join(names)})")
        raise TransportError(f"no card in reader {str(candidates[0])!r}: {_one_line(last)}")

    def transmit(self, apdu: bytes) -> bytes:
        try:
            data, sw1, sw2 = self._conn.transmit(list(apdu))
        except (self._exceptions.SmartcardException, OSError) as exc:
            raise TransportError(f"{self.reader}: transmit failed: {_one_line(exc)}") from None
        return bytes(data) + bytes((sw1, sw2))

    def reset(self, warm: bool = True) -> bytes:
        disposition = self._scard.SCARD_RESET_CARD if warm else self._scard.SCARD_UNPOWER_CARD
        try:
            self._conn.reconnect(disposition=disposition)
        except (self._exceptions.SmartcardException, OSError) as exc:
            raise TransportError(f"{self.reader}: reset failed: {_one_line(exc)}") from None
        self.atr = bytes(self._conn.getATR())
        return self.atr

    def close(self) -> None:
        conn, self._conn = getattr(self, "_conn", None), None
        if conn is None:
            return
        try:
            conn.disconnect()
            release = getattr(conn, "release", None)
            if release:
                release()
        except (self._exceptions.SmartcardException, OSError):
            pass  # the card or reader is already gone: nothing left to close
