"""Record a card session as a card script (vectors/transcripts/README.md) that replays green.

Whatever a client sends to a served card (`mynaemu card serve --record FILE`) or to an in-process
card (`InProcessConnection(card, record=FILE)`) is written down as `> command` / `< expected
answer` lines, so a session of any client becomes a regression script for `mynaemu card script
FILE --card IMAGE`. The file never holds a secret the card knows:

- the data field of VERIFY / CHANGE REFERENCE DATA / RESET RETRY COUNTER / CHANGE KEY (the INS
  of card/redact.py) is written as the placeholder of the PIN or 照合番号 it equals
  (`{AUTH_PIN}`, `{SIGN_PIN}`, `{KENHOJO_PIN}`, `{JUKI_PIN}`, `{MY_NUMBER}` = 照合番号A,
  `{SHOGO_B}`, `{BIRTH6}`, or a WRONG_ variant), chosen by the AP and PIN EF selected at the time
  (spec §4.1, §4.3) when several have the same value (1234 is three PINs on a default card);
- the 個人番号 inside response data is written as `{MY_NUMBER}`;
- answers that differ on every run are checked by shape: GET CHALLENGE by length, a signature
  by `pkcs1=auth|sign|kenhojo|kenkaku` when it verifies under one of the card's keys (§5.1),
  else by length. Everything else is checked byte for byte (`data=`).

Card power: the first power-on is the script's start; a power cycle later becomes `@reset cold`
and a reader's warm reset `@reset warm` (§4.5). Each line is flushed as it is written, so a
session cut short (kill, pulled card) still leaves a readable script up to its last exchange.
"""
from __future__ import annotations

import datetime as _dt
import os
import stat
from pathlib import Path

from mynaemu.card.aid import AID
from mynaemu.card.apdu import ApduFormatError, Command
from mynaemu.card.ids import CommonPin, JpkiPin, JukiPin, KenhojoPin, KenkakuPin
from mynaemu.card.redact import SECRET_INS
from mynaemu.card.status import SW

# The PIN EF each placeholder belongs to (spec §4.1 PINs, §4.3 照合番号 and 生年月日 keys).
_CONTEXT = {
    ("jpki", JpkiPin.AUTH): "AUTH_PIN", ("jpki", JpkiPin.SIGN): "SIGN_PIN",
    ("kenhojo", KenhojoPin.MAIN): "KENHOJO_PIN", ("kenhojo", KenhojoPin.A): "MY_NUMBER",
    ("kenhojo", KenhojoPin.B): "SHOGO_B",
    ("kenkaku", KenkakuPin.BIRTH): "BIRTH6", ("kenkaku", KenkakuPin.B): "SHOGO_B",
    ("kenkaku", KenkakuPin.A): "MY_NUMBER",
    ("juki", JukiPin.PIN): "JUKI_PIN", ("common", CommonPin.PIN): "JUKI_PIN",
}
_SECRET_VARS = ("AUTH_PIN", "SIGN_PIN", "KENHOJO_PIN", "JUKI_PIN", "MY_NUMBER", "SHOGO_B", "BIRTH6",
                "WRONG_AUTH_PIN", "WRONG_SIGN_PIN", "WRONG_KENHOJO_PIN", "WRONG_JUKI_PIN")
_NAME_OF_AID = {aid: aid.label for aid in AID}
_SIGNING_INS = (0x2A, 0x88)     # COMPUTE DIGITAL SIGNATURE, INTERNAL AUTHENTICATE (§5)
_GET_CHALLENGE = 0x84


def open_private(path) -> "object":
    """Open `path` for writing, 0600, refusing a symlink, a FIFO or anything but a regular file."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise OSError(f"{path}: not a regular file; refusing to record into it")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8")


class Recorder:
    """Writes exchanges as script lines. `env` and `keys` are a card's (tools/terminal/script_env.py)."""

    def __init__(self, path, env: dict, keys: dict, headers: dict):
        self.path = Path(path)
        self.env = env
        self.keys = keys
        self.exchanges = 0
        self._app = None
        self._ef = None
        self._pending_reset = None      # "warm" / "cold", written before the next command
        self._fh = open_private(self.path)
        for key, value in headers.items():
            if value:
                self._fh.write(f"{key}: {' '.join(str(value).split())}\n")
        self._fh.flush()

    @classmethod
    def for_image(cls, path, image, *, source: str) -> "Recorder":
        from mynaemu.tools.terminal.script_env import image_env, persona_keys

        headers = {"persona": image.meta.get("persona"),
                   "title": f"recorded session of {image.label or 'a card'}",
                   "source": f"{source}, {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ}"}
        return cls(path, image_env(image), persona_keys(image), headers)

    # -- events ------------------------------------------------------------------------------
    def reset(self, warm: bool) -> None:
        if self.exchanges and self._pending_reset != "cold":
            self._pending_reset = "warm" if warm else "cold"

    def exchange(self, apdu: bytes, response: bytes) -> None:
        apdu, response = bytes(apdu), bytes(response)
        if self._pending_reset:
            self._fh.write(f"@reset {self._pending_reset}\n")
            if self._pending_reset == "cold":
                self._app = self._ef = None
            self._pending_reset = None
        self._fh.write(f"> {self.command_line(apdu)}\n< {self.expect_line(apdu, response)}\n")
        self._fh.flush()
        self.exchanges += 1
        self._track(apdu, response)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    # -- lines -------------------------------------------------------------------------------
    def _track(self, apdu: bytes, response: bytes) -> None:
        if response[-2:] != SW.OK.bytes or len(apdu) < 5 or apdu[1] != 0xA4:
            return
        try:
            cmd = Command.parse(apdu)
        except ApduFormatError:
            return
        if cmd.p1 == 0x04:
            self._app, self._ef = _NAME_OF_AID.get(bytes(cmd.data)), None
        elif cmd.p1 == 0x02 and len(cmd.data) == 2:
            self._ef = int.from_bytes(cmd.data, "big")

    def _placeholder(self, value: bytes, fid) -> str | None:
        preferred = _CONTEXT.get((self._app, fid))
        order = ([preferred] if preferred else []) + [v for v in _SECRET_VARS if v != preferred]
        for var in order:
            text = self.env.get(var)
            if isinstance(text, str) and text and text.encode("utf-8") == value:
                return var
        return None

    def command_line(self, apdu: bytes) -> str:
        spaced = apdu.hex(" ").upper()
        if len(apdu) <= 5 or apdu[1] not in SECRET_INS:
            return spaced
        try:
            cmd = Command.parse(apdu)
        except ApduFormatError:
            return spaced
        if not cmd.data or cmd.extended:
            return spaced
        fid = (cmd.p2 & 0x1F) if cmd.p2 & 0x1F else self._ef
        data = bytes(cmd.data)
        parts = None
        whole = self._placeholder(data, fid)
        if whole:
            parts = [whole]
        else:
            # CHANGE REFERENCE DATA with old + new PIN in one data field (§4.4)
            for cut in range(1, len(data)):
                a, b = self._placeholder(data[:cut], fid), self._placeholder(data[cut:], fid)
                if a and b:
                    parts = [a, b]
                    break
        if parts is None:
            return spaced
        length = " + ".join(f"len({p})" for p in parts)
        le = "" if cmd.le is None else " " + apdu[-1:].hex().upper()
        return (apdu[:4].hex(" ").upper() + f" {{{length}:02X}} " + " ".join(f"{{{p}}}" for p in parts) + le)

    def expect_line(self, apdu: bytes, response: bytes) -> str:
        data, sw = response[:-2], response[-2:].hex().upper()
        if len(response) < 2:
            return "any"
        if not data:
            return sw
        ins = apdu[1] if len(apdu) > 1 else None
        if ins == _GET_CHALLENGE:
            return f"len={len(data)} {sw}"
        if ins in _SIGNING_INS:
            return f"{self._signature_check(apdu, data)} {sw}"
        return f"data={self._data_hex(data)} {sw}"

    def _signature_check(self, apdu: bytes, data: bytes) -> str:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            signed = bytes(Command.parse(apdu).data)
        except ApduFormatError:
            return f"len={len(data)}"
        for kind, key in self.keys.items():
            try:
                if key.recover_data_from_signature(data, padding.PKCS1v15(), None) == signed:
                    return f"pkcs1={kind}"
            except (InvalidSignature, ValueError, TypeError):
                continue
        return f"len={len(data)}"

    def _data_hex(self, data: bytes) -> str:
        number = self.env.get("MY_NUMBER")
        if not number:
            return data.hex().upper()
        needle = number.encode("ascii")
        pieces = data.split(needle)
        return "{MY_NUMBER}".join(p.hex().upper() for p in pieces)


class RecordingCard:
    """A card for a door (card/transport/vpcd.py) that records every exchange through `recorder`."""

    def __init__(self, card, recorder: Recorder):
        self._card = card
        self.recorder = recorder
        self._powered_once = False

    @property
    def atr(self):
        return self._card.atr

    def __getattr__(self, name):
        return getattr(self._card, name)

    def power_on(self):
        if self._powered_once:
            self.recorder.reset(warm=False)
        self._powered_once = True
        return self._card.power_on()

    def power_off(self):
        return self._card.power_off()

    def reset(self, warm: bool = True):
        self.recorder.reset(warm=warm)
        return self._card.reset(warm=warm)

    def transmit(self, raw: bytes) -> bytes:
        response = self._card.transmit(raw)
        self.recorder.exchange(raw, response)
        return response
