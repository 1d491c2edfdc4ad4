"""`mynaemu demo`: コンビニ交付 from end to end on a temporary home, narrating each step.

The back office issues a TEST card (申請 → 発行 → 交付), the card is served in-process (or through
pcscd + vpcd), the JPKI validity service and the 証明書交付センター start on loopback
(issuance/kiosk/services.py), the kiosk (tools/terminal/kiosk.py) gets a certificate by 新方式,
anyone checks its PAdES signature, and the card, suspended by phone, is then refused.
"""
from __future__ import annotations

import datetime as _dt
import tempfile
from pathlib import Path

import click

from mynaemu.issuance.kiosk.wire import Refusal, RefusalClass
from mynaemu.issuance.clock import JST
from mynaemu.tools.cli.kiosk import DOCUMENT_CHOICES, KioskExit, exit_code, home_trust_roots, write_output
from mynaemu.tools.cli.errors import ExitCode
from mynaemu.tools.cli.groups import one_line_usage
from mynaemu.tools.cli.types import OUTPUT


def _demo_instant(now: _dt.datetime) -> tuple[_dt.datetime, bool]:
    """Now, or today 10:00 JST when now is outside the kiosk hours (CVS-6) or so close to closing
    time that the demo's few minutes would cross it."""
    from mynaemu.issuance.kiosk.wire import within_service_hours

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
    from mynaemu.issuance.clock import utc_now

    output = output or Path.cwd() / f"mynaemu-demo-{document}.pdf"
    # Checked before the demo runs (a missing folder must not surface after the whole story).
    output = OUTPUT.convert(str(output), None, click.get_current_context())
    home = Path(tempfile.mkdtemp(prefix="mynaemu-demo-"))
    try:
        _run_demo(home, pcsc=pcsc, output=output, document=document, now=utc_now())
    except Refusal as refusal:
        raise KioskExit(f"demo failed: refused [{refusal.reason}]: {refusal.message}", exit_code(refusal)) from None
    finally:
        if keep_home:
            click.echo(f"home kept at {home}")
        else:
            import shutil

            shutil.rmtree(home, ignore_errors=True)


def _run_demo(home: Path, *, pcsc: bool, output: Path, document: str, now: _dt.datetime) -> None:
    from mynaemu.card.core import Card
    from mynaemu.issuance.kiosk import documents
    from mynaemu.issuance.kiosk import lgpki
    from mynaemu.issuance.clock import SettableClock
    from mynaemu.issuance.kiosk.services import services_from_home
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
        from mynaemu.issuance.staff.demo import DemoStaff

        staff = DemoStaff(store, at=at - _dt.timedelta(days=9))   # issue 13: every step by a member of staff
        say("back office", "staff: security officer demo-officer made demo-counter, demo-issuer and "
                           "demo-callcentre (SEC-4, SEC-6)")

        def wf(step, when):
            return Workflow(store, operator=staff.login(store, step, when), terminal="demo")

        app_id = wf("apply", at - _dt.timedelta(days=8)).apply(
            name=identity.name, birth=identity.birth, sex=identity.sex, address=identity.address,
            at=at - _dt.timedelta(days=8))
        say("back office", f"申請 received: application {app_id} for {identity.name} (synthetic), "
                           f"個人番号 designated (NUM-2)")
        result = wf("generate", at - _dt.timedelta(days=1)).generate(app_id, at=at - _dt.timedelta(days=1))
        say("back office", "鍵ペア生成 + 証明書発行: user-authentication and signing certificates from the "
                           f"TEST JPKI CAs; card valid until {result.card_expires.isoformat()}")
        card_path = home / "card.json"
        handed = at - _dt.timedelta(hours=23)
        image = wf("deliver", handed).deliver(app_id, at=handed, pins=DEFAULT_PINS,
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
            raise KioskExit(f"demo --pcsc: {exc}", ExitCode.REFUSED) from None
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
            from mynaemu.issuance.kiosk.keyfiles import load_or_create_kiosk_key
            from mynaemu.tools.terminal.kiosk import CentreClient

            centre = CentreClient(services.centre_url, key=load_or_create_kiosk_key(home))
            machine = Kiosk(centre, clock=clock, trust_roots=home_trust_roots(home), narrate=say)

            head(f"At the kiosk: {documents.TITLES[document]} by 新方式 (the holder enters the 4-digit PIN)")
            result = machine.issue(CardClient(conn), pin=DEFAULT_PINS["auth"], document=document)
            write_output(output, result.pdf)
            say("kiosk", f"printed → {output}")
            root_out = output.with_name(f"{output.stem}.lgpki-root.pem")
            write_output(root_out, lgpki.root_path(home).read_bytes(), mode=0o644)   # a public root, for anyone
            roots = [lgpki.load_trust_root(root_out)]
            ok = documents.verify_pdf(output.read_bytes(), roots)
            say("anyone", f"PAdES signature {'verified' if ok else 'FAILED'} against the TEST LGPKI root "
                          f"{root_out.name}: mynaemu kiosk verify-pdf {output.name} --trust-root {root_out.name}"
                          f" (or pdfsig {output.name})")
            if not ok:
                raise KioskExit("demo failed: the PDF's signature does not verify", exit_code(RefusalClass.CERT_INVALID))
            tampered = bytearray(output.read_bytes())
            tampered[len(tampered) // 2] ^= 0x01
            if documents.verify_pdf(bytes(tampered), roots):
                raise KioskExit("demo failed: a changed byte was not detected", exit_code(RefusalClass.CERT_INVALID))
            say("anyone", "one byte changed in a copy: the check fails, as it must")

            head("The holder reports the card lost: 一時停止 by phone, then the kiosk again")
            store = Store.open(home)
            try:
                clock.advance(60)
                wf = Workflow(store, operator=staff.login(store, "suspend", clock()), terminal="demo")
                holder = wf.status(app_id, at=clock(), audited=False)["holder"]
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
                say("kiosk", f"refused [{refusal.reason}] (exit code {exit_code(refusal)}): {refusal.message}")
            else:
                raise KioskExit("demo failed: the suspended card was accepted", exit_code(RefusalClass.CERT_NOT_GOOD))
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
