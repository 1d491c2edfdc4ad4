"""Card scripts: the transcript format of vectors/transcripts/README.md, parsed and run.

One implementation for `mynaemu card script`, the conformance tests (tests/test_conformance.py)
and recorded sessions (tools/terminal/record.py). A script is a list of command APDUs with expected
answers (status word patterns, data checks), `@reset warm|cold` and `@for` loops, with `{expr}`
placeholders whose variables come from the card (tools/terminal/script_targets.py): PINs, 照合番号,
certificate lengths.

`run_script(transcript, conn, env, keys)` sends every command through any connection with
`transmit(bytes) -> bytes` and `reset(warm=...)` (in-process or PC/SC) and raises
TranscriptError with `FILE:LINE: expected …, got …` at the first answer that does not match.
"""
from __future__ import annotations

import ast
import dataclasses
import operator
import re
from pathlib import Path
from typing import Callable, Optional

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import padding

from mynaemu.card.apdu import Command
from mynaemu.tools.terminal import script_sm


class TranscriptError(Exception):
    """A transcript that cannot be read, or a card answer that does not match it."""


# -- expressions ----------------------------------------------------------------------------

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.BitAnd: operator.and_,
           ast.BitOr: operator.or_}
_FUNCS = {"min": min, "max": max, "len": len,
          # §13.2 SM vectors (tools/terminal/script_sm.py): bytes-valued helpers
          "sm86": script_sm.sm86, "unhex": bytes.fromhex, "b": lambda s: s.encode("utf-8")}


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
    def persona(self) -> str | None:
        return self.headers.get("persona")


_COMMENT = re.compile(r"(^|\s)#(\s|$).*$")
_FOR = re.compile(r"^@for\s+([A-Za-z_]\w*)\s+in\s+(.+?)\.\.(.+?)(?:\s+step\s+(.+))?$")


def parse_transcript(path: Path, text: str | None = None, *, require_persona: bool = True) -> Transcript:
    """Read a script; `require_persona=False` when the card comes from elsewhere (--card, --reader)."""
    path = Path(path)
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
    if require_persona and "persona" not in headers:
        raise TranscriptError(f"{path.name}: no 'persona:' header")
    if not root:
        raise TranscriptError(f"{path.name}: no commands")
    return Transcript(path, headers, root)


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
                plain = script_sm.open86(int(m.group(1)), data)
            except ValueError as exc:
                raise TranscriptError(f"{where}: not an SM answer to message {m.group(1)}: {exc}") from None
            want = expand_hex(m.group(2), env)
            if not (plain == want if key == "smdata" else plain.startswith(want)):
                raise TranscriptError(f"{where}: expected {key} {want.hex().upper()}, got "
                                      f"{plain[:40].hex().upper()}")
        elif key == "pkcs1":
            if value not in keys:
                raise TranscriptError(f"{where}: no {value!r} public key is known for this card")
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




@dataclasses.dataclass
class Step:
    """One exchange as it ran: where it is in the script, what was sent, what came back."""

    line: int
    command: bytes
    response: bytes


def run_script(transcript: Transcript, conn, env: dict, keys: dict,
               on_exchange: Optional[Callable[[Step], None]] = None) -> int:
    """Run a script through `conn`; return the number of exchanges. TranscriptError on mismatch."""
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
                if on_exchange is not None:
                    on_exchange(Step(step.line, apdu, resp))
                try:   # FILE:LINE: expected …, got … — the line of the expectation, then its command's
                    check_response(f"{name}:{step.expect_line}", step.expect, env, apdu, resp, keys)
                except TranscriptError as exc:
                    raise TranscriptError(f"{exc} (answer to line {step.line})") from None

    run(transcript.body, env)
    return count
