"""The back office writing a card: which card (binding), with which keys (custody), and when the
file appears (commit, then publish).

Binding. At 発行 (generate) the store records the public half of the card's 共通AP key 0019
(the INTERNAL AUTHENTICATE key, card-interface.md §3.4), a key that lives on the card and never
changes across 異動 or certificate renewal. A step that writes a presented card (異動 with the
card, certificate renewal with the card, write-card) first makes the presented image sign a fresh
random challenge with its key 0019 and checks the signature against the recorded public key.
Editing an image's `meta`, or copying the victim's `meta` into it, changes nothing: only the card
that holds the private key issued for that application passes. Any other card (another
holder's, a persona from `mynaemu card create`) is refused (Refused, exit 1), before anything
changes; the card file is never touched.

Custody (J-LIS keeps no holder private key). Keys generated at 発行 (JPKI-4: by the issuer) stay
in the store only until the card is handed over: 交付 deletes them and the store's copy of the
chip image. Afterwards a step that needs a new key pair on the card generates it into the card
image it is given; the store sees only the public key, in the certificate it issues. Two
exceptions, both documented: a step done without the card (異動/renewal with no --card) issues
the new certificate for a key that waits in the store for its card ("pending"), written and
deleted by the next write-card; and the 券面 APs' per-card data-signing keys (kenhojo/kenkaku
signer: issuer keys certified by the CVC, never on the card) are made afresh for each rewrite and
kept nowhere. A certificate whose key is neither on the presented card nor pending (e.g. a
pending key deleted by the v3 migration) is re-keyed at write-card: a new key on the card, a new
certificate to the same expiry, the old one revoked as superseded.

Commit, then publish. A card file is never written inside the store's transaction. Inside it the
new image goes to a staged file next to the target (`.NAME.staged-<hex>`, 0600, fsync) and a
`card_writes` row records target, staged name and digests (public data only). After COMMIT the
staged file is renamed over the target and the row deleted. A process killed before COMMIT leaves
the store and the card as they were (the staged file is an orphan, removed by the next write to
that card); killed after COMMIT, the row tells the next command (any workflow step, `issue
status`) to finish the rename, so the holder's file never keeps a revoked certificate while the
store says the new one is on the card without the store knowing. If the holder used the old file
in between, its PIN values and retry counters are carried into the staged image first (a counter
never goes back up), except on the PIN EFs a PIN reset set anew (meta "pin_reset", steps_pins.py).

Fault injection for the kill tests: MYNAEMU_TEST_KILL_AT=before-commit|after-commit|after-rename
makes the process os._exit(137) (no clean-up, like kill -9) at that exact point.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from mynaemu.card.apps import common, jpki, kenhojo, kenkaku
from mynaemu.card.image import CardImage, CardImageError, KeyEF, PinEF

from mynaemu.issuance.errors import Refused  # the leaf module: no cycle with workflow.py
from mynaemu.issuance.store.custody import BINDING_ROLE, migrate_custody, public_hex  # noqa: F401  (re-exported)

__all__ = ["BINDING_ROLE", "CARD_KEY_SLOTS", "ISSUER_ROLES", "KILL_ENV", "PIN_RESET_META", "Staged",
           "record_binding", "check_binding", "image_keys", "public_hex", "stage", "publish", "discard",
           "complete_pending", "fault", "migrate_custody"]

# Where each holder key lives on the card: role (personalise.CardKeys field) -> (AP, key EF).
CARD_KEY_SLOTS = {
    "auth": (jpki.NAME, jpki.KEY_AUTH),
    "sign": (jpki.NAME, jpki.KEY_SIGN),
    "kenhojo_session": (jpki.NAME, jpki.KEY_INTERNAL),   # the inert key references hold it
    "kenhojo_card": (kenhojo.NAME, kenhojo.KEY_AP),
    "kenkaku_card": (kenkaku.NAME, kenkaku.KEY_CARD),
    "common": (common.NAME, common.KEY_AUTH),
}
# Per-card signers of the 券面 APs' data: the issuer's, certified by the CVC, never on the card.
ISSUER_ROLES = ("kenhojo_signer", "kenkaku_signer")

KILL_ENV = "MYNAEMU_TEST_KILL_AT"
KILL_POINTS = ("before-commit", "after-commit", "after-rename")


def fault(point: str) -> None:
    """Test hook: die here like kill -9 when MYNAEMU_TEST_KILL_AT names this point."""
    if os.environ.get(KILL_ENV) == point:
        os._exit(137)


def _refused(message: str):
    return Refused(message)


# ---------------------------------------------------------------------------------------------
# binding
# ---------------------------------------------------------------------------------------------

def record_binding(store, app_id: str, public_key, at: _dt.datetime) -> None:
    store.record_binding(app_id, BINDING_ROLE, public_hex(public_key), at)


def _image_key(image: CardImage, role: str):
    """The private key of `role` on the card image, or None when the image has none there.
    Loaded with OpenSSL's consistency checks: a doctored key EF is refused, not trusted."""
    app_name, fid = CARD_KEY_SLOTS[role]
    pem = None
    if role == "kenhojo_session":  # §13.2: the SM key the kenhojo AP decrypts with, when it has one
        try:
            pem = image.application(kenhojo.NAME).sm_key_pem
        except KeyError:
            pem = None
    if pem is None:
        try:
            ef = image.application(app_name).efs.get(fid)
        except KeyError:
            return None
        if not isinstance(ef, KeyEF):
            return None
        pem = ef.key_pem
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        return None


def check_binding(store, app_id: str, image: CardImage) -> None:
    """Refused unless `image` holds the private half of the card key recorded for `app_id`."""
    recorded = store.binding_public_key(app_id)
    if recorded is None:
        raise _refused(f"card {app_id}: the store has no card key recorded for it, so no presented card "
                       "can be recognised as the one issued; not written")
    key = _image_key(image, BINDING_ROLE)
    if key is None:
        raise _refused(f"the presented card has no usable 共通AP card key (0019); it is not the card "
                       f"issued for {app_id}; not written")
    recorded = serialization.load_der_public_key(bytes.fromhex(recorded))
    challenge = secrets.token_bytes(32)
    try:
        signature = key.sign(challenge, padding.PKCS1v15(), hashes.SHA256())
        recorded.verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError, TypeError):
        raise _refused(f"the presented card is not the card issued for {app_id}: its 共通AP key does not "
                       "match the key recorded at 発行; not written") from None


def image_keys(image: CardImage) -> dict:
    """role -> private key, for every holder key the card image holds."""
    out = {}
    for role in CARD_KEY_SLOTS:
        key = _image_key(image, role)
        if key is not None:
            out[role] = key
    return out


# ---------------------------------------------------------------------------------------------
# commit, then publish
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Staged:
    id: str
    target: Path
    staged: Path


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_digest(path: Path) -> str | None:
    try:
        return _digest(path.read_bytes())
    except FileNotFoundError:
        return None


def _image_bytes(image: CardImage) -> bytes:
    # the same bytes CardImage.save writes
    return json.dumps(image.to_json(), ensure_ascii=False, indent=1).encode("utf-8")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _staged_names(target: Path) -> list[Path]:
    return sorted(target.parent.glob(f".{target.name}.staged-*"))


def stage(store, *, app_id: str, operation: str, image: CardImage, target, at: _dt.datetime,
          audit_id: int | None) -> Staged:
    """Inside the transaction: write the new image next to `target` and record the pending write."""
    target = Path(os.path.abspath(target))
    if target.is_dir():
        raise OSError(f"{target}: is a directory, not a card file")
    known = store.staged_writes_for(str(target))
    for orphan in _staged_names(target):   # left by a process killed before its COMMIT
        if str(orphan) not in known:
            orphan.unlink(missing_ok=True)
    data = _image_bytes(image)
    staged = target.parent / f".{target.name}.staged-{secrets.token_hex(8)}"
    _write_new(staged, data)
    write_id = secrets.token_hex(16)
    store.insert_card_write(write_id, app_id=app_id, operation=operation, target=str(target), staged=str(staged),
                            digest=_digest(data), previous=_file_digest(target), at=at, audit_id=audit_id)
    return Staged(write_id, target, staged)


def discard(staged_list) -> None:
    """The transaction did not commit: the staged files are not wanted."""
    for s in staged_list:
        s.staged.unlink(missing_ok=True)


def publish(store, staged_list) -> None:
    """After COMMIT: rename each staged image over its target and forget the pending write."""
    if staged_list:
        fault("after-commit")
    for s in staged_list:
        row = store.card_write(s.id)
        if row is not None:
            _complete(store, row)


def complete_pending(store) -> list[dict]:
    """Finish the card writes a killed process committed but did not publish. Returns what was
    done per write: {"id", "application_id", "target", "outcome": published|already|lost}."""
    if store.in_transaction:
        return []
    rows = store.card_writes()
    return [_complete(store, row) for row in rows]


# meta key of a card a PIN reset rewrote (steps_pins.py): {"pin", "efs": ["app/FID", …], "id"}
PIN_RESET_META = "pin_reset"


def _carry_counters(current: CardImage, new: CardImage) -> None:
    # The holder may have used the old file since the staging: keep what they set and never
    # hand back a try they spent (the counter only goes down) — except on the PIN EFs a reset
    # staged in `new` set anew, which the old file must not bring back (value nor blocked counter).
    reset = new.meta.get(PIN_RESET_META) or {}
    fresh = set(reset.get("efs", ())) if reset != current.meta.get(PIN_RESET_META) else set()
    for app in new.applications:
        try:
            old_app = current.application(app.name)
        except KeyError:
            continue
        for fid, ef in app.efs.items():
            if f"{app.name}/{fid:04X}" in fresh:
                continue
            before = old_app.efs.get(fid)
            if not isinstance(ef, PinEF) or not isinstance(before, PinEF):
                continue
            if ef.change != "none" and before.change != "none" and before.value:
                ef.value = before.value
                ef.remaining = min(before.remaining, ef.max_tries)
            elif before.value == ef.value:
                ef.remaining = min(before.remaining, ef.remaining)


def _complete(store, row) -> dict:
    target, staged = Path(row["target"]), Path(row["staged"])
    outcome = {"id": row["id"], "application_id": row["application_id"], "target": str(target)}
    digest = row["digest"]
    if staged.exists():
        current_digest = _file_digest(target)
        if current_digest is not None and current_digest not in (row["previous"], digest):
            try:
                merged = CardImage.from_json(json.loads(staged.read_bytes()))
                _carry_counters(CardImage.load(target), merged)
            except (CardImageError, ValueError, OSError):
                merged = None
            if merged is not None:
                data = _image_bytes(merged)
                fresh = target.parent / f".{target.name}.staged-{secrets.token_hex(8)}"
                _write_new(fresh, data)
                store.restage_card_write(row["id"], str(fresh), _digest(data))
                staged.unlink(missing_ok=True)
                staged, digest = fresh, _digest(data)
        try:
            os.replace(staged, target)
        except FileNotFoundError:
            if _file_digest(target) != digest:   # another process renamed it first: fine; else
                raise                            # a real failure: the row stays for the next command
            outcome["outcome"] = "already"
        else:
            _fsync_dir(target.parent)
            fault("after-rename")
            outcome["outcome"] = "published"
    elif _file_digest(target) == digest:
        outcome["outcome"] = "already"      # renamed, then killed before the row was deleted
    else:
        outcome["outcome"] = "lost"         # both files gone: nothing to publish; the row stays
        return outcome
    store.forget_card_write(row["id"])
    return outcome


# ---------------------------------------------------------------------------------------------
# custody: the keys of a rewritten card
# ---------------------------------------------------------------------------------------------

def rewrite_keys(wf, app_id: str, person, presented: CardImage, at: _dt.datetime, fresh: dict):
    """The CardKeys for rewriting the presented (bound) card: its own keys, the keys just made
    on it for this step (`fresh`, already certified), a key waiting in the store for this card,
    or, for a live certificate whose key is none of these, a new key made on the card with a new
    certificate to the same expiry (the old one revoked as superseded). The 券面 signers are made
    afresh. Afterwards the store holds no private key of this card."""
    from cryptography import x509

    from mynaemu.issuance import policy
    from mynaemu.issuance.personalise import CardKeys
    from mynaemu.issuance.store import parse_iso

    store = wf.store
    on_card = image_keys(presented)
    missing = [r for r in CARD_KEY_SLOTS if r not in ("auth", "sign") and r not in on_card]
    if missing:
        raise _refused(f"the presented card lacks its key(s) {', '.join(missing)}; not written")
    pending = {}
    for role, pem in store.keys(app_id).items():
        pending[role] = serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)
    keys = {role: on_card[role] for role in CARD_KEY_SLOTS if role not in ("auth", "sign")}
    for role in ISSUER_ROLES:
        keys[role] = wf.key_factory()
    rekeyed = []
    for kind in ("auth", "sign"):
        row = wf._current_cert(app_id, kind)
        if row is None:
            keys[kind] = None
            continue
        if kind in fresh:
            keys[kind] = fresh[kind]
            continue
        cert_key = public_hex(x509.load_der_x509_certificate(row["der"]).public_key())
        for candidate in (on_card.get(kind), pending.get(kind)):
            if candidate is not None and public_hex(candidate.public_key()) == cert_key:
                keys[kind] = candidate
                break
        else:
            new = wf.key_factory()
            store.cert_event(row["id"], "revoked", at=at, reason="superseded", audit_id=wf._audit_id)
            wf._issue_cert(app_id, kind, new, wf._identity(person), at,
                           policy.jst_date(parse_iso(row["not_after"])))
            keys[kind] = new
            rekeyed.append(kind)
    store.delete_keys(app_id)  # the card holds its keys now; nothing waits in the store
    if rekeyed:
        wf._note(rekeyed_on_card=rekeyed)
    return CardKeys(**keys)
