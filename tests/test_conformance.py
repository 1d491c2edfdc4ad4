"""Conformance: replay the real clients' command sequences (vectors/transcripts, spec §10).

Every transcript runs against a fresh in-process card of its persona; each answer is checked
for its status word and response shape as the transcript states them (the format is in
vectors/transcripts/README.md). A mismatch names the file and line.
"""
from __future__ import annotations

import ast
import copy
import dataclasses
import datetime as _dt
import functools
import operator
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mynaemu.card.apdu import Command
from mynaemu.card.core import Card
from mynaemu.issuance.identity import era_yymmdd
from mynaemu.tools.client import AIDS, InProcessConnection, ber_header

import sm_vectors

TRANSCRIPTS = Path(__file__).resolve().parent.parent / "vectors" / "transcripts"


class TranscriptError(Exception):
    """A transcript that cannot be read, or a card answer that does not match it."""


# -- expressions ----------------------------------------------------------------------------

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.BitAnd: operator.and_,
           ast.BitOr: operator.or_}
_FUNCS = {"min": min, "max": max, "len": len,
          # §13.2 SM vectors (tests/sm_vectors.py): bytes-valued helpers
          "sm86": sm_vectors.sm86, "unhex": bytes.fromhex, "b": lambda s: s.encode("utf-8")}


def evaluate(expr: str, env: dict):
    """A small Python subset: literals, variables, + - * // % & |, min/max/len."""
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as exc:
        raise TranscriptError(f"bad expression {expr!r}: {exc.msg}") from None

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, str)):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in env:
                raise TranscriptError(f"unknown variable {node.id} in {expr!r}")
            return env[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in _FUNCS and not node.keywords):
            return _FUNCS[node.func.id](*[ev(a) for a in node.args])
        raise TranscriptError(f"unsupported expression {ast.dump(node)[:60]} in {expr!r}")

    try:
        return ev(tree)
    except TypeError as exc:
        raise TranscriptError(f"{expr!r}: {exc}") from None


_FMT = re.compile(r"^0?[0-9]*[xXd]$")


def _split_placeholder(inner: str) -> tuple[str, str | None]:
    expr, sep, fmt = inner.rpartition(":")
    if sep and _FMT.match(fmt.strip()):
        return expr, fmt.strip()
    return inner, None


def _placeholders(text: str):
    """(start, end, inner) of every top-level {…} in text, quotes respected."""
    out, depth, start, quote = [], 0, None, None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in "\"'" and depth:
            quote = ch
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise TranscriptError(f"unbalanced '}}' in {text!r}")
            if depth == 0:
                out.append((start, i + 1, text[start + 1:i]))
    if depth or quote:
        raise TranscriptError(f"unbalanced placeholder in {text!r}")
    return out


def expand_hex(text: str, env: dict) -> bytes:
    """Hex with {expr} / {expr:fmt}: strings become their UTF-8 bytes, ints need a format."""
    parts, last = [], 0
    for start, end, inner in _placeholders(text):
        parts.append(text[last:start])
        expr, fmt = _split_placeholder(inner)
        value = evaluate(expr, env)
        if isinstance(value, str):
            if fmt:
                raise TranscriptError(f"{{{inner}}}: a string takes no format")
            parts.append(value.encode("utf-8").hex())
        elif isinstance(value, bytes):
            if fmt:
                raise TranscriptError(f"{{{inner}}}: bytes take no format")
            parts.append(value.hex())
        elif fmt:
            parts.append(format(value, fmt))
        else:
            raise TranscriptError(f"{{{inner}}}: an integer in hex needs a format such as :02X")
        last = end
    parts.append(text[last:])
    raw = re.sub(r"\s+", "", "".join(parts))
    if len(raw) % 2 or not re.fullmatch(r"[0-9A-Fa-f]*", raw):
        raise TranscriptError(f"not hex after expansion: {raw!r}")
    return bytes.fromhex(raw)


def expand_int(text: str, env: dict) -> int:
    text = text.strip()
    holders = _placeholders(text)
    if holders:
        if len(holders) != 1 or holders[0][0] != 0 or holders[0][1] != len(text):
            raise TranscriptError(f"a number is a literal or one {{expr}}: {text!r}")
        value = evaluate(holders[0][2], env)
    else:
        value = evaluate(text, env)
    if not isinstance(value, int):
        raise TranscriptError(f"{text!r} is not a number")
    return value


def tokens(text: str) -> list[str]:
    """Split on whitespace outside {…} and quotes."""
    out, cur, depth, quote = [], [], 0, None
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "\"'" and depth:
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch.isspace() and depth == 0:
            if cur:
                out.append("".join(cur))
                cur = []
            continue
        cur.append(ch)
    if cur:
        out.append("".join(cur))
    return out


# -- parsing --------------------------------------------------------------------------------

@dataclasses.dataclass
class Exchange:
    line: int
    command: str
    expect_line: int
    expect: str


@dataclasses.dataclass
class Reset:
    line: int
    warm: bool


@dataclasses.dataclass
class Loop:
    line: int
    var: str
    start: str
    end: str
    step: str
    body: list


@dataclasses.dataclass
class Transcript:
    path: Path
    headers: dict
    body: list

    @property
    def persona(self) -> str:
        return self.headers["persona"]


_COMMENT = re.compile(r"(^|\s)#(\s|$).*$")
_FOR = re.compile(r"^@for\s+([A-Za-z_]\w*)\s+in\s+(.+?)\.\.(.+?)(?:\s+step\s+(.+))?$")


def parse_transcript(path: Path, text: str | None = None) -> Transcript:
    text = path.read_text(encoding="utf-8") if text is None else text
    headers: dict = {}
    root: list = []
    stack = [(root, None)]
    pending = None  # the Exchange whose '<' is still missing

    def fail(n, msg):
        raise TranscriptError(f"{path.name}:{n}: {msg}")

    for n, raw in enumerate(text.splitlines(), 1):
        line = _COMMENT.sub("", raw).strip()
        if not line:
            continue
        if pending is not None and not line.startswith("<"):
            fail(pending.line, "command without a '<' expectation line")
        body = stack[-1][0]
        if line.startswith(">"):
            pending = Exchange(n, line[1:].strip(), 0, "")
            body.append(pending)
        elif line.startswith("<"):
            if pending is None:
                fail(n, "'<' without a command above it")
            pending.expect_line, pending.expect = n, line[1:].strip()
            pending = None
        elif line.startswith("@reset"):
            kind = line.split()[1:] or [""]
            if kind[0] not in ("warm", "cold"):
                fail(n, "@reset takes 'warm' or 'cold'")
            body.append(Reset(n, kind[0] == "warm"))
        elif line.startswith("@for"):
            m = _FOR.match(line)
            if not m:
                fail(n, "expected '@for VAR in START..END step N'")
            loop = Loop(n, m.group(1), m.group(2), m.group(3), m.group(4) or "1", [])
            body.append(loop)
            stack.append((loop.body, loop))
        elif line == "@end":
            if len(stack) == 1:
                fail(n, "@end without @for")
            stack.pop()
        elif ":" in line and not root and len(stack) == 1 and re.match(r"^[a-z]+:", line):
            key, _, value = line.partition(":")
            headers[key.strip()] = value.strip()
        else:
            fail(n, f"cannot read line: {raw.strip()!r}")
    if pending is not None:
        fail(pending.line, "command without a '<' expectation line")
    if len(stack) != 1:
        fail(stack[-1][1].line, "@for without @end")
    if "persona" not in headers:
        raise TranscriptError(f"{path.name}: no 'persona:' header")
    if not root:
        raise TranscriptError(f"{path.name}: no commands")
    return Transcript(path, headers, root)


# -- persona variables ----------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _persona(name: str):
    from mynaemu.issuance.personas import build_persona
    return build_persona(name, seed=0)


def _ef_data(image, app: str, fid: int) -> bytes:
    for application in image.applications:
        if application.aid == AIDS[app]:
            return application.efs[fid].data
    raise KeyError(app)


def _object_len(data: bytes) -> int:
    _, hlen, vlen = ber_header(data)
    return hlen + vlen


def _tlv_len(n: int) -> int:
    # DER length octets; the spec's example (FF 20 65, DF22 0F …) uses the short form (§3.2).
    return 1 if n < 0x80 else 2 if n < 0x100 else 3


def basic4_len(identity) -> int:
    """kenhojo EF 0002 object length from the identity by the §3.2 layout."""
    name = len(identity.name.encode("utf-8"))
    address = len(identity.address.encode("utf-8"))
    content = (2 + 1 + 8) + (2 + _tlv_len(name) + name) + (2 + _tlv_len(address) + address) \
        + (2 + 1 + 8) + (2 + 1 + 1)
    return 2 + _tlv_len(content) + content


def _wrong(pin: str) -> str:
    last = pin[-1]
    if last.isdigit():
        repl = str((int(last) + 1) % 10)
    elif last.isalpha():
        repl = "A" if last.upper() == "Z" else chr(ord(last.upper()) + 1)
    else:
        repl = "0"
    return pin[:-1] + repl


def persona_env(image, info) -> dict:
    ident = info.identity
    env = {
        "MY_NUMBER": ident.individual_number,
        "SHOGO_B": info.shogo_b,
        "BIRTH6": era_yymmdd(ident.birth),
        "BIRTH8": f"{ident.birth:%Y%m%d}",
        "SEX": ident.sex,
        "NAME": ident.name,
        "ADDRESS": ident.address,
        "MUNICIPALITY": ident.municipality_code,
        "CARD_EXPIRY8": f"{info.card_expiry:%Y%m%d}",
        "SECURITY_CODE": info.security_code,
        "BASIC4_LEN": basic4_len(ident),
    }
    for key, var in (("auth", "AUTH_PIN"), ("sign", "SIGN_PIN"), ("kenhojo", "KENHOJO_PIN"),
                     ("juki", "JUKI_PIN")):
        if info.pins.get(key):
            env[var] = info.pins[key]
            env["WRONG_" + var] = _wrong(info.pins[key])
    for var, fid in (("AUTH_CERT", 0x000A), ("SIGN_CERT", 0x0001), ("AUTH_CA", 0x000B),
                     ("SIGN_CA", 0x0002)):
        try:
            data = _ef_data(image, "jpki", fid)
        except (KeyError, AttributeError):
            continue
        env[var + "_EF"] = len(data)
        if data[:1] == b"\x30":
            env[var + "_LEN"] = _object_len(data)
    try:  # a smartphone persona carries the JPKI-AP only (§8, §13.3)
        env["BASIC4_EF"] = len(_ef_data(image, "kenhojo", 0x0002))
        env["KENKAKU_FACE_LEN"] = _object_len(_ef_data(image, "kenkaku", 0x0002))
        env.update(sm_vectors.env(_ef_data(image, "kenhojo", 0x0006)))
    except KeyError:
        pass
    return env


def _rsa_from_90_91(value: bytes) -> rsa.RSAPublicKey:
    """An RSA key written as 90 <e> 91 <n> TLVs (§3.2 CVC body, DF51, DF24)."""
    parts, pos = {}, 0
    while pos < len(value):
        tag, hlen, vlen = ber_header(value[pos:])
        parts[tag] = value[pos + hlen:pos + hlen + vlen]
        pos += hlen + vlen
    return rsa.RSAPublicNumbers(int.from_bytes(parts[0x90], "big"),
                                int.from_bytes(parts[0x91], "big")).public_key()


def _child(data: bytes, want: int) -> bytes:
    """The value of child TLV `want` inside the constructed object at the start of `data`."""
    _, hlen, vlen = ber_header(data)
    pos, end = hlen, hlen + vlen
    while pos < end:
        tag, h, v = ber_header(data[pos:end])
        if tag == want:
            return data[pos + h:pos + h + v]
        pos += h + v
    raise KeyError(f"{want:X}")


def persona_keys(image) -> dict:
    keys = {}
    for kind, fid in (("auth", 0x000A), ("sign", 0x0001)):
        try:
            keys[kind] = x509.load_der_x509_certificate(
                _ef_data(image, "jpki", fid)[:_object_len(_ef_data(image, "jpki", fid))]).public_key()
        except (KeyError, ValueError):
            pass
    try:  # a smartphone persona carries the JPKI-AP only (§8, §13.3)
        keys["kenhojo"] = _rsa_from_90_91(_child(_ef_data(image, "kenhojo", 0x0007), 0xDF51))
        keys["kenkaku"] = _rsa_from_90_91(_child(_ef_data(image, "kenkaku", 0x0002), 0xDF24))
    except KeyError:
        pass
    return keys


# -- replay ---------------------------------------------------------------------------------

_SW = re.compile(r"^(?:sw=)?([0-9A-Fa-fx]{4})$")


def check_response(where: str, expect: str, env: dict, apdu: bytes, resp: bytes, keys: dict) -> None:
    data, sw = resp[:-2], resp[-2:].hex().upper()
    got = f"{sw} with {len(data)} data bytes"
    toks = tokens(expect)
    if not toks:
        raise TranscriptError(f"{where}: empty expectation")
    last = toks[-1]
    checks = toks[:-1]
    if last != "any":
        m = _SW.match(last)
        if not m:
            raise TranscriptError(f"{where}: the last token must be a status word, got {last!r}")
        pattern = m.group(1).upper()
        if any(p != "X" and p != s for p, s in zip(pattern, sw)):
            raise TranscriptError(f"{where}: expected SW {pattern}, got {got}")
    if not checks and last != "any" and data:
        raise TranscriptError(f"{where}: expected no data, got {got}: {data[:16].hex().upper()}…")
    for check in checks:
        key, sep, value = check.partition("=")
        if check == "any":
            continue
        if not sep:
            raise TranscriptError(f"{where}: cannot read check {check!r}")
        if key == "len":
            n = expand_int(value, env)
            if len(data) != n:
                raise TranscriptError(f"{where}: expected {n} data bytes, got {got}")
        elif key == "min":
            n = expand_int(value, env)
            if len(data) < n:
                raise TranscriptError(f"{where}: expected at least {n} data bytes, got {got}")
        elif key in ("data", "prefix", "suffix", "notprefix"):
            want = expand_hex(value, env)
            ok = {"data": data == want, "prefix": data.startswith(want),
                  "suffix": data.endswith(want), "notprefix": not data.startswith(want)}[key]
            if not ok:
                raise TranscriptError(f"{where}: expected {key} {want.hex().upper()}, got {got}: "
                                      f"{data[:40].hex().upper()}{'…' if len(data) > 40 else ''}")
        elif key in ("smdata", "smprefix"):
            # smdata=N:HEX / smprefix=N:HEX: the answer is 86 L 01 ‖ C of message N (§13.2)
            m = re.match(r"^(\d+):(.*)$", value)
            if not m:
                raise TranscriptError(f"{where}: {key} takes N:HEX")
            try:
                plain = sm_vectors.open86(int(m.group(1)), data)
            except ValueError as exc:
                raise TranscriptError(f"{where}: not an SM answer to message {m.group(1)}: {exc}") from None
            want = expand_hex(m.group(2), env)
            if not (plain == want if key == "smdata" else plain.startswith(want)):
                raise TranscriptError(f"{where}: expected {key} {want.hex().upper()}, got "
                                      f"{plain[:40].hex().upper()}")
        elif key == "pkcs1":
            if value not in keys:
                raise TranscriptError(f"{where}: the persona has no {value!r} public key")
            signed = Command.parse(apdu).data
            try:
                recovered = keys[value].recover_data_from_signature(data, padding.PKCS1v15(), None)
            except (InvalidSignature, ValueError):
                raise TranscriptError(f"{where}: not a PKCS#1 v1.5 signature under the {value} key") from None
            if recovered != signed:
                raise TranscriptError(f"{where}: the signature covers {recovered.hex().upper()}, "
                                      f"not the command data")
        else:
            raise TranscriptError(f"{where}: unknown check {key!r}")


def replay(transcript: Transcript, image, info) -> int:
    """Run a transcript against a fresh card; return the number of exchanges."""
    env = persona_env(image, info)
    keys = persona_keys(image)
    conn = InProcessConnection(Card(copy.deepcopy(image)))
    name = transcript.path.name
    count = 0

    def run(body, env):
        nonlocal count
        for step in body:
            if isinstance(step, Reset):
                conn.reset(warm=step.warm)
            elif isinstance(step, Loop):
                where = f"{name}:{step.line}"
                try:
                    start, end, stride = (expand_int(x, env) for x in (step.start, step.end, step.step))
                except TranscriptError as exc:
                    raise TranscriptError(f"{where}: {exc}") from None
                if stride <= 0:
                    raise TranscriptError(f"{where}: step must be positive")
                for value in range(start, end, stride):
                    run(step.body, {**env, step.var: value})
            else:
                where = f"{name}:{step.line}"
                try:
                    apdu = expand_hex(step.command, env)
                except TranscriptError as exc:
                    raise TranscriptError(f"{where}: {exc}") from None
                resp = conn.transmit(apdu)
                count += 1
                check_response(f"{name}:{step.expect_line} (answer to line {step.line})",
                               step.expect, env, apdu, resp, keys)

    try:
        run(transcript.body, env)
    finally:
        conn.close()
    return count


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
    assert "selftest.txt:8 (answer to line 7)" in str(err.value)
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
