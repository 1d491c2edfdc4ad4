"""`mynaemu issue pin-reset`: 暗証番号の初期化 at the counter (issuance/lifecycle/steps_pins.py).
Loaded on first use by the `issue` group (issue.py LAZY_ISSUE)."""
from __future__ import annotations

from pathlib import Path

import click

from mynaemu.issuance import clock
from mynaemu.tools.cli.issue import ISSUE_COMMAND, _load_card, common, emit, guarded
from mynaemu.tools.cli.types import FORM_ID, text_type

# the same text as steps_pins.DEFAULT_IDENTITY_CHECK (not imported: --help loads no workflow)
DEFAULT_IDENTITY_CHECK = "counter photo-ID check with the 暗証番号初期化申請書"


@click.command("pin-reset", cls=ISSUE_COMMAND)
@click.argument("app_id", metavar="ID", type=FORM_ID)
@click.option("--card", "card_file", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The holder's card file (the card issued for ID); rewritten in place.")
@click.option("--pin", "pin_kind", required=True, type=click.Choice(["auth", "sign", "kenhojo", "juki"]),
              help="Which PIN: auth 利用者証明用 0018 (AP-4), sign 署名用パスワード 001B (AP-3), kenhojo "
                   "券面事項入力補助 0011 (AP-5), juki 住基 001C (AP-6; both copies on the card).")
@click.option("--new-pin", required=True, metavar="PIN",
              help="The new value: 4 digits, or 6-16 of A-Z 0-9 for sign. Written to the card only: never "
                   "printed, audited or kept in the store.")
@click.option("--identity-check", default=DEFAULT_IDENTITY_CHECK, show_default=True,
              type=text_type("identity_check"), help="The identity check that was made (audited).")
@common
@click.pass_obj
@guarded
def cmd_pin_reset(obj, app_id, card_file, pin_kind, new_pin, identity_check, at, as_json, operator, terminal):
    """暗証番号の初期化 at the counter: set a new value for one PIN of the holder's card and give
    it back its full retry counter (a forgotten or blocked PIN). Only for an active card, and
    only on the card issued for ID; nothing else on the card changes."""
    image = _load_card(card_file)   # held until the command ends: no door spends a try meanwhile
    store, wf = obj.workflow(operator, terminal)
    with store:
        result = wf.pin_reset(app_id, at=at or clock.now(), card_image=image, pin=pin_kind, new_pin=new_pin,
                              identity_check=identity_check, card_path=card_file)
    emit(as_json, {"id": result.id, "card": str(card_file), "pin": result.pin, "retries": result.retries},
         f"{card_file}: {result.pin} PIN of card {result.id} reset ({result.retries} tries)")
