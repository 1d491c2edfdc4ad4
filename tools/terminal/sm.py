"""Terminal side of the 券面入力補助AP's secure messaging (card-interface.md §13.2).

`SmSession.open(client, pin)` selects kenhojo, verifies the PIN (0011: the only secret that
opens SET SESSION KEY), reads the session-key public key from EF 0006, sends `80 AE 00 00` with
an extended Lc and RSA-OAEP(SHA-256) of `A0 22 80 20 <32 random bytes>`, and keeps the
AES-128 key (the first 16 of the 32 bytes) and the message counter. Then:

- `verify(fid, secret)`: `08 20 00 (80|SFI) Lc 86 L 01 ‖ AES-CBC(padded secret)`;
- `select_ef(fid)`: `08 A4 02 0C Lc 86 …`;
- `read_binary(fid=None, sfi=None, offset=0, length=0)`: `08 B0 P1 P2 05 96 03 00 Le Le <Le>`,
  the answer `86 L 01 ‖ C` decrypted (length 0 = the whole file from the offset, filler
  included);
- `read_my_number(collation_a)` / `read_basic4()`: 照合番号A presented under SM then EF
  0001 read under SM; EF 0002 read under SM (the PIN opened it).

Every SM command advances the counter N, whatever the answer (§13.2); the IV of message N
is AES-ECB(key, N). The scheme is confidentiality only: an answer is not authenticated, and a
counter out of step garbles only its first block, so the client keeps N in step by counting
every SM command it sends, refused ones included. A 6988 from the card means the session may be gone; the session object
then refuses further use. The trace of the CardClient shows only ciphertext for SM commands.
"""
from __future__ import annotations

import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mynaemu.card import layouts
from mynaemu.card import sm as codec
from mynaemu.card.apdu import Command
from mynaemu.card.ids import KenhojoEF, KenhojoPin
from mynaemu.card.status import SW
from mynaemu.tools.terminal.checks import check_sfi as _check_sfi
from mynaemu.tools.terminal.checks import pin_bytes as _pin_bytes
from mynaemu.tools.terminal.errors import CardDataError, error_for
from mynaemu.tools.terminal.parse import parse_basic4, parse_my_number

# The session drives a CardClient (tools/terminal/client.py, whose open_sm() opens one); it
# is handed the client, so this module does not import it.
EF_SESSION_KEY = KenhojoEF.SESSION_KEY
PIN_MAIN, PIN_A, PIN_B = KenhojoPin.MAIN, KenhojoPin.A, KenhojoPin.B
OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


class SmSessionClosed(RuntimeError):
    """The session was ended (6988/69FC from the card, or close()); open a new one."""


def session_public_key(ef0006: bytes) -> rsa.RSAPublicKey:
    """The RSA key of kenhojo EF 0006: `A1 82 01 09 { 90 03 010001, 91 82 0100 n }` (§3.2).

    Parsed with the card's own declaration, mynaemu.card.layouts.SESSION_KEY.
    """
    try:
        key = layouts.parse(layouts.SESSION_KEY, ef0006, "kenhojo EF 0006").key
    except layouts.LayoutError as exc:
        raise CardDataError(str(exc)) from None
    return rsa.RSAPublicNumbers(65537, key.modulus).public_key()


class SmSession:
    def __init__(self, client, key: bytes):   # client: a CardClient
        self.client = client
        self._key = bytes(key)
        self.counter = 0
        self.closed = False

    @classmethod
    def open(cls, client, pin: str, *, random=os.urandom) -> "SmSession":
        client.select_ap("kenhojo")
        client.verify(PIN_MAIN, pin)
        public_key = session_public_key(client.read_object(EF_SESSION_KEY))
        secret = bytes(random(32))
        if len(secret) != 32:
            raise ValueError("the random source must give 32 bytes")
        block = public_key.encrypt(codec.KEY_DELIVERY_PREFIX + secret, OAEP)
        client._send(Command(0x80, 0xAE, 0x00, 0x00, block, None, True), "SET SESSION KEY")
        return cls(client, secret[:16])

    def close(self) -> None:
        self.closed = True

    # -- one SM exchange ----------------------------------------------------------------------
    def _exchange(self, ins: int, p1: int, p2: int, data: bytes, le: int | None, what: str):
        if self.closed:
            raise SmSessionClosed("the SM session has ended")
        self.counter += 1
        n = self.counter
        resp = self.client.transmit(Command(0x08, ins, p1, p2, data, le).encode())
        if resp.sw in (SW.SM_OBJECTS_INCORRECT, SW.SM_NO_SESSION):
            self.closed = True
            raise SmSessionClosed(f"{what}: the card ended the SM session ({resp.sw:04X})")
        if not resp.ok:
            raise error_for(resp.sw, what)
        return n, resp.data

    def verify(self, fid: int, secret: str) -> None:
        """VERIFY by short EF id under SM (no SELECT needed, §13.2)."""
        _check_sfi(fid)
        obj = codec.cryptogram_object(self._key, self.counter + 1, _pin_bytes(secret))
        self._exchange(0x20, 0x00, 0x80 | fid, obj, None, f"SM VERIFY {fid:04X}")

    def select_ef(self, fid: int) -> None:
        obj = codec.cryptogram_object(self._key, self.counter + 1, fid.to_bytes(2, "big"))
        self._exchange(0xA4, 0x02, 0x0C, obj, None, f"SM SELECT {fid:04X}")
        self.client.current_ef = fid

    def read_binary(self, fid: int | None = None, *, sfi: int | None = None, offset: int = 0,
                    length: int = 0) -> bytes:
        """READ BINARY under SM; length 0 = the whole file from offset (§13.2)."""
        if not 0 <= length <= 0xFFFF:
            raise ValueError("length is 0..65535")
        if sfi is not None:
            _check_sfi(sfi)
            if not 0 <= offset <= 0xFF:
                raise ValueError("the SFI form takes offsets 0..255 (§2.4)")
            p1, p2 = 0x80 | sfi, offset
        else:
            if fid is not None:
                self.select_ef(fid)
            if not 0 <= offset <= 0x7FFF:
                raise ValueError("offset is 0..32767")
            p1, p2 = offset >> 8, offset & 0xFF
        obj = bytes((codec.T_LE, 3, 0)) + length.to_bytes(2, "big")
        n, data = self._exchange(0xB0, p1, p2, obj, 65536, "SM READ BINARY")
        try:
            tag, value = codec.parse_single_object(data)
        except codec.SmError:
            raise CardDataError("SM answer is not one data object") from None
        if tag != codec.T_CRYPTOGRAM or not value or value[0] != codec.PADDING_INDICATOR:
            raise CardDataError("SM answer is not an 86 cryptogram with padding indicator 01")
        session = codec.Session()
        session.start(self._key)
        try:
            return codec.decrypt_object(session, n, data)
        except codec.SmError:
            raise CardDataError("SM answer does not decrypt under this session") from None

    # -- the reads of §13.2 --------------------------------------------------------------------
    def read_my_number(self, collation_a: str) -> str:
        """照合番号A under SM, then EF 0001 under SM (by SFI)."""
        self.verify(PIN_A, collation_a)
        return parse_my_number(self.read_binary(sfi=KenhojoEF.MY_NUMBER))

    def read_basic4(self) -> dict:
        """EF 0002 under SM (the PIN that opened the session opens it, §4.3)."""
        return parse_basic4(self.read_binary(sfi=KenhojoEF.BASIC4))
