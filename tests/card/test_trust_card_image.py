"""Broken card images and unsafe writers (trust-boundaries issue, item 8, card-image part).

Every malformed image is a CardImageError: one line naming the file and what is wrong, exit 1
in the CLI, no traceback, the file never overwritten. The writers (write_file_atomic and the
card's save) refuse anything that is not a regular file or a new path, and create files 0600
whatever the umask.
"""
import copy
import json
import os
import socket
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

from mynaemu.card.core import Card
from mynaemu.card.image import MAX_DEPTH, CardImage, CardImageError, save_json_atomic
from mynaemu.card.safefile import UnsafeFile, json_depth, parse_json, read_regular, write_file_atomic
from mynaemu.issuance.personas import build_persona
from mynaemu.tools.cli import main

SELECT_J = "00A4040C0AD392F000260100000001"


@pytest.fixture(scope="module")
def good_doc():
    return build_persona("adult", seed=21)[0].to_json()


def _pin(doc, fid="0018"):
    for app in doc["applications"]:
        if app["name"] == "jpki":
            for ef in app["efs"]:
                if ef["fid"] == fid:
                    return ef
    raise KeyError(fid)


def _mutate(doc, change):
    doc = copy.deepcopy(doc)
    change(doc)
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def _set(path_keys, value):
    def change(doc):
        target = doc
        for key in path_keys[:-1]:
            target = target[key]
        target[path_keys[-1]] = value
    return change


def _pin_set(key, value):
    return lambda doc: _pin(doc).__setitem__(key, value)


# Each: what is wrong, how to break a valid image (a function of the document, or raw bytes).
BROKEN = {
    "options is a list": _set(["options"], [1, 2]),
    "get_data is a list": _set(["get_data"], ["0042"]),
    "meta is a string": _set(["meta"], "x"),
    "label is a number": _set(["label"], 5),
    "atr is a list": _set(["atr"], ["3B"]),
    "applications is an object": _set(["applications"], {"jpki": 1}),
    "an application is a string": lambda d: d["applications"].__setitem__(0, "jpki"),
    "efs is a string": lambda d: d["applications"][0].__setitem__("efs", "x"),
    "an EF is a number": lambda d: d["applications"][0]["efs"].__setitem__(0, 7),
    "aid is a number": lambda d: d["applications"][0].__setitem__("aid", 1234567890),
    "name is null": lambda d: d["applications"][0].__setitem__("name", None),
    "max_tries is a string": _pin_set("max_tries", "3"),
    "max_tries is true": _pin_set("max_tries", True),
    "remaining is a float": _pin_set("remaining", 1.5),
    "remaining is huge": _pin_set("remaining", 10 ** 30),
    "remaining is negative": _pin_set("remaining", -1),
    "PIN value is a number": _pin_set("value", 1234),
    "PIN value is not ASCII": _pin_set("value", "１２３４"),
    "pattern is a number": _pin_set("pattern", 12),
    "pattern does not compile": _pin_set("pattern", "([0-9]{4}"),
    "pattern nests deeply": _pin_set("pattern", "(" * 150 + ")" * 150),
    "pattern is too long": _pin_set("pattern", "[0-9]" * 100),
    "change is a list": _pin_set("change", ["iso"]),
    "fid is a number": _pin_set("fid", 24),
    "fid has an underscore": _pin_set("fid", "0_18"),
    "type is unknown": _pin_set("type", "pinn"),
    "type is missing": lambda d: _pin(d).pop("type"),
    "read rule is a number": lambda d: _pin(d, "000A").__setitem__("read", 5),
    "read rule is an object": lambda d: _pin(d, "000A").__setitem__("read", {"free": 1}),
    "data is a number": lambda d: _pin(d, "000A").__setitem__("data", 5),
    "data is not base64": lambda d: _pin(d, "000A").__setitem__("data", "!!!"),
    "ops is a string": lambda d: _pin(d, "0017").__setitem__("ops", "sign"),
    "ops holds a number": lambda d: _pin(d, "0017").__setitem__("ops", [1]),
    "default is a string": lambda d: _pin(d, "0017").__setitem__("default", "yes"),
    "key is a number": lambda d: _pin(d, "0017").__setitem__("key", 5),
    "an option has the wrong type": _set(["options", "prefix_select"], "no"),
    "an option is unknown": _set(["options", "turbo"], True),
    "get_data value is a number": _set(["get_data", "0042"], 5),
    "get_data key is bad": _set(["get_data", "xyz"], "00"),
    "NaN": lambda d: None,
    "Infinity": lambda d: None,
    "-Infinity": lambda d: None,
    "1e999": lambda d: None,
    "a 5000-digit integer": lambda d: None,
    "deep nesting": lambda d: None,
    "duplicate key": lambda d: None,
    "not UTF-8": lambda d: None,
    "not an object": lambda d: None,
}


def _raw(good_doc, what):
    text = json.dumps(good_doc, ensure_ascii=False)
    pin_value = '"remaining": 3'
    if what in ("NaN", "Infinity", "-Infinity", "1e999"):
        return text.replace(pin_value, f'"remaining": {what}', 1).encode()
    if what == "a 5000-digit integer":
        return text.replace(pin_value, '"remaining": ' + "9" * 5000, 1).encode()
    if what == "deep nesting":
        return text.replace('"meta": {', '"meta": {"x": ' + "[" * 100000 + "]" * 100000 + ", ", 1).encode()
    if what == "duplicate key":
        return text.replace(pin_value, '"remaining": 3, "remaining": 0', 1).encode()
    if what == "not UTF-8":
        return text.encode("utf-8").replace(b'"label"', b'"lab\xffel"', 1)
    if what == "not an object":
        return b"[1, 2, 3]"
    return _mutate(good_doc, BROKEN[what])


@pytest.mark.parametrize("what", list(BROKEN))
def test_malformed_image_is_one_line_card_image_error_and_never_overwritten(tmp_path, good_doc, what):
    assert '"remaining": 3' in json.dumps(good_doc)
    path = tmp_path / "broken.json"
    raw = _raw(good_doc, what)
    path.write_bytes(raw)
    with pytest.raises(CardImageError) as info:
        CardImage.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and len(message) < 600, message
    with pytest.raises(CardImageError):
        Card.from_file(path, wait=0)
    for args in (["card", "apdu", str(path), SELECT_J], ["card", "info", str(path)]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1, (what, result.output)
        assert result.output.startswith(f"mynaemu: {path}: ") and result.output.count("\n") == 1, result.output
        assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    assert path.read_bytes() == raw


def test_messages_say_what_is_wrong(tmp_path, good_doc):
    cases = {"max_tries is a string": "max_tries must be an integer",
             "pattern does not compile": "bad pattern",
             "NaN": "NaN is not a JSON number",
             "1e999": "out of range",
             "deep nesting": f"nested deeper than {MAX_DEPTH} levels",
             "duplicate key": "duplicate key 'remaining'",
             "type is missing": "missing field 'type'",
             "remaining is negative": "out of range"}
    for what, expected in cases.items():
        path = tmp_path / "b.json"
        path.write_bytes(_raw(good_doc, what))
        with pytest.raises(CardImageError, match=expected):
            CardImage.load(path)


def test_parse_json_bounds_depth_without_recursion_error():
    assert parse_json(b"[" * 32 + b"]" * 32, max_depth=32)
    with pytest.raises(ValueError, match="nested deeper"):
        parse_json(b"[" * 33 + b"]" * 33, max_depth=32)
    with pytest.raises(ValueError, match="nested deeper"):
        parse_json(b'{"a":' * 10 ** 6 + b"1" + b"}" * 10 ** 6)
    # brackets inside strings (escaped quotes too) are not nesting
    assert parse_json(json.dumps({"s": "[[[[\\\"{{{{" * 50}).encode(), max_depth=2)
    for raw in (b"[" * 10 ** 6, b"]" * 5 + b"[" * 10 ** 6, b'{"a":[' * 10 ** 5, b"[{" * 10 ** 5 + b"}]"):
        with pytest.raises(ValueError, match="nested deeper"):      # unbalanced: still no recursion
            parse_json(raw)


def _depth(value):
    if isinstance(value, list):
        return 1 + max([_depth(v) for v in value] or [0])
    if isinstance(value, dict):
        return 1 + max([_depth(v) for v in value.values()] or [0])
    return 0


TRICKY_TEXT = st.text(alphabet='[]{}"\\ab\n', max_size=8)
NESTED = st.recursive(st.one_of(st.none(), st.integers(), TRICKY_TEXT), lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(TRICKY_TEXT, inner, max_size=3)), max_leaves=30)


@settings(max_examples=500, deadline=None)
@given(NESTED)
def test_json_depth_is_the_true_depth_whatever_the_strings_hold(value):
    text = json.dumps(value)
    assert json_depth(text, 100) == _depth(value)
    assert json_depth(json.dumps(value, indent=1, ensure_ascii=False), 100) == _depth(value)


# -- property: any mutation of a valid image loads as a card or fails as CardImageError -------

JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2 ** 70, max_value=2 ** 70),
                        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                        st.sampled_from(["free", "never", "0018", "001C", "iso", "jicsap", "sign",
                                         "internal_auth", "binary", "record", "pin", "key", "[0-9]{4}",
                                         "(", "0A", "D392F000260100000001", "QUJD", "3B"]))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=8)


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from _paths(value, prefix + (i,))


@st.composite
def mutated_images(draw, doc):
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        where = draw(st.sampled_from(paths))
        parent = doc
        for key in where[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "wrap", "add"]))
        if action == "replace":
            parent[where[-1]] = draw(JSON_VALUES)
        elif action == "delete":
            del parent[where[-1]]
        elif action == "wrap":
            parent[where[-1]] = [parent[where[-1]]] if draw(st.booleans()) else {"x": parent[where[-1]]}
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["extra", "value", "remaining", "read", "use", "ops", "options"]))] = \
                draw(JSON_VALUES)
        else:
            parent.append(draw(JSON_VALUES))
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


_SMALL = None


def _small_doc():
    """The adult card without its large EFs (images, certificates): faster hypothesis rounds."""
    global _SMALL
    if _SMALL is None:
        doc = build_persona("adult", seed=22)[0].to_json()
        doc["applications"] = [a for a in doc["applications"] if a["name"] in ("jpki", "kenhojo")]
        for app in doc["applications"]:
            for ef in app["efs"]:
                if ef.get("type") == "binary" and len(ef["data"]) > 200:
                    ef["data"] = ef["data"][:200]
        CardImage.from_json(doc)
        _SMALL = doc
    return _SMALL


PROBES = [SELECT_J, "00A4020C020018", "00200080", "0020008004" + b"9999".hex(), "00A4020C02000A",
          "00B0000010", "00A4040C0AD3921000310001010408", "00CA004200", "00A4000C00"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_mutation_is_a_card_image_error_or_a_valid_card(tmp_path_factory, data):
    raw = data.draw(mutated_images(_small_doc()))
    path = tmp_path_factory.mktemp("mut") / "card.json"
    path.write_bytes(raw)
    try:
        image = CardImage.load(path)
    except CardImageError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
        assert path.read_bytes() == raw
        return
    # A valid card: it round-trips, saves and loads again, and answers every APDU with an SW.
    assert CardImage.from_json(json.loads(json.dumps(image.to_json()))).to_json() == image.to_json()
    with Card.from_file(path, wait=0) as card:
        card.power_on()
        for apdu in PROBES:
            answer = card.transmit(bytes.fromhex(apdu))
            assert len(answer) >= 2
    CardImage.load(path)


# -- writers ----------------------------------------------------------------------------------

def _non_files(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "inside").write_text("kept")
    sock_path = tmp_path / "sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    cases = {"a FIFO": fifo, "a directory": folder, "a socket": sock_path}
    if os.geteuid() == 0:
        dev = tmp_path / "full"
        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 7))     # a /dev/full twin, in tmp
        cases["a character device"] = dev
    return cases, sock


def test_writers_refuse_devices_fifos_directories_and_sockets(tmp_path):
    cases, sock = _non_files(tmp_path)
    try:
        for what, path in cases.items():
            before = os.lstat(path)
            for write in (lambda p: write_file_atomic(p, b"data"),
                          lambda p: write_file_atomic(p, b"data", single_writer=True),
                          lambda p: save_json_atomic(p, {"a": 1}),
                          lambda p: build_persona("adult", seed=23)[0].save(p)):
                with pytest.raises(UnsafeFile) as info:
                    write(path)
                assert str(info.value) == f"{path}: {what}, not a regular file; refusing to replace it"
                after = os.lstat(path)
                assert (after.st_mode, after.st_ino, after.st_rdev) == (before.st_mode, before.st_ino, before.st_rdev)
            assert not [p for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".lock"))]
        assert (cases["a directory"] / "inside").read_text() == "kept"
    finally:
        sock.close()


def test_card_create_onto_a_device_node_is_refused_and_the_node_kept(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    dev = tmp_path / "full"
    os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    result = CliRunner().invoke(main, ["card", "create", "--persona", "adult", "-o", str(dev), "--force"])
    assert result.exit_code == 1
    assert result.output == f"mynaemu: {dev}: a character device, not a regular file; refusing to replace it\n"
    assert stat.S_ISCHR(os.lstat(dev).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]     # no lock or temp file beside it


def test_writes_are_0600_whatever_the_umask_unless_published(tmp_path):
    old = os.umask(0)
    try:
        write_file_atomic(tmp_path / "a", b"x")
        build_persona("adult", seed=24)[0].save(tmp_path / "card.json")
        save_json_atomic(tmp_path / "b.json", {})
        write_file_atomic(tmp_path / "pub.pem", b"x", mode=0o644)
        (tmp_path / "wide").write_bytes(b"old")
        os.chmod(tmp_path / "wide", 0o666)
        write_file_atomic(tmp_path / "wide", b"new")              # a rewrite is 0600 too
    finally:
        os.umask(old)
    for name in ("a", "card.json", "b.json", "wide"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600, name
    assert stat.S_IMODE(os.stat(tmp_path / ".card.json.lock").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "pub.pem").st_mode) == 0o644
    old = os.umask(0o077)
    try:
        write_file_atomic(tmp_path / "pub2.pem", b"x", mode=0o644)    # an explicit mode wins over umask
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "pub2.pem").st_mode) == 0o644


def test_writer_follows_a_symlink_and_keeps_it(tmp_path):
    target = tmp_path / "real.pdf"
    target.write_bytes(b"old")
    link = tmp_path / "link.pdf"
    link.symlink_to(target)
    write_file_atomic(link, b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"
    dangling = tmp_path / "dangling.pdf"
    dangling.symlink_to(tmp_path / "new-target.pdf")
    write_file_atomic(dangling, b"fresh")
    assert dangling.is_symlink() and (tmp_path / "new-target.pdf").read_bytes() == b"fresh"


def test_a_stale_or_planted_temp_file_is_not_written_through(tmp_path):
    path = tmp_path / "card.json"
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    (tmp_path / ".card.json.tmp").symlink_to(victim)            # the fixed temp name, planted
    build_persona("adult", seed=25)[0].save(path)
    assert victim.read_bytes() == b"untouched" and CardImage.load(path)
    os.mkfifo(tmp_path / ".card.json.tmp")                         # a FIFO there cannot hang the save
    build_persona("adult", seed=25)[0].save(path)
    assert not (tmp_path / ".card.json.tmp").exists()


def test_read_regular_refuses_at_once_and_bounds_the_read(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UnsafeFile, match="a FIFO"):
        read_regular(fifo, limit=10)
    with pytest.raises(UnsafeFile, match="a directory"):
        read_regular(tmp_path, limit=10)
    with pytest.raises(UnsafeFile, match=r"too large \(11 bytes; the limit is 10 bytes\)"):
        (tmp_path / "f").write_bytes(b"x" * 11)
        read_regular(tmp_path / "f", limit=10)
    assert read_regular(tmp_path / "f", limit=11) == b"x" * 11
    with pytest.raises(UnsafeFile, match="a character device"):
        read_regular(Path("/dev/zero"), limit=10)
