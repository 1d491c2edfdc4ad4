"""Synthetic images for the 券面 APs: 1-bit PNGs of text and a greyscale JPEG 2000 face photo.

The card face EF (kenkaku 0002) carries the name, address and security code as 1-bit
greyscale PNG and the face photo as JPEG 2000 in a JP2 container; EF 0005 carries the
individual number as a 1-bit PNG, 72x12 on the surveyed card, and the security code is
24x12 (spec §3.3 "Image formats"). Every image here is synthetic and deterministic: the same
input gives the same bytes, so card images can be rebuilt and compared.

Japanese text is drawn with a CJK font when the system has one (fonts-ipafont-gothic,
fonts-noto-cjk, or whatever `fc-list :lang=ja` reports). Without one, each character becomes
a deterministic block pattern derived from its code point, so rendering never fails; the
picture is then only a stand-in, which is acceptable because no client OCRs these images.
Digits always use the built-in 5x7 bitmap font so the number and security-code images have
the exact card sizes whatever fonts are installed.
"""
from __future__ import annotations

import functools
import hashlib
import io
import os
import random
import shutil
import subprocess

from PIL import Image, ImageDraw, ImageFont

from mynaemu.card.limits import LimitError, check_address

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JP2 signature box (ISO/IEC 15444-1 I.5.1): length 12, type 'jP  ', content 0D0A870A.
JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"

# Sizes from spec §3.3: rendered 個人番号 72x12 (12 digits), security code 24x12 (4 digits).
DIGIT_CELL = (6, 12)
NAME_HEIGHT = 24
ADDRESS_LINE_HEIGHT = 20
ADDRESS_LINE_CHARS = 16
FACE_SIZE = (120, 150)

_AUTO = "auto"

# Paths Debian/Ubuntu packages install CJK fonts to; checked before asking fontconfig.
_CJK_FONT_PATHS = (
    "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf",
    "/usr/share/fonts/truetype/fonts-japanese-gothic.ttf",
    "/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/vlgothic/VL-Gothic-Regular.ttf",
    "/usr/share/fonts/truetype/takao-gothic/TakaoGothic.ttf",
)

# 5x7 digits, one string of 7 rows per digit ('#' = ink).
_DIGITS_5X7 = {
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
}


class ImageInputError(ValueError):
    """Text or parameters an image cannot be made from."""


@functools.lru_cache(maxsize=1)
def cjk_font_path() -> str | None:
    """A font file able to draw Japanese, or None when the system has none."""
    for path in _CJK_FONT_PATHS:
        if os.path.isfile(path):
            return path
    if shutil.which("fc-list"):
        try:
            out = subprocess.run(["fc-list", ":lang=ja", "file"], capture_output=True,
                                 text=True, timeout=10, check=False).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        # fc-list prints "path: " per font; sort so the choice is stable across runs.
        paths = sorted(line.split(":")[0].strip() for line in out.splitlines() if line.strip())
        for path in paths:
            if os.path.isfile(path):
                return path
    return None


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _digit_of(ch: str) -> str | None:
    if "0" <= ch <= "9":
        return ch
    if "０" <= ch <= "９":  # full-width digits, as in card addresses (spec §3.2)
        return chr(ord(ch) - ord("０") + ord("0"))
    return None


def _draw_digit(draw: ImageDraw.ImageDraw, digit: str, x: int, y: int, scale: int = 1) -> None:
    for row, bits in enumerate(_DIGITS_5X7[digit]):
        for col, bit in enumerate(bits):
            if bit == "#":
                draw.rectangle((x + col * scale, y + row * scale,
                                x + (col + 1) * scale - 1, y + (row + 1) * scale - 1), fill=0)


def _draw_pattern_glyph(draw: ImageDraw.ImageDraw, ch: str, x: int, size: int, y: int = 0) -> None:
    """A stand-in glyph: a 6x6 block pattern from SHA-256 of the character (no font needed)."""
    if ch.isspace():
        return
    digit = _digit_of(ch)
    scale = max(1, (size - 2) // 8)
    if digit is not None:
        _draw_digit(draw, digit, x + (size - 5 * scale) // 2, y + (size - 7 * scale) // 2, scale)
        return
    bits = int.from_bytes(hashlib.sha256(ch.encode("utf-8")).digest()[:5], "big")
    cell = max(1, (size - 2) // 6)
    ox = x + (size - 6 * cell) // 2
    oy = y + (size - 6 * cell) // 2
    for i in range(36):
        if bits >> i & 1:
            r, c = divmod(i, 6)
            draw.rectangle((ox + c * cell, oy + r * cell,
                            ox + (c + 1) * cell - 1, oy + (r + 1) * cell - 1), fill=0)


def _render_line(text: str, height: int, font_path: str | None) -> Image.Image:
    """One line of text as a mode-'1' image `height` pixels high (white ground, black ink)."""
    if font_path is not None:
        font = ImageFont.truetype(font_path, size=max(8, height - 4))
        left, top, right, bottom = font.getbbox(text)
        width = max(1, right - left + 4)
        grey = Image.new("L", (width, height), 255)
        ImageDraw.Draw(grey).text((2 - left, (height - (bottom - top)) // 2 - top), text,
                                  font=font, fill=0)
        # Threshold rather than dither: the card images are plain 1-bit text.
        return grey.point(lambda v: 255 if v >= 128 else 0, mode="1")
    img = Image.new("1", (max(1, height * len(text)), height), 1)
    draw = ImageDraw.Draw(img)
    for i, ch in enumerate(text):
        _draw_pattern_glyph(draw, ch, i * height, height)
    return img


def _resolve_font(font_path):
    return cjk_font_path() if font_path == _AUTO else font_path


def text_png(text: str, *, line_height: int, chars_per_line: int | None = None,
             font_path: str | None = _AUTO) -> bytes:
    """Text as a 1-bit PNG, wrapped every `chars_per_line` characters.

    font_path: "auto" picks a CJK font if installed, None forces the built-in stand-in glyphs,
    or a path to a font file.
    """
    if not isinstance(text, str) or not text:
        raise ImageInputError("text to render must be a non-empty string")
    if not 8 <= line_height <= 256:
        raise ImageInputError(f"line height {line_height} out of range 8..256")
    if chars_per_line is not None and chars_per_line < 1:
        raise ImageInputError("chars_per_line must be at least 1")
    font = _resolve_font(font_path)
    step = chars_per_line or len(text)
    return _lines_png([text[i:i + step] for i in range(0, len(text), step)], line_height, font)


def _lines_png(lines: list[str], line_height: int, font) -> bytes:
    rendered = [_render_line(line, line_height, font) for line in lines]
    width = max(img.width for img in rendered)
    out = Image.new("1", (width, line_height * len(rendered)), 1)
    for i, img in enumerate(rendered):
        out.paste(img, (0, i * line_height))
    return _png(out)


def name_png(name: str, *, font_path: str | None = _AUTO) -> bytes:
    """氏名 image for kenkaku DF25 (spec §3.3)."""
    return text_png(name, line_height=NAME_HEIGHT, font_path=font_path)


# Address wrapping (spec §13.4: long addresses over several lines). A line breaks only between
# units a reader keeps together: a number with its 丁目/番地/番/号/号室/階/条 unit, a katakana or
# Latin word; a space is a preferred break and is not drawn at a line's start or end.
_ADDRESS_UNITS = ("丁目", "番地", "番町", "号室", "号棟", "番", "号", "階", "条", "棟", "区")
_DIGITS = "0123456789０１２３４５６７８９"
_NUMBER_JOIN = "－-ー‐の"  # ３－４, １２の３: joins two numbers into one unit


def _address_tokens(text: str) -> list[str]:
    out, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        j = i + 1
        if ch in _DIGITS:
            while True:  # number, unit, and the next number-unit pair that follows directly (１番２号)
                while j < n and (text[j] in _DIGITS or (text[j] in _NUMBER_JOIN and j + 1 < n
                                                        and text[j + 1] in _DIGITS)):
                    j += 1
                unit = next((u for u in _ADDRESS_UNITS if text.startswith(u, j)), None)
                if unit is None:
                    break
                j += len(unit)
                if not (j < n and text[j] in _DIGITS):
                    break
                j += 1
        elif "ァ" <= ch <= "ヺ" or ch == "ー":
            while j < n and ("ァ" <= text[j] <= "ヺ" or text[j] == "ー"):
                j += 1
        elif ch.isascii() and ch.isalpha() or "Ａ" <= ch <= "Ｚ" or "ａ" <= ch <= "ｚ":
            while j < n and (text[j].isascii() and text[j].isalpha()
                             or "Ａ" <= text[j] <= "Ｚ" or "ａ" <= text[j] <= "ｚ"):
                j += 1
        out.append(text[i:j])
        i = j
    return out


def wrap_address(address: str, chars_per_line: int = ADDRESS_LINE_CHARS) -> list[str]:
    """The lines the address image draws: at most chars_per_line characters each, broken
    between units (a token longer than a line is cut), spaces dropped at the break."""
    if chars_per_line < 1:
        raise ImageInputError("chars_per_line must be at least 1")
    lines, cur = [], ""
    for tok in _address_tokens(address):
        if tok.isspace():
            if cur and len(cur) + 1 <= chars_per_line:
                cur += tok
            elif cur:
                lines.append(cur.rstrip())
                cur = ""
            continue
        if len(cur) + len(tok) > chars_per_line and cur.strip():
            # Prefer the last space of the line as the break when it leaves the line half full.
            cut = max(cur.rfind("\u3000"), cur.rfind(" "))
            if cut >= chars_per_line // 2 and len(cur) - cut - 1 + len(tok) <= chars_per_line:
                lines.append(cur[:cut].rstrip())
                cur = cur[cut + 1:]
            else:
                lines.append(cur.rstrip())
                cur = ""
        while len(tok) > chars_per_line:
            lines.append(tok[:chars_per_line])
            tok = tok[chars_per_line:]
        cur += tok
    if cur.strip():
        lines.append(cur.rstrip())
    return lines


def address_png(address: str, *, font_path: str | None = _AUTO) -> bytes:
    """住所 image for kenkaku DF26, wrapped over as many lines as it needs (spec §3.3, §13.4).

    Refuses an address beyond the card-side limit (card/limits.py ADDRESS_MAX_CHARS)."""
    if not isinstance(address, str) or not address.strip():
        raise ImageInputError("text to render must be a non-empty string")
    try:
        check_address(address)
    except LimitError as exc:
        raise ImageInputError(str(exc)) from None
    return _lines_png(wrap_address(address), ADDRESS_LINE_HEIGHT, _resolve_font(font_path))


def digits_png(digits: str) -> bytes:
    """ASCII digits in 6x12 cells with the built-in bitmap font, as a 1-bit PNG."""
    if not digits or not digits.isascii() or not digits.isdigit():
        raise ImageInputError("digits_png needs a non-empty string of ASCII digits")
    cw, ch = DIGIT_CELL
    img = Image.new("1", (cw * len(digits), ch), 1)
    draw = ImageDraw.Draw(img)
    for i, d in enumerate(digits):
        _draw_digit(draw, d, i * cw, (ch - 7) // 2)
    return _png(img)


def number_png(individual_number: str) -> bytes:
    """Rendered 個人番号 for kenkaku EF 0005 DF41: 12 digits, 72x12 (spec §3.3)."""
    if len(individual_number) != 12:
        raise ImageInputError("the individual number image needs exactly 12 digits")
    return digits_png(individual_number)


def security_code_png(code: str) -> bytes:
    """Security-code image for kenkaku DF2A: 4 digits, 24x12 (spec §3.3)."""
    if len(code) != 4:
        raise ImageInputError("the security code image needs exactly 4 digits")
    return digits_png(code)


def face_jp2(seed: int, *, size: tuple[int, int] = FACE_SIZE, rate: float = 12.0) -> bytes:
    """A synthetic greyscale face photo, JPEG 2000 in a JP2 container, same bytes per seed.

    rate is the JPEG 2000 compression ratio (higher = smaller); the default keeps the photo
    at a few KB, like the size class of the real card's photo.
    """
    w, h = size
    if not (48 <= w <= 400 and 48 <= h <= 400):
        raise ImageInputError(f"face size {size} out of range 48..400")
    if rate < 1:
        raise ImageInputError("compression rate must be >= 1")
    rnd = random.Random(f"mynaemu-face/{seed}")
    bg = rnd.randint(190, 235)
    skin = rnd.randint(150, 200)
    hair = rnd.randint(20, 90)
    cloth = rnd.randint(40, 120)
    img = Image.new("L", (w, h), bg)
    d = ImageDraw.Draw(img)
    cx = w // 2 + rnd.randint(-w // 20, w // 20)
    head_w = int(w * rnd.uniform(0.42, 0.52))
    head_h = int(h * rnd.uniform(0.44, 0.52))
    top = int(h * rnd.uniform(0.12, 0.18))
    head = (cx - head_w // 2, top, cx + head_w // 2, top + head_h)
    # shoulders and neck
    d.ellipse((cx - int(w * 0.48), int(h * 0.80), cx + int(w * 0.48), int(h * 1.25)), fill=cloth)
    d.rectangle((cx - head_w // 6, head[3] - head_h // 10, cx + head_w // 6, int(h * 0.86)), fill=skin - 12)
    # hair behind the head, then the face
    style = rnd.randint(0, 2)
    hair_box = (head[0] - w // 30, head[1] - h // 25, head[2] + w // 30,
                head[1] + int(head_h * (0.55 if style == 0 else 0.85 if style == 1 else 0.45)))
    d.ellipse(hair_box, fill=hair)
    d.ellipse(head, fill=skin)
    d.chord((head[0], head[1] - 2, head[2], head[1] + int(head_h * rnd.uniform(0.45, 0.6))),
            180, 360, fill=hair)
    # eyes and brows
    eye_y = head[1] + int(head_h * rnd.uniform(0.45, 0.52))
    eye_dx = int(head_w * rnd.uniform(0.18, 0.24))
    er = max(2, head_w // 16)
    for sx in (-1, 1):
        ex = cx + sx * eye_dx
        d.ellipse((ex - er * 2, eye_y - er, ex + er * 2, eye_y + er), fill=240)
        d.ellipse((ex - er, eye_y - er, ex + er, eye_y + er), fill=30)
        by = eye_y - er * 3
        d.line((ex - er * 2, by + rnd.randint(-1, 1), ex + er * 2, by), fill=hair, width=2)
    # nose and mouth
    nose_y = eye_y + int(head_h * 0.18)
    d.line((cx, eye_y + er * 2, cx - er, nose_y, cx + er // 2, nose_y), fill=skin - 45, width=1)
    mouth_y = nose_y + int(head_h * rnd.uniform(0.12, 0.16))
    mw = int(head_w * rnd.uniform(0.16, 0.24))
    d.arc((cx - mw, mouth_y - mw // 2, cx + mw, mouth_y + mw // 2), 20, 160,
          fill=skin - 70, width=2)
    buf = io.BytesIO()
    # An in-memory target has no .j2k suffix, so Pillow writes the JP2 container (spec §3.3).
    img.save(buf, format="JPEG2000", irreversible=True, quality_mode="rates",
             quality_layers=[rate])
    return buf.getvalue()


def is_png(data: bytes) -> bool:
    return bytes(data[:8]) == PNG_SIGNATURE


def is_jp2(data: bytes) -> bool:
    return bytes(data[:12]) == JP2_SIGNATURE
