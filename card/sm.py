"""SET SESSION KEY and confidentiality-only secure messaging of the 券面入力補助AP (§13.2).

The card side of card-interface.md §13.2. card/core.py routes `80 AE` here and, on an
application that holds a session-key private key (Application.sm_key_pem: kenhojo), every
command whose CLA carries the SM bits.

Key delivery: `80 AE 00 00` + extended Lc + the 256-byte RSA-OAEP(SHA-256, MGF1-SHA-256, no
label) encryption, under the public key of kenhojo EF 0006, of `A0 22 80 20 <32 bytes>`. The
first 16 of the 32 bytes are the AES-128 session key; the card has no use for the other 16
(the record names only the encryption key) and discards them.

Per application (§13.2): 共通AP and 券面事項確認AP answer 66F1; JPKI-AP and 住基AP 6982; kenhojo
6982 until its PIN 0011 is verified (照合番号A/B do not open it), then 9000, 6A80 for a block
that is not exactly that structure (or does not decrypt), 6F00 for a ciphertext at or above
the modulus. Choices where §13.2 is silent ([U]): MF level and other applications 6985 (no SM
key); a kenhojo image without the private key (made before it was kept) 6985; P1P2 other
than 0000 6A86; a data field that is not 256 bytes 6700; a refused SET SESSION KEY leaves an
existing session as it was.

Secure messaging (CLA 08 only; 0C, header authentication, is not offered → 6987):
- message counter N: 1 for the first SM command after SET SESSION KEY, +1 for every SM
  command (including refused ones); plain commands in between do not advance it;
- IV (both directions) = AES-128-ECB(key, N as 16 big-endian bytes);
- SELECT FILE `08 A4 02 0C` and VERIFY carry exactly one `86 L 01 ‖ AES-CBC(ISO 7816-4 padded
  plaintext)`; READ BINARY carries `96 03 00 <Le, 2 bytes>` (0 = the whole file from the offset,
  filler included) and is answered `86 L 01 ‖ ciphertext` + SW (plain SW on refusal);
- a wrong tag, a second data object, a padding indicator other than 01 (or a cryptogram that
  is not whole AES blocks) → 6988; a padding error after decryption (wrong key or counter)
  → 6988 and the session is destroyed: every later SM command → 69FC;
- with no session (never set, or destroyed): 69FC;
- the session ends on any application SELECT and on power loss (and on any reset, which
  leaves no application current); it lives only in memory, never in the card image.
[U] choices: SM SELECT by DF name (`08 A4 04 ..`) and SM forms of other instructions → 6882
(counted as SM commands); CLA 8x with SM bits → 6882 (not counted: no proprietary command
has an SM form).
"""
from __future__ import annotations

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mynaemu.card.apdu import Command
from mynaemu.card.apps import kenhojo
from mynaemu.card.crypto import key_pem
from mynaemu.card.ids import KenhojoPin
from mynaemu.card.status import SW

# §13.2 status words (members of card/status.py's SW; the old names stay for callers).
SW_SSK_NOT_OFFERED = SW.SSK_NOT_OFFERED
SW_SM_OBJECTS_MISSING = SW.SM_OBJECTS_MISSING
SW_SM_OBJECTS_INCORRECT = SW.SM_OBJECTS_INCORRECT
SW_SM_NO_SESSION = SW.SM_NO_SESSION

# Applications that refuse SET SESSION KEY, and how (§13.2).
SSK_REFUSALS = {"common": SW_SSK_NOT_OFFERED, "kenkaku": SW_SSK_NOT_OFFERED,
                "jpki": SW.SECURITY_NOT_SATISFIED, "juki": SW.SECURITY_NOT_SATISFIED}
SSK_PIN = KenhojoPin.MAIN          # kenhojo PIN: the only secret that opens 80 AE
KEY_DELIVERY_PREFIX = bytes.fromhex("A0228020")   # A0 { 80 20 <32 bytes> }
KEY_DELIVERY_LEN = 36
CIPHERTEXT_LEN = 256

T_CRYPTOGRAM = 0x86                # padding-indicator + cryptogram
T_LE = 0x96                        # Le of the unsecured command
PADDING_INDICATOR = 0x01           # ISO 7816-4 padding


class SmError(Exception):
    """Internal: an SM command answered with a status word."""

    def __init__(self, sw: int, destroy: bool = False):
        self.sw = sw
        self.destroy = destroy


class Session:
    """The SM state of one card: only in memory (a card image never holds it)."""

    __slots__ = ("key", "counter", "_ecb")

    def __init__(self):
        self.end()

    def end(self) -> None:
        self.key = None
        self.counter = 0
        self._ecb = None

    @property
    def live(self) -> bool:
        return self.key is not None

    def start(self, key: bytes) -> None:
        self.key = bytes(key)
        self.counter = 0
        self._ecb = Cipher(algorithms.AES(self.key), modes.ECB())

    def iv(self, n: int) -> bytes:
        enc = self._ecb.encryptor()
        return enc.update(n.to_bytes(16, "big")) + enc.finalize()

    def wrap(self, n: int, plaintext: bytes) -> bytes:
        """`86 L 01 ‖ AES-CBC(padded plaintext)` of message N under this session's key."""
        enc = Cipher(algorithms.AES(self.key), modes.CBC(self.iv(n))).encryptor()
        value = bytes((PADDING_INDICATOR,)) + enc.update(iso_pad(plaintext)) + enc.finalize()
        return bytes((T_CRYPTOGRAM,)) + ber_length(len(value)) + value


# -- codec (both sides use the same rules; the tests check it against hand-built vectors) ------

def iso_pad(data: bytes) -> bytes:
    """ISO/IEC 7816-4 padding: 80 then 00 up to a multiple of 16 (always at least one byte)."""
    data = bytes(data) + b"\x80"
    return data + b"\x00" * (-len(data) % 16)


def iso_unpad(data: bytes) -> bytes:
    """Undo iso_pad; ValueError when the padding is not 80 00… within the last block."""
    stripped = data.rstrip(b"\x00")
    if not stripped or stripped[-1] != 0x80 or len(data) - len(stripped) + 1 > 16:
        raise ValueError("bad ISO 7816-4 padding")
    return stripped[:-1]


def ber_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    if n < 0x100:
        return b"\x81" + bytes((n,))
    if n < 0x10000:
        return b"\x82" + n.to_bytes(2, "big")
    raise ValueError("SM data object too long")


def cryptogram_object(key: bytes, n: int, plaintext: bytes) -> bytes:
    """`86 L 01 ‖ AES-128-CBC(padded plaintext, IV = AES-ECB(key, N))` for message N."""
    session = Session()
    session.start(key)
    return session.wrap(n, plaintext)


def parse_single_object(data: bytes) -> tuple[int, bytes]:
    """(tag, value) of the one data object in `data`; SmError(6988) otherwise."""
    data = bytes(data)
    if len(data) < 2:
        raise SmError(SW_SM_OBJECTS_INCORRECT)
    tag = data[0]
    if tag & 0x1F == 0x1F:                       # multi-byte tags are no SM object here
        raise SmError(SW_SM_OBJECTS_INCORRECT)
    first = data[1]
    if first < 0x80:
        length, pos = first, 2
    elif first in (0x81, 0x82):
        width = first - 0x80
        if len(data) < 2 + width:
            raise SmError(SW_SM_OBJECTS_INCORRECT)
        length, pos = int.from_bytes(data[2:2 + width], "big"), 2 + width
    else:
        raise SmError(SW_SM_OBJECTS_INCORRECT)
    if pos + length != len(data):               # truncated, or a second data object
        raise SmError(SW_SM_OBJECTS_INCORRECT)
    return tag, data[pos:]


def decrypt_object(session: Session, n: int, data: bytes) -> bytes:
    """The plaintext of the single `86 L 01 ‖ C` in a command; SmError on any fault."""
    tag, value = parse_single_object(data)
    if tag != T_CRYPTOGRAM or not value or value[0] != PADDING_INDICATOR:
        raise SmError(SW_SM_OBJECTS_INCORRECT)
    cryptogram = value[1:]
    if not cryptogram or len(cryptogram) % 16:
        raise SmError(SW_SM_OBJECTS_INCORRECT)   # not AES blocks: malformed, nothing decrypted
    dec = Cipher(algorithms.AES(session.key), modes.CBC(session.iv(n))).decryptor()
    try:
        return iso_unpad(dec.update(cryptogram) + dec.finalize())
    except ValueError:
        raise SmError(SW_SM_OBJECTS_INCORRECT, destroy=True) from None


# -- the card side -------------------------------------------------------------------------------

def _sw(sw: int) -> bytes:
    return int(sw).to_bytes(2, "big")


def _private_key(card, app):
    cache = card._keys
    key = cache.get(("sm", id(app)))
    if key is None:
        key = serialization.load_pem_private_key(app.sm_key_pem, password=None,
                                                 unsafe_skip_rsa_key_validation=True)
        cache[("sm", id(app))] = key
    return key


def set_session_key(card, cmd: Command) -> bytes:
    """`80 AE 00 00` (§13.2)."""
    app = card.current_app
    if app is None or app.sm_key_pem is None:
        refusal = SSK_REFUSALS.get(app.name) if app is not None else None
        return _sw(refusal if refusal is not None else SW.CONDITIONS_NOT_SATISFIED)
    if (app.name, SSK_PIN) not in card.verified:
        return _sw(SW.SECURITY_NOT_SATISFIED)    # PIN 0011 only; 照合番号A/B do not open it
    if cmd.p1 or cmd.p2:
        return _sw(SW.INCORRECT_P1P2)
    if len(cmd.data) != CIPHERTEXT_LEN:
        return _sw(SW.WRONG_LENGTH)
    key = _private_key(card, app)
    if int.from_bytes(cmd.data, "big") >= key.public_key().public_numbers().n:
        return _sw(SW.UNKNOWN_ERROR)             # §13.2: ciphertext at or above the modulus
    try:
        block = key.decrypt(cmd.data, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                                   algorithm=hashes.SHA256(), label=None))
    except ValueError:
        return _sw(SW.WRONG_DATA)
    if len(block) != KEY_DELIVERY_LEN or not block.startswith(KEY_DELIVERY_PREFIX):
        return _sw(SW.WRONG_DATA)                # only A0 { 80 20 <32> } (§13.2)
    card.sm.start(block[4:20])
    return _sw(SW.OK)


def ensure_key(image) -> bool:
    """Give kenhojo the private half of its EF 0006 key when the image lacks it (§13.2).

    Images made before the key was kept hold only the public half, so no terminal could
    deliver a session key. A new RSA-2048 pair replaces EF 0006 (the EF is signed by nothing:
    the integrity record covers 0001/0002, the CVC the signer key) and its private half is
    kept as Application.sm_key_pem. Returns True when the image was changed.
    """
    changed = False
    for app in image.applications:
        if app.name != kenhojo.NAME or app.sm_key_pem is not None:
            continue
        ef = app.efs.get(kenhojo.EF_SESSION_KEY)
        if ef is None or not hasattr(ef, "data"):
            continue                              # not a kenhojo of the §3.2 layout: leave it
        key = rsa.generate_private_key(65537, 2048)
        ef.data = kenhojo.encode_session_key(key.public_key())
        app.sm_key_pem = key_pem(key)
        changed = True
    return changed


def handles(app) -> bool:
    """True when `app` offers SM (it holds the session-key private key)."""
    return app is not None and app.sm_key_pem is not None


def transmit(card, cmd: Command) -> bytes:
    """One command with SM bits in its CLA, on an application that offers SM (§13.2)."""
    session = card.sm
    if cmd.cla & 0x80:
        return _sw(SW.SM_NOT_SUPPORTED)           # no proprietary command has an SM form
    if cmd.cla & 0x10:
        return _sw(SW.CHAINING_NOT_SUPPORTED)
    if not session.live:
        return _sw(SW_SM_NO_SESSION)
    session.counter += 1                          # every SM command, refused or not
    n = session.counter
    if cmd.cla & 0x0C == 0x0C:
        return _sw(SW_SM_OBJECTS_MISSING)          # header authentication is not offered
    try:
        return _secured(card, session, n, cmd)
    except SmError as err:
        if err.destroy:
            session.end()
        return _sw(err.sw)


def _secured(card, session: Session, n: int, cmd: Command) -> bytes:
    ins = cmd.ins
    if ins == 0xA4:
        if cmd.p1 != 0x02:
            return _sw(SW.SM_NOT_SUPPORTED)       # [U] only SELECT FILE of an EF has an SM form
        if cmd.p2 != 0x0C:
            return _sw(SW.INCORRECT_P1P2)         # §13.2: 08 A4 02 0C (no FCP to encrypt)
        plain = decrypt_object(session, n, cmd.data)
        return card._select(Command(0x00, 0xA4, cmd.p1, cmd.p2, plain, None))
    if ins == 0x20:
        plain = decrypt_object(session, n, cmd.data)
        # A wrong PIN spends a try exactly as in the clear: the same VERIFY code runs.
        return card._verify(Command(0x00, 0x20, cmd.p1, cmd.p2, plain, None))
    if ins == 0xB0:
        tag, value = parse_single_object(cmd.data)
        if tag != T_LE or len(value) != 3 or value[0] != 0x00:
            raise SmError(SW_SM_OBJECTS_INCORRECT)
        le = int.from_bytes(value[1:], "big") or 0x10000   # 0: the whole file from the offset
        answer = card._read_binary(Command(0x00, 0xB0, cmd.p1, cmd.p2, b"", le, True))
        data, sw = answer[:-2], answer[-2:]
        if sw != SW.OK.bytes:
            return sw
        out = session.wrap(n, data)
        if cmd.le is not None and len(out) > cmd.le:
            return _sw(SW.WRONG_LENGTH)           # as in the clear: never more than Le, no 6Cxx
        return out + sw
    return _sw(SW.SM_NOT_SUPPORTED)
