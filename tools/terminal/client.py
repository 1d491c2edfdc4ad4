"""The terminal-side client: drives any Individual Number Card through any door.

Used by the kiosk, the CLI and the tests. A `Connection` moves APDU bytes (in-process to a
`mynaemu.card.core.Card`, or through PC/SC with pyscard: tools/terminal/connections.py);
`CardClient` builds the commands exactly as the real clients of card-interface.md §10 do and
turns status words into typed exceptions (tools/terminal/errors.py); card data is read with
the card's own declarations (tools/terminal/parse.py on card/tlv.py and card/layouts.py):

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

from mynaemu.card.aid import AID
from mynaemu.card.apdu import Command, Response
from mynaemu.card.ids import JpkiEF, JpkiKey, JpkiPin, KenhojoEF, KenhojoPin, KenkakuEF
from mynaemu.card.redact import DIGITS12, redact_command
from mynaemu.card.status import SW, is_retries
from mynaemu.tools.terminal.checks import check_fid as _check_fid
from mynaemu.tools.terminal.checks import check_sfi as _check_sfi
from mynaemu.tools.terminal.checks import pin_bytes as _pin_bytes
from mynaemu.tools.terminal.checks import sign_password as _sign_password
# The doors, errors and parsers live in their own modules; their names stay importable from
# here, where every caller has always found them.
from mynaemu.tools.terminal.connections import (  # noqa: F401
    Connection, InProcessConnection, PcscConnection, list_readers)
from mynaemu.tools.terminal.errors import (  # noqa: F401
    CardDataError, CardError, NotFound, PinBlocked, PinIncorrect, SecurityStatusNotSatisfied,
    TransportError, error_for)
from mynaemu.tools.terminal.parse import (  # noqa: F401
    ber_header, parse_basic4, parse_card_info, parse_my_number, parse_token_label)

# spec §2.1: the AIDs of the card's applications, by the names clients use.
AIDS = {aid.label: aid for aid in (AID.JPKI, AID.KENHOJO, AID.KENKAKU, AID.JUKI, AID.COMMON, AID.ISD)}
_NAME_OF_AID = {aid: name for name, aid in AIDS.items()}

# spec §3.1 / §4.1: JPKI files, keys and PINs by purpose.
JPKI_CERTS = {"auth": JpkiEF.AUTH_CERT, "sign": JpkiEF.SIGN_CERT, "auth_ca": JpkiEF.AUTH_CA,
              "sign_ca": JpkiEF.SIGN_CA}
JPKI_KEYS = {"auth": JpkiKey.AUTH, "sign": JpkiKey.SIGN}
JPKI_PINS = {"auth": JpkiPin.AUTH, "sign": JpkiPin.SIGN}

# EFs whose content is a 個人番号 (kenhojo 0001, §3.2) or its rendered image (kenkaku 0005, §3.3).
_NUMBER_EFS = {(AID.KENHOJO, KenhojoEF.MY_NUMBER), (AID.KENKAKU, KenkakuEF.NUMBER_IMAGE)}

MAX_OFFSET = 0x7FFF  # READ BINARY P1 bit 8 = 0: a 15-bit offset (§6 item 1)


def _hex(data: bytes) -> str:
    return data.hex(" ").upper()


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
            if resp.sw == SW.OFFSET_OUT_OF_RANGE and not first and length is None:
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
        if is_retries(resp.sw):
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
        if self.current_aid in (AID.COMMON, AID.JUKI):
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
        self.select_ef(JpkiEF.TOKEN)
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

    def read_my_number(self, pin: str, *, key: int = KenhojoPin.MAIN) -> str:
        """The 個人番号 from kenhojo EF 0001 (§3.2); key 0011 (PIN) or 0014 (照合番号A)."""
        self.select_ap("kenhojo")
        self.verify(key, pin)
        self.select_ef(KenhojoEF.MY_NUMBER)
        return parse_my_number(self.read_binary(length=17))

    def read_basic4(self, pin: str, *, key: int = KenhojoPin.MAIN) -> dict:
        """基本4情報 from kenhojo EF 0002 (§3.2); key 0011 (PIN) or 0015 (照合番号B).

        Returns dict(name, address, birth: datetime.date, sex).
        """
        self.select_ap("kenhojo")
        self.verify(key, pin)
        return parse_basic4(self.read_object(KenhojoEF.BASIC4))

    def open_sm(self, pin: str, **kwargs):
        """§13.2: SET SESSION KEY on kenhojo after its PIN; an SmSession (tools/terminal/sm.py)."""
        from mynaemu.tools.terminal.sm import SmSession
        return SmSession.open(self, pin, **kwargs)

    def read_card_info(self) -> dict:
        """共通AP EF 0001 record 1 (§3.4): dict(serial, municipality_code, expiry: date)."""
        self.select_ap("common")
        return parse_card_info(self.read_record(1, sfi=1))
