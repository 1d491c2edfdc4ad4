"""The terminal side's structure (issue 14 phase B): no import cycle, no card-side copies, no raw SWs.

- tools/terminal's modules form no import cycle, function-level imports included: the session
  recorder, the script variables and the SM session do not import the client;
- the client reads card data with the card's own declarations (card/tlv.py, card/layouts.py);
- no raw status-word or AID literal in tools/terminal, tools/harness or bench: they name
  card/status.SW, card/aid.AID and card/ids members;
- no module of tools/terminal or tools/harness over 600 lines (fuzz.py, one oracle, excepted).
"""
from __future__ import annotations

import ast
import datetime as _dt
import io
import re
import tokenize

import pytest

from mynaemu.card import tlv
from mynaemu.card.apps import kenhojo
from mynaemu.issuance.personas import build_persona
from mynaemu.tools.terminal import client, connections, errors, parse
from mynaemu.tools.terminal.errors import CardDataError
from tests.support import REPO

TERMINAL = REPO / "tools" / "terminal"


def _imports(path) -> set[str]:
    """Every mynaemu module `path` imports, at module or function level."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in out if m.startswith("mynaemu.")}


def _terminal_graph() -> dict[str, set[str]]:
    mods = {f"mynaemu.tools.terminal.{p.stem}": p for p in TERMINAL.glob("*.py") if p.stem != "__init__"}
    return {m: {t for t in _imports(p) if t in mods and t != m} for m, p in mods.items()}


def test_tools_terminal_has_no_import_cycle():
    graph = _terminal_graph()
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


@pytest.mark.parametrize("module", ["record", "script_env", "sm", "connections", "errors", "parse", "checks"])
def test_the_modules_below_the_client_do_not_import_it(module):
    assert "mynaemu.tools.terminal.client" not in _imports(TERMINAL / f"{module}.py")


def test_the_client_still_offers_every_name_it_had():
    # Moved names stay importable from the client, as every caller has them.
    assert client.InProcessConnection is connections.InProcessConnection
    assert client.PcscConnection is connections.PcscConnection
    assert client.list_readers is connections.list_readers
    assert client.TransportError is errors.TransportError and client.error_for is errors.error_for
    for name in ("CardError", "CardDataError", "PinIncorrect", "PinBlocked", "NotFound",
                 "SecurityStatusNotSatisfied"):
        assert getattr(client, name) is getattr(errors, name)
    for name in ("ber_header", "parse_basic4", "parse_my_number", "parse_card_info", "parse_token_label"):
        assert getattr(client, name) is getattr(parse, name)
    assert list(client.AIDS) == ["jpki", "kenhojo", "kenkaku", "juki", "common", "isd"]


# -- the client's parsers are the card's ------------------------------------------------------

@pytest.mark.parametrize("data", [
    bytes.fromhex("7F2182023300"), bytes.fromhex("FF2065"), bytes.fromhex("FF20810100"),
    bytes.fromhex("DF2108"), bytes.fromhex("3082052100"), bytes.fromhex("A1820109"),
])
def test_ber_header_is_the_card_tlv_header(data):
    assert parse.ber_header(data) == tlv.decode_header(data)


@pytest.mark.parametrize("data", [b"", bytes.fromhex("3080"), bytes.fromhex("FF"), bytes.fromhex("3085"),
                                  bytes.fromhex("308201")])
def test_ber_header_refuses_what_the_card_tlv_refuses(data):
    with pytest.raises(CardDataError):
        parse.ber_header(data)
    if data:
        with pytest.raises(tlv.TLVError):
            tlv.decode_header(data)


@pytest.mark.parametrize("address", ["東京都千代田区永田町一丁目", "北海道" + "あ" * 60])
def test_client_and_card_read_the_same_basic4(address):
    """Short and long outer length (§13.4): the client's reading agrees with the card's."""
    ef = kenhojo.encode_basic4(name="試験 花子", address=address, birth=_dt.date(1990, 4, 1), sex="2",
                               long_form=None)
    ef = kenhojo.with_filler(ef)
    card_side = kenhojo.parse_basic4(ef)
    client_side = parse.parse_basic4(ef)
    assert client_side == {"name": card_side["name"], "address": card_side["address"],
                           "birth": _dt.date(1990, 4, 1), "sex": card_side["sex"]}


def test_script_env_reads_the_ap_keys_with_the_card_tlv():
    from mynaemu.card.ids import KenhojoEF
    from mynaemu.tools.terminal.script_env import ef_data, persona_keys
    image, _ = build_persona("adult", seed=0)
    keys = persona_keys(image)
    assert set(keys) == {"auth", "sign", "kenhojo", "kenkaku"}
    ef7 = ef_data(image, "kenhojo", KenhojoEF.AP_PUBLIC_KEY)
    assert keys["kenhojo"].public_numbers() == kenhojo.parse_signed_public_key(ef7).public_numbers()


def test_no_hand_written_ber_parser_in_tools_terminal():
    # A BER length is decoded by card/tlv.py: no `& 0x7F` length arithmetic in the terminal.
    for path in TERMINAL.glob("*.py"):
        if path.name == "script_sm.py":
            continue          # builds SM data objects for scripts (§13.2), decodes no card file
        assert "& 0x7F" not in path.read_text(encoding="utf-8"), path.name


# -- literals -----------------------------------------------------------------------------------

_SW_NUMBER = re.compile(r"0x(6[0-9A-Fa-f]{3}|9000)\Z")
_AID_TEXT = re.compile(r"D392[0-9A-F]{12}|D3 92 [0-9A-F ]{20,}|A0000001510000", re.I)
SCANNED = [("tools/terminal", {"kiosk.py"}), ("tools/harness", set()), ("bench", set())]


def _literal_hits(path) -> list[str]:
    hits = []
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
    for tok in tokens:
        if tok.type == tokenize.NUMBER and _SW_NUMBER.match(tok.string):
            hits.append(f"{path.name}:{tok.start[0]}: {tok.string}")
        elif tok.type == tokenize.STRING:
            try:
                value = ast.literal_eval(tok.string)
            except (ValueError, SyntaxError):
                continue              # an f-string: text for people, not a value compared
            if isinstance(value, bytes) and (b"\x90\x00" in value or
                                             (len(value) == 2 and value[0] >> 4 == 6)):
                hits.append(f"{path.name}:{tok.start[0]}: {tok.string}")
            elif isinstance(value, str) and _AID_TEXT.search(value) and '"""' not in tok.string[:3]:
                hits.append(f"{path.name}:{tok.start[0]}: {tok.string}")
    return hits


@pytest.mark.parametrize("folder, skip", SCANNED)
def test_no_raw_status_word_or_aid_literals(folder, skip):
    hits = []
    for path in sorted((REPO / folder).glob("*.py")):
        if path.name not in skip:
            hits += _literal_hits(path)
    assert not hits, hits


def test_the_literal_scan_catches_what_it_looks_for(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('A = 0x6A82\nB = b"\\x90\\x00"\nC = bytes.fromhex("D392F000260100000001")\n'
                     'D = f"answered {1:04X}, expected 6700"\n', encoding="utf-8")
    assert [h.split(":")[1] for h in _literal_hits(probe)] == ["1", "2", "3"]


@pytest.mark.parametrize("folder, allowed", [("tools/terminal", set()), ("tools/harness", {"fuzz.py"}),
                                             ("card", set())])
def test_no_module_over_600_lines(folder, allowed):
    long = {p.relative_to(REPO).as_posix(): n for p in (REPO / folder).rglob("*.py")
            if p.name not in allowed and (n := len(p.read_text(encoding="utf-8").splitlines())) > 600}
    assert not long, long
