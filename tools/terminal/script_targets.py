"""Where a card script's card and variables come from: a persona, a card image, a PC/SC reader.

The variables of vectors/transcripts/README.md (PINs, 照合番号, birth keys, certificate and EF
lengths) are computed from the card's content, never typed into a script, so one script runs
against any card: a persona built on the spot, an image file (its `meta.secrets` hold the PINs
the back office set), or a card in a reader (there the PINs come from `--set NAME=VALUE`, and
the lengths and the authentication key are read from the card's free EFs, spec §3.1).
"""
from __future__ import annotations

import copy
import dataclasses
import functools
from pathlib import Path

from cryptography import x509

from mynaemu.card.aid import AID
from mynaemu.card.ids import JpkiEF
from mynaemu.tools.terminal.client import CardClient
from mynaemu.tools.terminal.connections import InProcessConnection
from mynaemu.tools.terminal.errors import CardDataError, CardError
from mynaemu.tools.terminal.script import TranscriptError, Transcript, run_script
# The card's variables and keys (re-exported: callers and tests import them from here).
from mynaemu.tools.terminal.script_env import (  # noqa: F401
    _wrong, basic4_len, ef_data, image_env, info_from_image, object_len, persona_env, persona_keys)


@functools.lru_cache(maxsize=None)
def _persona(name: str, seed: int = 0):
    from mynaemu.issuance.personas import build_persona
    return build_persona(name, seed=seed)


def persona_card(name: str, seed: int = 0):
    """(image, info) of a persona, built once per process; the image is a fresh deep copy."""
    from mynaemu.issuance.personas import PERSONAS

    if name not in PERSONAS:
        raise TranscriptError(f"unknown persona {name!r}; choose from: {', '.join(PERSONAS)}")
    image, info = _persona(name, seed)
    return copy.deepcopy(image), info


# -- targets --------------------------------------------------------------------------------

@dataclasses.dataclass
class Target:
    """A card to run scripts against: `connect()` gives a fresh connection for each script."""

    describe: str
    connect: object               # () -> connection with transmit/reset/close
    env: dict
    keys: dict


def persona_target(name: str, seed: int = 0) -> Target:
    image, info = persona_card(name, seed)
    env, keys = persona_env(image, info), persona_keys(image)

    def connect():
        from mynaemu.card.core import Card
        return InProcessConnection(Card(copy.deepcopy(image)))
    return Target(f"persona {name}", connect, env, keys)


def image_target(path) -> Target:
    """A card image file, run in memory: every script starts from the file as it is, which is
    never written (a script that blocks a PIN does not block it in the file)."""
    from mynaemu.card.core import Card
    from mynaemu.card.image import CardImage

    image = CardImage.load(Path(path))
    env, keys = image_env(image), persona_keys(image)

    def connect():
        return InProcessConnection(Card(copy.deepcopy(image)))
    return Target(str(path), connect, env, keys)


def _read_free_ef(conn, aid: bytes, fid: int) -> bytes | None:
    """Read a whole EF that needs no PIN (JPKI certificates, §3.1); None if the card refuses.

    SELECT AP, SELECT EF, a 7-byte header probe and 256-byte chunks: CardClient.read_object.
    """
    client = CardClient(conn)
    try:
        client.select_ap(aid)
        data = client.read_object(fid)
    except (CardError, CardDataError):
        return None
    return data or None


def reader_target(reader: str | None, sets: dict) -> Target:
    """A card in a PC/SC reader (a real card too). The free certificates give AUTH_CERT_LEN,
    AUTH_CA_LEN, SIGN_CA_LEN and the `pkcs1=auth` key; secrets come only from `sets`."""
    from mynaemu.tools.terminal.connections import PcscConnection

    env, keys = {}, {}
    probe = PcscConnection(reader)
    name = probe.reader
    try:
        for var, fid in (("AUTH_CERT", JpkiEF.AUTH_CERT), ("AUTH_CA", JpkiEF.AUTH_CA),
                         ("SIGN_CA", JpkiEF.SIGN_CA)):
            data = _read_free_ef(probe, AID.JPKI, fid)
            if data:
                env[var + "_LEN"] = len(data)
                if var == "AUTH_CERT":
                    try:
                        keys["auth"] = x509.load_der_x509_certificate(data).public_key()
                    except ValueError:
                        pass
    finally:
        probe.close()
    for key in list(sets):
        if key.endswith("_PIN") and not key.startswith("WRONG_"):
            env.setdefault("WRONG_" + key, _wrong(sets[key]))
    env.update(sets)
    return Target(f"reader {name}", lambda: _fresh_pcsc(name), env, keys)


def _fresh_pcsc(name):
    from mynaemu.tools.terminal.connections import PcscConnection
    conn = PcscConnection(name)
    conn.reset(warm=False)          # every script starts from a power-up, as on a fresh persona card
    return conn


def run_on(target: Target, transcript: Transcript, on_exchange=None, sets: dict | None = None) -> int:
    conn = target.connect()
    try:
        return run_script(transcript, conn, {**target.env, **(sets or {})}, target.keys, on_exchange)
    finally:
        conn.close()


def replay(transcript: Transcript, image, info) -> int:
    """Run a transcript against a fresh in-process card of `image`; the conformance tests' entry."""
    from mynaemu.card.core import Card

    conn = InProcessConnection(Card(copy.deepcopy(image)))
    try:
        return run_script(transcript, conn, persona_env(image, info), persona_keys(image))
    finally:
        conn.close()
