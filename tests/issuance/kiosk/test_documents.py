"""Kiosk PDFs: they render in Japanese with pdftoppm from embedded fonts, carry the fields the
rules ask for, and their tamper evidence holds: a PAdES signature by the municipality's mayor
(TEST LGPKI) that pdfsig and pyHanko accept, which a changed byte breaks."""
from __future__ import annotations

import datetime as _dt
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from mynaemu.issuance.kiosk import documents, lgpki
from mynaemu.issuance.kiosk.keyfiles import load_or_create_signer
from mynaemu.issuance.kiosk.residents import MemoryResidentDirectory, synthesize_resident
from mynaemu.issuance.kiosk.wire import Refusal
from mynaemu.issuance.identity import Identity
from mynaemu.issuance.kiosk.records import MemoryKioskHistory
from mynaemu.issuance.kiosk.municipality import (
    MunicipalityServer, fiscal_year_available, tax_record,
)
from mynaemu.issuance.numbering import individual_number_from_juminhyo_code
from mynaemu.issuance.policy import JST
from mynaemu.tools.cli import main

AT = _dt.datetime(2026, 7, 1, 14, 30, tzinfo=JST)
USER_ID = "ABCDEF0123456789"


def _identity(birth: _dt.date, code: str = "12345678901") -> Identity:
    return Identity(name="見本\u3000花子", address="東京都清瀬市試験町１丁目２番３号", birth=birth, sex="2",
                    individual_number=individual_number_from_juminhyo_code(code, b"test"),
                    juminhyo_code=code, municipality_code="13221")


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    return tmp_path_factory.mktemp("office")


@pytest.fixture(scope="module")
def key(office):
    """The municipality's signer (the mayor's TEST LGPKI key and certificate)."""
    return load_or_create_signer(office, "13221")


@pytest.fixture(scope="module")
def roots(key):
    return [key.root]


@pytest.fixture(scope="module")
def adult():
    return synthesize_resident(_identity(_dt.date(1980, 2, 17)), on=AT.date(), user_id=USER_ID)


@pytest.fixture(scope="module")
def muni(key, adult):
    directory = MemoryResidentDirectory()
    directory.add(adult, auth_serials=[1001])
    return MunicipalityServer("13221", key, directory, history=MemoryKioskHistory())


@pytest.fixture(scope="module")
def pdfs(muni):
    return {doc: muni.produce_for_certificate(1001, doc, with_number=False, at=AT).pdf
            for doc in documents.DOCUMENTS}


def _text(pdf: bytes) -> str:
    done = subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf, capture_output=True, timeout=60,
                          check=True)
    return done.stdout.decode("utf-8")


def _png_ink(path: Path) -> int:
    """Count non-white pixels of an 8-bit RGB PNG (pdftoppm's output) without Pillow."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", chunk[:10])
            assert (depth, colour) == (8, 2)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * 3
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - 3] if i >= 3 else 0
            b = prev[i]
            c = prev[i - 3] if i >= 3 else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return sum(1 for row in rows for i in range(0, stride, 3) if row[i:i + 3] != b"\xff\xff\xff")


@pytest.mark.parametrize("doc", documents.DOCUMENTS)
def test_pdf_renders_with_pdftoppm_in_japanese(pdfs, doc, tmp_path):
    assert shutil.which("pdftoppm"), "poppler-utils (pdftoppm) is required (setup.sh installs it)"
    path = tmp_path / f"{doc}.pdf"
    path.write_bytes(pdfs[doc])
    done = subprocess.run(["pdftoppm", "-r", "40", "-png", "-singlefile", str(path), str(tmp_path / doc)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Missing language pack" not in done.stderr and "Unknown font" not in done.stderr, done.stderr
    assert "Couldn't find a font" not in done.stderr, done.stderr
    ink = _png_ink(tmp_path / f"{doc}.png")
    assert ink > 2000  # text, rules, seal and watermark were drawn
    text = _text(pdfs[doc])
    assert documents.TITLES[doc] in text and "検証コード" in text and "手数料：200円" in text


def test_juminhyo_fields_follow_cvs9(pdfs, adult):
    text = _text(pdfs["juminhyo"])
    for label in ("氏名", "生年月日", "性別", "続柄", "住民となった日", "本籍・筆頭者", "備考"):
        assert label in text
    assert "この写しは、世帯全員の住民票の原本と相違ないことを証明する。" in text
    assert "２０２６年（令和８年）７月１日" in text           # CVS-9 date form, full-width digits
    assert "東京都清瀬市長" in text and "見本" in text
    assert "昭和55年2月17日" in text
    assert adult.individual_number not in text and "個人番号" not in text  # NUM-13 default


def test_number_on_request_for_every_member(muni, adult):
    pdf = muni.produce_for_certificate(1001, "juminhyo", with_number=True, at=AT).pdf
    text = _text(pdf)
    for member in adult.household:
        assert member.individual_number in text


def test_tax_certificate_never_shows_the_number(muni, key):
    with pytest.raises(Refusal) as info:
        muni.produce_for_certificate(1001, "zei", with_number=True, at=AT)
    assert info.value.reason == "bad-request"
    content = documents.inspect_pdf(muni.produce_for_certificate(1001, "zei", with_number=False, at=AT).pdf)["content"]
    with pytest.raises(ValueError):
        documents.render_pdf({**content, "fields": {**content["fields"], "individual_number": "1"}}, key)


def test_tax_year_and_amounts(adult):
    assert fiscal_year_available(_dt.datetime(2026, 5, 31, 12, tzinfo=JST)) == 2025
    assert fiscal_year_available(_dt.datetime(2026, 6, 1, 12, tzinfo=JST)) == 2026
    record = tax_record(adult, 2026)
    assert record["income_year"] == 2025
    assert record["income"] <= record["salary_income"] and record["taxable_income"] % 1000 == 0
    child = synthesize_resident(_identity(_dt.date(2014, 5, 5), "22222222222"), on=AT.date())
    zero = tax_record(child, 2026)
    assert zero["municipal_tax"] == zero["prefectural_tax"] == 0
    assert child.seal is None and child.household[child.self_index].relation == "子"


def test_issue_time_and_fee_are_printed(pdfs):
    for pdf in pdfs.values():
        content = documents.inspect_pdf(pdf)["content"]
        assert content["issued_at"] == "2026-07-01T14:30:00+09:00" and content["fee"] == 200
        assert "2026-07-01 14:30:00 JST" in _text(pdf)


def test_verification_code_is_printed_and_derived_from_the_content(pdfs, roots):
    for pdf in pdfs.values():
        verified = documents.check_pdf(pdf, roots)
        assert verified.verification_code in _text(pdf).replace(" ", "")
        assert len(verified.verification_code) == 24 and verified.verification_code.count("-") == 4


def test_every_font_is_embedded(pdfs):
    for pdf in pdfs.values():
        done = subprocess.run(["pdffonts", "-"], input=pdf, capture_output=True, timeout=60)
        if done.returncode != 0:   # older poppler reads no stdin
            pytest.skip("pdffonts cannot read standard input here")
        rows = done.stdout.decode().splitlines()[2:]
        assert rows, "no fonts listed"
        for row in rows:          # name type encoding emb sub uni ...
            cols = row.split()
            assert cols[-5] == "yes" and cols[-4] == "yes", row   # embedded, subset


def _changed_positions(pdf: bytes) -> list[int]:
    """Where a one-byte change is tried: every 3rd byte of the signature's revision (the signature
    dictionary, /ByteRange, xref and trailer), the first and last 64 hex digits of /Contents,
    every byte of its padding's end, and 200 seeded positions in the signed body."""
    import random

    start = pdf.rindex(b"/ByteRange")
    contents = pdf.index(b"/Contents <") + len(b"/Contents <")
    end_hex = pdf.index(b">", contents)
    positions = set(range(pdf.rindex(b"obj", 0, start) - 8, len(pdf), 3))
    positions -= set(range(contents + 64, end_hex - 64))
    positions |= set(range(contents, contents + 64)) | set(range(end_hex - 64, end_hex))
    positions |= set(random.Random(7).sample(range(0, pdf.rindex(b"obj", 0, start)), 200))
    return sorted(p for p in positions if 0 <= p < len(pdf))


def test_changed_bytes_fail_the_check(pdfs, roots):
    pdf = pdfs["inkan"]
    assert documents.verify_pdf(pdf, roots)
    survivors = []
    buf = bytearray(pdf)
    positions = _changed_positions(pdf)
    assert len(positions) > 500
    for i in positions:
        original = buf[i]
        buf[i] = original ^ 0x01
        if documents.verify_pdf(bytes(buf), roots):
            survivors.append(i)
        buf[i] = original
    assert survivors == []


def test_pdfsig_accepts_the_signature_and_a_flipped_byte_breaks_both(pdfs, roots, tmp_path):
    if shutil.which("pdfsig") is None:
        pytest.fail("pdfsig (poppler-utils) is required: setup.sh installs it")
    good = tmp_path / "good.pdf"
    good.write_bytes(pdfs["juminhyo"])
    out = subprocess.run(["pdfsig", str(good)], capture_output=True, text=True, timeout=60)
    assert "Signature Validation: Signature is Valid." in out.stdout, out.stdout + out.stderr
    assert "ETSI.CAdES.detached" in out.stdout and "Total document signed" in out.stdout
    assert "LGJP-13221" in out.stdout and "市区町村長" in out.stdout
    # With the TEST LGPKI root in an NSS store, pdfsig trusts the signer too (docs/verifying-documents.md).
    assert shutil.which("certutil"), "certutil (libnss3-tools) is required: setup.sh installs it"
    nss, root = tmp_path / "nssdb", tmp_path / "root.pem"
    nss.mkdir()
    root.write_bytes(roots[0].public_bytes(serialization.Encoding.PEM))
    subprocess.run(["certutil", "-N", "-d", f"sql:{nss}", "--empty-password"], check=True, timeout=60)
    subprocess.run(["certutil", "-A", "-d", f"sql:{nss}", "-n", "mynaemu TEST LGPKI", "-t", "C,C,C",
                    "-i", str(root)], check=True, timeout=60)
    trusted = subprocess.run(["pdfsig", "-nssdir", f"sql:{nss}", str(good)], capture_output=True, text=True,
                             timeout=60)
    assert "Certificate Validation: Certificate is Trusted." in trusted.stdout, trusted.stdout
    bad = tmp_path / "bad.pdf"
    changed = bytearray(pdfs["juminhyo"])
    changed[len(changed) // 3] ^= 0x01
    bad.write_bytes(bytes(changed))
    out = subprocess.run(["pdfsig", str(bad)], capture_output=True, text=True, timeout=60)
    assert "Signature is Valid" not in out.stdout and "Signature Validation:" in out.stdout, out.stdout
    assert not documents.verify_pdf(bytes(changed), roots)


def test_other_tampering_fails(pdfs, roots, tmp_path_factory):
    pdf = pdfs["juminhyo"]
    assert not documents.verify_pdf(pdf + b"\n", roots)                      # appended byte
    assert not documents.verify_pdf(pdf + b"%%EOF\n", roots)
    assert not documents.verify_pdf(pdf[:-1], roots)                         # truncated
    assert not documents.verify_pdf(pdf + pdf, roots)                        # repeated
    other = lgpki.load_or_create_signer(tmp_path_factory.mktemp("other"), "13221", name="東京都清瀬市",
                                        mayor="見本　一郎")
    assert not documents.verify_pdf(pdf, [other.root])                       # another installation's root
    assert not documents.verify_pdf(b"%PDF-1.3\n%%EOF\n", roots)
    with pytest.raises(documents.TamperError):
        documents.check_pdf(pdf[:100], roots)
    with pytest.raises(documents.TamperError, match="trust root"):
        documents.check_pdf(pdf, [])


def test_a_document_signed_by_another_municipality_is_refused(key, office, adult):
    """A mayor's certificate binds the signature to one municipality (organizationIdentifier):
    a document naming 13221 but signed by the mayor of 13222, under the same root, fails."""
    other = lgpki.load_or_create_signer(office, "13222", name="TEST市13222", mayor="見本　次郎")
    assert other.root == key.root
    content = documents.inspect_pdf(MunicipalityServer("13221", key, _directory(adult), history=MemoryKioskHistory())
                                    .produce_for_certificate(1001, "juminhyo", with_number=False, at=AT).pdf)["content"]
    forged_signer = lgpki.Signer("13221", other.key, other.certificate, other.root)  # a lie about its code
    forged = documents.render_pdf(content, forged_signer).pdf
    with pytest.raises(documents.TamperError, match="municipality 13222"):
        documents.check_pdf(forged, [key.root])
    with pytest.raises(ValueError):
        documents.render_pdf(content, other)   # the honest signer refuses to sign for 13221


def _directory(resident):
    directory = MemoryResidentDirectory()
    directory.add(resident, auth_serials=[1001])
    return directory


def test_juminhyo_table_and_options(muni, adult):
    pdf = muni.produce_for_certificate(1001, "juminhyo", with_number=False, at=AT, with_code=True).pdf
    text = _text(pdf)
    for label in ("住所を定めた日", "届出日", "前住所", "住民票コード"):
        assert label in text
    codes = [m.juminhyo_code for m in adult.household]
    assert len(set(codes)) == len(codes) and adult.juminhyo_code in codes
    for code in codes:
        assert code in text
    plain = _text(muni.produce_for_certificate(1001, "juminhyo", with_number=False, at=AT).pdf)
    assert "住民票コード" not in plain and adult.juminhyo_code not in plain
    with pytest.raises(Refusal):
        muni.produce_for_certificate(1001, "zei", with_number=False, at=AT, with_code=True)


def test_household_members_have_distinct_names():
    for n in range(300):
        resident = synthesize_resident(_identity(_dt.date(1960 + n % 40, 1 + n % 12, 1 + n % 28),
                                                 f"{40000000000 + n:011d}"), on=AT.date())
        names = [m.name for m in resident.household]
        assert len(set(names)) == len(names), names


def test_cli_verify_pdf(pdfs, tmp_path):
    home = tmp_path / "home"
    signer = load_or_create_signer(home, "13221")
    again = load_or_create_signer(home, "13221")
    assert again.certificate == signer.certificate and again.root == signer.root  # kept, not replaced
    assert (lgpki.folder(home) / "municipality-13221.key.pem").stat().st_mode & 0o077 == 0
    directory = MemoryResidentDirectory()
    directory.add(synthesize_resident(_identity(_dt.date(1990, 1, 1), "33333333333"), on=AT.date()),
                  auth_serials=[7])
    pdf = MunicipalityServer("13221", signer, directory, history=MemoryKioskHistory()).produce_for_certificate(7, "zei", with_number=False,
                                                                                at=AT).pdf
    good, bad = tmp_path / "good.pdf", tmp_path / "bad.pdf"
    good.write_bytes(pdf)
    changed = bytearray(pdf)
    changed[len(changed) // 3] ^= 0x20
    bad.write_bytes(bytes(changed))
    runner = CliRunner()
    env = {"MYNAEMU_HOME": str(home)}
    ok = runner.invoke(main, ["kiosk", "verify-pdf", str(good)], env=env)
    assert ok.exit_code == 0 and "intact" in ok.output, ok.output
    tampered = runner.invoke(main, ["kiosk", "verify-pdf", str(bad)], env=env)
    assert tampered.exit_code == 7 and "NOT VALID" in tampered.output
    root = tmp_path / "root.pem"
    exported = runner.invoke(main, ["kiosk", "trust-root", "-o", str(root)], env=env)
    assert exported.exit_code == 0 and root.read_bytes().startswith(b"-----BEGIN CERTIFICATE")
    elsewhere = runner.invoke(main, ["kiosk", "verify-pdf", str(good), "--trust-root", str(root), "--json"],
                              env={"MYNAEMU_HOME": str(tmp_path / "x")})
    assert elsewhere.exit_code == 0 and '"valid": true' in elsewhere.output, elsewhere.output
    other_root = tmp_path / "other.pem"
    runner.invoke(main, ["kiosk", "trust-root", "-o", str(other_root)], env={"MYNAEMU_HOME": str(tmp_path / "y")})
    wrong = runner.invoke(main, ["kiosk", "verify-pdf", str(good), "--trust-root", str(other_root), "--json"])
    assert wrong.exit_code == 7 and '"valid": false' in wrong.output
    unknown = runner.invoke(main, ["kiosk", "verify-pdf", str(good)], env={"MYNAEMU_HOME": str(tmp_path / "z")})
    assert unknown.exit_code == 1 and "--trust-root" in unknown.output


def test_render_refuses_bad_content(key, pdfs):
    content = documents.inspect_pdf(pdfs["juminhyo"])["content"]
    for broken in ({**content, "document": "koseki"}, {**content, "fee": -1}, {**content, "method": "x"},
                   {k: v for k, v in content.items() if k != "serial"}):
        with pytest.raises(ValueError):
            documents.render_pdf(broken, key)
    with pytest.raises(TypeError):
        documents.render_pdf(content, object())
