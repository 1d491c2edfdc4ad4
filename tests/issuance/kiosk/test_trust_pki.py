"""Trust boundaries, item 1: every store has its own random TEST CAs, and the centre serves only the
certificate the store issued (byte for byte), never a serial alone.

The attack of the issue: the built-in TEST CA keys derive from a seed in the source and the
centre found the resident by the certificate's serial, so a certificate minted with a victim's
serial and the attacker's key, signed with the reproducible CA key, got the victim's 住民票.
"""
from __future__ import annotations

import datetime as _dt
import itertools
import json
import os
import random
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from mynaemu.card.core import Card
from mynaemu.issuance.pki.ca import TestCA, default_test_pki
from mynaemu.issuance.clock import SettableClock
from mynaemu.issuance.kiosk.keyfiles import load_or_create_kiosk_key
from mynaemu.issuance.kiosk.services import services_from_home
from mynaemu.issuance.kiosk.wire import DEFAULT_KIOSK_ID, Refusal
from mynaemu.issuance.pki.keys import generate_rsa_key, load_private_key_pem
from mynaemu.issuance.personas import DEFAULT_PINS, build_persona, synthetic_identity
from mynaemu.issuance.policy import JST
from mynaemu.issuance.store import DB_NAME, Store
from mynaemu.issuance.lifecycle.workflow import Workflow
from mynaemu.tools.cli import main
from mynaemu.tools.terminal.client import CardClient, InProcessConnection
from mynaemu.tools.terminal.kiosk import CentreClient, Kiosk
from tests.support import REPO

T = _dt.datetime(2026, 3, 2, 12, 0, tzinfo=JST)
ORIGIN_RANDOM, ORIGIN_LEGACY = "random", "legacy-default"


def store_pki(store):
    from mynaemu.issuance.store.pki import store_pki as get

    return get(store)


def pki_origin(store):
    from mynaemu.issuance.store.pki import pki_origin as get

    return get(store)
KIOSK_AT = T.isoformat()


def _spki(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def _pki_keys(pki) -> dict:
    return {"auth": _spki(pki.auth_ca.key), "sign": _spki(pki.sign_ca.key), "cvc": _spki(pki.cvc_issuer.key)}


def _issue_card(folder: Path, *, pki=None, seed=4, name="victim.json") -> tuple[str, Path]:
    """One delivered adult card in the store under `folder` (keys from a small pool: fast)."""
    pool = itertools.cycle([generate_rsa_key(2048) for _ in range(3)])
    with Store.open(folder) as store:
        wf = Workflow(store, operator="test", terminal="test", key_factory=lambda: next(pool), pki=pki)
        ident = synthetic_identity(random.Random(seed), age=40, on=T.date())
        app_id = wf.apply(name=ident.name, birth=ident.birth, sex=ident.sex, address=ident.address,
                          at=T - _dt.timedelta(days=8))
        wf.generate(app_id, at=T - _dt.timedelta(days=1))
        path = folder / name
        wf.deliver(app_id, at=T - _dt.timedelta(hours=20), pins=dict(DEFAULT_PINS), identity_check="test",
                   write=lambda img: img.save(path))
    return app_id, path


@pytest.fixture(scope="module")
def victim_home(tmp_path_factory):
    folder = tmp_path_factory.mktemp("victim-home")
    app_id, card = _issue_card(folder)
    return folder, app_id, card


def _auth_cert(image) -> x509.Certificate:
    return x509.load_der_x509_certificate(image.application("jpki").efs[0x000A].data)


def _other_name_ca():
    """An attacker's own CA under a name of its choosing."""
    key = generate_rsa_key(2048)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "JP"),
                      x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "ATTACKER-TEST")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_dt.datetime(2020, 1, 1, tzinfo=_dt.timezone.utc))
            .not_valid_after(_dt.datetime(2040, 1, 1, tzinfo=_dt.timezone.utc))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _forge(victim_cert: x509.Certificate, attacker_key, signer: str, home: Path) -> bytes:
    """A certificate with the victim's serial (and subject, dates) but the attacker's key."""
    start, end = victim_cert.not_valid_before_utc, victim_cert.not_valid_after_utc
    if signer == "other-name-ca":
        ca_key, ca_cert = _other_name_ca()
        cert = (x509.CertificateBuilder().subject_name(victim_cert.subject).issuer_name(ca_cert.subject)
                .public_key(attacker_key.public_key()).serial_number(victim_cert.serial_number)
                .not_valid_before(start).not_valid_after(end).sign(ca_key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.DER)
    if signer == "same-name-ca":
        ca = TestCA.create("auth", not_before=_dt.datetime(2015, 1, 1, tzinfo=_dt.timezone.utc), years=35)
    elif signer == "built-in-seeded-ca":   # the reproducible key from the source: the issue's attack
        ca = default_test_pki().auth_ca
    elif signer == "store-ca-itself":      # even the store's real CA key (say it leaked)
        with Store.open(home) as store:
            ca = store_pki(store).auth_ca
    else:
        raise AssertionError(signer)
    issue_id = victim_cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    cert = ca.issue_auth(attacker_key.public_key(), serial=victim_cert.serial_number, not_before=start,
                         not_after=end, issue_id=issue_id)
    return cert.public_bytes(serialization.Encoding.DER)


def _attacker_card(victim_card: Path, signer: str, home: Path):
    """The attacker's own card (own keys), its auth certificate replaced by a forged one."""
    image, _ = build_persona("adult", at=T - _dt.timedelta(days=1))
    attacker_key = load_private_key_pem(image.application("jpki").efs[0x0017].key_pem)
    from mynaemu.card.image import CardImage

    victim = _auth_cert(CardImage.load(victim_card))
    image.application("jpki").efs[0x000A].data = _forge(victim, attacker_key, signer, home)
    assert _auth_cert(image).serial_number == victim.serial_number
    assert _spki(attacker_key) == _auth_cert(image).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return image


# -- every store its own CAs ---------------------------------------------------------------------------

def test_two_stores_get_different_ca_keys_and_every_process_of_one_store_the_same(tmp_path):
    with Store.open(tmp_path / "a") as a, Store.open(tmp_path / "b") as b:
        keys_a, keys_b = _pki_keys(store_pki(a)), _pki_keys(store_pki(b))
        assert pki_origin(a) == pki_origin(b) == ORIGIN_RANDOM
    builtin = _pki_keys(default_test_pki())
    for role in ("auth", "sign", "cvc"):
        assert keys_a[role] != keys_b[role]
        assert builtin[role] not in (keys_a[role], keys_b[role])
    # another process opening store a (as a batch worker, the OCSP responder or the kiosk does)
    code = ("import sys; from mynaemu.issuance.store import Store; from mynaemu.issuance.store.pki import store_pki; "
            "from cryptography.hazmat.primitives import serialization as s; "
            "st = Store.open(sys.argv[1]); k = store_pki(st).auth_ca.key.public_key(); "
            "print(k.public_bytes(s.Encoding.DER, s.PublicFormat.SubjectPublicKeyInfo).hex())")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a")], capture_output=True, text=True,
                          timeout=120, check=True)
    assert bytes.fromhex(done.stdout.strip()) == keys_a["auth"]
    with Store.open(tmp_path / "a") as again:
        assert _pki_keys(store_pki(again)) == keys_a


def test_nothing_in_the_source_reproduces_a_store_ca_key(tmp_path):
    # Same path, same inputs, made twice: different keys, so nothing derives them from the source
    # or from the store's location.
    with Store.open(tmp_path / "s") as store:
        first = _pki_keys(store_pki(store))
    for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"):
        (tmp_path / "s" / name).unlink(missing_ok=True)
    with Store.open(tmp_path / "s") as store:
        second = _pki_keys(store_pki(store))
    assert all(first[r] != second[r] for r in first)
    # and no file of the repository holds a store's key or modulus
    moduli = [serialization.load_der_public_key(der).public_numbers().n for der in first.values()]
    needles = [format(n, "x")[:64].encode() for n in moduli] + [der[-64:] for der in first.values()]
    for path in REPO.rglob("*"):
        if path.is_file() and ".venv" not in path.parts and ".git" not in path.parts and path.stat().st_size < 5_000_000:
            data = path.read_bytes()
            assert not any(n in data for n in needles), path


def test_store_issues_under_its_own_ca_not_the_built_in_one(victim_home):
    home, _, card = victim_home
    from mynaemu.card.image import CardImage

    cert = _auth_cert(CardImage.load(card))
    with Store.open(home) as store:
        cert.verify_directly_issued_by(store_pki(store).auth_ca.certificate)
    with pytest.raises(Exception):
        cert.verify_directly_issued_by(default_test_pki().auth_ca.certificate)


# -- the centre: the certificate the store issued, byte for byte ---------------------------------------

def _kiosk(home: Path):
    clock = SettableClock(T)
    services = services_from_home(home, clock=clock)
    kiosk = Kiosk(CentreClient(services.centre_url, DEFAULT_KIOSK_ID, load_or_create_kiosk_key(home)), clock=clock)
    return services, kiosk


@pytest.mark.parametrize("signer", ["other-name-ca", "same-name-ca", "built-in-seeded-ca", "store-ca-itself"])
def test_certificate_forged_with_the_victims_serial_is_refused(victim_home, signer):
    home, _, card = victim_home
    forged = _attacker_card(card, signer, home)
    services, kiosk = _kiosk(home)
    try:
        # the history is the store's now: it holds the genuine documents of the earlier cases
        before = [m.history.entries() for m in services.centre.municipalities.values()]
        with pytest.raises(Refusal) as info:
            kiosk.issue(CardClient(InProcessConnection(Card(forged))), pin="1234", document="juminhyo")
        assert info.value.code == 7, info.value.to_json()
        assert info.value.reason == ("cert-invalid" if signer == "store-ca-itself" else "chain-invalid")
        # nothing was produced by any municipality
        assert [m.history.entries() for m in services.centre.municipalities.values()] == before
        # the genuine card still gets its document from the same services (the refusal is no accident)
        from mynaemu.card.image import CardImage

        genuine = kiosk.issue(CardClient(InProcessConnection(Card(CardImage.load(card)))), pin="1234",
                              document="juminhyo")
        assert genuine.pdf.startswith(b"%PDF-")
    finally:
        services.stop()


def test_kiosk_cli_refuses_the_seeded_ca_forgery_with_exit_7_and_writes_nothing(victim_home, tmp_path):
    home, _, card = victim_home
    forged_path = tmp_path / "attacker.json"
    _attacker_card(card, "built-in-seeded-ca", home).save(forged_path)
    out = tmp_path / "stolen.pdf"
    result = CliRunner().invoke(main, ["kiosk", "issue", "--card", str(forged_path), "--pin", "1234",
                                       "--document", "juminhyo", "--with-number", "-o", str(out),
                                       "--at", KIOSK_AT, "--json"], env={"MYNAEMU_HOME": str(home)})
    assert result.exit_code == 7, result.output
    assert json.loads(result.output.splitlines()[0])["reason"] == "chain-invalid"
    assert not out.exists()


def test_enrol_refuses_a_forged_certificate_and_writes_nothing(victim_home, tmp_path):
    home, _, card = victim_home
    forged_path = tmp_path / "attacker.json"
    _attacker_card(card, "store-ca-itself", home).save(forged_path)
    before = forged_path.read_bytes()
    result = CliRunner().invoke(main, ["kiosk", "enrol", "--card", str(forged_path), "--pin", "1111",
                                       "--at", KIOSK_AT], env={"MYNAEMU_HOME": str(home)})
    assert result.exit_code == 7, result.output
    assert "cert-invalid" in result.output and forged_path.read_bytes() == before


# -- existing stores -------------------------------------------------------------------------------------

def test_a_store_issued_under_the_built_in_pki_adopts_it_and_still_refuses_forgeries(tmp_path, caplog):
    """Decision (store_pki.py): a store whose certificates were issued before stores had CAs of
    their own keeps working under the built-in PKI, says so, and the byte-for-byte match still
    stops a certificate minted with the public key material."""
    home = tmp_path / "legacy"
    _, card = _issue_card(home, pki=default_test_pki())   # what every store did before
    with Store.open(home) as store:
        assert pki_origin(store) is None
        with caplog.at_level("WARNING"):
            assert _pki_keys(store_pki(store)) == _pki_keys(default_test_pki())
        assert pki_origin(store) == ORIGIN_LEGACY
    assert "derivable from the source" in caplog.text
    from mynaemu.card.image import CardImage

    services, kiosk = _kiosk(home)
    try:
        assert kiosk.issue(CardClient(InProcessConnection(Card(CardImage.load(card)))), pin="1234",
                           document="juminhyo").pdf.startswith(b"%PDF-")
        with pytest.raises(Refusal) as info:
            kiosk.issue(CardClient(InProcessConnection(Card(_attacker_card(card, "built-in-seeded-ca", home)))),
                        pin="1234", document="juminhyo")
        assert (info.value.reason, info.value.code) == ("cert-invalid", 7)
    finally:
        services.stop()


# -- at rest ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mask", [0o000, 0o022])
def test_ca_key_material_at_rest_is_private(tmp_path, mask):
    old = os.umask(mask)
    try:
        home = tmp_path / "home"
        with Store.open(home) as store:
            store_pki(store)
            files = [home / DB_NAME, home / (DB_NAME + "-wal"), home / (DB_NAME + "-shm")]
            for path in files:
                assert path.exists(), path
                assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, (path, oct(path.stat().st_mode))
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
    finally:
        os.umask(old)


# -- two creators at once, SQLite and PostgreSQL ---------------------------------------------------------

_RACE = ("import sys; from mynaemu.issuance.store import Store; from mynaemu.issuance.store.pki import store_pki; "
         "from cryptography.hazmat.primitives import serialization as s; "
         "st = Store(sys.argv[1]); k = store_pki(st).auth_ca.key.public_key(); "
         "print(k.public_bytes(s.Encoding.DER, s.PublicFormat.SubjectPublicKeyInfo).hex())")


def _race(location: str) -> set[str]:
    """Three processes open the same fresh store and ask for its CAs at the same time."""
    procs = [subprocess.Popen([sys.executable, "-c", _RACE, location], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    out = set()
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 0, stderr
        out.add(stdout.strip())
    return out


def test_racing_creators_agree_on_one_pki_sqlite(tmp_path):
    with Store.open(tmp_path / "home"):
        pass  # the schema exists; the PKI does not yet
    keys = _race(str(tmp_path / "home" / DB_NAME))
    assert len(keys) == 1
    with Store.open(tmp_path / "home") as store:
        assert _pki_keys(store_pki(store))["auth"].hex() in keys


def test_postgresql_stores_keep_their_own_pki_in_the_database_and_racers_agree():
    from tests.support.pg import fresh_pg_url

    with fresh_pg_url(skip_without=True) as url_a, fresh_pg_url(skip_without=True) as url_b:
        urls = [url_a, url_b]
        for url in urls:
            Store(url).close()
        keys = _race(urls[0])
        assert len(keys) == 1
        with Store(urls[0]) as first, Store(urls[1]) as second:
            assert _pki_keys(store_pki(first))["auth"].hex() in keys
            assert _pki_keys(store_pki(first)) != _pki_keys(store_pki(second))
            row = first.conn.execute("SELECT value FROM settings WHERE key = 'test_pki'").fetchone()
            assert "PRIVATE KEY" in row[0]   # kept inside the database, not in a file next to it


def test_a_damaged_pki_row_is_a_one_line_store_error_not_new_cas(tmp_path):
    from mynaemu.issuance.store import StoreError

    with Store.open(tmp_path / "home") as store:
        store_pki(store)
        with store.transaction() as conn:
            conn.execute("UPDATE settings SET value = ? WHERE key = 'test_pki'", ('{"format": "x"}',))
    with Store.open(tmp_path / "home") as store:
        with pytest.raises(StoreError) as info:
            store_pki(store)
        assert "TEST CAs are unreadable" in str(info.value) and "\n" not in str(info.value)
        # never silently replaced: the damaged row is still there
        assert store.setting("test_pki") == '{"format": "x"}'


def test_memory_directory_registered_with_certificates_matches_byte_for_byte():
    from mynaemu.issuance.kiosk.residents import MemoryResidentDirectory, synthesize_resident

    image, info = build_persona("adult", at=T - _dt.timedelta(days=1))
    genuine = _auth_cert(image)
    directory = MemoryResidentDirectory()
    resident = directory.add(synthesize_resident(info.identity, on=T.date()), auth_certificates=[genuine])
    assert directory.resident_for_certificate(genuine) is resident
    other_key = generate_rsa_key(2048)
    forged = x509.load_der_x509_certificate(default_test_pki().auth_ca.issue_auth(
        other_key.public_key(), serial=genuine.serial_number, not_before=genuine.not_valid_before_utc,
        not_after=genuine.not_valid_after_utc, issue_id="FORGED0000000000000000X").public_bytes(
            serialization.Encoding.DER))
    for presented in (forged, genuine.serial_number):
        with pytest.raises(Refusal) as info_:
            directory.resident_for_certificate(presented)
        assert (info_.value.reason, info_.value.code) == ("cert-invalid", 7)
