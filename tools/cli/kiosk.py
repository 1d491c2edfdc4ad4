"""`mynaemu kiosk …`: the コンビニ交付 kiosk, its centre and the PDF checker.

`kiosk issue` runs one kiosk transaction against a card image (in-process) or a card in any
PC/SC reader. The centre is `--centre URL`, else a centre `kiosk serve` runs for the same home,
else — when MYNAEMU_HOME holds an issuing store, or --db / MYNAEMU_DB names one on PostgreSQL —
the command starts the centre and the JPKI validity service on loopback itself and stops them
afterwards. (`mynaemu demo`, tools/cli/demo.py, does all of it on a temporary home.)

Refusals print one line (`mynaemu kiosk: refused [reason]: …`) and exit with the code of the
reason's class: the class is the kiosk's (issuance/kiosk/wire.py RefusalClass), the code is this
CLI's (EXIT_CODES below), listed in `mynaemu kiosk --help`.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from pathlib import Path

import click

from mynaemu.issuance.clock import JST
from mynaemu.issuance.kiosk.wire import Refusal, RefusalClass
from mynaemu.tools.cli.errors import CliFail, ExitCode
from mynaemu.tools.cli.groups import one_line_group
from mynaemu.tools.cli.types import OUTPUT, text_type

RUNNING_FILE = "centre.json"
DOCUMENT_CHOICES = ("juminhyo", "inkan", "zei")
METHOD_CHOICES = ("shin", "henkan", "genko")

# The exit code of each refusal class and what it means (README "Exit codes", `kiosk --help`).
EXIT_CODES = {
    RefusalClass.PIN_WRONG: (3, "PIN wrong (tries left shown)"),
    RefusalClass.PIN_BLOCKED: (4, "PIN blocked, or at its last try without --last-try (the kiosk never sends it)"),
    RefusalClass.CERT_NOT_GOOD: (5, "certificate revoked, on hold (一時保留) or unknown to the CA; card suspended "
                                    "(一時停止) or out of service"),
    RefusalClass.CERT_DATES: (6, "certificate or card expired, or certificate not yet valid"),
    RefusalClass.CERT_INVALID: (7, "certificate, chain or card signature invalid (other CA, key mismatch, "
                                   "truncated)"),
    RefusalClass.VALIDITY_UNAVAILABLE: (8, "validity service unreachable (OCSP and CRL both)"),
    RefusalClass.CARD: (9, "card removed or card communication failed"),
    RefusalClass.OUTSIDE_HOURS: (10, "outside service hours (6:30-23:00, CVS-6)"),
    RefusalClass.RESIDENT_UNKNOWN: (11, "resident unknown to the municipality"),
    RefusalClass.CHALLENGE: (12, "challenge replayed or expired"),
    RefusalClass.AUTHENTICATION: (13, "kiosk/centre authentication failed"),
    RefusalClass.CENTRE: (14, "centre unreachable or protocol error"),
    RefusalClass.FEE_UNPAID: (15, "fee not paid (nothing printed, FEE-4)"),
    RefusalClass.NOT_OFFERED: (16, "document or method not offered for this resident"),
}
EXIT_CLASSES = {code: meaning for code, meaning in EXIT_CODES.values()}   # exit code -> meaning


def exit_code(refusal: Refusal | RefusalClass) -> int:
    """The exit code of a refusal (or of a refusal class)."""
    return EXIT_CODES[refusal.refusal_class if isinstance(refusal, Refusal) else RefusalClass(refusal)][0]


def _exit_table() -> str:
    lines = ["Exit codes: 0 issued; 1 other failure; 2 bad usage;"]
    lines += [f"{code} {text};" for code, text in sorted(EXIT_CLASSES.items())]
    return " ".join(lines)


class KioskExit(CliFail):
    """One line on stderr (`mynaemu kiosk: …`) and the exit code (ExitCode, or a refusal class's)."""

    prog = "mynaemu kiosk"


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
    from mynaemu.issuance.kiosk.keyfiles import load_or_create_kiosk_key
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


def write_output(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """The project's one atomic writer (card/safefile.py): 0600 unless published (a kiosk PDF may
    carry 個人番号, NUM-13), never over a device, FIFO or directory; a refusal is one line (exit 1)."""
    from mynaemu.card.safefile import write_file_atomic

    try:
        write_file_atomic(path, data, mode=mode)
    except OSError as exc:
        raise KioskExit(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, ExitCode.REFUSED) from None


def _narrator(stream_json: bool):
    if stream_json:
        return None
    return lambda actor, text: click.echo(f"  [{actor}] {text}")


@contextlib.contextmanager
def _centre_for(home: Path, centre_url: str | None, clock, kiosk_id: str, say, db: str | None = None):
    """A CentreClient: the given URL, a running centre, or a stack started here (stopped after)."""
    from mynaemu.issuance.kiosk.keyfiles import load_or_create_kiosk_key
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
                        "(or --db) to an issuing store", exit_code(RefusalClass.CENTRE))

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
    from mynaemu.issuance.kiosk.services import services_from_home
    from mynaemu.issuance.store import StoreError

    try:
        return services_from_home(home, db=db, **kwargs)
    except StoreError as exc:
        raise KioskExit(str(exc).splitlines()[0], ExitCode.REFUSED) from None


def _open_card(card_file: Path | None, reader: str | None):
    from mynaemu.tools.terminal.client import InProcessConnection, PcscConnection, TransportError

    if card_file is not None:
        from mynaemu.card.core import Card
        from mynaemu.card.image import CardImageError

        try:
            # The card is in the kiosk's reader (locked) until the connection is closed.
            return InProcessConnection(Card.from_file(card_file, door="mynaemu kiosk issue --card"))
        except CardImageError as exc:
            raise KioskExit(str(exc).splitlines()[0], exit_code(RefusalClass.CARD)) from None
    try:
        return PcscConnection(reader)
    except TransportError as exc:
        raise KioskExit(f"refused [card-removed]: {exc}", exit_code(RefusalClass.CARD)) from None


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

    from mynaemu.issuance.clock import SettableClock, utc_now
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
                machine = Kiosk(centre, clock=clock, trust_roots=home_trust_roots(home_path), narrate=say)
                result = machine.issue(CardClient(conn), pin=pin, document=document, method=method,
                                       with_number=with_number, with_code=with_code, last_try=last_try)
            finally:
                conn.close()
            write_output(output, result.pdf)  # CVS-2 step (7): printed only after the fee
    except Refusal as refusal:
        if as_json:
            click.echo(json.dumps(refusal.to_json(), ensure_ascii=False))
        raise KioskExit(f"refused [{refusal.reason}]: {refusal.message}", exit_code(refusal)) from None
    except InputError as exc:  # the input rules of validate.py: bad arguments
        raise KioskExit(str(exc).splitlines()[0], ExitCode.USAGE) from None
    except (OSError, ValueError) as exc:
        raise KioskExit(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, ExitCode.REFUSED) from None
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
              help="Worker processes sharing the ports (default: two per CPU; 1: a single process).")
def kiosk_serve(home, db, host, port, at, workers):
    """Run the 証明書交付センター and the JPKI validity service until Ctrl-C / SIGTERM.

    Records its URL under <home>/kiosk/ so `kiosk issue` uses it instead of starting its own.
    """
    from mynaemu.issuance.clock import SettableClock, utc_now
    from mynaemu.issuance.http.prefork import default_workers
    from mynaemu.issuance.store import DB_NAME

    home_path = _home(home)
    if db is None and not (home_path / DB_NAME).exists():
        raise KioskExit(f"{home_path}: no issuing store (run `mynaemu issue apply` first, or give --db)", ExitCode.REFUSED)
    clock = SettableClock(at) if at is not None else utc_now
    workers = workers or default_workers()
    if workers > 1:
        return _serve_workers(home_path, db, clock, host, port, workers)
    services = _services(home_path, db, clock=clock, host=host, centre_port=port)
    running = home_path / "kiosk" / RUNNING_FILE
    write_output(running, json.dumps({"url": services.centre_url, "ocsp_url": services.ocsp_url,
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


def _serve_workers(home_path: Path, db, clock, host: str, port: int, workers: int) -> None:
    """`kiosk serve` as `workers` processes (issuance/kiosk/workers.py, issuance/http/prefork.py): the
    parent announces the URLs once every worker listens, supervises them until SIGTERM/SIGINT, then
    stops them all; the running file names the supervising parent."""
    from mynaemu.issuance.http.prefork import WorkerStartError, run_until_signal
    from mynaemu.issuance.kiosk.workers import kiosk_stack_pool
    from mynaemu.issuance.store import StoreError

    try:
        stack = kiosk_stack_pool(home_path, db=db, clock=clock, host=host, centre_port=port, workers=workers)
    except (StoreError, OSError, ValueError) as exc:
        raise KioskExit(str(exc).splitlines()[0], ExitCode.REFUSED) from None
    running = home_path / "kiosk" / RUNNING_FILE

    def announce():
        write_output(running, json.dumps({"url": stack.centre_url, "ocsp_url": stack.ocsp_url,
                                           "crl_url": stack.crl_url, "pid": os.getpid(),
                                           "workers": workers}).encode("utf-8"))
        click.echo(f"証明書交付センター {stack.centre_url}; JPKI validity service {stack.ocsp_url} "
                   f"(CRL {stack.crl_url}); {workers} worker processes; Ctrl-C stops", err=True)

    try:
        run_until_signal(stack.pool, announce)
    except WorkerStartError as exc:
        raise KioskExit(str(exc), ExitCode.REFUSED) from None
    finally:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(running.read_text()).get("pid") == os.getpid():
                running.unlink()


def home_trust_roots(home: Path) -> list:
    """The home's TEST LGPKI root as the kiosk's trust list ([] when none was made yet)."""
    from mynaemu.issuance.kiosk import lgpki

    try:
        root = lgpki.trust_root(home)
    except lgpki.LgpkiError as exc:
        raise KioskExit(str(exc), ExitCode.REFUSED) from None
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
        raise KioskExit(f"{file}: cannot read: {exc.strerror or exc}", ExitCode.REFUSED) from None
    if trust_root is not None:
        try:
            roots = [lgpki.load_trust_root(trust_root)]
        except (OSError, lgpki.LgpkiError) as exc:
            raise KioskExit(f"{trust_root}: {getattr(exc, 'strerror', None) or exc}", ExitCode.REFUSED) from None
    else:
        roots = home_trust_roots(_home(home))
        if not roots:
            raise KioskExit(f"no TEST LGPKI root under {lgpki.folder(_home(home))}; pass --trust-root", ExitCode.REFUSED)
    try:
        verified = documents.check_pdf(data, roots)
    except documents.TamperError as exc:
        if as_json:
            click.echo(json.dumps({"valid": False, "reason": str(exc)}, ensure_ascii=False))
        raise KioskExit(f"{file}: NOT VALID: {exc}", exit_code(RefusalClass.CERT_INVALID)) from None
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
        raise KioskExit(str(exc), ExitCode.REFUSED) from None
    pem = root.public_bytes(serialization.Encoding.PEM)
    if output is None:
        click.echo(pem.decode("ascii"), nl=False)
    else:
        write_output(output, pem, mode=0o644)      # a CA certificate, published


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
    from mynaemu.issuance.clock import utc_now
    from mynaemu.issuance.kiosk.directory import StoreDirectory
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
            raise KioskExit(f"{card_file}: the store {where} did not issue this card",
                            exit_code(RefusalClass.RESIDENT_UNKNOWN))
        refuse_unless_active(resident.card, at or utc_now())  # STATE-1: before anything is written
        jorei.add_to_image(image, user_id=resident.user_id, municipality_code=resident.municipality_code,
                           pins=pins, card_serial=resident.card.serial)  # binds the AP to this card
        session.save(image)
    except Refusal as refusal:
        raise KioskExit(f"{card_file}: refused [{refusal.reason}]: {refusal.message}", exit_code(refusal)) from None
    except (CardImageError, StoreError, ValueError, KeyError, OSError) as exc:
        raise KioskExit(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, ExitCode.REFUSED) from None
    finally:
        if session is not None:
            session.close()
    if as_json:
        click.echo(json.dumps({"card": str(card_file), "municipality_code": resident.municipality_code,
                               "documents": list(pins)}, ensure_ascii=False))
        return
    click.echo(f"{card_file}: 条例利用AP written (municipality {resident.municipality_code}; documents "
               f"{', '.join(pins)})")
