"""`mynaemu card face FILE -o DIR` (toolkit item 8): the 券面 PNGs and the front/back pictures."""
import datetime as dt
import io
import json
import os
import stat

import pytest
from click.testing import CliRunner
from PIL import Image

from mynaemu.card.apps import kenkaku
from mynaemu.card.image import CardImage
from mynaemu.tools.cli import main
from mynaemu.tools.cli.face import CARD_H, CARD_W, TEST_RED, japanese_date, read_face

PNG = b"\x89PNG\r\n\x1a\n"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def cards(tmp_path_factory):
    d = tmp_path_factory.mktemp("cards")
    out = {}
    for persona in ("adult", "under15"):
        out[persona] = d / f"{persona}.json"
        assert run("card", "create", "--persona", persona, "-o", out[persona], "--seed", "4").exit_code == 0
    return out


def test_every_file_is_written_private_and_is_a_png(cards, tmp_path):
    out = tmp_path / "face"
    result = run("card", "face", cards["adult"], "-o", out, "--json")
    assert result.exit_code == 0, result.output
    files = json.loads(result.stdout)["files"]
    assert set(files) == {"name.png", "address.png", "security-code.png", "number.png", "photo.png",
                          "front.png", "back.png"}
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o700
    for path in files.values():
        assert open(path, "rb").read(8) == PNG and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    face = read_face(CardImage.load(cards["adult"]))
    assert open(files["name.png"], "rb").read() == face["name_image"]           # the 券面 bytes as stored
    assert open(files["number.png"], "rb").read() == face["number_image"]
    photo = Image.open(files["photo.png"])
    assert photo.size == Image.open(io.BytesIO(face["face_image"])).size        # the JP2, decoded


def test_front_and_back_are_card_sized_test_marked_and_show_this_card(cards, tmp_path):
    for persona in cards:
        assert run("card", "face", cards[persona], "-o", tmp_path / persona).exit_code == 0
    fronts = {p: Image.open(tmp_path / p / "front.png").convert("RGB") for p in cards}
    back = Image.open(tmp_path / "adult" / "back.png").convert("RGB")
    for img in (*fronts.values(), back):
        assert img.size == (CARD_W, CARD_H)
        assert img.getpixel((CARD_W - 260, 14)) == TEST_RED                   # the TEST band
    assert fronts["adult"].tobytes() != fronts["under15"].tobytes()
    # the photo area is the card's photo, not the background
    region = fronts["adult"].crop((640, 80, 830, 330))
    assert len(set(region.tobytes()[i:i + 3] for i in range(0, len(region.tobytes()), 3))) > 20


def test_japanese_dates():
    assert japanese_date(dt.date(1980, 12, 24)) == "昭和55年12月24日"
    assert japanese_date(dt.date(2019, 5, 1)) == "令和元年5月1日"
    assert japanese_date(dt.date(1989, 1, 8)) == "平成元年1月8日"


def test_no_overwrite_without_force_and_no_symlink(cards, tmp_path):
    out = tmp_path / "face"
    assert run("card", "face", cards["adult"], "-o", out).exit_code == 0
    before = (out / "front.png").read_bytes()
    result = run("card", "face", cards["under15"], "-o", out)
    assert result.exit_code == 1 and "exists" in result.stderr
    assert (out / "front.png").read_bytes() == before
    assert run("card", "face", cards["under15"], "-o", out, "--force").exit_code == 0
    assert (out / "front.png").read_bytes() != before
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (out / "back.png").unlink()
    (out / "back.png").symlink_to(victim)
    result = run("card", "face", cards["adult"], "-o", out, "--force")
    assert result.exit_code == 1 and "not a regular file" in result.stderr
    assert victim.read_text() == "keep"


def test_a_card_without_the_kenkaku_ap_is_one_line_exit_1(cards, tmp_path):
    image = CardImage.load(cards["adult"])
    image.applications = [a for a in image.applications if a.aid != kenkaku.AID]
    path = tmp_path / "nokenkaku.json"
    image.save(path)
    result = run("card", "face", path, "-o", tmp_path / "out")
    assert result.exit_code == 1 and "券面AP" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
