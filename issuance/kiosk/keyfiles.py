"""The keys and secrets the kiosk services keep under `<home>/kiosk/` (folder 0700, files 0600).

- a TEST HMAC key per kiosk (`kiosk-<id>.key`), shared by that kiosk and the centre (the MACs of
  wire.py);
- the deployment's 利用者ID secret (`user-id.secret`, residents.derive_user_id);
- each municipality's TEST LGPKI signer, the mayor's key and certificate under `lgpki/` beside
  the installation's root (lgpki.py makes them).

Each is made on first use and never replaced: the first writer wins, a concurrent process reads
the winner's (private_files.create_once).
"""
from __future__ import annotations

import secrets
from pathlib import Path

from mynaemu.issuance.kiosk import lgpki
from mynaemu.issuance.kiosk.municipality import DEFAULT_MAYOR, municipality_name
from mynaemu.issuance.kiosk.wire import DEFAULT_KIOSK_ID
from mynaemu.issuance.private_files import create_once, private_dir


def kiosk_folder(home) -> Path:
    return private_dir(Path(home) / "kiosk", tighten=True)  # 0700, its keys 0600


def secret_file(path, nbytes: int = 32) -> bytes:
    """A random secret kept in `path` (hex, mode 0600), created on first use, never replaced."""
    if not path.exists():
        # first writer wins; a concurrent process reads the winner's secret
        create_once(path, (secrets.token_hex(nbytes) + "\n").encode("ascii"))
    try:
        value = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a usable secret: {exc}") from None
    if len(value) < 16:
        raise ValueError(f"{path}: secret too short")
    return value


def load_or_create_kiosk_key(home, kiosk_id: str = DEFAULT_KIOSK_ID) -> bytes:
    """The TEST HMAC key shared by the kiosk `kiosk_id` and the centre, under `<home>/kiosk/`."""
    if not kiosk_id.replace("-", "").isalnum():
        raise ValueError(f"kiosk id {kiosk_id!r} must be letters, digits and '-'")
    return secret_file(kiosk_folder(home) / f"kiosk-{kiosk_id}.key")


def user_id_secret(home) -> bytes:
    """The secret the municipalities' 利用者ID are derived with (residents.derive_user_id)."""
    return secret_file(kiosk_folder(home) / "user-id.secret")


def load_or_create_signer(home, code: str, *, mayor: str = DEFAULT_MAYOR) -> lgpki.Signer:
    """Municipality `code`'s TEST LGPKI signer (the mayor's key and certificate), made on first use."""
    return lgpki.load_or_create_signer(home, code, name=municipality_name(code), mayor=mayor)
