"""docs/rules-index.md resolves every rule id and spec section the repository cites.

Comments and docstrings cite rule ids of the project's rules source (VAL-7, FLOW-SUSP-3, M1 …) and
sections of its three source documents (card-interface.md "§4.2" / "spec §4.2", "rules.md §9.4",
"pcsc.md"). Users of the repository do not have those documents; docs/rules-index.md is where a
citation resolves. These tests scan every .py and .md file of the repository (not .venv, build,
.git) with the regexes below and fail, naming file:line, for

- a citation the index has no line for, or a malformed one (a rule id without its group, a
  section number the source does not have, a "rules.md open question");
- an index line nobody cites (except the SEC-* block: the rule ids the staff work cites, kept
  whole), so the index cannot rot into a copy of the sources.

Self-contained on purpose: it imports nothing from the project or the other tests.
"""
from __future__ import annotations

import collections
import functools
import os
import pathlib
import re
import sys

import pytest


def _root() -> pathlib.Path:
    here = pathlib.Path(__file__).resolve().parent
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "docs").is_dir():
            return folder
    raise RuntimeError("no repository root (pyproject.toml + docs/) above " + str(here))


ROOT = _root()
INDEX = ROOT / "docs" / "rules-index.md"
SKIP_DIRS = {".venv", "build", ".git", "dist", "__pycache__", ".pytest_cache", ".hypothesis", "node_modules"}
SELF = pathlib.Path(__file__).resolve()
NOT_SCANNED = (SELF, INDEX.resolve())   # the index and this file name every key on purpose

# --------------------------------------------------------------------------------------------
# citation regexes
# --------------------------------------------------------------------------------------------

# Rule-id groups of rules.md; FLOW has sub-groups (FLOW-PROXY-3). A list or range may follow the
# first number: ELIG-2/3/4, ELIG-2..4, FLOW-PROXY-3/6, "FLOW-PROXY-2, -3".
GROUPS = ("NUM", "DATA", "CARD", "AP", "ELIG", "VAL", "MOV", "ACT", "FLOW", "STATE", "FEE", "CVS",
          "JPKI", "SEC", "PIA", "LINK")
FLOW_SUBGROUPS = ("PROXY", "SUSP", "RENEW", "REISSUE", "ABOL")
RULE_RE = re.compile(
    r"(?<![\w-])(?P<group>(?:%s)|FLOW-(?:%s))-(?P<first>\d+)(?P<more>(?:/\d+|\.\.\d+|, -\d+)*)(?![\w])"
    % ("|".join(GROUPS), "|".join(FLOW_SUBGROUPS)))
# A FLOW sub-group written without FLOW (PROXY-2): malformed.
BARE_SUBGROUP_RE = re.compile(r"(?<![\w-])(?:%s)-\d+" % "|".join(FLOW_SUBGROUPS))
# rules.md §20.2 items M1..M10 ("M1", "M1/M9", "§20 M2").
M_RE = re.compile(r"(?<![\w.-])M(?P<n>\d{1,2})(?![\w.])")

# A section: "§4.2", "§3.1-§3.4", "§2.2–2.4", "§9-§10". Which document it belongs to is read off
# the line: the nearest document name before it (card-interface.md, rules.md, pcsc.md, "spec"
# = card-interface.md); a bare "§n" with none is card-interface.md, the card spec. A section right
# after an external standard (RFC 5280 §5.3.1, ISO/IEC 7816-3 (2006) §7.1, 民法 §143), and the ones
# chained to it by "," "/" "and", belong to that standard and are not indexed.
SECTION_RE = re.compile(r"§\s?(?P<a>\d+(?:\.\d+)*)(?:\s?[-–]\s?§?(?P<b>\d+(?:\.\d+)*))?")
DOC_RE = re.compile(r"card-interface\.md|rules\.md|pcsc\.md|\b[Ss]pec\b")
EXTERNAL_BEFORE_RE = re.compile(
    r"(?:RFC\s?\d+|ISO(?:/IEC)?\s[\d-]+(?:\s\(\d{4}\))?|X\.\d+|民法|FIPS\s[\d-]+|SP\s800-\d+)\s*$")
CHAIN_RE = re.compile(r"^(?:\s*(?:,|/|and|&)\s*)$")
# pcsc.md has unnumbered sections: cited bare ("pcsc.md"), by a quoted heading, or "pitfall N".
PCSC_RE = re.compile(r"pcsc\.md(?:'s)?(?:[,:]?\s*[\"“](?P<heading>[^\"”]+)[\"”]|\s*pitfall\s(?P<pitfall>\d+))?")
# Malformed document references: rules.md has gaps (§19), not open questions.
MALFORMED_RE = re.compile(r"rules\.md,? open question")

DOC_NAMES = {"card-interface.md": "card-interface.md", "rules.md": "rules.md", "pcsc.md": "pcsc.md",
             "spec": "card-interface.md", "Spec": "card-interface.md"}


def _expand(group: str, first: str, more: str) -> list[str]:
    numbers = [int(first)]
    for sep, num in re.findall(r"(/|\.\.|, -)(\d+)", more):
        n = int(num)
        if sep == "..":
            numbers.extend(range(numbers[-1] + 1, n + 1))
        else:
            numbers.append(n)
    return [f"{group}-{n}" for n in numbers]


def _section_range(a: str, b: str | None) -> list[str]:
    if not b:
        return [a]
    pa, pb = a.split("."), b.split(".")
    if len(pb) == 1 and len(pa) > 1:          # "§2.2–2.4" is written in full; "§13.1-3" is not used
        pb = pa[:-1] + pb
    if len(pa) == len(pb) and pa[:-1] == pb[:-1] and int(pa[-1]) <= int(pb[-1]):
        stem = pa[:-1]
        return [".".join(stem + [str(n)]) for n in range(int(pa[-1]), int(pb[-1]) + 1)]
    return [a, b]


def citations_in_line(line: str) -> list[str]:
    """Index keys cited by one line, in order ("VAL-7", "M1", "card-interface.md §4.2",
    "rules.md §9.4", "pcsc.md", "pcsc.md pitfalls", 'pcsc.md "the 40 ms stall"'), plus
    "!malformed: …" entries for citations that cannot resolve."""
    keys: list[str] = []
    for m in RULE_RE.finditer(line):
        keys.extend(_expand(m["group"], m["first"], m["more"]))
    for m in BARE_SUBGROUP_RE.finditer(line):
        keys.append(f"!malformed: {m.group(0)} (a FLOW sub-group needs its FLOW- prefix)")
    for m in M_RE.finditer(line):
        keys.append(f"M{int(m['n'])}")
    for m in MALFORMED_RE.finditer(line):
        keys.append(f"!malformed: {m.group(0)} (rules.md lists gaps in §19, open questions are card-interface.md §12)")
    docs = [(m.start(), m.group(0)) for m in DOC_RE.finditer(line)]
    prev_end, prev_external = None, False
    for m in SECTION_RE.finditer(line):
        before = line[:m.start()]
        if EXTERNAL_BEFORE_RE.search(before):
            external = True
        elif prev_external and CHAIN_RE.match(line[prev_end:m.start()]):
            external = True
        else:
            external = False
        prev_end, prev_external = m.end(), external
        if external:
            continue
        doc = "card-interface.md"
        for pos, name in docs:
            if pos < m.start():
                doc = DOC_NAMES[name]
        if doc == "pcsc.md":
            keys.append(f"!malformed: pcsc.md {m.group(0)} (pcsc.md has no numbered sections)")
            continue
        keys.extend(f"{doc} §{s}" for s in _section_range(m["a"], m["b"]))
    for m in PCSC_RE.finditer(line):
        if m["pitfall"]:
            keys.append(f"pcsc.md pitfall {int(m['pitfall'])}")
        elif m["heading"]:
            keys.append(f'pcsc.md "{m["heading"].strip().casefold()}"')
        else:
            keys.append("pcsc.md")
    return keys


def source_files() -> list[pathlib.Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        for name in sorted(filenames):
            path = pathlib.Path(dirpath) / name
            if path.suffix in (".py", ".md") and path.resolve() not in NOT_SCANNED:
                out.append(path)
    return out


@functools.lru_cache(maxsize=1)
def scan() -> dict[str, list[str]]:
    """Every cited key -> the file:line places citing it."""
    found: dict[str, list[str]] = collections.defaultdict(list)
    for path in source_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            for key in citations_in_line(line):
                found[key].append(f"{path.relative_to(ROOT)}:{number}")
    return dict(found)


# --------------------------------------------------------------------------------------------
# the index
# --------------------------------------------------------------------------------------------

# An index line: "- **KEY** text". KEY is a rule id (VAL-7, M1), "card-interface.md §4.2",
# "rules.md §9.4", 'pcsc.md "The 40 ms stall"' or "pcsc.md pitfall 4".
ENTRY_RE = re.compile(r"^- \*\*(?P<key>[^*]+)\*\*\s+(?P<text>\S.*)$")


def index_entries() -> dict[str, tuple[int, str]]:
    entries: dict[str, tuple[int, str]] = {}
    started = False                       # the preamble before the first "## " heading has no entries
    for number, line in enumerate(INDEX.read_text(encoding="utf-8").splitlines(), start=1):
        started = started or line.startswith("## ")
        m = ENTRY_RE.match(line) if started else None
        if not m:
            continue
        key = m["key"].strip()
        if key.startswith('pcsc.md "'):
            key = key.casefold()
        assert key not in entries, f"docs/rules-index.md:{number}: {key} is listed twice"
        entries[key] = (number, m["text"])
    return entries


def _resolves(key: str, entries: dict) -> bool:
    if key in entries:
        return True
    if key.startswith('pcsc.md "'):
        wanted = key[len('pcsc.md "'):-1].removeprefix("the ")
        return any(k.startswith('pcsc.md "') and wanted in k for k in entries)
    if key == "pcsc.md":
        return any(k.startswith("pcsc.md") for k in entries)
    return False


def test_index_exists_and_has_the_three_documents():
    entries = index_entries()
    assert any(re.fullmatch(r"[A-Z]+(?:-[A-Z]+)?-\d+", k) for k in entries)
    assert any(k.startswith("card-interface.md §") for k in entries)
    assert any(k.startswith("rules.md §") for k in entries)
    assert any(k.startswith("pcsc.md") for k in entries)
    for key, (number, text) in entries.items():
        assert len(text) >= 30, f"docs/rules-index.md:{number}: {key} says too little to resolve a citation"


def test_the_scan_reads_the_citation_forms_the_code_uses():
    # Pinned so that a change of regex that silently stops seeing a form fails here.
    assert citations_in_line("(ELIG-2/3/4) and FLOW-PROXY-3/6, VAL-1..3, PROXY-2, -3") == [
        "ELIG-2", "ELIG-3", "ELIG-4", "FLOW-PROXY-3", "FLOW-PROXY-6", "VAL-1", "VAL-2", "VAL-3",
        "!malformed: PROXY-2 (a FLOW sub-group needs its FLOW- prefix)"]
    assert citations_in_line("(ELIG-4, VAL-1, VAL-2, 000:7223)") == ["ELIG-4", "VAL-1", "VAL-2"]
    assert citations_in_line("rules.md §5 (ELIG-2..4), §9.4 and §20 M1/M9") == [
        "ELIG-2", "ELIG-3", "ELIG-4", "M1", "M9", "rules.md §5", "rules.md §9.4", "rules.md §20"]
    assert citations_in_line("spec §3.1-§3.4, RFC 5280 §5.3.1 and §5.2, then §4.2") == [
        "card-interface.md §3.1", "card-interface.md §3.2", "card-interface.md §3.3",
        "card-interface.md §3.4", "card-interface.md §4.2"]
    assert citations_in_line("ISO/IEC 7816-3 (2006) §7.1: and 民法 §143; bare §13.2") == ["card-interface.md §13.2"]
    assert citations_in_line('pcsc.md, "the 40 ms stall"; (pcsc.md pitfall 4) and pcsc.md') == [
        'pcsc.md "the 40 ms stall"', "pcsc.md pitfall 4", "pcsc.md"]
    assert citations_in_line("TEST-KEYREF-0001, SHA-256, RSA-2048, ID-1, MD5, M2M") == []


def test_every_citation_resolves_in_the_index():
    entries = index_entries()
    missing = [f"{place}: {key}" for key, places in sorted(scan().items())
               if not _resolves(key, entries) for place in places]
    assert not missing, ("citations docs/rules-index.md does not resolve (add a line to the index, "
                         "or fix the citation):\n" + "\n".join(missing))


def test_every_index_entry_is_cited():
    cited = scan()
    bare_pcsc = "pcsc.md" in cited
    unused = []
    for key, (number, _text) in sorted(index_entries().items(), key=lambda kv: kv[1][0]):
        if key.startswith("SEC-"):
            continue                      # kept whole: the staff work (issue 13) cites them
        if key.startswith("pcsc.md") and bare_pcsc:
            continue                      # a bare "pcsc.md" cites the whole (unnumbered) document
        if key in cited:
            continue
        if key.startswith('pcsc.md "') and any(k.startswith('pcsc.md "') and _resolves(k, {key: 0})
                                               for k in cited):
            continue
        unused.append(f"docs/rules-index.md:{number}: {key}")
    assert not unused, "index lines nothing cites (remove them):\n" + "\n".join(unused)


def test_the_sec_block_is_complete():
    # Issue 13 (staff) cites rules.md §14's SEC-1 .. SEC-26; all are indexed whether cited yet or not.
    entries = index_entries()
    assert [k for k in entries if k.startswith("SEC-")] == [f"SEC-{n}" for n in range(1, 27)]


PCSC_HEADINGS = ["install and start", "the vpcd protocol", "the 40 ms stall", "opensc's jpki driver",
                 "pitfalls, short"]


def test_the_pcsc_block_is_complete():
    # Bare "pcsc.md" citations cite the whole document, so all of it is indexed: its five headings
    # and its seven numbered pitfalls.
    keys = [k for k in index_entries() if k.startswith("pcsc.md")]
    assert keys == [f'pcsc.md "{h}"' for h in PCSC_HEADINGS] + [f"pcsc.md pitfall {n}" for n in range(1, 8)]


@pytest.mark.parametrize("key", ["VAL-7", "card-interface.md §4.2", "rules.md §20"])
def test_removing_an_index_line_is_noticed(key, tmp_path, monkeypatch):
    # The check above must fail when a cited line goes: rewrite the index without it and re-run.
    lines = INDEX.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith(f"- **{key}**")]
    assert len(kept) == len(lines) - 1, f"{key} is not exactly one line of the index"
    copy = tmp_path / "rules-index.md"
    copy.write_text("".join(kept), encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "INDEX", copy)
    with pytest.raises(AssertionError, match=re.escape(key)):
        test_every_citation_resolves_in_the_index()
