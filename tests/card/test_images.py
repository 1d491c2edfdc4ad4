"""Synthetic card images (mynaemu.card.images): formats, sizes and determinism (spec §3.3)."""
import io

import pytest
from PIL import Image

from mynaemu.card import images


def _open(data):
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_number_image_is_72x12_one_bit_png():
    data = images.number_png("123456789018")
    assert images.is_png(data)
    img = _open(data)
    assert img.format == "PNG" and img.mode == "1" and img.size == (72, 12)


def test_security_code_image_is_24x12():
    img = _open(images.security_code_png("2285"))
    assert img.mode == "1" and img.size == (24, 12)


def test_digits_are_drawn_from_the_bitmap_font():
    img = _open(images.digits_png("0123456789")).convert("L")
    for i, d in enumerate("0123456789"):
        for row, bits in enumerate(images._DIGITS_5X7[d]):
            for col, bit in enumerate(bits):
                ink = img.getpixel((i * 6 + col, 2 + row)) == 0
                assert ink == (bit == "#"), (d, row, col)
        # the spacing column stays blank
        assert all(img.getpixel((i * 6 + 5, y)) == 255 for y in range(12))


@pytest.mark.parametrize("bad", ["12345678901", "1234567890123", "12345678901a", ""])
def test_number_image_refuses_bad_input(bad):
    with pytest.raises(images.ImageInputError):
        images.number_png(bad)


def test_security_code_refuses_bad_input():
    with pytest.raises(images.ImageInputError):
        images.security_code_png("228")
    with pytest.raises(images.ImageInputError):
        images.security_code_png("22a5")


def test_fallback_glyphs_render_japanese_without_a_font():
    a = images.name_png("黒桐　幹也", font_path=None)
    b = images.name_png("黒桐　幹也", font_path=None)
    c = images.name_png("白桐　幹也", font_path=None)
    img = _open(a)
    assert img.mode == "1" and img.size == (5 * images.NAME_HEIGHT, images.NAME_HEIGHT)
    assert a == b and a != c
    # U+3000 (the family/given separator) leaves its cell blank; other cells have ink.
    grey = img.convert("L")
    h = images.NAME_HEIGHT
    cell_ink = [sum(grey.getpixel((x, y)) == 0 for x in range(i * h, (i + 1) * h) for y in range(h))
                for i in range(5)]
    assert cell_ink[2] == 0 and all(cell_ink[i] > 0 for i in (0, 1, 3, 4))


def test_address_wraps_into_lines():
    address = "東京都清瀬市中里１丁目２番地３　サンプル荘４０５号室"
    img = _open(images.address_png(address, font_path=None))
    lines = -(-len(address) // images.ADDRESS_LINE_CHARS)
    assert img.mode == "1" and img.height == lines * images.ADDRESS_LINE_HEIGHT


def test_auto_font_choice_renders_and_is_deterministic():
    path = images.cjk_font_path()
    assert path is None or path.endswith((".ttf", ".ttc", ".otf"))
    a = images.name_png("黒桐　幹也")
    assert a == images.name_png("黒桐　幹也")
    assert _open(a).mode == "1"


def test_text_png_refuses_empty_text():
    with pytest.raises(images.ImageInputError):
        images.text_png("", line_height=20)
    with pytest.raises(images.ImageInputError):
        images.text_png("x", line_height=4)


def test_face_is_greyscale_jp2_deterministic_per_seed():
    a = images.face_jp2(7)
    assert images.is_jp2(a)
    assert a == images.face_jp2(7)
    assert a != images.face_jp2(8)
    img = _open(a)
    assert img.format == "JPEG2000" and img.mode == "L" and img.size == images.FACE_SIZE
    assert 300 < len(a) < 8000
    # a face, not a blank: the picture has dark (hair/eyes) and light (background) regions
    lo, hi = img.getextrema()
    assert lo < 80 and hi > 180


def test_face_refuses_bad_parameters():
    with pytest.raises(images.ImageInputError):
        images.face_jp2(1, size=(10, 10))
    with pytest.raises(images.ImageInputError):
        images.face_jp2(1, rate=0.5)
