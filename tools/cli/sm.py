"""`mynaemu card sm-read FILE`: the 券面入力補助AP read under secure messaging (§13.2)."""
from __future__ import annotations

from pathlib import Path

import click

from mynaemu.tools.cli.errors import CliFail, one_line


@click.command("sm-read")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--pin", required=True, help="券面事項入力補助用暗証番号 (4 digits): opens SET SESSION KEY.")
@click.option("--collation-a", default=None,
              help="照合番号A (the 12-digit 個人番号): presented under SM to read EF 0001.")
@click.option("--reveal", is_flag=True, help="Show the 個人番号 in full (masked by default).")
@click.option("--trace", is_flag=True, help="Print the APDU exchange (PINs redacted; SM data is ciphertext).")
def card_sm_read(file, pin, collation_a, reveal, trace):
    """Open an SM session on kenhojo (80 AE) and read 基本4情報 (and, with --collation-a, the
    個人番号) through it, in-process on the card in FILE; PIN state is saved as it changes."""
    from mynaemu.card.core import Card
    from mynaemu.card.image import CardImageError
    from mynaemu.card.redact import mask_number
    from mynaemu.tools.terminal.client import CardClient, CardError, InProcessConnection
    from mynaemu.tools.terminal.sm import SmSessionClosed

    try:
        the_card = Card.from_file(file, door="mynaemu card sm-read")
    except CardImageError as exc:
        raise CliFail(one_line(exc)) from None
    client = CardClient(InProcessConnection(the_card), trace=trace)
    try:
        session = client.open_sm(pin)
        lines = ["secure messaging: session key delivered (80 AE 9000), AES-128, confidentiality"]
        if collation_a is not None:
            number = session.read_my_number(collation_a)
            lines.append(f"個人番号: {mask_number(number, reveal)}")
        info = session.read_basic4()
        lines += [f"氏名: {info['name']}", f"住所: {info['address']}",
                  f"生年月日: {info['birth'].isoformat()}", f"性別: {info['sex']}",
                  f"SM commands: {session.counter}"]
    except (CardError, SmSessionClosed, ValueError) as exc:
        raise CliFail(f"{file}: {one_line(exc)}") from None
    finally:
        if trace:
            click.echo(client.format_trace(), err=True)
        client.conn.close()
    for line in lines:
        click.echo(line)
