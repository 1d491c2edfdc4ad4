"""The terminal-side client: drives any Individual Number Card through any door.

Used by the kiosk, the CLI and the tests. A `Connection` moves APDU bytes (in-process to a
`mynaemu.card.core.Card`, or through PC/SC with pyscard); `CardClient` builds the commands
exactly as the real clients of card-interface.md §10 do and turns status words into typed
exceptions:

- SELECT by DF name `00 A4 04 0C Lc AID` and SELECT EF `00 A4 02 0C 02 FID` (§2.2, §2.3);
- READ BINARY with offsets in P1P2 and 256-byte chunks (Le=00), or one extended Le when the
  client is built with `extended=True` (§6); the SFI forms of §2.4 on request;
- VERIFY `00 20 00 80 Lc PIN` after selecting the PIN EF, the retry query `00 20 00 80`
  answered with 63Cn (§4.2), COMPUTE DIGITAL SIGNATURE `80 2A P1 80 Lc data 00` (§5.1).

With `trace=True` every exchange is recorded as a (command, response) pair of spaced hex
strings in which PINs, 照合番号 and 個人番号 are redacted (house rule: logs never show them):
`00 20 00 80 04 ****`.
"""
from __future__ import annotations

import datetime as _dt
from typing import Protocol

from mynaemu.card import layouts
from mynaemu.card.apdu import Command, Response
from mynaemu.card.redact import DIGITS12, redact_command
from mynaemu.card.status import describe

# spec §2.1: the AIDs of the card's applications.
AIDS = {
    "jpki": bytes.fromhex("D392F000260100000001"),     # 公的個人認証AP
    "kenhojo": bytes.fromhex("D3921000310001010408"),  # 券面事項入力補助AP
    "kenkaku": bytes.fromhex("D3921000310001010402"),  # 券面事項確認AP
    "juki": bytes.fromhex("D3921000310001010401"),     # 住基AP
    "common": bytes.fromhex("D3921000310001010100"),   # 共通カードAP
    "isd": bytes.fromhex("A0000001510000"),            # GlobalPlatform ISD (§2.1)
}
_NAME_OF_AID = {aid: name for name, aid in AIDS.items()}

# spec §3.1 / §4.1: JPKI files, keys and PINs by purpose.
JPKI_CERTS = {"auth": 0x000A, "sign": 0x0001, "auth_ca": 0x000B, "sign_ca": 0x0002}
JPKI_KEYS = {"auth": 0x0017, "sign": 0x001A}
JPKI_PINS = {"auth": 0x0018, "sign": 0x001B}

# EFs whose content is a 個人番号 (kenhojo 0001, §3.2) or its rendered image (kenkaku 0005, §3.3).
_NUMBER_EFS = {(AIDS["kenhojo"], 0x0001), (AIDS["kenkaku"], 0x0005)}

MAX_OFFSET = 0x7FFF  # READ BINARY P1 bit 8 = 0: a 15-bit offset (§6 item 1)


# -- errors ---------------------------------------------------------------------------------

class TransportError(Exception):
    """The door failed (no pyscard, no reader, no card, card removed); one-line message."""


class CardDataError(ValueError):
    """The card answered 9000 but the content is not what the spec describes."""


class CardError(Exception):
    """The card answered a status word other than 9000."""

    def __init__(self, sw: int, message: str = ""):
        self.sw = sw
        self.message = message or describe(sw)
        super().__init__(f"{self.message} (SW {sw:04X})")


class PinIncorrect(CardError):
    """Wrong PIN: 63Cn with n >= 1 tries left (§4.2)."""

    def __init__(self, tries_left: int, message: str = ""):
        self.tries_left = tries_left
        super().__init__(0x63C0 | tries_left, message or f"wrong PIN, {tries_left} tries left")


class PinBlocked(CardError):
    """The key is blocked: 63C0 from the failure that blocks it, or 6983/6984 (§4.2)."""

    tries_left = 0


class SecurityStatusNotSatisfied(CardError):
    """6982: a protected EF or key used without the required verification (§4.5)."""


class NotFound(CardError):
    """6A82 (no such EF/AID), 6A83 (no such record), 6A88 (no such data object)."""


def error_for(sw: int, context: str = "") -> CardError:
    """The typed exception for a non-9000 status word."""
    what = f"{context}: " if context else ""
    if sw & 0xFFF0 == 0x63C0:
        n = sw & 0x0F
        if n == 0:
            return PinBlocked(sw, f"{what}wrong PIN, now blocked")
        return PinIncorrect(n, f"{what}wrong PIN, {n} tries left")
    if sw in (0x6983, 0x6984):
        return PinBlocked(sw, f"{what}PIN blocked")
    if sw == 0x6982:
        return SecurityStatusNotSatisfied(sw, f"{what}security status not satisfied (verify first)")
    if sw in (0x6A82, 0x6A83, 0x6A88):
        return NotFound(sw, f"{what}{describe(sw)}")
    return CardError(sw, f"{what}{describe(sw)}")


# -- connections ----------------------------------------------------------------------------

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


def list_readers() -> list[str]:
    """Names of the PC/SC readers; TransportError when pyscard or pcscd is missing."""
    system, _, exceptions, _ = _pyscard()
    try:
        return [str(r) for r in system.readers()]
    except (exceptions.SmartcardException, OSError) as exc:
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
        except (exceptions.SmartcardException, OSError) as exc:
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


# -- helpers --------------------------------------------------------------------------------

def _hex(data: bytes) -> str:
    return data.hex(" ").upper()


def ber_header(data: bytes) -> tuple[int, int, int]:
    """(tag, header length, value length) of the BER-TLV at the start of `data`."""
    if not data:
        raise CardDataError("empty data: no BER-TLV header")
    i = 1
    tag = data[0]
    if data[0] & 0x1F == 0x1F:  # multi-byte tag (e.g. FF20, DF21, 7F21: §3.2)
        while True:
            if i >= len(data) or i > 3:
                raise CardDataError(f"BER tag does not end: {data[:4].hex().upper()}")
            tag = (tag << 8) | data[i]
            i += 1
            if not data[i - 1] & 0x80:
                break
    if i >= len(data):
        raise CardDataError("BER header truncated before the length")
    first = data[i]
    i += 1
    if first < 0x80:
        return tag, i, first
    n = first & 0x7F
    if n == 0 or n > 3:
        raise CardDataError(f"unsupported BER length byte {first:02X}")
    if i + n > len(data):
        raise CardDataError("BER header truncated in the length")
    return tag, i + n, int.from_bytes(data[i:i + n], "big")


def _layout(layout, data: bytes, what: str):
    """Parse with the card's own declaration (mynaemu.card.layouts); CardDataError when off."""
    try:
        return layouts.parse(layout, data, what)
    except layouts.LayoutError as exc:
        raise CardDataError(str(exc)) from None


def parse_my_number(data: bytes) -> str:
    """The 12 digits of kenhojo EF 0001: FF 10 0C + digits + FF FF filler, spec §3.2."""
    return _layout(layouts.MY_NUMBER, data, "kenhojo EF 0001").number


def parse_token_label(data: bytes) -> str:
    """The JPKI token label: the first 32 bytes of EF 0006, space-padded ASCII (spec §3.1)."""
    return _layout(layouts.TOKEN_LABEL, data, "JPKI EF 0006 label")


def _date8(raw: bytes, what: str) -> _dt.date:
    try:
        text = raw.decode("ascii")
        if len(text) != 8 or not text.isdigit():
            raise ValueError(text)
        return _dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise CardDataError(f"{what} is not a YYYYMMDD date: {raw!r}") from None


def parse_basic4(data: bytes) -> dict:
    """基本4情報 of kenhojo EF 0002 (spec §3.2), located through the DF21 offset table.

    Returns dict(name=str, address=str, birth=datetime.date, sex='1'|'2'|'9'|'0').
    """
    tag, hlen, vlen = ber_header(data)
    if tag != 0xFF20:
        raise CardDataError(f"EF 0002 starts with tag {tag:X}, not FF20")
    if hlen + vlen > len(data):
        raise CardDataError(f"EF 0002 says {hlen + vlen} bytes, only {len(data)} read")
    end = hlen + vlen
    t, h, v = ber_header(data[hlen:])
    if t != 0xDF21 or v != 8:
        raise CardDataError("EF 0002 has no DF21 offset table of 4 offsets")
    table = data[hlen + h:hlen + h + 8]
    offsets = [int.from_bytes(table[i:i + 2], "big") for i in range(0, 8, 2)]
    fields = {}
    for want, off in zip((0xDF22, 0xDF23, 0xDF24, 0xDF25), offsets):
        if not hlen <= off < end:
            raise CardDataError(f"EF 0002 offset {off} for {want:X} is outside the object")
        t, h, v = ber_header(data[off:end])
        if t != want:
            raise CardDataError(f"EF 0002 offset {off} points to {t:X}, not {want:X}")
        if off + h + v > end:
            raise CardDataError(f"EF 0002 field {want:X} runs past the object")
        fields[want] = data[off + h:off + h + v]
    try:
        name = fields[0xDF22].decode("utf-8")
        address = fields[0xDF23].decode("utf-8")
        sex = fields[0xDF25].decode("ascii")
    except UnicodeDecodeError as exc:
        raise CardDataError(f"EF 0002 text is not UTF-8: {exc}") from None
    if sex not in ("0", "1", "2", "9"):  # JIS X 0303 (§3.2)
        raise CardDataError(f"EF 0002 sex code {sex!r} is not JIS X 0303")
    return {"name": name, "address": address, "birth": _date8(fields[0xDF24], "EF 0002 birth"),
            "sex": sex}


def parse_card_info(record: bytes) -> dict:
    """共通AP EF 0001 record 1: `01 1C` + 15-digit serial + 5-digit 団体コード + YYYYMMDD (§3.4)."""
    info = _layout(layouts.CARD_INFO, record, "card-info record")
    return {"serial": info.serial, "municipality_code": info.municipality_code,
            "expiry": info.expiry}


# -- the client -----------------------------------------------------------------------------

class CardClient:
    """Typed card operations over a Connection.

    extended: read whole EFs with one extended-Le READ BINARY (§6 item 2) instead of 256-byte chunks.
    trace: record every exchange in `self.trace` as (command, response) hex strings, redacted.
    """

    def __init__(self, conn: Connection, *, extended: bool = False, trace: bool = False):
        self.conn = conn
        self.extended = extended
        self.trace: list[tuple[str, str]] | None = [] if trace else None
        # What the client believes is current (for redaction and for choosing CHANGE KEY).
        self.current_aid: bytes | None = None
        self.current_ef: int | None = None

    # -- raw exchange ---------------------------------------------------------------------
    def transmit(self, apdu: bytes) -> Response:
        """Send one APDU; return the parsed response without checking the status word."""
        apdu = bytes(apdu)
        raw = self.conn.transmit(apdu)
        try:
            resp = Response.parse(raw)
        except ValueError:
            raise TransportError(f"response of {len(raw)} bytes has no status word") from None
        self._follow(apdu, resp)
        if self.trace is not None:
            self.trace.append((self._redact_command(apdu), self._redact_response(apdu, resp)))
        return resp

    def _send(self, cmd: Command, context: str) -> bytes:
        resp = self.transmit(cmd.encode())
        if not resp.ok:
            raise error_for(resp.sw, context)
        return resp.data

    def _follow(self, apdu: bytes, resp: Response) -> None:
        """Track the current DF/EF as the card will (§2.2-§2.4) from what was sent."""
        if len(apdu) < 4:
            return
        cla, ins, p1, p2 = apdu[:4]
        if ins == 0xA4 and cla & 0x0C == 0 and resp.ok:
            if p1 == 0x04 and len(apdu) > 5:
                self.current_aid = apdu[5:5 + apdu[4]]
                self.current_ef = None
            elif p1 == 0x02 and len(apdu) >= 7:
                self.current_ef = int.from_bytes(apdu[5:7], "big")
        elif ins == 0xB0 and p1 & 0x80:
            self.current_ef = p1 & 0x1F
        elif ins == 0xB2 and p2 >> 3:
            self.current_ef = p2 >> 3

    def _redact_command(self, apdu: bytes) -> str:
        return redact_command(apdu, spaced=True)

    def _redact_response(self, apdu: bytes, resp: Response) -> str:
        sw = f"{resp.sw >> 8:02X} {resp.sw & 0xFF:02X}"
        if not resp.data:
            return sw
        reading = len(apdu) >= 2 and apdu[1] in (0xB0, 0xB2)
        if reading and (self.current_aid, self.current_ef) in _NUMBER_EFS:
            return f"<{len(resp.data)} bytes redacted> {sw}"
        data = DIGITS12.sub(b"\0" * 12, resp.data)  # any stray 12-digit number (NUM-1)
        if data != resp.data:
            return f"<{len(resp.data)} bytes, number redacted> {sw}"
        return f"{_hex(resp.data)} {sw}"

    def format_trace(self) -> str:
        """The trace as `> command` / `< response` lines."""
        return "\n".join(f"> {c}\n< {r}" for c, r in (self.trace or []))

    # -- selection --------------------------------------------------------------------------
    def select_ap(self, name_or_aid) -> None:
        """SELECT by DF name, `00 A4 04 0C Lc AID` (§2.2); a name from AIDS, or AID bytes/hex."""
        if isinstance(name_or_aid, str):
            aid = AIDS.get(name_or_aid.lower())
            if aid is None:
                try:
                    aid = bytes.fromhex(name_or_aid)
                except ValueError:
                    raise ValueError(f"unknown application {name_or_aid!r} "
                                     f"(names: {', '.join(AIDS)}, or AID hex)") from None
        else:
            aid = bytes(name_or_aid)
        if not 1 <= len(aid) <= 16:
            raise ValueError(f"an AID has 1..16 bytes, got {len(aid)}")
        label = _NAME_OF_AID.get(aid, aid.hex().upper())
        self._send(Command(0x00, 0xA4, 0x04, 0x0C, aid), f"SELECT {label}")

    def select_ef(self, fid: int) -> None:
        """SELECT EF under the current DF, `00 A4 02 0C 02 FID` (§2.3)."""
        _check_fid(fid)
        self._send(Command(0x00, 0xA4, 0x02, 0x0C, fid.to_bytes(2, "big")), f"SELECT EF {fid:04X}")

    # -- reading --------------------------------------------------------------------------
    def _read_cmd(self, offset: int, le: int, sfi: int | None, first: bool, extended: bool) -> Command:
        if first and sfi is not None:
            if offset > 0xFF:
                raise ValueError("an SFI READ BINARY carries an 8-bit offset")
            p1, p2 = 0x80 | sfi, offset          # §2.4: implicit selection, P2 = offset
        else:
            if offset > MAX_OFFSET:
                raise CardDataError(f"EF longer than the 15-bit READ BINARY offset ({MAX_OFFSET})")
            p1, p2 = offset >> 8, offset & 0xFF
        return Command(0x00, 0xB0, p1, p2, b"", le, extended)

    def _prepare_read(self, fid, sfi) -> str:
        if fid is not None and sfi is not None:
            raise ValueError("give fid or sfi, not both")
        if sfi is not None:
            if not 1 <= sfi <= 30:
                raise ValueError(f"SFI must be 1..30, got {sfi}")
            return f"READ BINARY SFI {sfi:02X}"
        if fid is not None:
            self.select_ef(fid)
            return f"READ BINARY {fid:04X}"
        return "READ BINARY"

    def read_binary(self, fid: int | None = None, *, sfi: int | None = None,
                    length: int | None = None, offset: int = 0) -> bytes:
        """The content of an EF from `offset` (fid: SELECT first; sfi: §2.4 form; neither: current EF).

        With `length` exactly that many bytes are asked for (fewer if the EF ends first).
        Without it the whole EF is read: 256-byte chunks (Le=00) until a short answer or
        6B00 (§6 item 3, §6 item 4), or one READ with extended Le 0000 when the client is `extended`.
        """
        context = self._prepare_read(fid, sfi)
        if length is not None and length < 0:
            raise ValueError("length must be >= 0")
        out = bytearray()
        first = True
        while length is None or len(out) < length:
            remaining = None if length is None else length - len(out)
            if self.extended:
                le = 65536 if remaining is None else min(remaining, 65536)
            else:
                le = 256 if remaining is None else min(remaining, 256)
            cmd = self._read_cmd(offset + len(out), le, sfi, first, self.extended)
            resp = self.transmit(cmd.encode())
            if resp.sw == 0x6B00 and not first and length is None:
                break  # §6 item 4: offset at the end of the EF
            if not resp.ok:
                raise error_for(resp.sw, context)
            out += resp.data
            first = False
            if len(resp.data) < le:
                break  # §6 item 3: the card returned what remained
        return bytes(out)

    def read_object(self, fid: int | None = None, *, sfi: int | None = None, probe: int = 7) -> bytes:
        """The BER/DER object at the start of an EF, sized from its header (§6 item 6).

        A `probe`-byte READ (7 as MYNA/jpki-rs, 4 as OpenSC) gives the header; the rest is
        read from there in 256-byte chunks with Le = remaining on the last (MYNA-RS), or
        with one extended Le when the client is `extended` (PYMYNA, TEX2E).
        """
        context = self._prepare_read(fid, sfi)
        head = self._send(self._read_cmd(0, probe, sfi, True, False), context)
        _, hlen, vlen = ber_header(head)
        total = hlen + vlen
        out = bytearray(head[:total])
        while len(out) < total:
            remaining = total - len(out)
            le = remaining if self.extended else min(remaining, 256)
            data = self._send(self._read_cmd(len(out), le, None, False, self.extended), context)
            if not data:
                raise CardDataError(f"{context}: EF ended at {len(out)} of {total} bytes")
            out += data
        return bytes(out[:total])

    def read_record(self, n: int, sfi: int | None = None) -> bytes:
        """READ RECORD n: `00 B2 n (SFI<<3|04) 00` (§2.4), or of the current EF (P2=04)."""
        if not 1 <= n <= 254:
            raise ValueError(f"record number must be 1..254, got {n}")
        if sfi is not None and not 1 <= sfi <= 30:
            raise ValueError(f"SFI must be 1..30, got {sfi}")
        p2 = ((sfi << 3) if sfi else 0) | 0x04
        return self._send(Command(0x00, 0xB2, n, p2, b"", 256), f"READ RECORD {n}")

    # -- PINs -----------------------------------------------------------------------------
    def verify(self, fid: int, pin: str, *, sfi: bool = False) -> None:
        """SELECT the PIN EF then VERIFY `00 20 00 80 Lc PIN` (§4.2), or `00 20 00 (80|SFI)`."""
        _check_fid(fid)
        data = _pin_bytes(pin)
        p2 = 0x80 | fid if sfi else 0x80
        if sfi:
            _check_sfi(fid)
        else:
            self.select_ef(fid)
        self._send(Command(0x00, 0x20, 0x00, p2, data), f"VERIFY {fid:04X}")

    def tries_left(self, fid: int, *, sfi: bool = False) -> int:
        """Retry query `00 20 00 80` after SELECT (or `00 20 00 80|SFI`): n of 63Cn (§4.2)."""
        _check_fid(fid)
        if sfi:
            _check_sfi(fid)
        else:
            self.select_ef(fid)
        resp = self.transmit(Command(0x00, 0x20, 0x00, 0x80 | fid if sfi else 0x80).encode())
        if resp.sw & 0xFFF0 == 0x63C0:
            return resp.sw & 0x0F
        if resp.ok:  # §4.2: a JPKI card always answers 63Cn; OpenSC aborts on anything else
            raise CardError(resp.sw, f"retry query {fid:04X}: answered 9000, expected 63Cn")
        raise error_for(resp.sw, f"retry query {fid:04X}")

    def change_pin(self, fid: int, new: str, *, old: str | None = None) -> None:
        """Change a PIN (§4.4): SELECT, VERIFY `old` when given, then the AP's change command.

        JPKI and kenhojo: CHANGE REFERENCE DATA `00 24 01 80 Lc new`; 共通AP / 住基AP: CHANGE
        KEY `80 32 00 80 Lc new`. Without `old` the PIN must already be verified.
        """
        _check_fid(fid)
        data = _pin_bytes(new)
        self.select_ef(fid)
        if old is not None:
            self._send(Command(0x00, 0x20, 0x00, 0x80, _pin_bytes(old)), f"VERIFY {fid:04X}")
        if self.current_aid in (AIDS["common"], AIDS["juki"]):
            cmd = Command(0x80, 0x32, 0x00, 0x80, data)
        else:
            cmd = Command(0x00, 0x24, 0x01, 0x80, data)
        self._send(cmd, f"CHANGE PIN {fid:04X}")

    # -- crypto ---------------------------------------------------------------------------
    def sign(self, key_fid: int | None, data: bytes, *, scheme: int = 0, sfi: bool = False) -> bytes:
        """COMPUTE DIGITAL SIGNATURE `80 2A scheme 80 Lc data 00` after SELECT of the key (§5.1).

        key_fid None: the AP's default key, P2=00 (券面 APs, §3.3); sfi: P2 = 80|FID, no SELECT.
        scheme 0 pads the data (normally a DigestInfo) with PKCS#1 v1.5 exactly as given.
        """
        data = bytes(data)
        if not 1 <= len(data) <= 255:
            raise ValueError(f"sign input must be 1..255 bytes, got {len(data)}")
        if not 0 <= scheme <= 0xFF:
            raise ValueError("scheme is one byte")
        if key_fid is None:
            p2 = 0x00
        else:
            _check_fid(key_fid)
            if sfi:
                _check_sfi(key_fid)
                p2 = 0x80 | key_fid
            else:
                self.select_ef(key_fid)
                p2 = 0x80
        label = "default key" if key_fid is None else f"key {key_fid:04X}"
        return self._send(Command(0x80, 0x2A, scheme, p2, data, 256), f"SIGN with {label}")

    def get_challenge(self, n: int = 16) -> bytes:
        """GET CHALLENGE `00 84 00 00 n` (§5.2): n random bytes, 1..256."""
        if not 1 <= n <= 256:
            raise ValueError(f"challenge length must be 1..256, got {n}")
        return self._send(Command(0x00, 0x84, 0x00, 0x00, b"", n), "GET CHALLENGE")

    def internal_authenticate(self, fid: int, challenge: bytes) -> bytes:
        """INTERNAL AUTHENTICATE `00 88 00 (80|SFI) Lc challenge 00` (§3.4, §5.2)."""
        _check_fid(fid)
        _check_sfi(fid)
        challenge = bytes(challenge)
        if not 1 <= len(challenge) <= 255:
            raise ValueError(f"challenge must be 1..255 bytes, got {len(challenge)}")
        return self._send(Command(0x00, 0x88, 0x00, 0x80 | fid, challenge, 256),
                          f"INTERNAL AUTHENTICATE {fid:04X}")

    def get_data(self, tag: int) -> bytes:
        """GET DATA `00 CA P1 P2 00` (§3.5); extended Le when the client is `extended`."""
        if not 0 <= tag <= 0xFFFF:
            raise ValueError("GET DATA tag is two bytes")
        le = 65536 if self.extended else 256
        return self._send(Command(0x00, 0xCA, tag >> 8, tag & 0xFF, b"", le, self.extended),
                          f"GET DATA {tag:04X}")

    # -- high level -----------------------------------------------------------------------
    def jpki_token(self) -> str:
        """The JPKI token label (§3.1 EF 0006, first 32 bytes), trailing space/NUL padding trimmed."""
        self.select_ap("jpki")
        self.select_ef(0x0006)
        return parse_token_label(self.read_binary(length=32))

    def read_certificate(self, kind: str, pin: str | None = None) -> bytes:
        """A JPKI certificate (DER): "auth" 000A, "sign" 0001, "auth_ca" 000B, "sign_ca" 0002.

        The signing certificate needs the signing password (§3.1): pass it as `pin`, or
        verify 001B first in the same session.
        """
        if kind not in JPKI_CERTS:
            raise ValueError(f"certificate kind must be one of {', '.join(JPKI_CERTS)}")
        self.select_ap("jpki")
        if pin is not None:
            pin_fid = JPKI_PINS["sign"] if kind == "sign" else JPKI_PINS["auth"]
            self.verify(pin_fid, _sign_password(pin) if kind == "sign" else pin)
        der = self.read_object(JPKI_CERTS[kind])
        if der[:1] != b"\x30":
            raise CardDataError(f"EF {JPKI_CERTS[kind]:04X} is not a DER certificate")
        return der

    def jpki_sign(self, kind: str, digest_info: bytes, pin: str) -> bytes:
        """Sign a DigestInfo with the JPKI auth or sign key (§5.1): VERIFY, SELECT key, 80 2A 00 80.

        The signing password is upper-cased first, as MYNA and PYMYNA do (§4.1).
        """
        if kind not in JPKI_KEYS:
            raise ValueError("kind must be 'auth' or 'sign'")
        self.select_ap("jpki")
        self.verify(JPKI_PINS[kind], _sign_password(pin) if kind == "sign" else pin)
        return self.sign(JPKI_KEYS[kind], digest_info)

    def read_my_number(self, pin: str, *, key: int = 0x0011) -> str:
        """The 個人番号 from kenhojo EF 0001 (§3.2); key 0011 (PIN) or 0014 (照合番号A)."""
        self.select_ap("kenhojo")
        self.verify(key, pin)
        self.select_ef(0x0001)
        return parse_my_number(self.read_binary(length=17))

    def read_basic4(self, pin: str, *, key: int = 0x0011) -> dict:
        """基本4情報 from kenhojo EF 0002 (§3.2); key 0011 (PIN) or 0015 (照合番号B).

        Returns dict(name, address, birth: datetime.date, sex).
        """
        self.select_ap("kenhojo")
        self.verify(key, pin)
        return parse_basic4(self.read_object(0x0002))

    def open_sm(self, pin: str, **kwargs):
        """§13.2: SET SESSION KEY on kenhojo after its PIN; an SmSession (tools/terminal/sm.py)."""
        from mynaemu.tools.terminal.sm import SmSession
        return SmSession.open(self, pin, **kwargs)

    def read_card_info(self) -> dict:
        """共通AP EF 0001 record 1 (§3.4): dict(serial, municipality_code, expiry: date)."""
        self.select_ap("common")
        return parse_card_info(self.read_record(1, sfi=1))


def _check_fid(fid) -> None:
    if not isinstance(fid, int) or not 0 <= fid <= 0xFFFF:
        raise ValueError(f"an EF identifier is a 2-byte int, got {fid!r}")


def _check_sfi(fid: int) -> None:
    if not 1 <= fid <= 30:
        raise ValueError(f"EF {fid:04X} has no short identifier (SFI forms need 0001..001E, §2.3)")


def _pin_bytes(pin: str) -> bytes:
    if not isinstance(pin, str) or not pin:
        raise ValueError("a PIN is a non-empty string")
    try:
        data = pin.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("a PIN is ASCII (§4.1)") from None
    if len(data) > 255:
        raise ValueError("PIN too long")
    return data


def _sign_password(pin: str) -> str:
    # §4.1: clients upper-case the signing password before sending; the card compares bytes.
    return pin.upper() if isinstance(pin, str) else pin
