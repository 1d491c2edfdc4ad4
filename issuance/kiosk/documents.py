"""The kiosk's certificates as PDF: rendering in Japanese, tamper evidence, and its checker.

What a kiosk prints (CVS-8): 住民票の写し, 印鑑登録証明書 and 税証明 (here the 所得・課税証明書). The
municipality's 証明発行サーバ "creates the certificate as a PDF" (CVS-15) and the centre sends
it to the kiosk together with the anti-forgery data (偽造防止情報, CVS-2 step (5), CVS-3). The
seeds give neither the layout nor the anti-forgery technique (rules.md §19 gap 10), so the
format below is a project decision.

Rendering: reportlab with the IPA fonts (IPA明朝, IPAゴシック; Debian's fonts-ipafont-mincho and
fonts-ipafont-gothic, which setup.sh installs) **subset-embedded**, so every viewer shows the same
glyphs (`pdffonts` lists each font as embedded). The 住民票 layout follows the sample of CVS-9 as
municipalities print it: a ruled table, one block per household member (氏名, 生年月日, 性別,
続柄, 住民となった日, 住所を定めた日, 届出日, 前住所, 本籍・筆頭者, 個人番号 only on request,
住民票コード only on request, 備考 — the fields of the 発行用住民票ファイル, DATA-6, that apply),
the certification line, the date in 西暦（和暦） with full-width digits, the mayor's name and
seal. Every page says TEST / 見本: these are not legal documents.

個人番号 (NUM-13, CVS-9): a 住民票 shows it **only** when the person asked for it
(`with_number`); tax certificates never show it. When not asked for, it is absent from the page
and from the embedded content alike.

Tamper evidence that standard tools check (CVS-2 step (5), CVS-3 偽造防止情報; the technique is a
project decision, rules.md §19 gap 10):

1. **A PAdES signature** (ETSI.CAdES.detached, SHA-256, RSA) over the whole file by the issuing
   municipality's mayor (市区町村長), with a certificate of the installation's TEST LGPKI
   (issuance/kiosk/lgpki.py). `pdfsig`, pyHanko and Acrobat verify it; a relying party trusts the TEST
   LGPKI root (docs/verifying-documents.md). One changed byte anywhere breaks it.
2. **The content and its 検証コード**: the document's content (a canonical JSON of every printed
   field, the fee, the issue time, the serial) is signed with the mayor's key (RSA PKCS#1 v1.5,
   SHA-256); the SHA-256 of that signature, in base-32, gives the 20-character **検証コード**
   printed on the page (`XXXX-XXXX-XXXX-XXXX-XXXX`), so a paper copy carries a code tied to
   its content. The PDF's Info dictionary carries the content
   (`/Subject (mynaemu-doc:v2:<base64>)`) and `/Keywords (mynaemu-sig:v2 cert=<id>
   content=<signature hex> code=<code>)`, inside the PAdES-signed bytes.
3. **The signer belongs to the municipality the document names**: the signing certificate's
   organizationIdentifier `LGJP-<code>` must equal the document's 地方公共団体コード, so a
   document signed by one municipality's key but naming another is refused.

`check_pdf(data, trust_roots)` verifies all three and gives the verified content or a
TamperError saying what failed; `verify_pdf` is its boolean form; `inspect_pdf` reads the
content without trusting it.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import hashlib
import io
import json
import re
import threading

from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mynaemu.issuance.kiosk import lgpki, pades
from mynaemu.issuance.identity import SEX_CODES, era_of
from mynaemu.issuance.clock import JST

FORMAT = "mynaemu-kiosk-document"
VERSION = 2
TITLES = {
    "juminhyo": "住民票の写し",
    "inkan": "印鑑登録証明書",
    "zei": "所得・課税証明書",
}
DOCUMENTS = tuple(TITLES)
METHOD_LABELS = {"shin": "新方式", "henkan": "変換方式", "genko": "現行方式"}

CONTENT_DOMAIN = b"mynaemu-kiosk-document-content-v2\0"
SIG_HEX = 512   # an RSA-2048 signature in lower-case hex
CERT_ID_HEX = 16

_SUBJECT_RE = re.compile(rb"/Subject \(mynaemu-doc:v2:([A-Za-z0-9+/=]+)\)")
_KEYWORDS_RE = re.compile(
    rb"mynaemu-sig:v2 cert=([0-9a-f]{16}) content=([0-9a-f]{512}) "
    rb"code=([A-Z2-7]{4}(?:-[A-Z2-7]{4}){4})\)")

FONT_MIN = "IPAMincho"
FONT_GOTHIC = "IPAGothic"
# Debian's fonts-ipafont-mincho / fonts-ipafont-gothic (setup.sh installs them).
FONT_FILES = {
    FONT_MIN: ("/usr/share/fonts/opentype/ipafont-mincho/ipam.ttf",
               "/usr/share/fonts/truetype/fonts-japanese-mincho.ttf"),
    FONT_GOTHIC: ("/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf",
                  "/usr/share/fonts/truetype/fonts-japanese-gothic.ttf"),
}
FONT_PACKAGES = "fonts-ipafont-mincho fonts-ipafont-gothic"
_fonts_lock = threading.Lock()
_fonts_ready = False


class FontsMissing(RuntimeError):
    """The Japanese fonts the documents embed are not installed (the message names the package)."""


class TamperError(Exception):
    """The PDF fails its tamper-evidence check; the message says which part."""


# -- content ----------------------------------------------------------------------------------

def canonical(content: dict) -> bytes:
    """The signed form of a content dict: sorted keys, no spaces, UTF-8."""
    return json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def verification_code(content_signature: bytes) -> str:
    """The printed 検証コード: base-32 of SHA-256(content signature), 20 symbols in groups of 4."""
    text = base64.b32encode(hashlib.sha256(content_signature).digest()).decode("ascii")[:20]
    return "-".join(text[i:i + 4] for i in range(0, 20, 4))


def check_content(content: dict) -> dict:
    """The content dict after checking the fields every document needs; ValueError otherwise."""
    if not isinstance(content, dict):
        raise TypeError("content must be a dict")
    for key in ("document", "serial", "issued_at", "municipality", "fee", "method", "fields"):
        if key not in content:
            raise ValueError(f"document content lacks {key!r}")
    if content["document"] not in TITLES:
        raise ValueError(f"unknown document {content['document']!r}; choose from {', '.join(TITLES)}")
    if content["method"] not in METHOD_LABELS:
        raise ValueError(f"unknown method {content['method']!r}")
    if not isinstance(content["fee"], int) or content["fee"] < 0:
        raise ValueError("fee must be a non-negative int (yen)")
    for key in ("code", "name", "mayor"):
        if not content["municipality"].get(key):
            raise ValueError(f"municipality lacks {key!r}")
    _dt.datetime.fromisoformat(content["issued_at"])
    if content["document"] == "zei" and _mentions_number(content["fields"]):
        raise ValueError("a tax certificate never shows the 個人番号 (NUM-13)")
    return content


def _mentions_number(fields) -> bool:
    return "individual_number" in json.dumps(fields, ensure_ascii=False)


# -- Japanese text helpers --------------------------------------------------------------------

_ZENKAKU = str.maketrans("0123456789-", "０１２３４５６７８９－")


def zenkaku(text) -> str:
    """ASCII digits (and '-') as full-width, as the CVS-9 sample prints dates."""
    return str(text).translate(_ZENKAKU)


def wareki(day: _dt.date) -> str:
    """令和7年11月3日 (元年 for year 1)."""
    _, year, name = era_of(day)
    y = "元" if year == 1 else str(year)
    return f"{name}{y}年{day.month}月{day.day}日"


def seireki_wareki(day: _dt.date) -> str:
    """２０２５年（令和７年）１１月３日: the form of the CVS-9 sample date line."""
    _, year, name = era_of(day)
    y = "元" if year == 1 else str(year)
    return zenkaku(f"{day.year}年（{name}{y}年）{day.month}月{day.day}日")


def yen(amount: int) -> str:
    return f"{amount:,}円"


# -- rendering --------------------------------------------------------------------------------

def font_path(name: str) -> Path:
    """The installed TrueType file of `name`, or FontsMissing naming the Debian package."""
    for candidate in FONT_FILES[name]:
        if Path(candidate).is_file():
            return Path(candidate)
    raise FontsMissing(f"the Japanese font {name} is not installed "
                       f"(apt-get install {FONT_PACKAGES}; looked in {', '.join(FONT_FILES[name])})")


def _register_fonts() -> None:
    """Register the IPA fonts once; reportlab embeds the subset of glyphs each document uses."""
    global _fonts_ready
    with _fonts_lock:
        if _fonts_ready:
            return
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.ttfonts import TTFont

        for name in (FONT_MIN, FONT_GOTHIC):
            pdfmetrics.registerFont(TTFont(name, str(font_path(name))))
        _fonts_ready = True


@dataclasses.dataclass(frozen=True)
class RenderedDocument:
    pdf: bytes
    verification_code: str
    key_id: str
    content: dict


class _Page:
    """A thin writer over a reportlab canvas with a moving cursor (y, in points from the bottom)."""

    LEFT = 56
    RIGHT = 539
    TOP = 790

    def __init__(self, canvas):
        self.c = canvas
        self.y = self.TOP

    def text(self, x, text, size=10.5, font=FONT_MIN, color=(0, 0, 0)):
        self.c.setFillColorRGB(*color)
        self.c.setFont(font, size)
        self.c.drawString(x, self.y, text)

    def line(self, text, size=10.5, font=FONT_MIN, gap=None, x=None):
        self.text(self.LEFT if x is None else x, text, size, font)
        self.y -= gap if gap is not None else size * 1.6

    def centred(self, text, size, font=FONT_MIN, gap=None):
        self.c.setFillColorRGB(0, 0, 0)
        self.c.setFont(font, size)
        self.c.drawCentredString((self.LEFT + self.RIGHT) / 2, self.y, text)
        self.y -= gap if gap is not None else size * 1.8

    def rule(self, gap=8):
        self.c.setStrokeColorRGB(0.3, 0.3, 0.3)
        self.c.setLineWidth(0.6)
        self.c.line(self.LEFT, self.y + 4, self.RIGHT, self.y + 4)
        self.y -= gap

    def pairs(self, rows, label_width=110, size=10.5):
        for label, value in rows:
            self.text(self.LEFT + 8, label, size, FONT_GOTHIC)
            self.text(self.LEFT + 8 + label_width, value, size, FONT_MIN)
            self.y -= size * 1.75


def _watermark(c) -> None:
    c.saveState()
    c.setFillColorRGB(0.85, 0.85, 0.85)
    c.setFont(FONT_GOTHIC, 54)
    c.translate(300, 420)
    c.rotate(35)
    c.drawCentredString(0, 0, "TEST 見本")
    c.setFont(FONT_GOTHIC, 16)
    c.drawCentredString(0, -36, "法的効力はありません（mynaemu 試験用）")
    c.restoreState()


def _seal(c, x, y, text: str, size=46) -> None:
    """A red square seal with up to 6 characters in two columns, read right to left."""
    c.saveState()
    c.setStrokeColorRGB(0.8, 0.1, 0.1)
    c.setFillColorRGB(0.8, 0.1, 0.1)
    c.setLineWidth(1.6)
    c.rect(x, y, size, size)
    chars = list(text)[:6]
    cols = [chars[:3], chars[3:]] if len(chars) > 3 else [chars]
    font = max(8, size / 3.6)
    c.setFont(FONT_MIN, font)
    for ci, col in enumerate(cols):
        cx = x + size - (ci + 0.5) * (size / len(cols))
        for ri, ch in enumerate(col):
            c.drawCentredString(cx, y + size - (ri + 1) * (size / 3) + font * 0.3, ch)
    c.restoreState()


def _round_seal(c, x, y, text: str, r=30) -> None:
    """The registered seal's impression (印影): a red ring with the characters stacked."""
    c.saveState()
    c.setStrokeColorRGB(0.8, 0.1, 0.1)
    c.setFillColorRGB(0.8, 0.1, 0.1)
    c.setLineWidth(2.2)
    c.circle(x, y, r)
    chars = list(text)[:3] or ["印"]
    font = min(r * 0.9, (2 * r * 0.8) / len(chars))
    c.setFont(FONT_MIN, font)
    top = y + (len(chars) * font) / 2 - font * 0.85
    for i, ch in enumerate(chars):
        c.drawCentredString(x, top - i * font, ch)
    c.restoreState()


_PREFECTURE_RE = re.compile(r"^(東京都|北海道|京都府|大阪府|.{2,3}県)")


def _date(text: str) -> _dt.date:
    return _dt.date.fromisoformat(text)


def _sex(code: str) -> str:
    return SEX_CODES.get(code, code)


class _Table:
    """Ruled rows as municipalities print a 住民票: a label cell (shaded) and value cells."""

    ROW = 19
    LABEL_W = 88

    def __init__(self, page: _Page):
        self.p = page
        self.c = page.c

    def _cell(self, x, w, label: bool, text: str, size: float) -> None:
        y = self.p.y
        if label:
            self.c.setFillColorRGB(0.93, 0.93, 0.93)
            self.c.rect(x, y - self.ROW, w, self.ROW, stroke=0, fill=1)
        self.c.setStrokeColorRGB(0.2, 0.2, 0.2)
        self.c.setLineWidth(0.5)
        self.c.rect(x, y - self.ROW, w, self.ROW, stroke=1, fill=0)
        self.c.setFillColorRGB(0, 0, 0)
        font = FONT_GOTHIC if label else FONT_MIN
        from reportlab.pdfbase.pdfmetrics import stringWidth

        while size > 6 and stringWidth(text, font, size) > w - 8:   # long text: shrink to fit
            size -= 0.5
        self.c.setFont(font, size)
        self.c.drawString(x + 4, y - self.ROW + 6, text)

    def row(self, *cells, size=9.5) -> None:
        """cells: (label, value) pairs sharing the width; the last value takes what is left."""
        x, right = self.p.LEFT, self.p.RIGHT
        widths = []
        free = right - x - self.LABEL_W * len(cells)
        for i, _ in enumerate(cells):
            widths.append(free // len(cells) if i < len(cells) - 1 else free - (free // len(cells)) * (len(cells) - 1))
        for (label, value), w in zip(cells, widths):
            self._cell(x, self.LABEL_W, True, label, size)
            x += self.LABEL_W
            self._cell(x, w, False, value, size)
            x += w
        self.p.y -= self.ROW

    def gap(self, points=6) -> None:
        self.p.y -= points


def _body_juminhyo(p: _Page, content: dict) -> None:
    f = content["fields"]
    t = _Table(p)
    t.row(("住所", f["address"]))
    t.row(("世帯主", f["head_of_household"]))
    t.gap(8)
    for n, member in enumerate(f["members"], 1):
        since = member.get("address_since") or member["became_resident"]
        notified = member.get("notified_on")
        t.row(("氏名", member["name"]), ("続柄", member["relation"]))
        t.row(("生年月日", wareki(_date(member["birth"]))), ("性別", _sex(member["sex"])))
        t.row(("住民となった日", wareki(_date(member["became_resident"]))),
              ("住所を定めた日", wareki(_date(since))))
        t.row(("届出日", wareki(_date(notified)) if notified else ""),
              ("前住所", member.get("previous_address") or ""))
        t.row(("本籍・筆頭者", f["honseki"]))
        extra = []
        if "individual_number" in member:  # NUM-13: only on the person's explicit request
            extra.append(("個人番号", member["individual_number"]))
        if "juminhyo_code" in member:      # only on request
            extra.append(("住民票コード", member["juminhyo_code"]))
        if extra:
            t.row(*extra)
        t.row(("備考", member.get("remarks") or ""))
        t.gap(8 if n < len(f["members"]) else 12)
    scope = "世帯全員" if f.get("scope", "all") == "all" else "世帯の一部"
    p.line(f"この写しは、{scope}の住民票の原本と相違ないことを証明する。", 11)


def _body_inkan(p: _Page, content: dict) -> None:
    f = content["fields"]
    _round_seal(p.c, p.LEFT + 90, p.y - 40, f["seal_text"])
    p.text(p.LEFT + 8, "印影", 10, FONT_GOTHIC)
    p.y -= 96
    p.pairs([
        ("登録番号", zenkaku(f["registration_number"])),
        ("氏名", f["name"]),
        ("生年月日", wareki(_date(f["birth"]))),
        ("性別", _sex(f["sex"])),
        ("住所", f["address"]),
        ("登録日", wareki(_date(f["registered_on"]))),
    ])
    p.rule(14)
    p.line("この写しは、登録されている印影と相違ないことを証明します。", 11)


def _body_zei(p: _Page, content: dict) -> None:
    f = content["fields"]
    fy = _dt.date(f["fiscal_year"], 6, 1)
    iy = _dt.date(f["income_year"], 12, 31)
    _, fy_era, fy_name = era_of(fy)
    _, iy_era, iy_name = era_of(iy)
    p.line(f"{fy_name}{fy_era}年度（{iy_name}{iy_era}年分所得）", 11, FONT_GOTHIC)
    p.pairs([
        ("氏名", f["name"]),
        ("住所", f["address"]),
        ("生年月日", wareki(_date(f["birth"]))),
    ])
    p.rule(14)
    p.pairs([
        ("給与収入", yen(f["salary_income"])),
        ("所得金額", yen(f["income"])),
        ("所得控除合計", yen(f["deductions"])),
        ("課税標準額", yen(f["taxable_income"])),
        ("市町村民税額", yen(f["municipal_tax"])),
        ("道府県民税額", yen(f["prefectural_tax"])),
        ("課税区分", "課税" if f["municipal_tax"] + f["prefectural_tax"] > 0 else "非課税"),
    ], label_width=130)
    p.rule(14)
    p.line("上記のとおり証明します。", 11)


_BODIES = {"juminhyo": _body_juminhyo, "inkan": _body_inkan, "zei": _body_zei}


def _render(content: dict, keywords: str, subject: str) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas as rl_canvas

    _register_fonts()
    buf = io.BytesIO()
    c = rl_canvas.Canvas(buf, pagesize=A4, pageCompression=1, initialFontName=FONT_MIN)
    c.setTitle(f"{TITLES[content['document']]} (TEST)")
    c.setAuthor(f"{content['municipality']['name']} (TEST)")
    c.setCreator("mynaemu TEST kiosk")
    c.setSubject(subject)
    c.setKeywords(keywords)
    _watermark(c)
    p = _Page(c)
    p.text(p.LEFT, "TEST 見本 — コンビニ交付（mynaemu）", 8, FONT_GOTHIC, (0.5, 0.5, 0.5))
    p.y -= 26
    p.centred(TITLES[content["document"]], 20, FONT_MIN, gap=34)
    _BODIES[content["document"]](p, content)

    issued = _dt.datetime.fromisoformat(content["issued_at"]).astimezone(JST)
    muni = content["municipality"]
    p.y -= 10
    p.line(seireki_wareki(issued.date()), 11, x=p.LEFT + 200)
    p.line(f"{muni['name']}長　{muni['mayor']}", 13, x=p.LEFT + 200, gap=10)
    _seal(c, p.RIGHT - 58, p.y - 20, f"{_PREFECTURE_RE.sub('', muni['name']) or muni['name']}長之印"[:6])

    # Footer: how it was issued, the fee (FEE-4) and the anti-forgery data (CVS-3).
    y = 118
    c.setStrokeColorRGB(0.3, 0.3, 0.3)
    c.line(p.LEFT, y + 14, p.RIGHT, y + 14)
    c.setFillColorRGB(0, 0, 0)
    c.setFont(FONT_GOTHIC, 9)
    c.drawString(p.LEFT, y, f"交付：コンビニ交付（{METHOD_LABELS[content['method']]}）　"
                             f"発行日時：{issued.strftime('%Y-%m-%d %H:%M:%S')} JST　"
                             f"手数料：{yen(content['fee'])}")
    c.drawString(p.LEFT, y - 15, f"証明書番号：{content['serial']}　"
                                 f"地方公共団体コード：{muni['code']}")
    c.setFont(FONT_GOTHIC, 12)
    c.drawString(p.LEFT, y - 36, f"検証コード：{content['_code']}")
    c.setFont(FONT_GOTHIC, 8)
    c.drawString(p.LEFT, y - 54, "偽造防止：この PDF には市区町村長の TEST 電子署名（PAdES、TEST LGPKI）が"
                                 "付いています。")
    c.drawString(p.LEFT, y - 66, f"確認：pdfsig / pyHanko / mynaemu kiosk verify-pdf（証明書ID {content['_key_id']}）。"
                                 "1 バイトでも変更されると検証に失敗します。")
    c.showPage()
    c.save()
    return buf.getvalue()


def render_pdf(content: dict, signer: lgpki.Signer) -> RenderedDocument:
    """The PAdES-signed PDF of `content` (see check_content) by the municipality's TEST signer."""
    if not isinstance(signer, lgpki.Signer):
        raise TypeError(f"signer must be an lgpki.Signer, got {type(signer).__name__}")
    content = check_content(dict(content))
    if content["municipality"]["code"] != signer.code:
        raise ValueError(f"the signer of municipality {signer.code} cannot sign a document of "
                         f"{content['municipality']['code']}")
    body = canonical(content)
    content_sig = signer.key.sign(CONTENT_DOMAIN + body, padding.PKCS1v15(), hashes.SHA256())
    code = verification_code(content_sig)
    cid = signer.key_id
    subject = "mynaemu-doc:v2:" + base64.b64encode(body).decode("ascii")
    keywords = f"mynaemu-sig:v2 cert={cid} content={content_sig.hex()} code={code}"
    pdf = _render({**content, "_code": code, "_key_id": cid}, keywords, subject)
    muni = content["municipality"]
    pdf = pades.sign(pdf, key=signer.key, certificate=signer.certificate, chain=(signer.root,),
                     reason=f"TEST {TITLES[content['document']]}の交付（コンビニ交付）",
                     location=f"TEST {muni['name']}", name=f"TEST {muni['name']}長 {muni['mayor']}")
    return RenderedDocument(pdf, code, cid, content)


# -- checking ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class VerifiedDocument:
    content: dict
    verification_code: str
    key_id: str
    signer: x509.Certificate


def inspect_pdf(data: bytes) -> dict:
    """{'content', 'verification_code', 'key_id'} as embedded, **not verified**; TamperError if absent."""
    data = bytes(data)
    subjects = _SUBJECT_RE.findall(data)
    keywords = list(_KEYWORDS_RE.finditer(data))
    if len(subjects) != 1 or len(keywords) != 1:
        raise TamperError("the embedded content or its signature field is missing or repeated")
    try:
        content = json.loads(base64.b64decode(subjects[0], validate=True).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise TamperError("the embedded content is not valid") from None
    if not isinstance(content, dict):
        raise TamperError("the embedded content is not an object")
    match = keywords[0]
    return {"content": content, "verification_code": match.group(3).decode("ascii"),
            "key_id": match.group(1).decode("ascii"),
            "content_signature": bytes.fromhex(match.group(2).decode())}


def check_pdf(data: bytes, trust_roots) -> VerifiedDocument:
    """Verify a kiosk PDF: its PAdES signature chains to one of `trust_roots`, the signer is the
    mayor of the municipality the document names, and the content and 検証コード check."""
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError("data must be bytes")
    data = bytes(data)
    try:
        validated = pades.validate(data, list(trust_roots))
    except pades.PadesError as exc:
        raise TamperError(str(exc)) from None
    info = inspect_pdf(data)
    content = info["content"]
    try:
        check_content(content)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise TamperError(f"the signed content is not a kiosk document: {exc}") from None
    signer_code = lgpki.municipality_code_of(validated.signer)
    named = content["municipality"]["code"]
    if signer_code != named:
        raise TamperError(f"signed by the mayor of municipality {signer_code or '(none)'}, "
                          f"but the document names municipality {named}")
    cid = lgpki.certificate_id(validated.signer)
    if info["key_id"] != cid:
        raise TamperError(f"the PDF names certificate {info['key_id']}, but was signed with {cid}")
    public_key = validated.signer.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise TamperError("the signer's key is not RSA")
    try:
        public_key.verify(info["content_signature"], CONTENT_DOMAIN + canonical(content),
                          padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise TamperError("the content signature does not verify") from None
    code = verification_code(info["content_signature"])
    if code != info["verification_code"]:
        raise TamperError("the 検証コード does not match the content signature")
    return VerifiedDocument(content, code, cid, validated.signer)


def verify_pdf(data: bytes, trust_roots) -> bool:
    """True when the PDF's signature and content check against `trust_roots`; False otherwise."""
    try:
        check_pdf(data, trust_roots)
    except (TamperError, ValueError, UnicodeDecodeError):
        return False
    return True
