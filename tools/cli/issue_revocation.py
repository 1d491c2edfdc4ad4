"""`mynaemu issue crl | ocsp-serve`: the CAs' complete CRLs and an OCSP responder, from the store
(RFC 5280, RFC 6960). Loaded on first use by the `issue` group (issue.py LAZY_ISSUE).
"""
from __future__ import annotations

import datetime as _dt
import json
import signal
import sys
import threading

import click

from mynaemu.issuance import clock
from mynaemu.tools.cli.issue import ISSUE_COMMAND, common, emit, guarded
from mynaemu.tools.cli.types import OUTPUT


@click.command("crl", cls=ISSUE_COMMAND)
@click.option("--ca", "kind", required=True, type=click.Choice(["auth", "sign"]))
@click.option("-o", "--output", type=OUTPUT, default=None,
              help="Write the DER CRL here (default: PEM on stdout).")
@common(reads=True)
@click.pass_obj
@guarded
def cmd_crl(obj, kind, output, at, as_json, operator, terminal):
    """The CA's complete CRL as of --at, from the store (holds as certificateHold)."""
    from mynaemu.issuance.pki.revocation import build_crl, check_crl_window, crl_der, crl_pem

    store, wf = obj.workflow(operator, terminal)
    at = at or clock.now()
    with store:
        # Refused (exit 2) before the number is spent: outside UTCTime or the CA's validity.
        check_crl_window(wf.pki.ca(kind), at)
        with store.transaction():  # the number is spent only with the CRL it numbers and its audit
            number = _next_crl_number(store, kind, at)
            crl = build_crl(wf.pki.ca(kind), store, at=at, crl_number=number)
            store.audit(at=at, operator=operator, terminal=terminal, operation="crl", target=kind, outcome="ok",
                        reason=f"CRL number {number}, {len(list(crl))} entries")
    if output is not None:
        from mynaemu.card.safefile import write_file_atomic

        write_file_atomic(output, crl_der(crl), mode=0o644)   # a CRL is published: world-readable
    doc = {"ca": kind, "number": number, "this_update": crl.last_update_utc.isoformat(),
           "next_update": crl.next_update_utc.isoformat(), "file": str(output) if output else None,
           "entries": [{"serial": f"{e.serial_number:X}", "revoked_at": e.revocation_date_utc.isoformat(),
                        "reason": _crl_reason(e)} for e in crl]}
    if as_json:
        emit(True, doc)
    elif output is None:
        click.echo(crl_pem(crl).decode("ascii"), nl=False)
    else:
        click.echo(f"{output}: {kind} CRL number {number}, {len(doc['entries'])} entries")


def _next_crl_number(store, kind: str, at: _dt.datetime) -> int:
    # RFC 5280 §5.2.3: CRL numbers increase; kept per CA in the settings table.
    return store.bump_setting(f"crl_number_{kind}", at_least=int(at.timestamp()))


def _crl_reason(entry) -> str | None:
    from cryptography import x509

    try:
        return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
    except x509.ExtensionNotFound:
        return None


@click.command("ocsp-serve", cls=ISSUE_COMMAND)
@click.option("--host", default="127.0.0.1", show_default=True, help="Listen address (loopback by default).")
@click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535), help="0 = any free port.")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Worker processes sharing the port (default: two per CPU; 1: a single process).")
@common(reads=True)
@click.pass_obj
@guarded
def cmd_ocsp_serve(obj, host, port, workers, at, as_json, operator, terminal):
    """Serve OCSP (POST / GET) and /crl/auth.crl, /crl/sign.crl from the store until stopped.

    The responder's clock starts at --at (default now) and runs on, so a demo can live on any
    date. The first line on stdout is the responder URL (JSON with --json).
    """
    from mynaemu.issuance.pki.ocsp import OcspResponder, crl_url, serve_ocsp
    from mynaemu.issuance.store import StoreRevocationSource
    from mynaemu.issuance.store.pki import store_pki

    store = obj.open_store()  # create / migrate the store before the threads read it
    try:
        pki = store_pki(store)  # the store's own CAs (created at first use)
    finally:
        store.close()
    # the settable clock: --at, then running on in real time (issuance/clock.py)
    service_clock = clock.SettableClock(at) if at is not None else clock.utc_now

    def on_record(event: str, **detail) -> None:
        # the service under its own identity in the trail (SEC-8, SEC-19: log-in and log-out)
        _service_record(obj, operator, terminal, service_clock(), event, detail)

    from mynaemu.issuance.http.prefork import default_workers

    workers = workers or default_workers()
    if workers > 1:
        from mynaemu.tools.cli.workers import ocsp_serve_workers

        return ocsp_serve_workers(obj.location(), pki, service_clock, host, port, workers, as_json,
                                  on_record=on_record)
    responder = OcspResponder({"auth": pki.auth_ca, "sign": pki.sign_ca}, StoreRevocationSource(obj.location()),
                              clock=service_clock)
    # the stop handlers before the URL is out: a SIGTERM right after reading it stops cleanly
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server, thread, url = serve_ocsp(responder, host, port)
    on_record("start", url=url, workers=1)
    # one line either way, so a script can read it from a pipe
    doc = {"url": url, "crl": {k: crl_url(url, k) for k in ("auth", "sign")}}
    click.echo(json.dumps(doc) if as_json else url)
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
        on_record("stop", url=url)


def _service_record(obj, operator: str, terminal: str, at, event: str, detail: dict) -> None:
    """One audit record `ocsp-serve` (start or stop) under the service's identity."""
    store = obj.open_store()
    try:
        store.audit(at=at, operator=operator, terminal=terminal, operation="ocsp-serve", target=None, outcome="ok",
                    reason=event, detail=detail)
    finally:
        store.close()
