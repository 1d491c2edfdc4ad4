"""Each store's own TEST CAs: random keys made at first use and kept inside the store.

Why (trust boundaries): the fixed PKI of ca.default_test_pki() is derived from a seed in the
source, so anyone with the source can sign certificates under it. It stays for the fixed test
vectors (vectors/certs) and the stand-alone personas only; a store never issues under it.

Where: one row of the store's ``settings`` table, key ``test_pki``, a JSON document holding the
auth CA, the sign CA and the 券面 CVC issuer (private keys as PKCS#8 PEM, certificates as PEM).
So every process that opens the same store (the issue CLI, batch workers, the OCSP responder,
the kiosk's centre; SQLite or PostgreSQL alike) reads the same CAs, and the keys are exactly as
private as the store (the SQLite file is 0600 in a 0700 home, fsperm.py; on PostgreSQL the
database's own access control).

When: at first use (``store_pki(store)``), not at schema creation, so a store that never issues
a certificate never pays for key generation. The keys are generated from the OS's CSPRNG
(cryptography), then inserted with ``INSERT … ON CONFLICT DO NOTHING`` and read back: when two
processes race, the first commit wins and both use the winner's CAs (on SQLite BEGIN IMMEDIATE
serialises them anyway; on PostgreSQL the second insert waits for the first and does nothing).
Inside a caller's transaction the row is written in that transaction and not cached, so a
rollback cannot leave a process holding CAs the store does not have.

Existing stores (decision): a store created before this module has no ``test_pki`` row. If its
certificates were issued under the built-in PKI, it adopts that PKI (recorded with
``origin: legacy-default``) so its cards keep working, and every process warns once that its
CA keys are public; the kiosk's centre still matches each presented certificate byte for byte
with the one the store issued (kiosk directory.StoreDirectory), which is what keeps such a store's
documents safe. A store with no certificate yet gets fresh random CAs.

Validity: the same window as the built-in PKI (2015-01-01 .. 2049-12-31, ca.DEFAULT_*), so the
workflow can issue on any test date without a CA rollover.
"""
from __future__ import annotations

import json
import logging
import threading

from cryptography import x509

from mynaemu.issuance.pki.ca import (
    DEFAULT_GENERATION, DEFAULT_NOT_BEFORE, DEFAULT_YEARS, CvcIssuer, TestCA, TestPKI, default_test_pki,
)
from mynaemu.issuance.pki.profiles import AUTH, SIGN
from mynaemu.issuance.store.errors import StoreError

log = logging.getLogger(__name__)

SETTING = "test_pki"
FORMAT = "mynaemu-store-pki"
VERSION = 1
ORIGIN_RANDOM = "random"
ORIGIN_LEGACY = "legacy-default"

_warned_lock = threading.Lock()
_warned: set[str] = set()


def new_random_pki() -> TestPKI:
    """Fresh TEST CAs: keys and serials from the OS's CSPRNG, nothing derivable from the source."""
    def ca(kind: str) -> TestCA:
        return TestCA.create(kind, not_before=DEFAULT_NOT_BEFORE, years=DEFAULT_YEARS,
                             generation=DEFAULT_GENERATION)

    return TestPKI(ca(AUTH), ca(SIGN), CvcIssuer.create())


def to_document(pki: TestPKI, origin: str) -> str:
    return json.dumps({"format": FORMAT, "version": VERSION, "origin": origin, **pki.parts_json()})


def from_document(text: str) -> tuple[TestPKI, str]:
    """(pki, origin) from to_document(); ValueError naming what is wrong."""
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
            raise ValueError(f"not a {FORMAT} v{VERSION} document")
        return TestPKI.from_parts(doc), str(doc.get("origin", ORIGIN_RANDOM))
    except (KeyError, TypeError, AttributeError, UnicodeEncodeError) as exc:
        raise ValueError(f"malformed store PKI: {exc!r}") from None


def _read(store) -> str | None:
    row = store.conn.execute("SELECT value FROM settings WHERE key = ?", (SETTING,)).fetchone()
    return None if row is None else row[0]


def _issued_under_default(store) -> bool:
    """Whether the store's first auth certificate was signed by the built-in (seeded) auth CA."""
    row = store.conn.execute("SELECT der FROM certificates WHERE ca_kind = 'auth' ORDER BY id LIMIT 1").fetchone()
    if row is None:
        return False
    try:
        x509.load_der_x509_certificate(bytes(row[0])).verify_directly_issued_by(
            default_test_pki().auth_ca.certificate)
        return True
    except Exception:  # noqa: BLE001 - any failure means: not issued under the built-in CA
        return False


def _create(store) -> None:
    """Insert a PKI row unless one exists (inside the caller's open transaction)."""
    store.lock_name("mynaemu store pki")  # PostgreSQL: one creator at a time (SQLite: BEGIN IMMEDIATE)
    if _read(store) is not None:
        return
    if _issued_under_default(store):
        pki, origin = default_test_pki(), ORIGIN_LEGACY
    else:
        pki, origin = new_random_pki(), ORIGIN_RANDOM
    store.conn.execute("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                       (SETTING, to_document(pki, origin)))


def store_pki(store) -> TestPKI:
    """The store's TEST PKI, created at first use (see the module docstring)."""
    cached = getattr(store, "_mynaemu_pki", None)
    if cached is not None:
        return cached
    text = _read(store)
    cache = True
    if text is None:
        if store.in_transaction:
            _create(store)
            cache = False  # the caller may still roll back
        else:
            with store.transaction():
                _create(store)
        text = _read(store)
    try:
        pki, origin = from_document(text)
    except ValueError as exc:
        raise StoreError(f"{store.where}: the store's TEST CAs are unreadable ({exc}); the store "
                         f"was damaged or edited by hand") from None
    if origin == ORIGIN_LEGACY:
        with _warned_lock:
            if store.where not in _warned:
                _warned.add(store.where)
                log.warning("%s issues under the built-in TEST PKI, whose keys are derivable from the "
                            "source; start a new store for CAs of its own", store.where)
    if cache:
        store._mynaemu_pki = pki
    return pki


def pki_origin(store) -> str | None:
    """"random", "legacy-default", or None when the store has no PKI yet."""
    text = _read(store)
    return None if text is None else from_document(text)[1]
