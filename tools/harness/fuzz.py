"""APDU fuzzer for the card core: structured and random APDUs against an invariant oracle.

Long mode (issue 5 item 2): `python -m mynaemu.tools.harness.fuzz --apdus 1000000` sends at least that
many APDUs to in-process cards (Card.transmit, no door) of the adult and under-15 personas,
in episodes that each start from a fresh image with random CardOptions, random PIN counters
(some blocked) and some PINs verified, over every application. It prints the count per status
word, the coverage (application x credential state) and the APDU/s, and exits 1 at the first
violation with the offending APDU (PIN data redacted), the state and the recent history.

The invariants (the Oracle class checks them after every APDU, white-box):
1. The response ends with a status word whose SW1 is 62..6F or 90 (9000 only), never 61xx or
   6Cxx (spec §1.3); 6F00 counts as a violation too, because the core answers it only when an
   exception was caught inside. Error and 63xx answers carry no data.
2. Nothing escapes transmit().
3. A retry counter never rises without a correct PIN: it only falls, by one, on a VERIFY with a
   wrong value for that PIN, and only rises back to its maximum on a correct VERIFY, or on a
   CHANGE after a correct VERIFY with no failure since (spec §4.1, §4.4). A blocked PIN never
   comes back. A PIN value changes only through a successful CHANGE to a well-formed value.
   A wrong PIN always counts (unless bad_pin_format="reject" refuses a malformed one), and the
   retry query answers 63Cn with the true n (spec §4.2).
4. Protected data never leaves without its credential: a 9000 READ BINARY/RECORD must return
   the addressed EF's own bytes, and the EF's rule must be met by the PINs this oracle saw
   verified (correct VERIFY answered 9000) in the current security scope (spec §4.5: cleared
   by power-off, cold reset and selecting another application). Every other response is
   scanned for any 16-byte run of a protected EF that no readable source holds.
5. Private keys never leave: no response holds any 16-byte run of a key's PEM, its PKCS#8
   DER, d, p, q, dP, dQ or qInv. Keys sign only when their use rule is met.
6. The card's own view stays consistent with the spec: SELECT by AID answers 9000 only for a
   known DF (or a prefix, with prefix_select, §2.2) and makes exactly that DF current; the
   current EF changes only on SELECT EF and the SFI forms (§2.4); the card never holds a
   verified status this oracle did not see granted.

The generator draws from a Chooser (random.Random here; the hypothesis tests in
tests/test_fuzz.py pass one that draws from hypothesis), so both share one APDU grammar.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import logging
import random
import re
import sys
import time

from cryptography.hazmat.primitives import serialization

from mynaemu.card.aid import AID
from mynaemu.card.apdu import ApduFormatError, Command
from mynaemu.card.ids import MfEF
from mynaemu.card.core import Card
from mynaemu.card.image import (FREE, NEVER, UNKNOWN_EF_SWS, BinaryEF, CardImage, CardOptions, KeyEF,
                                PinEF, RecordEF)
from mynaemu.card.redact import redact_command
from mynaemu.card.status import RETRIES_BASE, SW

ISD_AID = AID.ISD                                  # spec §2.1
WINDOW = 16                                        # bytes of a run that counts as a leak
ALLOWED_SW1 = frozenset(range(0x62, 0x70)) - {0x6C}   # spec §1.3: never 61xx / 6Cxx
NO_DATA_SW1 = frozenset(range(0x63, 0x70))
PERSONAS = ("adult", "under15")


# -- violations ----------------------------------------------------------------------------------

class Violation(AssertionError):
    """An invariant broken by the card; str() is a full, PIN-redacted report."""

    def __init__(self, message: str, apdu: bytes | None, response: bytes | None, context: str,
                 apdu_text: str | None = None):
        self.message = message
        self.apdu = apdu
        self.apdu_text = apdu_text if apdu_text is not None else (redact_apdu(apdu) if apdu is not None else "")
        self.response = response
        self.context = context
        super().__init__(self.report())

    def report(self) -> str:
        lines = [f"VIOLATION: {self.message}"]
        if self.apdu is not None:
            lines.append(f"  APDU     {self.apdu_text}")
        if self.response is not None:
            sw = self.response[-2:].hex().upper() if len(self.response) >= 2 else "(none)"
            lines.append(f"  response SW {sw}, {max(len(self.response) - 2, 0)} data bytes")
        lines.append(self.context)
        return "\n".join(lines)


def redact_apdu(raw: bytes, secrets=()) -> str:
    """Hex of an APDU for reports, PINs hidden: the data field of any VERIFY, CHANGE REFERENCE
    DATA, RESET RETRY COUNTER or CHANGE KEY whatever its CLA (the fuzzer also sends them with
    SM/chaining/odd CLA bytes), and any run equal to one of `secrets` (the card's PIN values)."""
    text = redact_command(raw)
    if len(raw) > 5 and raw[1] in (0x20, 0x24, 0x2C, 0x32) and "*" not in text:
        text = redact_command(bytes((0x00,)) + raw[1:])
        text = raw[:1].hex().upper() + text[2:]
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret.hex().upper(), "**" * len(secret))
    return text


# -- what the card must never give away --------------------------------------------------------

def _windows(data: bytes):
    return (data[i:i + WINDOW] for i in range(len(data) - WINDOW + 1))


def private_material(key_pem: bytes) -> list:
    """Byte strings that reveal a private key: PEM, PKCS#8 DER and the CRT numbers."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    n = key.private_numbers()
    k = (key.key_size + 7) // 8
    half = (k + 1) // 2
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return [key_pem, der, n.d.to_bytes(k, "big"), n.p.to_bytes(half, "big"), n.q.to_bytes(half, "big"),
            n.dmp1.to_bytes(half, "big"), n.dmq1.to_bytes(half, "big"), n.iqmp.to_bytes(half, "big")]


def public_material(key_pem: bytes) -> list:
    """The public half, which the PKCS#8 DER also holds and certificates legitimately carry."""
    pub = serialization.load_pem_private_key(key_pem, password=None).public_key()
    k = (pub.key_size + 7) // 8
    return [pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
            pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1),
            pub.public_numbers().n.to_bytes(k, "big")]


@dataclasses.dataclass
class CardFacts:
    """Per-persona, content-only facts (PIN changes do not touch them): built once, reused."""

    doc: dict
    key_windows: frozenset
    protected: dict          # 16-byte run -> frozenset of (app, fid) that hold it

    @classmethod
    def of(cls, image: CardImage) -> "CardFacts":
        keys = set()
        for app in image.applications:
            pems = [ef.key_pem for ef in app.efs.values() if isinstance(ef, KeyEF)]
            if getattr(app, "sm_key_pem", None):
                pems.append(app.sm_key_pem)       # §13.2: the session-key private half
            for pem in pems:
                public = set()
                for blob in public_material(pem):
                    public.update(_windows(blob))
                for blob in private_material(pem):
                    keys.update(w for w in _windows(blob) if w not in public)
        free = set()
        sources = list(image.get_data.values()) + [ISD_AID] + [a.aid for a in image.applications]
        protected = collections.defaultdict(set)
        for app in image.applications:
            for fid, ef in app.efs.items():
                blobs = ef.records if isinstance(ef, RecordEF) else [ef.data] if isinstance(ef, BinaryEF) else []
                if not blobs:
                    continue
                if ef.read == FREE:
                    sources.extend(blobs)
                for blob in blobs:
                    for w in _windows(blob):
                        if w in keys:
                            raise ValueError(f"{app.name}/{fid:04X} holds private key material")
                    if ef.read != FREE:
                        for w in _windows(blob):
                            protected[w].add((app.name, fid))
        for blob in sources:
            free.update(_windows(blob))
        leaks = {w: frozenset(owners) for w, owners in protected.items() if w not in free}
        for obj in image.get_data.values():
            if any(w in keys for w in _windows(obj)):
                raise ValueError("a GET DATA object holds private key material")
        return cls(image.to_json(), frozenset(keys), leaks)

    def fresh_image(self) -> CardImage:
        return CardImage.from_json(self.doc)


# -- the oracle ----------------------------------------------------------------------------------

def _sw(resp: bytes) -> int:
    return int.from_bytes(resp[-2:], "big")


class Oracle:
    """Wraps a Card: transmit() sends one APDU and checks every invariant (module docstring)."""

    def __init__(self, facts: CardFacts, image: CardImage, card: Card, *, label: str = "",
                 history: int = 12):
        self.facts = facts
        self.image = image
        self.card = card
        self.label = label
        self.history = collections.deque(maxlen=history)
        self.pins = [(app, fid, ef) for app in image.applications for fid, ef in sorted(app.efs.items())
                     if isinstance(ef, PinEF)]
        self.current_app = None
        self.current_ef = None
        self.security_app = None
        self.verified = set()       # (app name, fid) the oracle saw granted, in the current scope
        self.fresh_ok = set()       # ... with no failure of that PIN since
        self.sw_counts = collections.Counter()
        self.state_counts = collections.Counter()
        self.over_le = collections.Counter()   # INS -> responses longer than Ne (observation)
        self.sent = 0
        self._changed = None        # (app, fid) a CHANGE of this APDU legitimately rewrote
        self._errors = []
        self._handler = _ErrorCatcher(self._errors)
        logging.getLogger("mynaemu.card").addHandler(self._handler)

    def close(self) -> None:
        logging.getLogger("mynaemu.card").removeHandler(self._handler)

    # -- power --------------------------------------------------------------------------------
    def power_on(self) -> None:
        self.card.power_on()
        self._clear_scope()
        self.current_app = self.current_ef = None

    def power_cycle(self) -> None:
        self.card.power_off()
        self.power_on()

    def reset(self, warm: bool) -> None:
        self.card.reset(warm=warm)
        self.current_app = self.current_ef = None
        if not warm:
            self._clear_scope()
        self._check_view(None, None)

    def _clear_scope(self) -> None:
        self.verified.clear()
        self.fresh_ok.clear()
        self.security_app = None

    # -- reporting ----------------------------------------------------------------------------
    def context(self) -> str:
        pins = ", ".join(f"{a.name}/{f:04X} {p.remaining}/{p.max_tries}" for a, f, p in self.pins)
        app = self.current_app.name if self.current_app else "MF"
        ef = f"{self.current_ef:04X}" if self.current_ef is not None else "-"
        verified = ", ".join(f"{a}/{f:04X}" for a, f in sorted(self.verified)) or "none"
        lines = [f"  card     {self.label}; options {dataclasses.asdict(self.image.options)}",
                 f"  state    current {app} EF {ef}; verified {verified}",
                 f"  PINs     {pins}",
                 "  history (oldest first):"]
        now = self._secrets()
        lines += [f"    > {redact_apdu(cmd, then + now)}  < {sw}" for cmd, sw, then in self.history]
        return "\n".join(lines)

    def _secrets(self):
        return [p.value for _, _, p in self.pins]

    def fail(self, message: str, apdu=None, resp=None):
        then = self.history[-1][2] if self.history else []
        text = redact_apdu(apdu, then + self._secrets()) if apdu is not None else None
        raise Violation(message, apdu, resp, self.context(), text)

    # -- the check ----------------------------------------------------------------------------
    def transmit(self, raw: bytes) -> bytes:
        raw = bytes(raw)
        before = [(p.value, p.remaining) for _, _, p in self.pins]
        prev_app, prev_ef = self.current_app, self.current_ef
        self.state_counts[self.state_key()] += 1
        try:
            resp = self.card.transmit(raw)
        except Exception as exc:  # invariant 2
            self.fail(f"transmit() raised {type(exc).__name__}: {exc}", raw)
        self.sent += 1
        if not isinstance(resp, (bytes, bytearray)) or len(resp) < 2:
            self.fail("response shorter than a status word", raw, resp)
        resp = bytes(resp)
        sw = _sw(resp)
        self.sw_counts[sw] += 1
        # Raw bytes and the PIN values of that moment, redacted only when a report is written.
        self.history.append((raw, resp[-2:].hex().upper(), [v for v, _ in before]))
        if self._errors:
            message = self._errors[0]
            self._errors.clear()
            self.fail(f"the card logged an internal error: {message}", raw, resp)
        self._check_sw(raw, resp, sw)
        try:
            cmd = Command.parse(raw)
        except ApduFormatError:
            if sw != SW.WRONG_LENGTH:
                self.fail(f"malformed APDU answered {sw:04X}, expected 6700", raw, resp)
            cmd = None
        data = resp[:-2]
        validated = False
        if cmd is not None:
            validated = self._check_command(cmd, raw, resp, sw, data, before, prev_app, prev_ef)
        self._check_view(self.current_app, self.current_ef, raw, resp)
        self._check_pins(cmd, raw, resp, sw, before, prev_app, prev_ef)
        if data and not validated:
            self._scan(raw, resp, data)
        return resp

    def state_key(self) -> tuple:
        app = self.current_app.name if self.current_app else "MF"
        opened = tuple(sorted(f"{f:04X}" for a, f in self.verified if a == app))
        blocked = tuple(sorted(f"{f:04X}" for a, f, p in self.pins if a.name == app and p.blocked))
        return app, opened, blocked

    def _check_sw(self, raw, resp, sw):
        sw1 = sw >> 8
        if sw1 == SW.OK >> 8:
            if sw != SW.OK:
                self.fail(f"status word {sw:04X}: SW1 90 only as 9000", raw, resp)
        elif sw1 not in ALLOWED_SW1:
            self.fail(f"status word {sw:04X} is not allowed (spec §1.3: 62..6F or 9000, never 61xx/6Cxx)",
                      raw, resp)
        if sw == SW.UNKNOWN_ERROR and not (raw[1:2] == b"\xAE" and raw[0] & 0xF0 == 0x80):
            # (§13.2: SET SESSION KEY answers 6F00 to a ciphertext at or above the modulus)
            self.fail("6F00: the card caught an internal error", raw, resp)
        if sw1 in NO_DATA_SW1 and len(resp) > 2:
            self.fail(f"{sw:04X} carries {len(resp) - 2} data bytes", raw, resp)

    def _granted(self, app, rule) -> bool:
        if rule == FREE:
            return True
        if rule == NEVER or app is None:
            return False
        return any((app.name, fid) in self.verified for fid in rule)

    def _resolve_df(self, name: bytes):
        """(found, DF or None for the ISD) as spec §2.2 and the card's options define SELECT."""
        if name == ISD_AID:
            return True, None
        for app in self.image.applications:
            if app.aid == name:
                return True, app
        if self.image.options.prefix_select and 1 <= len(name) < 16:
            if ISD_AID.startswith(name):
                return True, None
            for app in self.image.applications:
                if app.aid.startswith(name):
                    return True, app
        return False, None

    def _pin_ref(self, p2: int, app, cur_ef):
        """The PIN EF a VERIFY/CHANGE P2 names (spec §2.4): 80 = current EF, 80|SFI."""
        if app is None:
            return None
        if p2 == 0x80:
            fid = cur_ef
        elif p2 & 0x80 and not p2 & 0x60 and 1 <= p2 & 0x1F <= 0x1E:
            fid = p2 & 0x1F
        else:
            return None
        ef = app.efs.get(fid) if fid is not None else None
        return (fid, ef) if isinstance(ef, PinEF) else None

    def _key_ref(self, p2: int, app, cur_ef):
        if app is None:
            return None
        if p2 == 0x80:
            ef = app.efs.get(cur_ef) if cur_ef is not None else None
        elif p2 == 0x00:
            ef = next((e for e in app.efs.values() if isinstance(e, KeyEF) and e.default), None)
        elif p2 & 0x80 and not p2 & 0x60 and 1 <= p2 & 0x1F <= 0x1E:
            ef = app.efs.get(p2 & 0x1F)
        else:
            return None
        return ef if isinstance(ef, KeyEF) else None

    def _enter(self, app) -> None:
        keep = app is not None and app is self.security_app and self.image.options.reselect_keeps_status
        if not keep:
            self._clear_scope()
            self.security_app = app
        self.current_app = app
        self.current_ef = None

    def _check_command(self, cmd, raw, resp, sw, data, before, prev_app, prev_ef) -> bool:
        """Per-command checks; True when the response data was proven to be allowed content."""
        dispatched = cmd.cla in (0x00, 0x80)
        iso = cmd.cla == 0x00
        ins = cmd.ins
        validated = False
        ne = cmd.le or 0
        if data and len(data) > ne:
            self.over_le[f"{cmd.cla:02X}{ins:02X}"] += 1
        # SELECT (spec §2.2, §2.3)
        if iso and ins == 0xA4 and sw == SW.OK:
            if cmd.p1 == 0x04:
                found, target = self._resolve_df(cmd.data)
                if not found:
                    self.fail("SELECT answered 9000 to an AID that names no DF on this card (spec §11 item 6)",
                              raw, resp)
                self._enter(target)
            elif cmd.p1 == 0x02:
                if len(cmd.data) != 2:
                    self.fail("SELECT EF answered 9000 without a 2-byte FID", raw, resp)
                fid = int.from_bytes(cmd.data, "big")
                app = self.current_app
                if app is None and fid != MfEF.INTERNAL or app is not None and fid not in app.efs:
                    self.fail(f"SELECT EF {fid:04X} answered 9000 but no such EF here", raw, resp)
                self.current_ef = fid
            if data:
                validated = self._check_fci(raw, resp, data)
        # the card's view: application and EF
        if iso and ins in (0xB0, 0xB2) and self.card.current_ef != prev_ef:
            sfi = (cmd.p1 & 0x1F) if ins == 0xB0 else (cmd.p2 >> 3)
            named = ins == 0xB0 and cmd.p1 & 0x80 or ins == 0xB2 and sfi not in (0, 0x1F)
            if not named or self.card.current_ef != sfi:
                self.fail(f"current EF moved to {self.card.current_ef} on a READ that names SFI {sfi:02X}",
                          raw, resp)
            self.current_ef = self.card.current_ef
        if not dispatched:
            return validated
        # READ BINARY / READ RECORD (spec §6, §2.4, §4.3)
        if iso and ins == 0xB0 and sw == SW.OK:
            app = prev_app
            if app is None:
                self.fail("READ BINARY answered 9000 at MF level (the MF has no readable EF, §2.2)", raw, resp)
            if cmd.p1 & 0x80:
                fid, offset = cmd.p1 & 0x1F, cmd.p2
            else:
                fid, offset = prev_ef, (cmd.p1 << 8) | cmd.p2
            ef = app.efs.get(fid) if fid is not None else None
            if not isinstance(ef, BinaryEF):
                self.fail(f"READ BINARY answered 9000 on {app.name}/{fid} which is not a binary EF", raw, resp)
            if not self._granted(app, ef.read):
                self.fail(f"protected EF {app.name}/{fid:04X} (rule {ef.read}) read without its credential",
                          raw, resp)
            if data != ef.data[offset:offset + cmd.le]:
                self.fail(f"READ BINARY of {app.name}/{fid:04X} returned bytes that are not the EF's", raw, resp)
            validated = True
        if iso and ins == 0xB2 and sw == SW.OK:
            app = prev_app
            sfi = cmd.p2 >> 3
            fid = prev_ef if sfi == 0 else sfi
            ef = app.efs.get(fid) if app is not None and fid is not None else None
            if not isinstance(ef, RecordEF):
                self.fail(f"READ RECORD answered 9000 on something that is not a record EF ({fid})", raw, resp)
            if not self._granted(app, ef.read):
                self.fail(f"protected record EF {app.name}/{fid:04X} read without its credential", raw, resp)
            if not 1 <= cmd.p1 <= len(ef.records) or data != ef.records[cmd.p1 - 1][:cmd.le]:
                self.fail(f"READ RECORD {cmd.p1} of {app.name}/{fid:04X} returned other bytes", raw, resp)
            validated = True
        # keys (spec §5)
        if sw == SW.OK and ((not iso and ins == 0x2A) or (iso and ins == 0x88)):
            op = "sign" if ins == 0x2A else "internal_auth"
            key = self._key_ref(cmd.p2, prev_app, prev_ef)
            if key is None:
                self.fail(f"{'80 2A' if op == 'sign' else '00 88'} answered 9000 with no key named", raw, resp)
            if op not in key.ops:
                self.fail(f"key {prev_app.name}/{key.fid:04X} used for {op}, which it does not offer", raw, resp)
            if not self._granted(prev_app, key.use):
                self.fail(f"key {prev_app.name}/{key.fid:04X} (rule {key.use}) used without its credential",
                          raw, resp)
        # VERIFY (spec §4.2)
        if iso and ins == 0x20 and cmd.p1 == 0x00:
            self._check_verify(cmd, raw, resp, sw, before, prev_app, prev_ef)
        # CHANGE REFERENCE DATA / CHANGE KEY (spec §4.4)
        change = (iso and ins == 0x24 and cmd.p1 == 0x01) or (not iso and ins == 0x32 and cmd.p1 == 0x00)
        if sw == SW.OK and (ins in (0x24, 0x32)) and not change:
            self.fail("a CHANGE with an unsupported P1 answered 9000", raw, resp)
        if change and sw == SW.OK:
            ref = self._pin_ref(cmd.p2, prev_app, prev_ef)
            if ref is None:
                self.fail("CHANGE answered 9000 with no PIN named", raw, resp)
            fid, pin = ref
            method = "iso" if ins == 0x24 else "jicsap"
            if pin.change != method:
                self.fail(f"PIN {prev_app.name}/{fid:04X} changed by {method}, it uses {pin.change}", raw, resp)
            if (prev_app.name, fid) not in self.fresh_ok:
                self.fail(f"PIN {prev_app.name}/{fid:04X} changed without a correct VERIFY first (§4.4)",
                          raw, resp)
            if pin.value != cmd.data or re.fullmatch(pin.pattern, cmd.data.decode("latin-1")) is None:
                self.fail(f"PIN {prev_app.name}/{fid:04X} now holds a value that is not the well-formed new one",
                          raw, resp)
            self._changed = (prev_app.name, fid)
        return validated

    def _check_fci(self, raw, resp, data) -> bool:
        """SELECT's FCI names only public things: an AID, a FID, a size."""
        if len(data) > 64:
            self.fail(f"SELECT returned {len(data)} bytes of FCI", raw, resp)
        return False   # still scanned for protected runs

    def _check_view(self, app, ef, raw=None, resp=None) -> None:
        card = self.card
        if card.current_app is not app:
            got = card.current_app.name if card.current_app else "MF"
            want = app.name if app else "MF"
            self.fail(f"the card's current DF is {got}, the spec says {want}", raw, resp)
        if card.current_ef != ef:
            self.fail(f"the card's current EF is {card.current_ef}, the spec says {ef}", raw, resp)
        extra = set(card.verified) - self.verified
        if extra:
            self.fail(f"the card holds a verified status never granted: {sorted(extra)}", raw, resp)

    def _check_verify(self, cmd, raw, resp, sw, before, prev_app, prev_ef) -> None:
        ref = self._pin_ref(cmd.p2, prev_app, prev_ef)
        if sw == SW.OK:
            if not cmd.data:
                self.fail("the retry query answered 9000; it must answer 63Cn at all times (§4.2)", raw, resp)
            if ref is None:
                self.fail("VERIFY answered 9000 with no PIN named", raw, resp)
            fid, pin = ref
            old_value = before[self._index(prev_app, fid)][0]
            if cmd.data != old_value:
                self.fail(f"VERIFY of {prev_app.name}/{fid:04X} accepted a wrong value", raw, resp)
            self.verified.add((prev_app.name, fid))
            self.fresh_ok.add((prev_app.name, fid))
            return
        if ref is None:
            return
        fid, pin = ref
        old_value, old_remaining = before[self._index(prev_app, fid)]
        if not cmd.data:
            if sw != (RETRIES_BASE | min(old_remaining, 15)):
                self.fail(f"retry query of {prev_app.name}/{fid:04X} answered {sw:04X}, "
                          f"{old_remaining} tries are left (§4.2)", raw, resp)
            return
        if old_remaining == 0:
            if sw != SW.REFERENCE_BLOCKED:
                self.fail(f"VERIFY of blocked {prev_app.name}/{fid:04X} answered {sw:04X}, expected 6984", raw, resp)
            return
        counts = self.image.options.bad_pin_format == "count" or pin.well_formed(cmd.data)
        if cmd.data != old_value and counts:
            # A wrong PIN always costs a try, and says how many are left (§4.1, §4.2).
            if pin.remaining != old_remaining - 1 or sw != RETRIES_BASE | pin.remaining:
                self.fail(f"wrong PIN for {prev_app.name}/{fid:04X}: counter {old_remaining} -> "
                          f"{pin.remaining}, answered {sw:04X}", raw, resp)

    def _index(self, app, fid) -> int:
        for i, (a, f, _) in enumerate(self.pins):
            if a is app and f == fid:
                return i
        raise KeyError((app.name, fid))

    def _check_pins(self, cmd, raw, resp, sw, before, prev_app, prev_ef) -> None:
        changed, self._changed = self._changed, None
        verify_ref = None
        if cmd is not None and cmd.cla == 0x00 and cmd.ins == 0x20 and cmd.p1 == 0x00 and cmd.data:
            verify_ref = self._pin_ref(cmd.p2, prev_app, prev_ef)
        for i, (app, fid, pin) in enumerate(self.pins):
            old_value, old_remaining = before[i]
            key = (app.name, fid)
            if pin.value != old_value and key != changed:
                self.fail(f"PIN {app.name}/{fid:04X} value changed without a successful CHANGE", raw, resp)
            if pin.remaining == old_remaining:
                continue
            targeted = verify_ref is not None and prev_app is app and verify_ref[0] == fid
            if pin.remaining < old_remaining:
                if not (targeted and pin.remaining == old_remaining - 1 and cmd.data != old_value):
                    self.fail(f"PIN {app.name}/{fid:04X} counter fell {old_remaining} -> {pin.remaining} "
                              f"without a wrong VERIFY of it", raw, resp)
                self.fresh_ok.discard(key)
                continue
            # The counter rose: only a correct PIN may do that (invariant 3).
            if old_remaining == 0:
                self.fail(f"blocked PIN {app.name}/{fid:04X} came back ({pin.remaining} tries)", raw, resp)
            correct_verify = targeted and sw == SW.OK and cmd.data == old_value
            if not (correct_verify or key == changed) or pin.remaining != pin.max_tries:
                self.fail(f"PIN {app.name}/{fid:04X} counter rose {old_remaining} -> {pin.remaining} "
                          f"without a correct PIN", raw, resp)

    def _scan(self, raw, resp, data) -> None:
        keys, protected = self.facts.key_windows, self.facts.protected
        for i in range(len(data) - WINDOW + 1):
            w = data[i:i + WINDOW]
            if w in keys:
                self.fail("private key material in a response", raw, resp)
            owners = protected.get(w)
            if owners is not None:
                apps = {a.name: a for a in self.image.applications}
                if not any(self._granted(apps[a], apps[a].efs[f].read) and apps[a] is self.current_app
                           for a, f in owners):
                    names = ", ".join(f"{a}/{f:04X}" for a, f in sorted(owners))
                    self.fail(f"bytes of protected EF {names} in a response to a non-READ command", raw, resp)


class _ErrorCatcher(logging.Handler):
    """Collects ERROR records of mynaemu.card: the core logs what it caught before answering."""

    def __init__(self, sink: list):
        super().__init__(logging.ERROR)
        self.sink = sink

    def emit(self, record):
        self.sink.append(record.getMessage())


# -- choosers ------------------------------------------------------------------------------------

class RandomChooser:
    """The generator's entropy from random.Random (fast; long mode)."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def pick(self, seq):
        return seq[self.rng.randrange(len(seq))]

    def int(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def bytes(self, n: int) -> bytes:
        return self.rng.randbytes(n)


# -- the APDU grammar -----------------------------------------------------------------------------

FIDS_EXTRA = (0x2F10, 0x2F11, 0x3F00, 0x0000, 0xFFFF, 0x001F, 0x0020, 0x3F01)
SIGN_P1 = (0, 0, 0, 1, 2, 3, 4, 5, 6, 0x80, 0xFF)
DIGEST_INFO_256 = bytes.fromhex("3031300d060960864801650304020105000420")
DIGEST_INFO_SHA1 = bytes.fromhex("3021300906052b0e03021a05000414")
GET_DATA_TAGS = (0x0042, 0x0045, 0x0066, 0x00F0, 0x00F2, 0x00F7, 0x00F8, 0x7F21, 0x5F51, 0x0000, 0x00FF, 0x9F7F)
SM_OR_CHANNEL_CLA = (0x01, 0x02, 0x03, 0x04, 0x08, 0x0C, 0x10, 0x40, 0x41, 0x60, 0x7F, 0x84, 0x8C, 0x90,
                     0xA0, 0xB0, 0xC0, 0xFF, 0x20, 0x81)
ACTIONS = ("apdu",) * 400 + ("cold",) + ("warm",) + ("power",)


class ApduGenerator:
    """Produces the next APDU (or a power action) for an Oracle, drawing from a Chooser.

    Most APDUs are structured (every CLA/INS the card knows, spec-aware P1/P2 and data, valid
    and invalid Lc/Le in short and extended form); some are random bytes; and short scripted
    sequences (verify then read, verify then change, verify then sign) reach the 9000 paths.
    """

    KINDS = (("select",) * 10 + ("read_binary",) * 10 + ("read_record",) * 3 + ("verify",) * 8 +
             ("change",) * 3 + ("sign",) * 4 + ("internal_auth",) * 2 + ("get_challenge",) * 2 +
             ("get_data",) * 2 + ("misc",) * 2 + ("random",) * 6 + ("script",) * 8)

    def __init__(self, ch, oracle: Oracle):
        self.ch = ch
        self.oracle = oracle
        self.image = oracle.image
        self.queue = collections.deque()
        self.aids = [a.aid for a in self.image.applications] + [ISD_AID]

    def next(self):
        if self.queue:
            return "apdu", self.queue.popleft()
        action = self.ch.pick(ACTIONS)
        if action != "apdu":
            return action, None
        kind = self.ch.pick(self.KINDS)
        return "apdu", getattr(self, "_" + kind)()

    # -- building blocks ------------------------------------------------------------------------
    def _app(self):
        return self.oracle.current_app

    def _encode(self, cla, ins, p1, p2, data=b"", le=None) -> bytes:
        ch = self.ch
        if ch.chance(0.08):
            cla = ch.pick(SM_OR_CHANNEL_CLA)
        form = ch.pick(("short",) * 8 + ("ext",) * 3 + ("bad",))
        head = bytes((cla, ins, p1, p2))
        if form == "short" and len(data) <= 255 and (le is None or le <= 256):
            out = head
            if data:
                out += bytes((len(data),)) + data
            if le is not None:
                out += bytes((le & 0xFF,))
            return out
        if form != "bad":
            out = head
            if data:
                out += b"\x00" + len(data).to_bytes(2, "big") + data
            if le is not None:
                out += (b"" if data else b"\x00") + (le & 0xFFFF).to_bytes(2, "big")
            return out
        bad = ch.pick(("lc_short", "lc_long", "ext_lc0", "ext_trunc", "header", "tail"))
        if bad == "lc_short":
            return head + bytes((len(data) + 1 & 0xFF or 1,)) + data
        if bad == "lc_long":
            return head + bytes((max(len(data) - 1, 1) & 0xFF,)) + data + b"\x00\x00"
        if bad == "ext_lc0":
            return head + b"\x00\x00\x00" + data
        if bad == "ext_trunc":
            return head + b"\x00" + bytes((ch.int(0, 255),))
        if bad == "header":
            return head[:ch.int(0, 3)]
        return head + bytes((len(data) & 0xFF,)) + data + ch.bytes(ch.int(2, 3))

    def _le(self):
        return self.ch.pick((None, 256, 256, 256, 1, 4, 7, 17, 32, 255, 65536, 65536, 1000,
                             self.ch.int(1, 65536)))

    def _fid(self) -> int:
        ch = self.ch
        app = self._app()
        if app is not None and ch.chance(0.6):
            return ch.pick(sorted(app.efs))
        if ch.chance(0.6):
            return ch.int(1, 0x1E)
        return ch.pick(FIDS_EXTRA) if ch.chance(0.7) else ch.int(0, 0xFFFF)

    def _pin(self):
        """(app, fid, PinEF) of the current app when it has PINs, else any."""
        pins = self.oracle.pins
        app = self._app()
        mine = [p for p in pins if p[0] is app]
        return self.ch.pick(mine if mine and self.ch.chance(0.85) else pins)

    def _pin_value(self, pin: PinEF, how: str) -> bytes:
        ch = self.ch
        if how == "correct":
            return pin.value
        if how == "wrong":
            n = len(pin.value) or 6
            alphabet = b"0123456789" if pin.value.isdigit() or not pin.value else b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
            value = bytes(ch.pick(alphabet) for _ in range(n))
            if value == pin.value:
                value = value[:-1] + (b"0" if value[-1:] != b"0" else b"1")
            return value
        if how == "malformed":
            return ch.pick((b"12", b"12345", b"abc123", b"\x00\x00\x00\x00", "１２３４".encode(),
                            b"1234567890123456789", ch.bytes(ch.int(1, 40))))
        return b""

    # -- kinds --------------------------------------------------------------------------------
    def _select(self) -> bytes:
        ch = self.ch
        p1 = ch.pick((4,) * 6 + (2,) * 6 + (0, 1, 3, 8, 9, ch.int(0, 255)))
        p2 = ch.pick((0x0C,) * 5 + (0x00, 0x04, 0x02, ch.int(0, 255)))
        if p1 == 4:
            aid = ch.pick(self.aids)
            how = ch.pick(("exact",) * 5 + ("prefix", "prefix", "foreign", "long", "empty"))
            if how == "prefix":
                aid = aid[:ch.int(1, len(aid))]
            elif how == "foreign":
                aid = ch.pick((bytes.fromhex("A000000308000010000100"), bytes.fromhex("D27600012401"),
                               bytes.fromhex("A0000000030000"), ch.bytes(ch.int(1, 16))))
            elif how == "long":
                aid = aid + ch.bytes(ch.int(1, 10))
            elif how == "empty":
                aid = b""
            data = aid
        elif p1 == 2:
            data = self._fid().to_bytes(2, "big") if ch.chance(0.9) else ch.bytes(ch.pick((0, 1, 3)))
        elif p1 == 0:
            data = ch.pick((b"", b"", b"\x3f\x00", b"\x00\x01"))
        else:
            data = ch.bytes(ch.int(0, 4))
        le = None if ch.chance(0.7) else self._le()
        return self._encode(0x00, 0xA4, p1, p2, data, le)

    def _read_binary(self) -> bytes:
        ch = self.ch
        if ch.chance(0.5):
            sfi = self._fid() & 0x1F if ch.chance(0.9) else ch.int(0, 0x1F)
            p1 = 0x80 | sfi
            if ch.chance(0.05):
                p1 |= ch.pick((0x20, 0x40, 0x60))
            p2 = ch.pick((0, 0, 0, 4, 7, ch.int(0, 255)))
        else:
            offset = ch.pick((0, 0, 0, 4, 7, 256, 512, ch.int(0, 4000), ch.int(0, 0x7FFF)))
            p1, p2 = offset >> 8, offset & 0xFF
        data = b"" if ch.chance(0.95) else ch.bytes(ch.int(1, 3))
        le = self._le() if ch.chance(0.95) else None
        return self._encode(0x00, 0xB0, p1, p2, data, le)

    def _read_record(self) -> bytes:
        ch = self.ch
        p1 = ch.pick((1, 1, 1, 0, 2, ch.int(0, 255)))
        p2 = ch.pick((0x04, (1 << 3) | 4, (1 << 3) | 4, (self._fid() & 0x1F) << 3 | 4, 0xFC, ch.int(0, 255)))
        return self._encode(0x00, 0xB2, p1, p2, b"", self._le() if ch.chance(0.95) else None)

    def _verify(self) -> bytes:
        ch = self.ch
        _app, fid, pin = self._pin()
        p2 = ch.pick((0x80 | fid, 0x80 | fid, 0x80, 0x80, 0x80 | ch.int(0, 0x1F), ch.int(0, 255)))
        how = ch.pick(("query", "query", "correct", "correct", "wrong", "wrong", "malformed"))
        p1 = 0 if ch.chance(0.95) else ch.int(1, 255)
        return self._encode(0x00, 0x20, p1, p2, self._pin_value(pin, how), None if ch.chance(0.9) else self._le())

    def _new_pin(self, pin: PinEF) -> bytes:
        ch = self.ch
        if ch.chance(0.8):
            if pin.pattern.startswith("[0-9]"):
                n = len(pin.value) or 4
                return bytes(ch.pick(b"0123456789") for _ in range(n))
            n = ch.int(6, 16)
            return bytes(ch.pick(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(n))
        return self._pin_value(pin, "malformed")

    def _change(self) -> bytes:
        ch = self.ch
        _app, fid, pin = self._pin()
        p2 = ch.pick((0x80 | fid, 0x80, 0x80, ch.int(0, 255)))
        data = self._new_pin(pin) if ch.chance(0.9) else b""
        if ch.chance(0.5):
            return self._encode(0x00, 0x24, ch.pick((1, 1, 1, 0, 2)), p2, data)
        return self._encode(0x80, 0x32, ch.pick((0, 0, 0, 1)), p2, data)

    def _sign_data(self) -> bytes:
        ch = self.ch
        return ch.pick((DIGEST_INFO_256 + ch.bytes(32), DIGEST_INFO_256 + ch.bytes(32), DIGEST_INFO_SHA1 + ch.bytes(20),
                        ch.bytes(32), ch.bytes(ch.int(1, 300)), b""))

    def _sign(self) -> bytes:
        ch = self.ch
        app = self._app()
        keys = [f for f, e in app.efs.items() if isinstance(e, KeyEF)] if app else []
        key = ch.pick(keys) if keys and ch.chance(0.8) else ch.int(0, 0x1F)
        p2 = ch.pick((0x80, 0x80 | key, 0x80 | key, 0x00, ch.int(0, 255)))
        return self._encode(0x80, 0x2A, ch.pick(SIGN_P1), p2, self._sign_data(), ch.pick((256, 256, None, 1)))

    def _internal_auth(self) -> bytes:
        ch = self.ch
        p2 = ch.pick((0x80, 0x99, 0x97, 0x9A, 0x93, 0x00, ch.int(0, 255)))
        data = ch.bytes(ch.pick((16, 16, 1, 255, 256, 0, ch.int(1, 300))))
        return self._encode(0x00, 0x88, ch.pick((0, 0, 0, 1)), p2, data, ch.pick((256, None)))

    def _get_challenge(self) -> bytes:
        ch = self.ch
        p = ch.pick((0, 0, 0, 1))
        return self._encode(0x00, 0x84, p, 0, b"" if ch.chance(0.9) else b"\x01", ch.pick((16, 8, 256, 1, None, 300)))

    def _get_data(self) -> bytes:
        ch = self.ch
        tag = ch.pick(GET_DATA_TAGS)
        return self._encode(0x00, 0xCA, tag >> 8, tag & 0xFF, b"" if ch.chance(0.95) else b"\x00",
                            ch.pick((256, 65536, 1, None, 4000)))

    def _misc(self) -> bytes:
        ch = self.ch
        cla, ins = ch.pick(((0x00, 0xC0), (0x80, 0xA2), (0x80, 0xAE), (0x80, 0xFC), (0x00, 0x2A), (0x80, 0xB0),
                            (0x80, 0x20), (0x00, 0x32), (0x00, ch.int(0, 255)), (0x80, ch.int(0, 255))))
        data = ch.bytes(ch.pick((0, 0, 4, 255, 256)))
        return self._encode(cla, ins, ch.int(0, 255), ch.int(0, 255), data, ch.pick((None, 256)))

    def _random(self) -> bytes:
        ch = self.ch
        n = ch.pick((0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 20, ch.int(0, 300)))
        raw = bytearray(ch.bytes(n))
        if raw and ch.chance(0.5):
            raw[0] = ch.pick((0x00, 0x80))
        if len(raw) > 1 and ch.chance(0.5):
            raw[1] = ch.pick((0xA4, 0xB0, 0xB2, 0x20, 0x24, 0x2A, 0x32, 0x84, 0x88, 0xCA, 0xC0))
        return bytes(raw)

    def _script(self) -> bytes:
        """A short valid sequence that reaches the 9000 paths: open a PIN, then use it."""
        ch = self.ch
        app = ch.pick(self.image.applications) if ch.chance(0.5) or self._app() is None else self._app()
        seq = []
        if app is not self._app() or ch.chance(0.2):
            seq.append(b"\x00\xA4\x04\x0C" + bytes((len(app.aid),)) + app.aid)
        pins = [(f, e) for f, e in sorted(app.efs.items()) if isinstance(e, PinEF)]
        fid, pin = ch.pick(pins)
        if ch.chance(0.85) and pin.value:
            value = pin.value if ch.chance(0.85) else self._pin_value(pin, "wrong")
            seq.append(bytes((0, 0x20, 0, 0x80 | fid, len(value))) + value)
        keys = [f for f, e in sorted(app.efs.items()) if isinstance(e, KeyEF)]
        # the 住基AP has a PIN and no key (§13.3): nothing to sign with there
        then = ch.pick(("read", "read", "read", "sign", "change", "query") if keys else
                       ("read", "read", "read", "change", "query"))
        if then == "read":
            efs = [f for f, e in sorted(app.efs.items()) if isinstance(e, (BinaryEF, RecordEF))]
            target = ch.pick(efs)
            if isinstance(app.efs[target], RecordEF):
                seq.append(bytes((0, 0xB2, 1, target << 3 | 4, 0)))
            elif ch.chance(0.5):
                seq.append(bytes((0, 0xB0, 0x80 | target, 0, 0, 0, 0)))
            else:
                seq += [b"\x00\xA4\x02\x0C\x02" + target.to_bytes(2, "big"), bytes((0, 0xB0, 0, ch.int(0, 3), 0))]
        elif then == "sign":
            key = ch.pick(keys)
            data = DIGEST_INFO_256 + ch.bytes(32)
            if "internal_auth" in app.efs[key].ops:
                seq.append(bytes((0, 0x88, 0, 0x80 | key, 16)) + ch.bytes(16) + b"\x00")
            else:
                seq.append(bytes((0x80, 0x2A, 0, 0x80 | key, len(data))) + data + b"\x00")
        elif then == "change":
            new = self._new_pin(pin)
            if pin.change == "jicsap":
                seq.append(bytes((0x80, 0x32, 0, 0x80 | fid, len(new))) + new)
            else:
                seq.append(bytes((0, 0x24, 1, 0x80 | fid, len(new))) + new)
        else:
            seq.append(bytes((0, 0x20, 0, 0x80 | fid)))
        first, *rest = seq
        self.queue.extend(rest)
        return first


# -- episodes ------------------------------------------------------------------------------------

def random_options(ch) -> CardOptions:
    return CardOptions(reselect_keeps_status=ch.chance(0.7), prefix_select=ch.chance(0.7),
                       select_fci=ch.chance(0.7), get_data_in_application=ch.chance(0.3),
                       bad_pin_format=ch.pick(("count", "count", "reject")),
                       unknown_ef_sw=ch.pick(UNKNOWN_EF_SWS))


class Rig:
    """One image and one Card per persona, reused across episodes: restore() puts the PINs and
    options back as issued. Reusing the Card keeps its parsed keys (loading a PEM RSA key with
    validation costs ~36 ms, far more than an episode's APDUs)."""

    def __init__(self, facts: CardFacts):
        self.facts = facts
        self.image = facts.fresh_image()
        self.card = Card(self.image)
        self._pins = [(ef, ef.value, ef.remaining) for app in self.image.applications
                      for ef in app.efs.values() if isinstance(ef, PinEF)]

    def restore(self) -> None:
        for ef, value, remaining in self._pins:
            ef.value, ef.remaining = value, remaining
        self.card.power_off()


def set_options(image: CardImage, options: CardOptions) -> None:
    """In place: the Card holds the image's options object."""
    for field in dataclasses.fields(CardOptions):
        setattr(image.options, field.name, getattr(options, field.name))


def start_episode(ch, facts: CardFacts, label: str, rig: Rig | None = None) -> Oracle:
    """A card as issued (a fresh copy, or the rig restored) with random options and counters
    (some blocked), powered up, then some PINs of one application opened through APDUs."""
    if rig is None:
        image = facts.fresh_image()
        card = Card(image)
    else:
        rig.restore()
        image, card = rig.image, rig.card
    set_options(image, random_options(ch))
    for app in image.applications:
        for ef in app.efs.values():
            if isinstance(ef, PinEF) and ef.remaining > 0:
                roll = ch.int(0, 9)
                if roll == 0:
                    ef.remaining = 0
                elif roll <= 2:
                    ef.remaining = ch.int(1, ef.max_tries)
    oracle = Oracle(facts, image, card, label=label)
    oracle.power_on()
    # Open a random set of PINs in one application (through APDUs, so the oracle sees them).
    app = ch.pick(image.applications + [None])
    if app is not None:
        oracle.transmit(b"\x00\xA4\x04\x0C" + bytes((len(app.aid),)) + app.aid)
        for fid, ef in sorted(app.efs.items()):
            if isinstance(ef, PinEF) and ef.value and ch.chance(0.5):
                oracle.transmit(bytes((0, 0x20, 0, 0x80 | fid, len(ef.value))) + ef.value)
    return oracle


def run_steps(oracle: Oracle, gen: ApduGenerator, n: int) -> None:
    for _ in range(n):
        action, raw = gen.next()
        if action == "apdu":
            oracle.transmit(raw)
        elif action == "cold":
            oracle.reset(warm=False)
        elif action == "warm":
            oracle.reset(warm=True)
        else:
            oracle.power_cycle()


# -- long mode -----------------------------------------------------------------------------------

def build_facts(personas=PERSONAS, seed: int | None = 1) -> dict:
    from mynaemu.issuance.personas import build_persona

    return {name: CardFacts.of(build_persona(name, seed=seed)[0]) for name in personas}


def fuzz(apdus: int, *, seed: int = 0, personas=PERSONAS, persona_seed: int | None = 1,
         episode: tuple = (20, 400), progress=None, report_every: int = 100_000) -> dict:
    """Send at least `apdus` APDUs; raises Violation. Returns the statistics."""
    facts = build_facts(personas, persona_seed)
    rigs = {name: Rig(f) for name, f in facts.items()}
    rng = random.Random(seed)
    ch = RandomChooser(rng)
    sw_counts = collections.Counter()
    states = collections.Counter()
    over_le = collections.Counter()
    sent = episodes = 0
    start = time.perf_counter()
    next_report = report_every
    while sent < apdus:
        name = ch.pick(list(personas))
        oracle = start_episode(ch, facts[name], f"{name} (episode {episodes}, seed {seed})", rigs[name])
        try:
            run_steps(oracle, ApduGenerator(ch, oracle), ch.int(*episode))
        finally:
            oracle.close()
            sent += oracle.sent
            sw_counts.update(oracle.sw_counts)
            states.update(oracle.state_counts)
            over_le.update(oracle.over_le)
        episodes += 1
        if progress and sent >= next_report:
            progress(sent, time.perf_counter() - start)
            next_report += report_every
    elapsed = time.perf_counter() - start
    return {"apdus": sent, "episodes": episodes, "seconds": elapsed, "sw": sw_counts,
            "states": states, "over_le": over_le}


def _format_stats(stats: dict) -> str:
    lines = [f"{stats['apdus']:,} APDUs in {stats['episodes']:,} episodes, {stats['seconds']:.1f} s: "
             f"{stats['apdus'] / stats['seconds']:,.0f} APDU/s", "", "status words:"]
    for sw, n in sorted(stats["sw"].items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"  {sw:04X} {n:>12,}")
    apps = collections.Counter()
    opened = collections.defaultdict(set)
    blocked = collections.defaultdict(set)
    for (app, ver, blk), n in stats["states"].items():
        apps[app] += n
        opened[app].add(ver)
        blocked[app].add(blk)
    lines += ["", "coverage (APDUs sent with each application current; distinct verified sets; "
              "distinct blocked sets):"]
    for app, n in sorted(apps.items()):
        lines.append(f"  {app:8s} {n:>12,}  verified sets {len(opened[app]):3d}  blocked sets {len(blocked[app]):3d}")
    if stats["over_le"]:
        lines += ["", "observation: responses longer than Ne (no Le, or Le smaller than the data), by CLA INS:"]
        for ins, n in sorted(stats["over_le"].items()):
            lines.append(f"  {ins} {n:>10,}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mynaemu.tools.harness.fuzz",
                                     description="Fuzz the card core with structured and random APDUs.")
    parser.add_argument("--apdus", type=int, default=1_000_000, help="at least this many APDUs (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--persona-seed", type=int, default=1,
                        help="seed of the persona cards, so a failure replays (default 1)")
    parser.add_argument("--personas", default=",".join(PERSONAS), help="comma-separated persona names")
    args = parser.parse_args(argv)
    if args.apdus < 1:
        parser.error("--apdus must be at least 1")
    personas = tuple(p for p in args.personas.split(",") if p)
    print(f"fuzzing {args.apdus:,} APDUs over personas {', '.join(personas)} (seed {args.seed}, "
          f"persona seed {args.persona_seed})", flush=True)

    from mynaemu.tools.cli.progress import TerminalProgress

    bar = TerminalProgress(args.apdus, "fuzzing")      # total + ETA on a terminal only

    def progress(sent, seconds):
        if bar.enabled:
            bar.set(sent)
        else:
            print(f"  {sent:>10,} APDUs, {seconds:6.1f} s, {sent / seconds:,.0f} APDU/s", flush=True)

    try:
        with bar:
            stats = fuzz(args.apdus, seed=args.seed, personas=personas, persona_seed=args.persona_seed,
                         progress=progress, report_every=10_000 if bar.enabled else 100_000)
    except Violation as exc:
        print(exc.report(), file=sys.stderr)
        print(f"replay: python -m mynaemu.tools.harness.fuzz --apdus {args.apdus} --seed {args.seed} "
              f"--persona-seed {args.persona_seed} --personas {args.personas}", file=sys.stderr)
        return 1
    print(_format_stats(stats))
    print("no violation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
