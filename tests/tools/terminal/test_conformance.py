"""Conformance: replay the real clients' command sequences (vectors/transcripts, spec §10).

Every transcript runs against a fresh in-process card of its persona; each answer is checked
for its status word and response shape as the transcript states them (the format is in
vectors/transcripts/README.md). A mismatch names the file and line.
"""
from __future__ import annotations

import re
from pathlib import Path
from tests.support import REPO

import pytest

# One implementation, in the package: `mynaemu card script` runs the same code (tools/terminal/script.py).
from mynaemu.tools.terminal.script import (
    TranscriptError, evaluate, expand_hex, expand_int, parse_transcript, tokens,
)
from mynaemu.tools.terminal.script_targets import (
    _persona, basic4_len, ef_data as _ef_data, object_len as _object_len, replay,
)

TRANSCRIPTS = REPO / "vectors" / "transcripts"


# -- tests ----------------------------------------------------------------------------------

FILES = sorted(TRANSCRIPTS.glob("*.txt"))


def test_transcripts_exist_for_every_client_of_section_10():
    sources = " ".join(parse_transcript(p).headers.get("source", "") for p in FILES)
    for section in ("§10.1", "§10.2", "§10.3", "§10.4", "§10.5", "§10.6"):
        assert section in sources, f"no transcript cites {section}"
    titles = " ".join(parse_transcript(p).headers.get("title", "") for p in FILES).lower()
    for client in ("tret", "pymyna", "pyjpki", "gebo", "hpki", "myna-browser-extension", "myna-sign"):
        assert client in titles, f"no transcript for {client}"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_transcript(path):
    transcript = parse_transcript(path)
    image, info = _persona(transcript.persona)
    assert replay(transcript, image, info) > 0


def test_basic4_layout_of_the_persona_matches_the_spec_computation():
    # BASIC4_LEN is computed from the identity (§3.2); the personalised EF must agree.
    image, info = _persona("adult")
    assert _object_len(_ef_data(image, "kenhojo", 0x0002)) == basic4_len(info.identity)


SELF_TEST = """\
persona: adult
title: harness self-test
> 00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01
< 9000
> 00 A4 02 0C 02 00 18
< 9000
> 00 20 00 80
< {EXPECT}
"""


@pytest.mark.parametrize("expect, message", [
    ("63C2", "expected SW 63C2, got 63C3"),
    ("len=4 63C3", "expected 4 data bytes"),
    ("63Cx", None),
    ("sw=63C3", None),
])
def test_harness_reports_mismatches_with_file_and_line(expect, message):
    text = SELF_TEST.replace("{EXPECT}", expect)
    transcript = parse_transcript(Path("selftest.txt"), text)
    image, info = _persona("adult")
    if message is None:
        assert replay(transcript, image, info) == 3
        return
    with pytest.raises(TranscriptError) as err:
        replay(transcript, image, info)
    assert "selftest.txt:8: " in str(err.value) and "(answer to line 7)" in str(err.value)
    assert message in str(err.value)


@pytest.mark.parametrize("text, message", [
    ("persona: adult\n> 00A4\n", ":2: command without a '<'"),
    ("persona: adult\n< 9000\n", ":2: '<' without a command"),
    ("title: x\n> 00A4040C\n< 9000\n", "no 'persona:' header"),
    ("persona: adult\n@for X in 0..4\n> 00A4040C\n< 9000\n", ":2: @for without @end"),
    ("persona: adult\n@reset hot\n", ":2: @reset takes"),
])
def test_parser_rejects_malformed_transcripts(text, message):
    with pytest.raises(TranscriptError, match=re.escape(message)):
        parse_transcript(Path("bad.txt"), text)


def test_expressions_and_placeholders():
    env = {"PIN": "1234", "N": 300, "OFF": 256}
    assert expand_hex("00 20 00 80 {len(PIN):02X} {PIN}", env) == bytes.fromhex("002000800431323334")
    assert expand_hex("00B0{OFF:04X}{min(256, N - OFF) % 256:02X}", env) == bytes.fromhex("00B001002C")
    assert expand_int("{N - 4}", env) == 296
    assert tokens('len=7 data={"A" + " " * 2} 9000') == ["len=7", 'data={"A" + " " * 2}', "9000"]
    with pytest.raises(TranscriptError, match="needs a format"):
        expand_hex("{N}", env)
    with pytest.raises(TranscriptError, match="unknown variable"):
        expand_hex("{NOPE}", env)
    with pytest.raises(TranscriptError, match="unsupported"):
        evaluate("__import__('os')", env)
