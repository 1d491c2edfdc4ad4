"""The tester's toolkit on the command line: `mynaemu card script`, `card info --json` data.

Loaded on first use by the `card` group (tools/cli/__init__.py LAZY_CARD). Exit codes follow the
CLI's one table (tools/cli/errors.py): 0 every expectation held; 1 an expectation failed, or the card or reader could
not be used; 2 bad usage, or a script that cannot be read (nothing was sent to any card then).
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from mynaemu.tools.cli.errors import CliFail, ExitCode, one_line
from mynaemu.tools.cli.groups import one_line_usage

# One-line usage errors like every other card command (tools/cli/groups.py).
_COMMAND = one_line_usage("mynaemu card")


def _parse_sets(values) -> dict:
    out = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier() or not name.isupper():
            raise click.BadParameter(f"{item!r}: expected NAME=VALUE with an upper-case NAME", param_hint="--set")
        out[name] = value
    return out


@click.command("script", cls=_COMMAND)
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--persona", default=None, help="Run every script on a fresh card of this persona "
              "(default: each file's `persona:` header).")
@click.option("--card", "card_image", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Run on (a copy in memory of) this card image; the file is not changed.")
@click.option("--reader", default=None, help="Run on the card in this PC/SC reader (a real card too).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the persona card.")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
              help="Give or override a variable (e.g. AUTH_PIN=1234 for a card in a reader).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document with every exchange.")
def card_script(files, persona, card_image, reader, seed, sets, as_json):
    """Run card scripts (vectors/transcripts/README.md format) and check every answer.

    Prints each exchange (PINs and 個人番号 redacted). Exit 0 when every expectation holds,
    1 with `FILE:LINE … expected …, got …` at the first that does not (each file stops at its
    first mismatch; the other files still run), 2 when a script cannot be read.
    """
    from mynaemu.card.image import CardImageError
    from mynaemu.card.redact import redact_command, redact_response
    from mynaemu.tools.terminal.client import TransportError
    from mynaemu.tools.terminal.script import TranscriptError, parse_transcript
    from mynaemu.tools.terminal.script_targets import image_target, persona_target, reader_target, run_on

    if sum(x is not None for x in (persona, card_image, reader)) > 1:
        raise click.UsageError("give at most one of --persona, --card, --reader")
    variables = _parse_sets(sets)
    if persona is not None:
        from mynaemu.issuance.personas import PERSONAS
        if persona not in PERSONAS:
            raise click.BadParameter(f"unknown persona {persona!r}; choose from: {', '.join(PERSONAS)}",
                                     param_hint="--persona")
    scripts = []
    for path in files:
        try:
            scripts.append(parse_transcript(path, require_persona=persona is None and card_image is None
                                            and reader is None))
        except (TranscriptError, UnicodeDecodeError, OSError) as exc:
            raise CliFail(f"{path}: {exc}" if str(path) not in str(exc) and path.name not in str(exc)
                          else str(exc), ExitCode.USAGE) from None

    targets = {}

    def target_for(script):
        key = persona or script.persona
        if card_image is not None:
            key = ("card", card_image)
        elif reader is not None:
            key = ("reader", reader)
        if key not in targets:
            try:
                if card_image is not None:
                    targets[key] = image_target(card_image)
                elif reader is not None:
                    targets[key] = reader_target(reader or None, variables)
                else:
                    targets[key] = persona_target(key, seed)
            except (CardImageError, TransportError, TranscriptError, OSError, ValueError) as exc:
                raise CliFail(one_line(exc)) from None
        return targets[key]

    report, failed = [], False
    for path, script in zip(files, scripts):
        target = target_for(script)
        steps = []
        entry = {"file": str(path), "card": target.describe, "ok": True, "exchanges": 0, "error": None,
                 "steps": steps}
        if not as_json:
            click.echo(f"# {path} on {target.describe}")

        def show(step, steps=steps):
            cmd = redact_command(step.command, spaced=True)
            resp = step.response
            shown = (redact_response(resp[:-2]) + " " if len(resp) > 2 else "") + resp[-2:].hex().upper()
            steps.append({"line": step.line, "command": cmd, "response": shown.strip()})
            if not as_json:
                click.echo(f"{step.line:4d} > {cmd}")
                click.echo(f"     < {shown.strip()}")

        try:
            entry["exchanges"] = run_on(target, script, show, variables)
        except TranscriptError as exc:
            entry["ok"], failed = False, True
            message = str(exc)
            if message.startswith(path.name + ":"):
                message = str(path) + message[len(path.name):]
            entry["error"] = message
            entry["exchanges"] = len(steps)
            if not as_json:
                click.echo(f"mynaemu: {message}", err=True)
        except TransportError as exc:
            entry["ok"], failed = False, True
            entry["error"] = f"{path}: {exc}"
            if not as_json:
                click.echo(f"mynaemu: {path}: {exc}", err=True)
        report.append(entry)
    if as_json:
        click.echo(json.dumps({"ok": not failed, "scripts": report}, ensure_ascii=False, indent=1))
    elif not failed:
        total = sum(e["exchanges"] for e in report)
        click.echo(f"ok: {len(report)} script(s), {total} exchanges, every expectation held")
    if failed:
        raise SystemExit(int(ExitCode.REFUSED))


@click.command("face", cls=_COMMAND)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Directory for the PNG files (made 0700 if missing).")
@click.option("--force", is_flag=True, help="Overwrite files of an earlier run.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable list of the files written.")
def card_face(file, out_dir, force, as_json):
    """Write the 券面 images of the card in FILE as PNG, and front.png / back.png: the card
    as a person sees it (photo, 氏名, 住所, 生年月日, 性別, expiry, security code; 個人番号 on the
    back), every picture marked TEST."""
    from mynaemu.card.image import CardImage, CardImageError
    from mynaemu.tools.cli.face import FaceError, write_face

    try:
        written = write_face(CardImage.load(file), out_dir, force=force)
    except (CardImageError, FaceError, OSError) as exc:
        raise CliFail(one_line(exc)) from None
    if as_json:
        click.echo(json.dumps({"files": {k: str(v) for k, v in written.items()}}))
    else:
        for path in written.values():
            click.echo(str(path))

