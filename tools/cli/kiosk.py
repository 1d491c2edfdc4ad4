"""`mynaemu kiosk …` (the コンビニ交付 kiosk, its centre and the PDF checker) and `mynaemu demo`.

`kiosk issue` runs one kiosk transaction against a card image (in-process) or a card in any
PC/SC reader. The centre is `--centre URL`, else a centre `kiosk serve` runs for the same home,
else — when MYNAEMU_HOME holds an issuing store, or --db / MYNAEMU_DB names one on PostgreSQL —
the command starts the centre and the JPKI validity service on loopback itself and stops them
afterwards. `demo` does everything on a
temporary home: issue a card through the back office, serve it, run the kiosk, write the PDF.

Refusals print one line (`mynaemu kiosk: refused [reason]: …`) and exit with the code of the
reason's class (issuance/kiosk/centre.py EXIT_CLASSES), listed in `mynaemu kiosk --help`.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import signal
import tempfile
import threading
from pathlib import Path

import click

from mynaemu.issuance.kiosk.centre import EXIT_CLASSES, Refusal
from mynaemu.tools.cli.types import OUTPUT, one_line_group, one_line_usage, text_type

JST = _dt.timezone(_dt.timedelta(hours=9), "JST")
RUNNING_FILE = "centre.json"
DOCUMENT_CHOICES = ("juminhyo", "inkan", "zei")
METHOD_CHOICES = ("shin", "henkan", "genko")


def _exit_table() -> str:
    lines = ["Exit codes: 0 issued; 1 other failure; 2 bad usage;"]
    lines += [f"{code} {text};" for code, text in sorted(EXIT_CLASSES.items())]
    return " ".join(lines)


class KioskExit(click.ClickException):
    """One line on stderr and the exit code of the refusal's class."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.exit_code = code

    def show(self, file=None):
        from mynaemu.issuance.validate import printable_line

        click.echo(f"mynaemu kiosk: {printable_line(self.format_message())}", err=True)


def _instant():
    from mynaemu.tools.cli.issue import INSTANT

    return INSTANT


def _home(home) -> Path:
    from mynaemu.issuance.store import default_home

    return Path(home) if home else default_home()


def _db_url(ctx, param, value):
    from mynaemu.issuance.store.postgres import is_url

    if value and not is_url(value):
        # Only the scheme is quoted: the rest of a URL may hold a password.
        raise click.BadParameter(f"must be a postgresql:// URL, got {value.split(':', 1)[0]!r}...")
    return value or None


# The issuing store on PostgreSQL instead of <home>'s SQLite file (the issue group's --db).
_db_option = click.option(
    "--db", envvar="MYNAEMU_DB", default=None, metavar="URL", callback=_db_url,
    help="The issuing store on PostgreSQL (postgresql://user:password@host:port/dbname) instead of the "
         "SQLite file under --home, which still keeps the kiosk keys (default: $MYNAEMU_DB).")


def _running_centre(home: Path):
    """The URL of a centre `kiosk serve` runs for `home`, if it answers; else None."""
    from mynaemu.issuance.kiosk.centre import load_or_create_kiosk_key
    from mynaemu.tools.terminal.kiosk import CentreClient

    path = home / "kiosk" / RUNNING_FILE
    try:
        doc = json.loads(path.read_text())
        url = doc["url"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        CentreClient(url, key=load_or_create_kiosk_key(home)).health()
    except Refusal:
        return None
    return url


def _write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """The project's one atomic writer (card/safefile.py): 0600 unless published (a kiosk PDF may
    carry 個人番号, NUM-13), never over a device, FIFO or directory; a refusal is one line (exit 1)."""
    from mynaemu.card.safefile import write_file_atomic

    try:
        write_file_atomic(path, data, mode=mode)
    except OSError as exc:
        raise KioskExit(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 1) from None


def _narrator(stream_json: bool):
    if stream_json:
        return None
    return lambda actor, text: click.echo(f"  [{actor}] {text}")


@contextlib.contextmanager
def _centre_for(home: Path, centre_url: str | None, clock, kiosk_id: str, say, db: str | None = None):
    """A CentreClient: the given URL, a running centre, or a stack started here (stopped after)."""
    from mynaemu.issuance.kiosk.centre import load_or_create_kiosk_key
    from mynaemu.issuance.store import DB_NAME
    from mynaemu.tools.terminal.kiosk import CentreClient

    if centre_url:
        yield CentreClient(centre_url, kiosk_id, load_or_create_kiosk_key(home, kiosk_id))
        return
    running = _running_centre(home)
    if running:
        if say:
            say("kiosk", f"using the centre running at {running}")
        yield CentreClient(running, kiosk_id, load_or_create_kiosk_key(home, kiosk_id))
        return
    if db is None and not (home / DB_NAME).exists():
        raise KioskExit("no centre: pass --centre URL, run `mynaemu kiosk serve`, or set MYNAEMU_HOME "
                        "(or --db) to an issuing store", 14)

    services = _services(home, db, clock=clock)
    try:
        if say:
            say("kiosk", f"started the JPKI validity service at {services.ocsp_url} and the "
                         f"証明書交付センター at {services.centre_url} (loopback)")
        yield CentreClient(services.centre_url, kiosk_id, load_or_create_kiosk_key(home, kiosk_id))
    finally:
        services.stop()


def _services(home: Path, db: str | None, **kwargs):
    """services_from_home, a store that cannot be opened being a one-line refusal (exit 1)."""
    from mynaemu.issuance.kiosk.centre import services_from_home
    from mynaemu.issuance.store import StoreError

    try:
        return services_from_home(home, db=db, **kwargs)
    except StoreError as exc:
        raise KioskExit(str(exc).splitlines()[0], 1) from None


def _open_card(card_file: Path | None, reader: str | None):
    from mynaemu.tools.terminal.client import InProcessConnection, PcscConnection, TransportError

    if card_file is not None:
        from mynaemu.card.core import Card
        from mynaemu.card.image import CardImageError

        try:
            # The card is in the kiosk's reader (locked) until the connection is closed.
            return InProcessConnection(Card.from_file(card_file, door="mynaemu kiosk issue --card"))
        except CardImageError as exc:
            raise KioskExit(str(exc).splitlines()[0], 9) from None
    try:
        return PcscConnection(reader)
    except TransportError as exc:
        raise KioskExit(f"refused [card-removed]: {exc}", 9) from None


# -- the group ---------------------------------------------------------------------------------

@click.group("kiosk", epilog=_exit_table(), cls=one_line_group("mynaemu kiosk"))
def kiosk():
    """The コンビニ交付 kiosk (新方式, 変換方式, 現行方式), its centre, and the PDF checker.

    The kiosk never locks a card by itself: it asks the PIN's tries left before VERIFY, never
    sends a PIN to a blocked PIN, sends a PIN at its last try only with --last-try, and sends
    at most one VERIFY per transaction.
    """


@kiosk.command("issue", epilog=_exit_table())
@click.option("--card", "card_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A card image file, driven in-process (PIN state is saved back to it).")
@click.option("--reader", default=None, type=text_type("reader"), help="A PC/SC reader name (or a unique part of it).")
@click.option("--pin", required=True,
              help="The 4-digit PIN: 利用者証明用 (新方式/変換方式) or the document's PIN (現行方式).")
@click.option("--document", required=True, type=click.Choice(DOCUMENT_CHOICES),
              help="juminhyo 住民票の写し, inkan 印鑑登録証明書, zei 所得・課税証明書.")
@click.option("-o", "--output", required=True, type=OUTPUT,
              help="Where the PDF is written (only after the fee is paid).")
@click.option("--method", default="shin", show_default=True, type=click.Choice(METHOD_CHOICES),
              help="shin 新方式, henkan 変換方式, genko 現行方式 (needs the 条例利用AP).")
@click.option("--with-number", is_flag=True, help="Print the 個人番号 on the 住民票 (NUM-13: only on request).")
@click.option("--with-code", is_flag=True, help="Print the 住民票コード on the 住民票 (only on request).")
@click.option("--last-try", is_flag=True, help="Allow sending the PIN when only one try is left.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result on stdout.")
@click.option("--at", "at", type=_instant(), default=None,
              help="The kiosk's clock (ISO 8601; naive = JST; default now). Moves a started stack too.")
@click.option("--centre", "centre_url", default=None, type=text_type("url", ascii_only=True),
              help="URL of a running centre.")
@click.option("--home", envvar="MYNAEMU_HOME", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The issuing store and kiosk keys (default: $MYNAEMU_HOME or the user data directory).")
@_db_option
@click.option("--kiosk-id", default="TEST-KIOSK-0001", show_default=True, type=text_type("kiosk_id", ascii_only=True),
              help="This kiosk's id at the centre.")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
def kiosk_issue(card_file, reader, pin, document, output, method, with_number, with_code, last_try, as_json, at,
                centre_url, home, db, kiosk_id, force):
    """Issue one certificate at the kiosk from a card; write the PDF to OUTPUT."""
    import re

    from mynaemu.issuance.kiosk.centre import SettableClock, utc_now
    from mynaemu.issuance.validate import InputError
    from mynaemu.tools.terminal.client import CardClient
    from mynaemu.tools.terminal.kiosk import Kiosk

    if (card_file is None) == (reader is None):
        raise click.UsageError("give exactly one of --card FILE or --reader NAME")
    if not re.fullmatch(r"[0-9]{4}", pin, flags=re.ASCII):
        raise click.BadParameter("the PIN is 4 digits (checked here so a typo never costs a try)",
                                 param_hint="--pin")
    if with_number and document != "juminhyo":
        raise click.BadParameter("the 個人番号 appears only on a 住民票 (NUM-13)", param_hint="--with-number")
    if with_code and document != "juminhyo":
        raise click.BadParameter("the 住民票コード appears only on a 住民票", param_hint="--with-code")
    if output.exists() and not force:
        raise click.BadParameter(f"{output} exists (use --force to overwrite)", param_hint="--output")
    home_path = _home(home)
    clock = SettableClock(at) if at is not None else utc_now
    say = _narrator(as_json)
    try:
        with _centre_for(home_path, centre_url, clock, kiosk_id, say, db) as centre:
            conn = _open_card(card_file, reader)
            try:
                machine = Kiosk(centre, clock=clock, trust_roots=_trust_roots(home_path), narrate=say)
                result = machine.issue(CardClient(conn), pin=pin, document=document, method=method,
                                       with_number=with_number, with_code=with_code, last_try=last_try)
            finally:
                conn.close()
            _write_atomic(output, result.pdf)  # CVS-2 step (7): printed only after the fee
    except Refusal as refusal:
        if as_json:
            click.echo(json.dumps(refusal.to_json(), ensure_ascii=False))
        raise KioskExit(f"refused [{refusal.reason}]: {refusal.message}", refusal.code) from None
    except InputError as exc:  # the input rules of validate.py: bad arguments
        raise KioskExit(str(exc).splitlines()[0], 2) from None
    except (OSError, ValueError) as exc:
        raise KioskExit(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 1) from None
    summary = result.summary()
    summary["output"] = str(output)
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False))
    else:
        click.echo(f"issued {document} → {output} (fee {result.fee} yen, 検証コード {result.verification_code})")


@kiosk.command("serve")
@click.option("--home", envvar="MYNAEMU_HOME", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The issuing store to answer from.")
@_db_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=0, type=click.IntRange(0, 65535), help="Centre port (0: any free port).")
@click.option("--at", "at", type=_instant(), default=None, help="Start the services' clock here.")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Worker processes sharing the ports (default: one per CPU; 1: a single process).")
def kiosk_serve(home, db, host, port, at, workers):
    """Run the 証明書交付センター and the JPKI validity service until Ctrl-C / SIGTERM.

    Records its URL under <home>/kiosk/ so `kiosk issue` uses it instead of starting its own.
    """
    from mynaemu.issuance.kiosk.centre import SettableClock, utc_now
    from mynaemu.issuance.http.prefork import default_workers
    from mynaemu.issuance.store import DB_NAME

    home_path = _home(home)
    if db is None and not (home_path / DB_NAME).exists():
        raise KioskExit(f"{home_path}: no issuing store (run `mynaemu issue apply` first, or give --db)", 1)
    clock = SettableClock(at) if at is not None else utc_now
    workers = workers or default_workers()
    if workers > 1:
        from mynaemu.tools.cli.workers import kiosk_serve_workers

        return kiosk_serve_workers(home_path, db, clock, host, port, workers)
    services = _services(home_path, db, clock=clock, host=host, centre_port=port)
    running = home_path / "kiosk" / RUNNING_FILE
    _write_atomic(running, json.dumps({"url": services.centre_url, "ocsp_url": services.ocsp_url,
                                       "crl_url": services.crl_url, "pid": os.getpid()}).encode("utf-8"))
    stop = threading.Event()

    def _on_signal(signum, _frame):
        stop.set()

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    click.echo(f"証明書交付センター {services.centre_url}; JPKI validity service {services.ocsp_url} "
               f"(CRL {services.crl_url}); Ctrl-C stops", err=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        with contextlib.suppress(OSError, ValueError):
            if json.loads(running.read_text()).get("pid") == os.getpid():
                running.unlink()
        services.stop()


def _trust_roots(home: Path) -> list:
    """The home's TEST LGPKI root as the kiosk's trust list ([] when none was made yet)."""
    from mynaemu.issuance.kiosk import lgpki

    try:
        root = lgpki.trust_root(home)
    except lgpki.LgpkiError as exc:
        raise KioskExit(str(exc), 1) from None
    return [root] if root is not None else []


@kiosk.command("verify-pdf")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--trust-root", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The TEST LGPKI root certificate to trust (PEM or DER). "
                   "Default: the root under <home>/kiosk/lgpki/.")
@click.option("--home", envvar="MYNAEMU_HOME", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--json", "as_json", is_flag=True)
def kiosk_verify_pdf(file, trust_root, home, as_json):
    """Check a kiosk PDF: its PAdES signature chains to the TEST LGPKI root, the signer is the
    mayor of the municipality it names, and its content and 検証コード hold (exit 0 intact,
    7 tampered, untrusted or signed by another municipality)."""
    from mynaemu.issuance.kiosk import documents, lgpki

    try:
        data = file.read_bytes()
    except OSError as exc:
        raise KioskExit(f"{file}: cannot read: {exc.strerror or exc}", 1) from None
    if trust_root is not None:
        try:
            roots = [lgpki.load_trust_root(trust_root)]
        except (OSError, lgpki.LgpkiError) as exc:
            raise KioskExit(f"{trust_root}: {getattr(exc, 'strerror', None) or exc}", 1) from None
    else:
        roots = _trust_roots(_home(home))
        if not roots:
            raise KioskExit(f"no TEST LGPKI root under {lgpki.folder(_home(home))}; pass --trust-root", 1)
    try:
        verified = documents.check_pdf(data, roots)
    except documents.TamperError as exc:
        if as_json:
            click.echo(json.dumps({"valid": False, "reason": str(exc)}, ensure_ascii=False))
        raise KioskExit(f"{file}: NOT VALID: {exc}", 7) from None
    content = verified.content
    doc = {"valid": True, "document": content["document"], "title": documents.TITLES[content["document"]],
           "municipality": content["municipality"]["name"],
           "municipality_code": content["municipality"]["code"], "issued_at": content["issued_at"],
           "serial": content["serial"], "fee": content["fee"], "verification_code": verified.verification_code,
           "key_id": verified.key_id, "signer": verified.signer.subject.rfc4514_string()}
    if as_json:
        click.echo(json.dumps(doc, ensure_ascii=False))
    else:
        click.echo(f"{file}: intact — {doc['title']} of {doc['municipality']}, issued {doc['issued_at']}, "
                   f"検証コード {doc['verification_code']}, signed by {doc['signer']}")


@kiosk.command("trust-root")
@click.option("--home", envvar="MYNAEMU_HOME", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the PEM here instead of standard output.")
def kiosk_trust_root(home, output):
    """Print the TEST LGPKI root certificate (PEM) that relying parties trust to verify documents."""
    from cryptography.hazmat.primitives import serialization

    from mynaemu.issuance.kiosk import lgpki

    try:
        _key, root = lgpki.load_or_create_root(_home(home))
    except (OSError, lgpki.LgpkiError) as exc:
        raise KioskExit(str(exc), 1) from None
    pem = root.public_bytes(serialization.Encoding.PEM)
    if output is None:
        click.echo(pem.decode("ascii"), nl=False)
    else:
        _write_atomic(output, pem, mode=0o644)      # a CA certificate, published


@kiosk.command("enrol")
@click.option("--card", "card_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The card image to write the 条例利用AP onto.")
@click.option("--pin", default=None, help="One 4-digit PIN for every document type.")
@click.option("--pin-juminhyo", default=None, help="PIN for 住民票の写し.")
@click.option("--pin-inkan", default=None, help="PIN for 印鑑登録証明書.")
@click.option("--pin-zei", default=None, help="PIN for 税証明.")
@click.option("--home", envvar="MYNAEMU_HOME", type=click.Path(file_okay=False, path_type=Path), default=None)
@_db_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--at", "at", type=_instant(), default=None,
              help="The counter's clock, for the card's expiry (ISO 8601; naive = JST; default now).")
def kiosk_enrol(card_file, pin, pin_juminhyo, pin_inkan, pin_zei, home, db, as_json, at):
    """Write the 条例利用AP (現行方式, AP-8) onto a card of the store, as the counter does.

    The 利用者ID comes from the municipality (the store under --home); each document type
    given a PIN becomes issuable by 現行方式 with that PIN. Only a card the store issued (its
    certificate byte for byte) and that is active and unexpired is written (exit 5 suspended or
    ended, 6 expired, 7 a certificate the store did not issue); otherwise nothing is written.
    """
    from cryptography import x509

    from mynaemu.card.apps import jorei
    from mynaemu.card.image import CardImageError, CardSession
    from mynaemu.issuance.kiosk.centre import StoreDirectory, utc_now
    from mynaemu.issuance.kiosk.trust import refuse_unless_active
    from mynaemu.issuance.store import StoreError

    pins = {doc: p for doc, p in (("juminhyo", pin_juminhyo or pin), ("inkan", pin_inkan or pin),
                                   ("zei", pin_zei or pin)) if p}
    for doc, value in pins.items():
        if not (len(value) == 4 and value.isascii() and value.isdigit()):
            raise click.BadParameter(f"the {doc} PIN is 4 digits", param_hint="--pin")
    if not pins:
        raise click.UsageError("give --pin or at least one --pin-<document>")
    session = None
    try:
        # Held from read to write: no door spends a PIN try in between that the write would undo.
        session = CardSession(card_file, door="mynaemu kiosk enrol")
        image = session.image
        der = image.application("jpki").efs[0x000A].data
        cert = x509.load_der_x509_certificate(der)
        resident = StoreDirectory(_home(home), db=db).resident_for_certificate(cert)  # byte for byte
        if resident is None:
            from mynaemu.issuance.store.postgres import redact_url

            where = redact_url(db) if db else f"under {_home(home)}"
            raise KioskExit(f"{card_file}: the store {where} did not issue this card", 11)
        refuse_unless_active(resident.card, at or utc_now())  # STATE-1: before anything is written
        jorei.add_to_image(image, user_id=resident.user_id, municipality_code=resident.municipality_code,
                           pins=pins, card_serial=resident.card.serial)  # binds the AP to this card
        session.save(image)
    except Refusal as refusal:
        raise KioskExit(f"{card_file}: refused [{refusal.reason}]: {refusal.message}", refusal.code) from None
    except (CardImageError, StoreError, ValueError, KeyError, OSError) as exc:
        raise KioskExit(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 1) from None
    finally:
        if session is not None:
            session.close()
    if as_json:
        click.echo(json.dumps({"card": str(card_file), "municipality_code": resident.municipality_code,
                               "documents": list(pins)}, ensure_ascii=False))
        return
    click.echo(f"{card_file}: 条例利用AP written (municipality {resident.municipality_code}; documents "
               f"{', '.join(pins)})")


# -- the demo ----------------------------------------------------------------------------------

def _demo_instant(now: _dt.datetime) -> tuple[_dt.datetime, bool]:
    """Now, or today 10:00 JST when now is outside the kiosk hours (CVS-6) or so close to closing
    time that the demo's few minutes would cross it."""
    from mynaemu.issuance.kiosk.municipality import within_service_hours

    if within_service_hours(now) and within_service_hours(now + _dt.timedelta(minutes=10)):
        return now, False
    local = now.astimezone(JST)
    return local.replace(hour=10, minute=0, second=0, microsecond=0), True


@click.command("demo", cls=one_line_usage("mynaemu"))
@click.option("--pcsc", is_flag=True, help="Serve the card through pcscd + vpcd (a real PC/SC reader).")
@click.option("-o", "--output", type=OUTPUT, default=None,
              help="Where to write the PDF (default ./mynaemu-demo-juminhyo.pdf); its folder is checked first.")
@click.option("--document", default="juminhyo", show_default=True, type=click.Choice(DOCUMENT_CHOICES))
@click.option("--keep-home", is_flag=True, help="Keep the temporary MYNAEMU_HOME and print where it is.")
def demo(pcsc, output, document, keep_home):
    """Issue a TEST card, serve it, and get a certificate from the kiosk, narrating each step.

    Everything runs on embedded defaults in a temporary MYNAEMU_HOME: the back office issues
    a card (申請 → 発行 → 交付), the card is served in-process (or with --pcsc through pcscd
    and the virtual reader), the JPKI validity service and the 証明書交付センター start on
    loopback, the kiosk runs 新方式, and the PDF is written to the current folder. Then the
    card is suspended by phone and the kiosk refuses it. Exit 0 when all of that happened.
    """
    from mynaemu.issuance.kiosk.centre import utc_now

    output = output or Path.cwd() / f"mynaemu-demo-{document}.pdf"
    # Checked before the demo runs (a missing folder must not surface after the whole story).
    output = OUTPUT.convert(str(output), None, click.get_current_context())
    home = Path(tempfile.mkdtemp(prefix="mynaemu-demo-"))
    try:
        _run_demo(home, pcsc=pcsc, output=output, document=document, now=utc_now())
    except Refusal as refusal:
        raise KioskExit(f"demo failed: refused [{refusal.reason}]: {refusal.message}", refusal.code) from None
    finally:
        if keep_home:
            click.echo(f"home kept at {home}")
        else:
            import shutil

            shutil.rmtree(home, ignore_errors=True)


def _run_demo(home: Path, *, pcsc: bool, output: Path, document: str, now: _dt.datetime) -> None:
    from mynaemu.card.core import Card
    from mynaemu.issuance.kiosk import documents
    from mynaemu.issuance.kiosk.centre import SettableClock, services_from_home
    from mynaemu.issuance.kiosk import lgpki
    from mynaemu.issuance.personas import DEFAULT_PINS, synthetic_identity
    from mynaemu.issuance.store import Store
    from mynaemu.issuance.lifecycle.workflow import Basic4, Workflow
    from mynaemu.tools.terminal.client import CardClient, InProcessConnection, PcscConnection, TransportError
    from mynaemu.tools.terminal.kiosk import Kiosk

    step = iter(range(1, 100))

    def head(text: str) -> None:
        click.echo(f"\n{next(step)}. {text}")

    def say(actor: str, text: str) -> None:
        click.echo(f"   [{actor}] {text}")

    at, moved = _demo_instant(now)
    click.echo("mynaemu demo: コンビニ交付 with a TEST Individual Number Card (every name, number and CA is "
               "synthetic; nothing here is a real document)")
    if moved:
        click.echo(f"   (it is {now.astimezone(JST):%H:%M} JST, outside or at the end of the kiosk hours "
                   f"06:30-23:00 (CVS-6): "
                   f"the demo's clock is set to {at:%Y-%m-%d %H:%M} JST)")
    clock = SettableClock(at)

    head(f"Back office (issuance workflow, TEST store in {home})")
    import random

    identity = synthetic_identity(random.Random(), age=41, on=at.astimezone(JST).date())
    store = Store.open(home)
    try:
        wf = Workflow(store, operator="demo", terminal="demo")
        app_id = wf.apply(name=identity.name, birth=identity.birth, sex=identity.sex, address=identity.address,
                          at=at - _dt.timedelta(days=8))
        say("back office", f"申請 received: application {app_id} for {identity.name} (synthetic), "
                           f"個人番号 designated (NUM-2)")
        result = wf.generate(app_id, at=at - _dt.timedelta(days=1))
        say("back office", "鍵ペア生成 + 証明書発行: user-authentication and signing certificates from the "
                           f"TEST JPKI CAs; card valid until {result.card_expires.isoformat()}")
        card_path = home / "card.json"
        image = wf.deliver(app_id, at=at - _dt.timedelta(hours=23), pins=DEFAULT_PINS,
                           identity_check="counter photo-ID check (demo)", output=card_path)
        say("back office", f"交付 at the counter: PINs set by the holder; card image written to {card_path.name}")
    finally:
        store.close()

    head("The card")
    the_card = Card.from_file(card_path)
    server = pcscd = None
    if pcsc:
        from mynaemu.tools.harness import pcscd as pcscd_ctl

        try:
            pcscd = pcscd_ctl.ensure_pcscd()
            say("card", f"pcscd {'started (ours)' if pcscd.owned else 'already running'} with the vpcd reader")
            # Slot 00 00 unless another program's card is in it; then slot 00 01 (pcsc.md).
            ports = [p for p in (pcscd_ctl.VPCD_PORT, pcscd_ctl.VPCD_PORT + 1)
                     if not pcscd_ctl.reader_state(pcscd_ctl.reader_for_port(p))[0]]
            if not ports:
                raise pcscd_ctl.PcscdError("both vpcd readers already hold a card")
            server = pcscd_ctl.start_card_server(card_path, card=the_card, port=ports[0])
            conn = PcscConnection(server.reader)
        except (pcscd_ctl.PcscdError, TransportError) as exc:
            if server is not None:
                server.stop()
            if pcscd is not None:
                pcscd.stop()
            raise KioskExit(f"demo --pcsc: {exc}", 1) from None
        say("card", f"served through vpcd as PC/SC reader {server.reader!r}; ATR {conn.atr.hex().upper()}")
    else:
        conn = InProcessConnection(the_card)
        say("card", f"served in-process (mynaemu.card.core); ATR {conn.atr.hex().upper()}; "
                    f"applications: {', '.join(a.name for a in image.applications)}")
    try:
        head("Services on loopback")
        services = services_from_home(home, clock=clock)
        try:
            say("JPKI", f"validity service: OCSP at {services.ocsp_url}, CRL at {services.crl_url}")
            say("centre", f"証明書交付センター at {services.centre_url} (kiosk requests MACed with a TEST key)")
            from mynaemu.issuance.kiosk.centre import load_or_create_kiosk_key
            from mynaemu.tools.terminal.kiosk import CentreClient

            centre = CentreClient(services.centre_url, key=load_or_create_kiosk_key(home))
            machine = Kiosk(centre, clock=clock, trust_roots=_trust_roots(home), narrate=say)

            head(f"At the kiosk: {documents.TITLES[document]} by 新方式 (the holder enters the 4-digit PIN)")
            result = machine.issue(CardClient(conn), pin=DEFAULT_PINS["auth"], document=document)
            _write_atomic(output, result.pdf)
            say("kiosk", f"printed → {output}")
            root_out = output.with_name(f"{output.stem}.lgpki-root.pem")
            _write_atomic(root_out, lgpki.root_path(home).read_bytes(), mode=0o644)   # a public root, for anyone
            roots = [lgpki.load_trust_root(root_out)]
            ok = documents.verify_pdf(output.read_bytes(), roots)
            say("anyone", f"PAdES signature {'verified' if ok else 'FAILED'} against the TEST LGPKI root "
                          f"{root_out.name}: mynaemu kiosk verify-pdf {output.name} --trust-root {root_out.name}"
                          f" (or pdfsig {output.name})")
            if not ok:
                raise KioskExit("demo failed: the PDF's signature does not verify", 7)
            tampered = bytearray(output.read_bytes())
            tampered[len(tampered) // 2] ^= 0x01
            if documents.verify_pdf(bytes(tampered), roots):
                raise KioskExit("demo failed: a changed byte was not detected", 7)
            say("anyone", "one byte changed in a copy: the check fails, as it must")

            head("The holder reports the card lost: 一時停止 by phone, then the kiosk again")
            store = Store.open(home)
            try:
                wf = Workflow(store, operator="demo-callcentre", terminal="demo")
                clock.advance(60)
                holder = wf.status(app_id, at=clock())["holder"]
                wf.suspend(app_id, at=clock(), caller=Basic4(holder["name"], _dt.date.fromisoformat(holder["birth"]),
                                                             holder["sex"], holder["address"]))
                say("back office", "一時停止 + 一時保留: every certificate of the card on hold (FLOW-SUSP-3)")
            finally:
                store.close()
            clock.advance(60)
            try:
                machine.issue(CardClient(conn), pin=DEFAULT_PINS["auth"], document=document)
            except Refusal as refusal:
                if refusal.reason != "cert-hold":
                    raise
                say("kiosk", f"refused [{refusal.reason}] (exit code {refusal.code}): {refusal.message}")
            else:
                raise KioskExit("demo failed: the suspended card was accepted", 5)
            tries = CardClient(conn)
            tries.select_ap("jpki")
            say("card", f"PIN still has {tries.tries_left(0x0018)} tries left: the kiosk never locks a card")
        finally:
            services.stop()
            say("services", "stopped")
    finally:
        conn.close()
        if server is not None:
            server.stop()
        the_card.close()                      # out of the reader: its image lock is released
        if pcscd is not None:
            pcscd.stop()
    click.echo(f"\ndone: {output}")
