"""The card core: one command interpreter over a CardImage, behind every door.

It implements the commands of card-interface.md §2, §4, §5, §6 (SELECT, READ BINARY, READ
RECORD, VERIFY, CHANGE REFERENCE DATA, CHANGE KEY, COMPUTE DIGITAL SIGNATURE, GET CHALLENGE,
INTERNAL AUTHENTICATE, GET DATA) with the security-status scope of §4.5. Every APDU gets a
status word; nothing raises out of transmit() except when the card is not powered (a
transport condition, not an APDU answer). Never 61xx or 6Cxx (§1.3).

Choices where the spec is [U] are documented beside the code and most are CardOptions.
"""
from __future__ import annotations

import hmac
import logging
import os
import threading

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, utils

from mynaemu.card.aid import AID
from mynaemu.card.apdu import ApduFormatError, Command
from mynaemu.card.ids import MfEF
from mynaemu.card.image import (
    BinaryEF, CardImage, CardSession, FREE, KeyEF, NEVER, OpaqueEF, PinEF, RecordEF, atr_bytes,
)
from mynaemu.card.crypto import pss_sha256, sign_pkcs1_as_given
from mynaemu.card import sm
from mynaemu.card.redact import redact_command
from mynaemu.card.status import SW, retries

log = logging.getLogger("mynaemu.card")

# spec §2.1: GlobalPlatform Issuer Security Domain, current at power-up.
ISD_AID = AID.ISD
# spec §2.2: the MF has no readable EF; 001E selects but READ gives 6981.
MF_INTERNAL_EF = MfEF.INTERNAL
# ISO 7816-4 6581: memory failure (the PIN counter could not be written durably).
SW_MEMORY_FAILURE = SW.MEMORY_FAILURE


class CardNotPowered(RuntimeError):
    """transmit() on a card that has no power: the reader would report no card."""


class _Reply(Exception):
    """Internal: abort a command with a status word."""

    def __init__(self, sw: int):
        self.sw = sw


_SW_BYTES: dict = {}


def _sw(sw) -> bytes:
    # Called on every answer: the two bytes of each status word are built once.
    try:
        return _SW_BYTES[sw]
    except KeyError:
        raw = _SW_BYTES[sw] = int(sw).to_bytes(2, "big")
        return raw


class Card:
    """A software Individual Number Card.

    image: the card's content and PIN state (mutated in place).
    persist: called with the image whenever PIN state changes; it must be durable when it
        returns (CardImage.save is). None for a card that lives only in memory.
    random: bytes source for GET CHALLENGE and PSS salts (default os.urandom).
    """

    def __init__(self, image: CardImage, *, persist=None, random=os.urandom, atr: str | None = None):
        self.image = image
        self._atr = atr_bytes(atr) if atr else None   # a door's override, never persisted
        self.options = image.options
        self._persist = persist
        self._random = random
        self._lock = threading.RLock()
        self._keys = {}
        self._session = None         # the CardSession of a card opened with from_file()
        self.powered = False
        self._clear_all()

    # -- doors ------------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path, *, door: str = "in-process card", wait: float | None = None, **kwargs) -> "Card":
        """A card whose state lives in `path` (saved atomically after every PIN change).

        The card is in this reader until close(): the image is held locked for the whole
        session, and another door gets CardInUse after `wait` seconds (image.LOCK_WAIT by
        default) - never a free PIN try (card/image.py, "one reader at a time").
        """
        session = CardSession(path, door=door, **({} if wait is None else {"wait": wait}))
        try:
            if sm.ensure_key(session.image):
                # §13.2: an image made before the session-key private half was kept gets one
                # (new EF 0006 key pair) once, durably, so SET SESSION KEY works from now on.
                session.save()
                log.info("%s: added the kenhojo session-key private half (EF 0006 renewed)", path)
            card = cls(session.image, persist=session.save, **kwargs)
        except BaseException:
            session.close()
            raise
        card._session = session
        return card

    def close(self) -> None:
        """Take the card out of the reader: power off and release its image file, if any (a
        released session refuses to write, so a PIN change after this answers 6581)."""
        with self._lock:
            self.power_off()
            session, self._session = self._session, None
            if session is not None:
                session.close()

    def __enter__(self) -> "Card":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def atr(self) -> bytes:
        return self._atr or self.image.atr_bytes

    def power_on(self) -> bytes:
        with self._lock:
            self.powered = True
            self._clear_all()
            return self.atr

    def power_off(self) -> None:
        # spec §4.5: power loss clears every security status.
        with self._lock:
            self.powered = False
            self._clear_all()

    def reset(self, warm: bool = True) -> bytes:
        """Warm reset keeps verified status (spec §4.5, MYNASIGN); cold reset clears it."""
        with self._lock:
            self.powered = True
            if warm:
                self.current_app = None
                self.current_ef = None
                self.sm.end()    # §13.2: no application is current after a reset
            else:
                self._clear_all()
            return self.atr

    def _clear_all(self):
        self.current_app = None      # None: MF level, ISD current (spec §2.1)
        self.current_ef = None       # fid in the current app (or MF_INTERNAL_EF at MF level)
        self.security_app = None     # the application whose verified status is held
        self.verified = set()        # (app name, PIN fid)
        self.app_selected = False    # an application was selected since the cold reset
        self.sm = sm.Session()       # §13.2: secure-messaging session, memory only

    def transmit(self, raw: bytes) -> bytes:
        with self._lock:
            if not self.powered:
                raise CardNotPowered("the card is not powered")
            raw = bytes(raw)
            try:
                response = self._dispatch(raw)
            except _Reply as reply:
                response = _sw(reply.sw)
            except Exception:  # a bug must not take the card down; report it and answer 6F00
                log.exception("internal error on %s", redact_command(raw))
                response = _sw(SW.UNKNOWN_ERROR)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("> %s  < %s", redact_command(raw), response[-2:].hex().upper())
            return response

    # -- dispatch ---------------------------------------------------------------------------
    def _dispatch(self, raw: bytes) -> bytes:
        try:
            cmd = Command.parse(raw)
        except ApduFormatError:
            return _sw(SW.WRONG_LENGTH)
        cla, ins = cmd.cla, cmd.ins
        if 0x40 <= cla <= 0x7F:
            return _sw(SW.CHANNEL_NOT_SUPPORTED)      # further interindustry = channels 4-19
        kind = cla & 0xE0
        if kind not in (0x00, 0x80) or cla == 0xFF:
            return _sw(SW.CLA_NOT_SUPPORTED)
        if cla & 0x03:
            return _sw(SW.CHANNEL_NOT_SUPPORTED)      # spec §1.1: channel 0 only
        if cla & 0x0C:
            if sm.handles(self.current_app):
                return sm.transmit(self, cmd)        # §13.2: kenhojo's confidentiality SM
            # spec §1.1: SM class bytes refused (SELECT 6882; READ/VERIFY 69FC)
            if ins in (0xB0, 0xB2, 0x20):
                return _sw(SW.SM_DATA_MISSING)
            return _sw(SW.SM_NOT_SUPPORTED)
        if cla & 0x10:
            return _sw(SW.CHAINING_NOT_SUPPORTED)
        handler = (self._ISO if kind == 0x00 else self._PROPRIETARY).get(ins)
        if handler is None:
            return _sw(SW.INS_NOT_SUPPORTED)
        response = handler(self, cmd)
        if cmd.le is not None and len(response) - 2 > cmd.le:
            # An answer longer than the Le asked for (e.g. a 256-byte signature for Le=01):
            # ISO gives 6Cxx, which this card never sends (spec §1.3), so: wrong length.
            # READ BINARY/RECORD cut to Le themselves and never get here.
            return _sw(SW.WRONG_LENGTH)
        return response

    # -- helpers ----------------------------------------------------------------------------
    def _app(self):
        return self.current_app

    def _enter(self, app) -> None:
        """Make `app` (None = ISD/MF level) current, applying the §4.5 status scope."""
        keep = app is not None and app is self.security_app and self.options.reselect_keeps_status
        self.sm.end()    # §13.2: any application SELECT ends the SM session
        if not keep:
            self.verified.clear()
            self.security_app = app
        self.current_app = app
        self.current_ef = None
        if app is not None:
            self.app_selected = True

    def _granted(self, app, rule) -> bool:
        if rule == FREE:
            return True
        if rule == NEVER or app is None:
            return False
        return any((app.name, fid) in self.verified for fid in rule)

    def _ef_by_sfi(self, sfi: int):
        app = self.current_app
        if app is None:
            if sfi == MF_INTERNAL_EF:
                return MF_INTERNAL_EF, None
            raise _Reply(SW.FILE_NOT_FOUND)
        # spec §2.3: every FID in use is 0001-001E, so the SFI is the FID's low 5 bits.
        ef = app.efs.get(sfi)
        if ef is None:
            raise _Reply(SW.FILE_NOT_FOUND)
        return sfi, ef

    def _current_ef(self):
        if self.current_ef is None:
            raise _Reply(SW.COMMAND_NOT_ALLOWED)
        if self.current_app is None:
            return self.current_ef, None
        return self.current_ef, self.current_app.efs[self.current_ef]

    def _pin_for(self, p2: int) -> PinEF:
        """The PIN named by P2: 80 = current EF, 80|SFI = by short identifier (spec §2.4)."""
        app = self.current_app
        if p2 == 0x80:
            fid, ef = self._current_ef()
            if ef is None or not isinstance(ef, PinEF):
                # [U] VERIFY when the current EF is not a PIN (spec §4.2): 6981, ISO "command
                # incompatible with file structure".
                raise _Reply(SW.INCOMPATIBLE_FILE)
            return ef
        if p2 & 0x80 and 1 <= (p2 & 0x7F) <= 0x1E:
            if app is None:
                raise _Reply(SW.DATA_NOT_FOUND)
            ef = app.efs.get(p2 & 0x1F) if not p2 & 0x60 else None
            if not isinstance(ef, PinEF):
                raise _Reply(SW.DATA_NOT_FOUND)
            # [U] an SFI-addressed VERIFY leaves the current EF as it was (spec §2.4).
            return ef
        raise _Reply(SW.INCORRECT_P1P2)

    def _key_for(self, p2: int) -> KeyEF:
        app = self.current_app
        if p2 == 0x80:
            _, ef = self._current_ef()
            if not isinstance(ef, KeyEF):
                raise _Reply(SW.INCOMPATIBLE_FILE)
            return ef
        if app is None:
            raise _Reply(SW.DATA_NOT_FOUND)
        if p2 == 0x00:
            # spec §3.3: the 券面 APs sign challenges with their default key (P2=00).
            for ef in app.efs.values():
                if isinstance(ef, KeyEF) and ef.default:
                    return ef
            raise _Reply(SW.DATA_NOT_FOUND)
        if p2 & 0x80 and not p2 & 0x60 and 1 <= (p2 & 0x1F) <= 0x1E:
            ef = app.efs.get(p2 & 0x1F)
            if not isinstance(ef, KeyEF):
                raise _Reply(SW.DATA_NOT_FOUND)
            return ef
        raise _Reply(SW.INCORRECT_P1P2)

    def _private_key(self, ef: KeyEF):
        key = self._keys.get(id(ef))
        if key is None:
            # The keys come from personalisation; the full RSA consistency check costs ~40 ms
            # per key on first use. A hand-edited, inconsistent key then signs wrongly (the
            # tester's intent), while an unparseable one still fails here (6F00).
            key = serialization.load_pem_private_key(ef.key_pem, password=None,
                                                     unsafe_skip_rsa_key_validation=True)
            self._keys[id(ef)] = key
        return key

    def _commit(self) -> None:
        if self._persist is not None:
            try:
                self._persist(self.image)
            except OSError:
                log.error("card image could not be written; refusing the command")
                raise _Reply(SW_MEMORY_FAILURE)

    # -- SELECT (spec §2.2, §2.3) -------------------------------------------------------------
    def _select(self, cmd: Command) -> bytes:
        p1, p2, data = cmd.p1, cmd.p2, cmd.data
        if p1 == 0x04:
            if p2 not in (0x00, 0x04, 0x0C):
                return _sw(SW.INCORRECT_P1P2)
            if not 1 <= len(data) <= 16:
                return _sw(SW.WRONG_LENGTH)
            target = self._find_df(data)
            fci = b""
            if p2 != 0x0C and cmd.le is not None and self.options.select_fci:
                aid = ISD_AID if target is None else target.aid
                if p2 == 0x00:
                    body = b"\x84" + bytes((len(aid),)) + aid
                    fci = b"\x6F" + bytes((len(body),)) + body
                else:
                    body = b"\x82\x01\x38\x84" + bytes((len(aid),)) + aid
                    fci = b"\x62" + bytes((len(body),)) + body
                if cmd.le < len(fci):
                    return _sw(SW.WRONG_LENGTH)     # no 6Cxx (spec §1.3); nothing selected
            self._enter(target)
            return fci + _sw(SW.OK)
        if p1 == 0x02:
            if p2 not in (0x00, 0x04, 0x0C):
                return _sw(SW.INCORRECT_P1P2)
            if len(data) != 2:
                return _sw(SW.WRONG_LENGTH)
            fid = int.from_bytes(data, "big")
            app = self.current_app
            if app is None:
                if fid != MF_INTERNAL_EF:
                    return _sw(SW.FILE_NOT_FOUND)
                self.current_ef = fid
                return _sw(SW.OK)
            ef = app.efs.get(fid)
            if ef is None:
                return _sw(SW.FILE_NOT_FOUND)
            fcp = self._fcp(fid, ef) if p2 != 0x0C and cmd.le is not None else b""
            if fcp and cmd.le < len(fcp):
                return _sw(SW.WRONG_LENGTH)     # as for a DF: no 6Cxx, and nothing selected
            self.current_ef = fid
            return fcp + _sw(SW.OK)
        if p1 == 0x00:
            if data == b"\x3F\x00":
                return _sw(SW.FILE_NOT_FOUND)   # spec §2.2: 3F00 by FID gets 6A82
            if data:
                return _sw(SW.INCORRECT_P1P2)
            # spec §2.2: 00 A4 00 00 is 6A86 straight after a cold reset, and 9000 without
            # changing the current DF once an application has been selected.
            return _sw(SW.OK if self.app_selected else SW.INCORRECT_P1P2)
        return _sw(SW.INCORRECT_P1P2)

    def _find_df(self, name: bytes):
        if name == ISD_AID:
            return None
        for app in self.image.applications:
            if app.aid == name:
                return app
        if self.options.prefix_select and len(name) < 16:
            # spec §2.2 [U]: a partial DF name selects the first DF, in card order, that
            # starts with it (ISD first, then the applications as personalised).
            if ISD_AID.startswith(name):
                return None
            for app in self.image.applications:
                if app.aid.startswith(name):
                    return app
        raise _Reply(SW.FILE_NOT_FOUND)

    @staticmethod
    def _fcp(fid: int, ef) -> bytes:
        if isinstance(ef, BinaryEF):
            body = b"\x80\x02" + len(ef.data).to_bytes(2, "big") + b"\x82\x01\x01"
        elif isinstance(ef, RecordEF):
            body = b"\x82\x01\x02"
        else:
            body = b"\x82\x01\x11"   # internal EF (JICSAP key/PIN)
        body += b"\x83\x02" + fid.to_bytes(2, "big")
        return b"\x62" + bytes((len(body),)) + body

    # -- READ BINARY (spec §6) ---------------------------------------------------------------
    def _read_binary(self, cmd: Command) -> bytes:
        if cmd.data or cmd.le is None:
            return _sw(SW.WRONG_LENGTH)
        if cmd.p1 & 0x80:
            if cmd.p1 & 0x60 or not cmd.p1 & 0x1F:
                return _sw(SW.INCORRECT_P1P2)
            fid, ef = self._ef_by_sfi(cmd.p1 & 0x1F)
            self.current_ef = fid          # spec §2.4: the SFI form makes the EF current
            offset = cmd.p2
        else:
            fid, ef = self._current_ef()
            offset = (cmd.p1 << 8) | cmd.p2
        if not isinstance(ef, BinaryEF):
            if isinstance(ef, OpaqueEF):       # §13.3: exists, content refused
                return _sw(int(self.options.unknown_ef_sw, 16))
            return _sw(SW.INCOMPATIBLE_FILE)   # internal or record EF (spec §2.2, §9)
        if not self._granted(self.current_app, ef.read):
            return _sw(SW.SECURITY_NOT_SATISFIED)
        if offset >= len(ef.data):
            return _sw(SW.OFFSET_OUT_OF_RANGE)
        # spec §6 item 3: Le beyond the end returns what remains with 9000.
        return ef.data[offset:offset + cmd.le] + _sw(SW.OK)

    # -- READ RECORD (spec §2.4, §3.4) ---------------------------------------------------------
    def _read_record(self, cmd: Command) -> bytes:
        if cmd.data or cmd.le is None:
            return _sw(SW.WRONG_LENGTH)
        if cmd.p1 == 0 or cmd.p2 & 0x07 != 0x04:
            return _sw(SW.INCORRECT_P1P2)       # only "record number in P1"
        sfi = cmd.p2 >> 3
        if sfi == 0:
            fid, ef = self._current_ef()
        elif sfi == 0x1F:
            return _sw(SW.INCORRECT_P1P2)
        else:
            fid, ef = self._ef_by_sfi(sfi)
            self.current_ef = fid
        if not isinstance(ef, RecordEF):
            if isinstance(ef, OpaqueEF):       # §13.3: exists, content refused
                return _sw(int(self.options.unknown_ef_sw, 16))
            return _sw(SW.INCOMPATIBLE_FILE)
        if not self._granted(self.current_app, ef.read):
            return _sw(SW.SECURITY_NOT_SATISFIED)
        if cmd.p1 > len(ef.records):
            return _sw(SW.RECORD_NOT_FOUND)
        return ef.records[cmd.p1 - 1][:cmd.le] + _sw(SW.OK)

    # -- VERIFY (spec §4.2) -------------------------------------------------------------------
    def _verify(self, cmd: Command) -> bytes:
        if cmd.p1 != 0x00:
            return _sw(SW.INCORRECT_P1P2)
        pin = self._pin_for(cmd.p2)
        app = self.current_app
        if not cmd.data:
            # Retry query: 63Cn at all times, even after a successful VERIFY (OSC-959), and
            # 63C0 on a blocked key.
            return retries(pin.remaining)
        if pin.blocked:
            return _sw(SW.REFERENCE_BLOCKED)
        if self.options.bad_pin_format == "reject" and not pin.well_formed(cmd.data):
            return _sw(SW.WRONG_DATA)
        # Anti-tearing: the decremented counter is durable before the comparison is released,
        # so pulling the card (or kill -9) mid-VERIFY can never give a free try.
        pin.remaining -= 1
        self._commit()
        if hmac.compare_digest(cmd.data, pin.value):
            pin.remaining = pin.max_tries
            self._commit()
            self.verified.add((app.name, pin.fid))
            return _sw(SW.OK)
        self.verified.discard((app.name, pin.fid))
        return retries(pin.remaining)   # 63C0 on the try that exhausts (spec §4.2)

    # -- CHANGE REFERENCE DATA / CHANGE KEY (spec §4.4) ----------------------------------------
    def _change(self, cmd: Command, method: str) -> bytes:
        pin = self._pin_for(cmd.p2)
        if pin.change != method:
            return _sw(SW.CONDITIONS_NOT_SATISFIED)
        if not cmd.data:
            return _sw(SW.WRONG_LENGTH)
        if pin.blocked:
            return _sw(SW.REFERENCE_BLOCKED)
        if (self.current_app.name, pin.fid) not in self.verified:
            return _sw(SW.SECURITY_NOT_SATISFIED)
        if not pin.well_formed(cmd.data):
            # [U] a new PIN of the wrong format (spec §4.4): 6A80, nothing changes.
            return _sw(SW.WRONG_DATA)
        old = (pin.value, pin.remaining)
        pin.value, pin.remaining = bytes(cmd.data), pin.max_tries
        try:
            self._commit()
        except _Reply:
            pin.value, pin.remaining = old
            raise
        return _sw(SW.OK)

    def _change_reference_data(self, cmd: Command) -> bytes:
        if cmd.p1 != 0x01:       # only "new value only" (spec §4.4)
            return _sw(SW.INCORRECT_P1P2)
        return self._change(cmd, "iso")

    def _change_key(self, cmd: Command) -> bytes:
        if cmd.p1 != 0x00:
            return _sw(SW.INCORRECT_P1P2)
        return self._change(cmd, "jicsap")

    # -- COMPUTE DIGITAL SIGNATURE (spec §5.1) ---------------------------------------------------
    def _sign(self, cmd: Command) -> bytes:
        if cmd.p1 > 0x05:
            return _sw(SW.INCORRECT_P1P2)
        ef = self._key_for(cmd.p2)
        if "sign" not in ef.ops:
            return _sw(SW.CONDITIONS_NOT_SATISFIED)
        if not self._granted(self.current_app, ef.use):
            return _sw(SW.SECURITY_NOT_SATISFIED)
        key = self._private_key(ef)
        k = (key.key_size + 7) // 8
        data = cmd.data
        if not data:
            return _sw(SW.WRONG_LENGTH)
        scheme = cmd.p1
        if scheme == 0x00:
            if len(data) > k - 11:
                return _sw(SW.WRONG_LENGTH)
            signature = sign_pkcs1_as_given(key, data)
        elif scheme == 0x01:
            digest = hashes.Hash(hashes.SHA256())
            digest.update(data)
            signature = sign_pkcs1_as_given(key, digest.finalize())
        elif scheme in (0x02, 0x04):
            if len(data) != 32:
                return _sw(SW.WRONG_LENGTH)
            pad = padding.PKCS1v15() if scheme == 0x02 else pss_sha256()
            signature = key.sign(data, pad, utils.Prehashed(hashes.SHA256()))
        else:
            pad = padding.PKCS1v15() if scheme == 0x03 else pss_sha256()
            signature = key.sign(data, pad, hashes.SHA256())
        return signature + _sw(SW.OK)

    # -- GET CHALLENGE / INTERNAL AUTHENTICATE (spec §5.2) ------------------------------------
    def _get_challenge(self, cmd: Command) -> bytes:
        if cmd.p1 or cmd.p2:
            return _sw(SW.INCORRECT_P1P2)
        if cmd.data or cmd.le is None:
            return _sw(SW.WRONG_LENGTH)
        if cmd.extended:
            return _sw(SW.CONDITIONS_NOT_SATISFIED)   # spec §5.2: extended form refused
        return self._random(cmd.le) + _sw(SW.OK)

    def _internal_authenticate(self, cmd: Command) -> bytes:
        if cmd.p1 != 0x00:
            return _sw(SW.INCORRECT_P1P2)
        ef = self._key_for(cmd.p2)
        if "internal_auth" not in ef.ops:
            # spec §5.2: JPKI keys refuse with 6982 while behind a PIN, the 券面 keys 6985.
            if not self._granted(self.current_app, ef.use):
                return _sw(SW.SECURITY_NOT_SATISFIED)
            return _sw(SW.CONDITIONS_NOT_SATISFIED)
        if not self._granted(self.current_app, ef.use):
            return _sw(SW.SECURITY_NOT_SATISFIED)
        if not 1 <= len(cmd.data) <= 255:
            return _sw(SW.WRONG_LENGTH)
        key = self._private_key(ef)
        return key.sign(cmd.data, padding.PKCS1v15(), hashes.SHA256()) + _sw(SW.OK)

    # -- GET DATA (spec §3.5) ------------------------------------------------------------------
    def _get_data(self, cmd: Command) -> bytes:
        if self.current_app is not None and not self.options.get_data_in_application:
            return _sw(SW.DATA_NOT_FOUND)
        if cmd.data:
            return _sw(SW.WRONG_LENGTH)
        obj = self.image.get_data.get((cmd.p1 << 8) | cmd.p2)
        if obj is None:
            return _sw(SW.DATA_NOT_FOUND)
        if cmd.le is None or cmd.le < len(obj):
            return _sw(SW.WRONG_LENGTH)    # large objects need an extended Le
        return obj + _sw(SW.OK)

    # -- the rest ------------------------------------------------------------------------------
    def _get_response(self, cmd: Command) -> bytes:
        return _sw(SW.CONDITIONS_NOT_SATISFIED)   # nothing is ever pending: no 61xx (spec §1.3)

    def _set_public_ic_key(self, cmd: Command) -> bytes:
        # spec §5.2: 80 A2 is not used by clients; tried P1/P2 give 6A86, 256 bytes 6700.
        return _sw(SW.WRONG_LENGTH if len(cmd.data) > 255 else SW.INCORRECT_P1P2)

    def _set_session_key(self, cmd: Command) -> bytes:
        # spec §1.1, §13.2: only 券面入力補助AP has SET SESSION KEY (card/sm.py).
        return sm.set_session_key(self, cmd)

    def _last_command(self, cmd: Command) -> bytes:
        return _sw(SW.WRONG_LENGTH)   # spec §8: 80 FC is the iPhone profile's; cards say 6700

    _ISO = {
        0xA4: _select, 0xB0: _read_binary, 0xB2: _read_record, 0x20: _verify,
        0x24: _change_reference_data, 0x84: _get_challenge, 0x88: _internal_authenticate,
        0xCA: _get_data, 0xC0: _get_response,
    }
    _PROPRIETARY = {
        0x2A: _sign, 0x32: _change_key, 0xA2: _set_public_ic_key, 0xAE: _set_session_key,
        0xFC: _last_command,
    }

