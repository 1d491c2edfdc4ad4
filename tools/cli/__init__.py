"""The `mynaemu` command line (click): card, issue, kiosk and demo groups.

Exit codes: one table for the whole CLI, tools/cli/errors.py (README "Exit codes"); every
refusal is an errors.CliFail. The issue, kiosk and demo groups and the card toolkit's commands
are loaded on first use (groups.py), so `mynaemu card apdu` loads none of them.
"""
from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import click

from mynaemu.card.image import ATR_PROFILES, CardImageError
from mynaemu.tools.cli.errors import CliFail, one_line
from mynaemu.tools.cli.types import INSTANT, OUTPUT, one_line_group


def one_line_errors(func):
    """Turn the project's expected failures into one-line messages with exit code 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (CardImageError, ValueError, OSError) as exc:
            raise CliFail(one_line(exc)) from None

    return wrapper


def parse_hex_apdu(text: str) -> bytes:
    """Hex of one byte or more, sent to the card exactly as given: a tester probing robustness
    wants the card's own answer to a short or malformed command (e.g. 6700), not ours."""
    cleaned = text.replace(" ", "").replace(":", "")
    try:
        raw = bytes.fromhex(cleaned)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not hex") from None
    if not raw:
        raise click.BadParameter("an empty command: give at least one byte of hex")
    return raw


# Subcommands whose modules are imported only when they run (or a help lists them).
LAZY_MAIN = {
    "issue": "mynaemu.tools.cli.issue:issue",
    "kiosk": "mynaemu.tools.cli.kiosk:kiosk",
    "demo": "mynaemu.tools.cli.demo:demo",
}
LAZY_CARD = {
    "sm-read": "mynaemu.tools.cli.sm:card_sm_read",          # §13.2 secure-messaging read
    "script": "mynaemu.tools.cli.toolkit:card_script",       # the tester's toolkit
    "face": "mynaemu.tools.cli.toolkit:card_face",
}


@click.group(cls=one_line_group("mynaemu"), lazy_subcommands=LAZY_MAIN)
@click.version_option(package_name="mynaemu", prog_name="mynaemu")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv APDU trace, redacted).")
def main(verbose):
    """mynaemu: a software Individual Number Card and its TEST back office."""
    level = logging.WARNING if not verbose else (logging.INFO if verbose == 1 else logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)


# -- card --------------------------------------------------------------------------------------

@main.group(cls=one_line_group("mynaemu card"), lazy_subcommands=LAZY_CARD)
def card():
    """Create, inspect, talk to and serve virtual cards."""


@card.command("personas")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def card_personas(as_json):
    """List the personas `card create` can build, with their test PINs."""
    from mynaemu.issuance.personas import DEFAULT_PINS, PERSONAS

    if as_json:
        import json as _json
        click.echo(_json.dumps({"personas": [{"name": n, "description": s.description} for n, s in PERSONAS.items()],
                                "pins": DEFAULT_PINS}, ensure_ascii=False, indent=1))
        return
    for name, spec in PERSONAS.items():
        click.echo(f"{name:18s} {spec.description}")
    click.echo("")
    click.echo("Test PINs: auth 1234, signing ABC123, 券面事項入力補助 1234, 住基 1234 "
               "(照合番号A = the 個人番号; 照合番号B = era YYMMDD + expiry year + security code;"
               " `card info FILE --reveal` shows them).")


@card.command("create")
@click.option("--persona", required=True, help="Persona name (see `mynaemu card personas`).")
@click.option("-o", "--output", "output", required=True, type=OUTPUT)
@click.option("--seed", type=int, default=None, help="Reproducible identity and keys.")
@click.option("--atr", type=click.Choice(sorted(ATR_PROFILES)), default=None, help="ATR profile.")
@click.option("--at", "at", type=INSTANT, default=None,
              help="The issue instant (ISO 8601; naive = JST; default now): with --seed the same file every time.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@one_line_errors
def card_create(persona, output, seed, atr, at, force, as_json):
    """Build a persona's card image into FILE (issued at --at, default now)."""
    from mynaemu.issuance.personas import PERSONAS, build_persona

    if persona not in PERSONAS:
        raise click.BadParameter(f"unknown persona {persona!r}; choose from: {', '.join(PERSONAS)}",
                                 param_hint="--persona")
    if output.exists() and not force:
        raise CliFail(f"{output}: exists (use --force to overwrite)")
    try:
        image, info = build_persona(persona, seed=seed, at=at)
    except ValueError as exc:   # e.g. an instant outside the TEST CAs' validity
        raise click.BadParameter(one_line(exc), param_hint="--at") from None
    if atr:
        from mynaemu.card.atr import apply_profile
        apply_profile(image, atr)       # the ATR, and GET DATA 5F51 of that chip (§1.2)
    image.save(output)
    if as_json:
        import json as _json
        click.echo(_json.dumps({"file": str(output), "persona": persona, "holder": info.identity.name,
                                "card_expires": info.card_expiry.isoformat(), "atr": image.atr},
                               ensure_ascii=False))
        return
    click.echo(f"{output}: {persona} card for {info.identity.name} "
               f"(expires {info.card_expiry.isoformat()})")


@card.command("info")
@click.argument("file", type=click.Path(exists=False, dir_okay=False, path_type=Path))
@click.option("--reveal", is_flag=True, help="Show PINs and the 個人番号 (hidden by default).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@one_line_errors
def card_info(file, reveal, as_json):
    """Describe a card image: holder, applications, PIN states, certificates."""
    import json as _json

    from mynaemu.card.describe import describe_image, describe_image_json
    from mynaemu.card.image import CardImage

    image = CardImage.load(file)
    signed = _signing_certificate_basic4(image, reveal)
    if as_json:
        doc = describe_image_json(image, reveal=reveal)
        doc["signing_certificate_basic4"] = signed
        click.echo(_json.dumps(doc, ensure_ascii=False, indent=1))
        return
    summary = describe_image(image, reveal=reveal)
    if signed is not None:
        summary["signing certificate 基本4情報"] = ", ".join(f"{k} {v}" for k, v in signed.items())
    for key, value in summary.items():
        if isinstance(value, list):
            click.echo(f"{key}:")
            for row in value:
                click.echo(f"  {row}")
        else:
            click.echo(f"{key}: {value}")


def _signing_certificate_basic4(image, reveal: bool) -> dict | None:
    """The 基本4情報 the JPKI signing certificate (EF 0001) holds in its subjectAltName (§7.3),
    parsed with asn1crypto (issuance/profiles.parse_sign_san): the name always, birth date, sex
    and address only with --reveal, like the holder block. None without a signing certificate."""
    from cryptography import x509

    from mynaemu.card import tlv
    from mynaemu.issuance.pki.profiles import parse_sign_san

    try:
        data = image.application("jpki").efs[0x0001].data
        cert = x509.load_der_x509_certificate(tlv.decode_one(data).raw)   # the EF may carry filler
    except (KeyError, AttributeError, ValueError, tlv.TLVError):
        return None
    try:
        fields = parse_sign_san(cert)
    except ValueError as exc:
        return {"error": str(exc)}
    shown = {"name": fields["name"]}
    if reveal:
        shown.update({k: fields[k] for k in ("birth", "sex", "address") if k in fields})
    return shown


@card.command("apdu")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("apdus", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON list of {command, data, sw} (PINs redacted).")
@one_line_errors
def card_apdu(file, apdus, as_json):
    """Send APDUs (hex, one byte or more, sent as given) to the card in FILE in-process; print
    `DATA SW` per response (a malformed command gets the card's own answer, e.g. 6700).

    The card is powered on once for the whole list (so security status carries from one APDU
    to the next) and its PIN state is saved to FILE as it changes.
    """
    from mynaemu.card.core import Card

    raws = [parse_hex_apdu(a) for a in apdus]
    answers = []
    # The card is in this reader (locked) from before the first APDU until after the last.
    with Card.from_file(file, door="mynaemu card apdu") as the_card:
        the_card.power_on()
        for raw in raws:
            response = the_card.transmit(raw)
            data, sw = response[:-2].hex().upper(), response[-2:].hex().upper()
            if as_json:
                from mynaemu.card.redact import redact_command
                answers.append({"command": redact_command(raw), "data": data, "sw": sw})
            else:
                click.echo(f"{data} {sw}" if data else sw)
    if as_json:
        import json as _json
        click.echo(_json.dumps(answers))


@card.command("serve")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Where vpcd (pcscd) listens.")
@click.option("--port", default=35963, show_default=True, type=click.IntRange(1, 65535),
              help="35963 = reader 'Virtual PCD 00 00', 35964 = '... 00 01'; the N-th card gets PORT+N.")
@click.option("--atr", type=click.Choice(sorted(ATR_PROFILES)), default=None,
              help="Override the image's ATR profile for this session.")
@click.option("--record", "record", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Write the session as a card script (PINs as placeholders) for `card script`.")
@click.option("--eject-after", type=click.IntRange(1), default=None, metavar="N",
              help="Pull the card out of its reader after the N-th APDU (SIGUSR2 puts it back).")
@click.option("--timing", type=click.Choice(["none", "real"]), default="none", show_default=True,
              help="real: answer with a real card's latencies (wire time at the ATR's rate, RSA ~0.3 s).")
@click.option("--control", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="A FIFO taking 'eject N' / 'insert N' / 'eject all' lines (card N of FILES, from 0).")
@one_line_errors
def card_serve(files, host, port, atr, record, eject_after, timing, control):
    """Serve the cards in FILES as PC/SC readers through pcscd's vpcd driver, one per slot.

    The first card is in 'Virtual PCD 00 00' (port 35963), the next in '... 00 01' (35964), and
    so on (vpcd has two slots; more need more reader.conf entries). Reconnects when pcscd
    restarts; PIN state is written to each FILE as it changes. SIGUSR1 pulls every card out of
    its reader, SIGUSR2 puts them back; `--control FIFO` does it per card. Stop with Ctrl-C or
    SIGTERM.
    """
    from mynaemu.card.core import Card
    from mynaemu.card.transport.timing import RealTiming
    from mynaemu.card.transport.vpcd import VpcdServer, reader_for, run_many

    if len(set(files)) != len(files):
        raise click.BadParameter("the same card image twice", param_hint="FILES")
    if record is not None and len(files) > 1:
        raise click.BadParameter("--record takes one card", param_hint="--record")
    if port + len(files) - 1 > 65535:
        raise click.BadParameter(f"{len(files)} cards from port {port} run past 65535", param_hint="--port")
    door_log = logging.getLogger("mynaemu.vpcd")
    if door_log.getEffectiveLevel() > logging.INFO:
        door_log.setLevel(logging.INFO)     # connection events (connect, power, reconnect) by default
    servers, cards = [], []
    try:
        for n, file in enumerate(files):
            # Held (locked) until the process ends: no other door powers this card meanwhile.
            the_card = Card.from_file(file, atr=atr, door=f"mynaemu card serve on vpcd {host}:{port + n}")
            cards.append(the_card)
            if record is not None:
                from mynaemu.tools.terminal.record import Recorder, RecordingCard
                the_card = RecordingCard(the_card, Recorder.for_image(record, the_card.image,
                                                                      source=f"mynaemu card serve --record ({file.name})"))
            pace = RealTiming(the_card.atr) if timing == "real" else None
            servers.append(VpcdServer(the_card, host, port + n, eject_after=eject_after, timing=pace))
            click.echo(f"serving {file} on vpcd {host}:{port + n} = {reader_for(port + n)!r} "
                       f"(ATR {the_card.atr.hex().upper()})", err=True)
        if control is None:
            run_many(servers)
            return
        from mynaemu.card.transport.control import ControlFifo

        channel = ControlFifo(control, servers, log=door_log.info).start()
        try:
            run_many(servers)
        finally:
            channel.close()
    finally:
        for the_card in cards:
            the_card.close()
