"""`mynaemu card face FILE -o DIR`: the 券面 as PNG files, and the card's front and back as a
person sees them, every picture marked TEST.

From the card image (券面事項確認AP, spec §3.3): EF 0002 holds the birth date, sex, the name,
address and security-code images (PNG), the face photo (JPEG 2000) and the expiry; EF 0005 the
rendered 個人番号 (PNG). Files written:

    name.png  address.png  security-code.png  photo.png (the JP2 converted)  number.png
    front.png   photo, 氏名, 住所, 生年月日, 性別, expiry, security code, "TEST"
    back.png    個人番号, 氏名, 生年月日, "TEST"

The layout follows the real card's arrangement (ID-1, 85.60 x 53.98 mm, ISO/IEC 7810; here
10 px per mm) without copying its artwork. The files hold personal data (synthetic): 0600 in a
0700 directory; an existing file is not overwritten unless `force`, and a symlink never followed.
"""
from __future__ import annotations

import datetime as _dt
import io
import os
import stat
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from mynaemu.card import images
from mynaemu.card import tlv
from mynaemu.card.safefile import write_file_atomic
from mynaemu.card.apps import kenkaku
from mynaemu.issuance.identity import era_of

CARD_W, CARD_H = 856, 540        # ID-1 at 10 px/mm
INK = (20, 20, 20)
LABEL = (90, 90, 90)
TEST_RED = (200, 0, 0)
SEX = {"1": "男", "2": "女", "9": "", "0": ""}


class FaceError(ValueError):
    """The card image has no readable 券面 (no kenkaku AP, or malformed EFs); one line."""


def _ef(image, fid: int) -> bytes:
    for app in image.applications:
        if app.aid == kenkaku.AID:
            if fid in app.efs:
                return app.efs[fid].data
    raise FaceError(f"the card has no 券面AP EF {fid:04X} (spec §3.3)")


def read_face(image) -> dict:
    """The 券面 fields of a card image: dates, sex, the PNG/JP2 images, the 個人番号 image."""
    try:
        face = kenkaku.parse_face(_ef(image, kenkaku.EF_FACE))
        number = tlv.expect(_ef(image, kenkaku.EF_NUMBER_IMAGE), kenkaku.T_NUMBER).children()[0].value
    except (tlv.TLVError, ValueError) as exc:
        if isinstance(exc, FaceError):
            raise
        raise FaceError(f"券面AP EFs are malformed: {exc}") from None
    for key in ("name_image", "address_image", "security_code_image"):
        if not images.is_png(face[key]):
            raise FaceError(f"券面 {key.replace('_', ' ')} is not a PNG")
    if not images.is_png(number):
        raise FaceError("券面 個人番号 image is not a PNG")
    return {**face, "number_image": number}


def _date(text: str) -> _dt.date | None:
    try:
        return _dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except (ValueError, IndexError):
        return None


def japanese_date(day: _dt.date | None) -> str:
    """`昭和55年12月24日` (元年 for year 1), as the card prints dates."""
    if day is None:
        return "?"
    _, year, era = era_of(day)
    return f"{era}{'元' if year == 1 else year}年{day.month}月{day.day}日"


def _font(size: int):
    path = images.cjk_font_path()
    if path:
        return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def _open_png(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img.convert("RGBA")


def _paste_fit(canvas: Image.Image, img: Image.Image, box: tuple[int, int, int, int]) -> None:
    """Paste img scaled (aspect kept) into box = (x, y, w, h), left-aligned, vertically centred."""
    x, y, w, h = box
    scale = min(w / img.width, h / img.height)
    size = (max(1, int(img.width * scale)), max(1, int(img.height * scale)))
    resized = img.resize(size, Image.LANCZOS)
    canvas.paste(resized, (x, y + (h - size[1]) // 2), resized if resized.mode == "RGBA" else None)


def _test_mark(canvas: Image.Image) -> None:
    """A diagonal TEST watermark over the whole card and a TEST band at the top right."""
    layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    font = _font(150)
    draw.text((CARD_W // 2, CARD_H // 2), "TEST", font=font, fill=TEST_RED + (60,), anchor="mm")
    layer = layer.rotate(20, center=(CARD_W // 2, CARD_H // 2))
    canvas.alpha_composite(layer)
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((CARD_W - 270, 10, CARD_W - 12, 46), fill=TEST_RED)
    draw.text((CARD_W - 141, 28), "TEST CARD 見本", font=_font(24), fill=(255, 255, 255), anchor="mm")


def _blank(title: str) -> Image.Image:
    canvas = Image.new("RGBA", (CARD_W, CARD_H), (246, 248, 244, 255))
    draw = ImageDraw.Draw(canvas)
    draw.rounded_rectangle((2, 2, CARD_W - 3, CARD_H - 3), radius=32, outline=(160, 170, 160), width=3)
    draw.text((30, 28), title, font=_font(26), fill=INK, anchor="lm")
    return canvas


def render_front(face: dict) -> Image.Image:
    canvas = _blank("個人番号カード")
    draw = ImageDraw.Draw(canvas)
    small, mid = _font(18), _font(24)
    rows = [("氏名", 70, 95), ("住所", 175, 130)]
    for label, y, h in rows:
        draw.text((30, y + 14), label, font=small, fill=LABEL)
    _paste_fit(canvas, _open_png(face["name_image"]), (90, 70, 520, 80))
    _paste_fit(canvas, _open_png(face["address_image"]), (90, 175, 520, 120))
    birth = _date(face["birth"])
    draw.text((30, 330), "生年月日", font=small, fill=LABEL)
    draw.text((120, 326), f"{japanese_date(birth)}生", font=mid, fill=INK)
    draw.text((400, 330), "性別", font=small, fill=LABEL)
    draw.text((450, 326), SEX.get(face["sex"], face["sex"]), font=mid, fill=INK)
    expiry = _date(face["expiry"])
    draw.text((30, 390), f"{expiry.year if expiry else '?'}年{expiry.month if expiry else '?'}月"
                         f"{expiry.day if expiry else '?'}日まで有効", font=mid, fill=INK)
    draw.text((30, 460), "セキュリティコード", font=small, fill=LABEL)
    _paste_fit(canvas, _open_png(face["security_code_image"]), (200, 445, 160, 50))
    try:
        photo = Image.open(io.BytesIO(face["face_image"]))
        photo.load()
        _paste_fit(canvas, photo.convert("RGBA"), (640, 80, 190, 250))
    except (OSError, ValueError):
        draw.rectangle((640, 80, 830, 330), outline=LABEL, width=2)
        draw.text((735, 205), "写真", font=mid, fill=LABEL, anchor="mm")
    _test_mark(canvas)
    return canvas


def render_back(face: dict) -> Image.Image:
    canvas = _blank("個人番号")
    draw = ImageDraw.Draw(canvas)
    small, mid = _font(18), _font(24)
    _paste_fit(canvas, _open_png(face["number_image"]), (40, 70, 640, 90))
    draw.text((30, 200), "氏名", font=small, fill=LABEL)
    _paste_fit(canvas, _open_png(face["name_image"]), (90, 185, 520, 60))
    draw.text((30, 275), "生年月日", font=small, fill=LABEL)
    draw.text((120, 271), f"{japanese_date(_date(face['birth']))}生", font=mid, fill=INK)
    draw.rectangle((30, 340, 826, 420), outline=LABEL, width=1)
    draw.text((428, 380), "(IC chip: TEST card, not a real 個人番号カード)", font=small, fill=LABEL, anchor="mm")
    _test_mark(canvas)
    return canvas


def _png_bytes(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.convert("RGB").save(out, format="PNG", optimize=True)
    return out.getvalue()


def _write_private(path: Path, data: bytes, force: bool) -> None:
    """0600, atomically, through the project's one writer (card/safefile.py); never through a
    symlink (one planted in the folder would send a holder's 券面 elsewhere), never over what is
    not a regular file, and over an earlier run's file only with --force."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            raise FaceError(f"{path}: exists and is not a regular file; not writing")
        if not force:
            raise FaceError(f"{path}: exists (use --force to overwrite)")
    # checked again at the rename: a symlink planted after the check above is refused too
    write_file_atomic(path, data, mode=0o600, follow_symlinks=False)


def write_face(image, out_dir, *, force: bool = False) -> dict:
    """Write the 券面 PNGs and front.png / back.png into out_dir; {name: path}."""
    face = read_face(image)
    out_dir = Path(out_dir)
    if out_dir.is_symlink():
        raise FaceError(f"{out_dir}: is a symlink; not writing into it")
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not out_dir.is_dir():
        raise FaceError(f"{out_dir}: not a directory")
    try:
        photo = Image.open(io.BytesIO(face["face_image"]))
        photo.load()
        photo_png = _png_bytes(photo)
    except (OSError, ValueError) as exc:
        raise FaceError(f"券面 photo (JPEG 2000) cannot be decoded: {exc}") from None
    files = {
        "name.png": face["name_image"], "address.png": face["address_image"],
        "security-code.png": face["security_code_image"], "number.png": face["number_image"],
        "photo.png": photo_png,
        "front.png": _png_bytes(render_front(face)), "back.png": _png_bytes(render_back(face)),
    }
    written = {}
    for name, data in files.items():
        path = out_dir / name
        _write_private(path, data, force)
        written[name] = path
    return written
