"""Receipts: PDF layouts read back with poppler (pdftotext, pdftoppm), the QR code decoded from
the rendered image, and the ESC/POS bytes parsed back into commands and text lines.

The Chinese assertions need the zh_CN catalog entries of printing/labels.py.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import shutil
import subprocess
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.domain.receipt import ReceiptData
from app.errors import ValidationError
from app.ports import ReceiptRenderer
from printing import escpos
from printing import fonts
from printing import labels
from printing.escpos import CHINESE_OFF
from printing.escpos import CHINESE_ON
from printing.escpos import CUT
from printing.escpos import INIT
from printing.escpos import STATUS_PRINTER
from printing.escpos import STATUS_QUERY
from printing.escpos import columns
from printing.escpos import parse_offline_status
from printing.escpos import parse_paper_status
from printing.escpos import parse_printer_status
from printing.escpos import receipt_escpos
from printing.receipt import QR_BORDER
from printing.receipt import SIZES
from printing.receipt import PdfReceiptRenderer
from printing.receipt import qr_modules
from printing.receipt import render_receipt_pdf
from tests.rigs.receipts import ADDRESS
from tests.rigs.receipts import NAME
from tests.rigs.receipts import RECEIPT
from tests.rigs.receipts import SALE_ID

pytestmark = pytest.mark.skipif(
    not (shutil.which("pdftotext") and shutil.which("pdftoppm")), reason="needs poppler-utils"
)

MM = 72 / 25.4
# expected page width in points (and pixels at 72 dpi) per layout
PAGE_WIDTH = {"80": 80 * MM, "58": 58 * MM, "a5": 148 * MM, "a4": 210 * MM}
PAGE_HEIGHT = {"a5": 210 * MM, "a4": 297 * MM}
PRINTABLE_MM = {"80": 72, "58": 48}


@pytest.fixture
def receipt() -> ReceiptData:
    return RECEIPT


# --------------------------------------------------------------------------- poppler helpers


def pdf_text(pdf: bytes, tmp_path: Path, *, layout: bool = False, page: int | None = None) -> str:
    path = tmp_path / "r.pdf"
    path.write_bytes(pdf)
    args = ["pdftotext", "-enc", "UTF-8"]
    if layout:
        args.append("-layout")
    if page is not None:
        args += ["-f", str(page), "-l", str(page)]
    done = subprocess.run([*args, str(path), "-"], capture_output=True, check=True, timeout=60)
    return done.stdout.decode("utf-8")


def squeeze(text: str) -> str:
    """Text without any white space (pdftotext breaks and spaces wrapped lines its own way)."""
    return "".join(text.split())


def pdf_pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type /Page\b", pdf))


def render_png(pdf: bytes, tmp_path: Path, dpi: int, page: int = 1) -> Path:
    path = tmp_path / "r.pdf"
    path.write_bytes(pdf)
    prefix = tmp_path / f"png{dpi}"
    subprocess.run(
        [
            "pdftoppm",
            "-r",
            str(dpi),
            "-png",
            "-f",
            str(page),
            "-l",
            str(page),
            "-singlefile",
            str(path),
            str(prefix),
        ],
        check=True,
        timeout=60,
    )
    return prefix.with_suffix(".png")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def word_boxes(pdf: bytes, tmp_path: Path) -> list[tuple[float, float, float, float, str]]:
    """(xMin, yMin, xMax, yMax, word) of every word, from pdftotext -bbox (points)."""
    path = tmp_path / "r.pdf"
    path.write_bytes(pdf)
    html = subprocess.run(
        ["pdftotext", "-bbox", str(path), "-"], capture_output=True, check=True, timeout=60
    ).stdout.decode("utf-8")
    found = re.findall(
        r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>',
        html,
    )
    return [(float(a), float(b), float(c), float(d), w) for a, b, c, d, w in found]


def page_streams(pdf: bytes) -> Iterator[bytes]:
    """The decoded content of every Flate (optionally ASCII85) stream of the PDF."""
    for m in re.finditer(rb"<<([^>]*?)>>\s*stream\r?\n(.*?)endstream", pdf, re.S):
        head, data = m.group(1), m.group(2)
        if b"/ASCII85Decode" in head:
            data = base64.a85decode(data.strip().removesuffix(b"~>"))
        if b"/FlateDecode" in head:
            try:
                yield zlib.decompress(data)
            except zlib.error:
                continue


# --------------------------------------------------------------------------- PDF text


ZH_LABELS = ("营业厅", "柜台", "操作员", "日期时间", "户号", "户名", "用电地址", "表号", "交易号",
             "购电次数", "缴费金额", "扣除欠费", "扣除费用", "充值电费", "电价", "折合电量",
             "表内余额", "实收现金", "找零", "校验码")  # fmt: skip
EN_LABELS = ("Office", "Counter", "Operator", "Date and time", "Customer no.", "Customer name",
             "Supply address",
             "Meter no.", "Sale no.", "Purchase no.", "Amount paid", "Arrears deducted",
             "Fees deducted", "Credit loaded", "Tariff", "Estimated energy",
             "Meter balance (from card)", "Cash received", "Change", "Verification code")  # fmt: skip
COMMON_VALUES = ("杭州城东营业厅", "HZ01", "C02", "李秀英", "t07", "2026-03-01 09:30:05",
                 "500000000123", NAME, ADDRESS, "600000000123", "17", "居民阶梯电价", "RES-TIER",
                 "7K3QX9PA", "3F2B8C1E")  # fmt: skip


def receipt_text(receipt: ReceiptData, size: str, language: str, tmp_path: Path) -> tuple[str, str]:
    """The receipt in ``language`` read back by pdftotext, as read and squeezed; every one of
    the values that stand on it in any language (``COMMON_VALUES``) is there."""
    text = pdf_text(render_receipt_pdf(receipt, size=size, language=language), tmp_path)
    flat = squeeze(text)
    for value in COMMON_VALUES:
        assert squeeze(value) in flat, value
    return text, flat


@pytest.mark.parametrize("size", SIZES)
def test_chinese_receipt_text_comes_back_from_pdftotext(
    receipt: ReceiptData, size: str, tmp_path: Path
) -> None:
    text, flat = receipt_text(receipt, size, "zh_CN", tmp_path)
    title = "购电凭证" if size in ("80", "58") else "购电结算单"
    assert title in flat
    for label in ZH_LABELS:
        assert label in flat, label
    # money as yuan text from fen, energy as kWh with two decimals, local time (+08:00)
    for amount in ("200.00元", "12.50元", "5.00元", "182.50元", "45.67元", "250.00元", "50.00元"):
        assert amount in flat, amount
    assert "33.18千瓦时" in flat
    assert "第3版" in flat
    if size in ("a5", "a4"):
        assert SALE_ID in flat  # the statement prints the whole sale id
    # an original, completed, real sale carries no mark
    for mark in ("副本", "培训", "冲正", "COPY", "TRAINING"):
        assert mark not in flat
    assert "Customer" not in text  # one language per receipt


@pytest.mark.parametrize("size", SIZES)
def test_english_receipt_text_comes_back_from_pdftotext(
    receipt: ReceiptData, size: str, tmp_path: Path
) -> None:
    text, flat = receipt_text(receipt, size, "en", tmp_path)
    one_line = " ".join(text.split())
    title = "Electricity purchase receipt" if size in ("80", "58") else "purchase statement"
    assert title in one_line
    for label in EN_LABELS:
        assert squeeze(label) in flat, label
    for amount in ("200.00 yuan", "12.50 yuan", "5.00 yuan", "182.50 yuan", "45.67 yuan"):
        assert amount in one_line, amount
    assert "33.18 kWh" in one_line
    assert "version 3" in one_line
    for label in ("户号", "缴费金额", "00元", "副本"):
        assert label not in flat  # Chinese appears only in the customer's own data


@pytest.mark.parametrize("size", SIZES)
def test_copy_and_training_marks(receipt: ReceiptData, size: str, tmp_path: Path) -> None:
    marked = dataclasses.replace(receipt, copy_no=2, training=True)
    zh = pdf_text(render_receipt_pdf(marked, size=size, language="zh_CN"), tmp_path)
    en = pdf_text(render_receipt_pdf(marked, size=size, language="en"), tmp_path)
    # rolls: at the top and again at the bottom; statement: a box and the page corner
    assert squeeze(zh).count("副本2") >= 2
    assert " ".join(en.split()).count("COPY 2") >= 2
    assert "培训" in zh and "非真实售电" in squeeze(zh)
    assert "TRAINING" in en and "not a real sale" in " ".join(en.split())


def test_statement_marks_every_page(receipt: ReceiptData, tmp_path: Path) -> None:
    """A statement long enough for two pages carries the copy and training marks on both."""
    long_address = ADDRESS + "（" + "附近供电所代管的公用配电变压器台区，" * 30 + "）"
    marked = dataclasses.replace(receipt, copy_no=3, training=True, address=long_address)
    pdf = render_receipt_pdf(marked, size="a5", language="zh_CN")
    assert pdf_pages(pdf) == 2
    for page in (1, 2):
        flat = squeeze(pdf_text(pdf, tmp_path, page=page))
        assert "副本3" in flat, page
        assert all(ch in flat for ch in "培训非真实售电"), page  # the watermark, rotated
    assert squeeze(long_address) in squeeze(pdf_text(pdf, tmp_path))


@pytest.mark.parametrize("size", SIZES)
def test_reversed_and_unfinished_sales_are_marked(
    receipt: ReceiptData, size: str, tmp_path: Path
) -> None:
    reversed_ = dataclasses.replace(receipt, state="reversed")
    assert "已冲正" in pdf_text(
        render_receipt_pdf(reversed_, size=size, language="zh_CN"), tmp_path
    )
    text = pdf_text(render_receipt_pdf(reversed_, size=size, language="en"), tmp_path)
    assert "REVERSED" in text
    failed = dataclasses.replace(receipt, state="in_doubt")
    text = " ".join(
        pdf_text(render_receipt_pdf(failed, size=size, language="en"), tmp_path).split()
    )
    assert "NOT COMPLETED (in doubt)" in text


@pytest.mark.parametrize("size", SIZES)
def test_remote_payment_wording(receipt: ReceiptData, size: str, tmp_path: Path) -> None:
    remote = dataclasses.replace(
        receipt, kind="remote", meter_balance=None, cash_received=None, change=None,
        purchase_count=None,
    )  # fmt: skip
    zh = squeeze(pdf_text(render_receipt_pdf(remote, size=size, language="zh_CN"), tmp_path))
    assert "远程购电" in zh and "无需插卡" in zh
    assert "45.67" not in zh and "—" in zh  # no card read: no balance
    en = " ".join(pdf_text(render_receipt_pdf(remote, size=size, language="en"), tmp_path).split())
    assert "no card is needed" in en and "queued for the meter" in en
    card = " ".join(
        pdf_text(render_receipt_pdf(receipt, size=size, language="en"), tmp_path).split()
    )
    assert "queued for the meter" not in card


# --------------------------------------------------------------------------- PDF pages and images


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("language", ["zh_CN", "en"])
def test_pdftoppm_renders_each_layout_at_its_paper_size(
    receipt: ReceiptData, size: str, language: str, tmp_path: Path
) -> None:
    pdf = render_receipt_pdf(receipt, size=size, language=language)
    assert pdf.startswith(b"%PDF-") and pdf_pages(pdf) == 1
    width, height = png_size(render_png(pdf, tmp_path, 72))
    assert abs(width - PAGE_WIDTH[size]) <= 1
    if size in PAGE_HEIGHT:
        assert abs(height - PAGE_HEIGHT[size]) <= 1
    else:  # one long page: taller than wide, as long as its content (not a fixed page)
        assert 2 * width < height < 8 * width


@pytest.mark.parametrize("size", ["80", "58"])
def test_roll_height_follows_content_and_text_stays_printable(
    receipt: ReceiptData, size: str, tmp_path: Path
) -> None:
    plain = render_receipt_pdf(receipt, size=size, language="zh_CN")
    marked = render_receipt_pdf(
        dataclasses.replace(receipt, copy_no=1, training=True), size=size, language="zh_CN"
    )
    h_plain = png_size(render_png(plain, tmp_path, 72))[1]
    h_marked = png_size(render_png(marked, tmp_path, 72))[1]
    assert h_marked > h_plain + 40  # four mark boxes more
    margin = (PAGE_WIDTH[size] - PRINTABLE_MM[size] * MM) / 2
    for pdf in (plain, marked):
        boxes = word_boxes(pdf, tmp_path)
        assert len(boxes) > 40
        for x0, _, x1, _, word in boxes:
            assert x0 >= margin - 0.5 and x1 <= PAGE_WIDTH[size] - margin + 0.5, word


def test_output_is_deterministic(receipt: ReceiptData) -> None:
    for size in SIZES:
        first = render_receipt_pdf(receipt, size=size, language="zh_CN")
        assert render_receipt_pdf(receipt, size=size, language="zh_CN") == first


def test_renderer_port_and_errors(receipt: ReceiptData) -> None:
    renderer: ReceiptRenderer = PdfReceiptRenderer()
    pdf = renderer.receipt_pdf(receipt, size="58", language="en")
    assert pdf == render_receipt_pdf(receipt, size="58", language="en")
    assert render_receipt_pdf(receipt, size="A5", language="zh") == render_receipt_pdf(
        receipt, size="a5", language="zh_CN"
    )
    with pytest.raises(ValidationError) as err:
        render_receipt_pdf(receipt, size="76", language="en")
    assert "76" in str(err.value) and "a4" in str(err.value)


# --------------------------------------------------------------------------- the QR code

QR_BLOCKS_M = {
    1: (1, 26, 16),
    2: (1, 44, 28),
    3: (1, 70, 44),
    4: (2, 50, 32),
    5: (2, 67, 43),
    6: (4, 43, 27),
}  # fmt: skip  version -> (blocks, codewords per block, data per block)
QR_LEVELS = {0b01: "L", 0b00: "M", 0b11: "Q", 0b10: "H"}
QR_MASKS = (
    lambda i, j: (i + j) % 2 == 0,
    lambda i, j: i % 2 == 0,
    lambda i, j: j % 3 == 0,
    lambda i, j: (i + j) % 3 == 0,
    lambda i, j: (i // 2 + j // 3) % 2 == 0,
    lambda i, j: (i * j) % 2 + (i * j) % 3 == 0,
    lambda i, j: ((i * j) % 2 + (i * j) % 3) % 2 == 0,
    lambda i, j: ((i + j) % 2 + (i * j) % 3) % 2 == 0,
)


def format_code(level_bits: int, mask: int) -> int:
    """The 15-bit format information: 5 data bits, BCH(15,5) remainder, XOR mask 0x5412."""
    data = (level_bits << 3) | mask
    rem = data << 10
    for bit in range(14, 9, -1):
        if rem >> bit & 1:
            rem ^= 0x537 << (bit - 10)
    return ((data << 10) | rem) ^ 0x5412


@dataclass
class DecodedQr:
    version: int
    level: str
    mask: int
    text: str


def decode_qr(m: list[list[bool]]) -> DecodedQr:
    """A small QR decoder for versions 1-6 at level M, byte mode, without error correction:
    read the format information, unmask, read the codewords in the zig-zag order, undo the
    block interleaving and parse the byte-mode segment."""
    n = len(m)
    version = (n - 17) // 4
    assert n == 17 + 4 * version and 1 <= version <= 6, n
    bits = [m[8][c] for c in (0, 1, 2, 3, 4, 5, 7, 8)] + [m[r][8] for r in (7, 5, 4, 3, 2, 1, 0)]
    read = int("".join("1" if b else "0" for b in bits), 2)
    codes = {format_code(lv, mk): (lv, mk) for lv in QR_LEVELS for mk in range(8)}
    assert read in codes, f"no valid format information: {read:015b}"
    level_bits, mask = codes[read]
    level = QR_LEVELS[level_bits]
    assert level == "M"

    def function(r: int, c: int) -> bool:
        if (r < 9 and c < 9) or (r < 9 and c >= n - 8) or (r >= n - 8 and c < 9):
            return True  # finders, separators, format information, the dark module
        if r == 6 or c == 6:
            return True  # timing patterns
        a = n - 7  # the one alignment pattern of versions 2-6
        return version >= 2 and abs(r - a) <= 2 and abs(c - a) <= 2

    stream: list[int] = []
    col, upward = n - 1, True
    while col > 0:
        if col == 6:
            col -= 1
        for r in range(n - 1, -1, -1) if upward else range(n):
            for c in (col, col - 1):
                if not function(r, c):
                    stream.append(int(m[r][c] ^ QR_MASKS[mask](r, c)))
        col -= 2
        upward = not upward
    codewords = [int("".join(map(str, stream[i : i + 8])), 2) for i in range(0, len(stream) - 7, 8)]
    blocks, per_block, data_per_block = QR_BLOCKS_M[version]
    assert len(codewords) == blocks * per_block
    data = [codewords[k * blocks + b] for b in range(blocks) for k in range(data_per_block)]
    bitstring = "".join(f"{byte:08b}" for byte in data)
    assert bitstring[:4] == "0100", "not a byte-mode segment"
    count = int(bitstring[4:12], 2)
    payload = bytes(int(bitstring[12 + 8 * i : 20 + 8 * i], 2) for i in range(count))
    assert bitstring[12 + 8 * count : 16 + 8 * count] in ("0000", bitstring[12 + 8 * count :])
    return DecodedQr(version, level, mask, payload.decode("ascii"))


def qr_from_pdf(pdf: bytes) -> tuple[float, float, float, list[list[bool]]]:
    """The QR code as drawn in the page content: module size, lower left corner, and the
    matrix rebuilt from its rectangles (quiet zone removed)."""
    for content in page_streams(pdf):
        found = re.search(rb"(\S+) 0 0 (\S+) (\S+) (\S+) cm\n((?:\d+ \d+ \d+ 1 re\n)+)f\n", content)
        if found:
            box, _, x, y = (float(v) for v in found.groups()[:4])
            runs = [tuple(map(int, ln.split()[:3])) for ln in found.group(5).splitlines()]
            top = max(r[1] for r in runs)
            left = min(r[0] for r in runs)
            size = top - min(r[1] for r in runs) + 1
            matrix = [[False] * size for _ in range(size)]
            for col, row, width in runs:
                for c in range(col, col + width):
                    matrix[top - row][c - left] = True
            return box, x, y, matrix
    raise AssertionError("no QR code path in the PDF")


def qr_from_image(png: Path, dpi: int, page_height: float, box: float, x: float, y: float,
                  size: int) -> list[list[bool]]:  # fmt: skip
    """The QR code sampled from the rendered image at the centre of every module."""
    from PIL import Image

    scale = dpi / 72
    border = QR_BORDER
    span = size + 2 * border
    with Image.open(png) as img:
        grey = img.convert("L")
        matrix = []
        for r in range(size):
            row = []
            for c in range(size):
                px = (x + (c + border + 0.5) * box) * scale
                py = (page_height - (y + (span - border - r - 0.5) * box)) * scale
                row.append(grey.getpixel((round(px), round(py))) < 128)
            matrix.append(row)
    return matrix


@pytest.mark.parametrize("size", SIZES)
def test_qr_code_in_the_rendered_image_decodes_to_the_payload(
    receipt: ReceiptData, size: str, tmp_path: Path
) -> None:
    assert receipt.qr_payload == f"CV1:{SALE_ID}:7K3QX9PA"
    pdf = render_receipt_pdf(receipt, size=size, language="zh_CN")
    box, x, y, drawn = qr_from_pdf(pdf)
    assert drawn == qr_modules(receipt.qr_payload)
    dpi = 200
    png = render_png(pdf, tmp_path, dpi)
    page_height = png_size(png)[1] * 72 / dpi
    seen = qr_from_image(png, dpi, page_height, box, x, y, len(drawn))
    assert seen == drawn
    decoded = decode_qr(seen)
    assert decoded.text == receipt.qr_payload
    assert (decoded.version, decoded.level) == (4, "M")
    assert box * len(drawn) / MM > 20  # modules large enough for a phone (over 20 mm across)
    text = squeeze(pdf_text(pdf, tmp_path))
    assert "3F2B8C1E" in text and "7K3QX9PA" in text  # printed under / beside the code


def test_qr_decoder_checks_itself() -> None:
    """The decoder above is not a tautology: a flipped data module changes the text."""
    modules = qr_modules("CV1:x:ABC")
    assert decode_qr(modules).text == "CV1:x:ABC"
    broken = [row[:] for row in modules]
    broken[len(broken) - 1][len(broken) - 1] ^= True  # the first data bit (mode indicator)
    with pytest.raises(AssertionError):
        decode_qr(broken)


# --------------------------------------------------------------------------- labels


def test_energy_and_money_are_formatted_from_integers() -> None:
    cases = {0: "0.00", 4: "0.00", 5: "0.01", 33182: "33.18", 33185: "33.19", 100_000: "100.00",
             -12345: "-12.35", 2**40 + 1: "1099511627.78"}  # fmt: skip
    for wh, kwh in cases.items():
        assert labels.kwh_text(wh) == kwh, wh
    assert labels.money(123456, "en") == "1234.56 yuan"
    assert labels.money(None, "en") == "—"


def test_wrap_fits_and_keeps_the_text() -> None:
    texts = [ADDRESS, "Meter balance (from card) is read from the card's write-back",
             "a" * 70, "居民阶梯电价（RES-TIER）第 3 版，价格，说明。"]  # fmt: skip
    for text in texts:
        for width in (8, 13, 20, 32, 48):
            lines = labels.wrap(text, width, columns)
            assert all(columns(line) <= width for line in lines), (text, width, lines)
            assert "".join(lines).replace(" ", "") == text.replace(" ", "")
            assert not any(line.startswith(("，", "。", "）")) for line in lines)


def test_every_label_is_marked_for_translation() -> None:
    """Each label the receipt prints is a module-level msgid in printing/labels.py (the catalog
    tool extracts them); formatted labels keep their placeholders."""
    source = Path(labels.__file__).read_text(encoding="utf-8")
    msgids = re.findall(r'N_\("([^"]+)"\)', source)
    assert len(msgids) >= 30
    for msgid in ("COPY {n}", "{amount} yuan", "{kwh} kWh", "TRAINING — not a real sale"):
        assert msgid in msgids


# --------------------------------------------------------------------------- font


def test_font_missing_or_broken_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(fonts.FontError) as err:
        fonts.load_font(tmp_path / "nowhere.ttc", "Nowhere")
    assert "nowhere.ttc" in str(err.value) and "missing" in str(err.value)
    junk = tmp_path / "junk.ttf"
    junk.write_bytes(b"not a font" * 100)
    with pytest.raises(fonts.FontError):
        fonts.load_font(junk, "Junk")


def test_font_registers_once_from_many_threads() -> None:
    names: list[str] = []
    threads = [threading.Thread(target=lambda: names.append(fonts.font_name())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert names == [fonts.FONT_NAME] * 8
    assert fonts.FONT_FILE.is_file()
    assert (fonts.FONT_DIR / "LICENSE-wqy-microhei.txt").is_file()


# --------------------------------------------------------------------------- ESC/POS


@dataclass
class PrintedLine:
    text: str
    double_width: bool
    bold: bool
    centred: bool


@dataclass
class EscPosJob:
    lines: list[PrintedLine]
    qr: list[tuple[int, bytes]]  # (fn, parameters) of every GS ( k
    chinese: bool | None
    cut: bool


def parse_escpos(data: bytes) -> EscPosJob:
    """Split an ESC/POS job into its commands and printed lines; an unknown command fails."""
    job = EscPosJob([], [], None, False)
    i, text = 0, bytearray()
    double = bold = centred = False
    assert data.startswith(INIT)
    while i < len(data):
        b = data[i]
        two = data[i : i + 2]
        if b == 0x0A:
            job.lines.append(PrintedLine(text.decode("gb18030"), double, bold, centred))
            text.clear()
            i += 1
        elif two == INIT:
            i += 2
        elif two in (CHINESE_ON, CHINESE_OFF):
            job.chinese = two == CHINESE_ON
            i += 2
        elif two in (b"\x1ba", b"\x1bE", b"\x1bd", b"\x1d!", b"\x1c!"):
            n = data[i + 2]
            if two == b"\x1ba":
                centred = n == 1
            elif two == b"\x1bE":
                bold = n == 1
            elif two == b"\x1d!":
                double = bool(n & 0x10)
            i += 3
        elif data[i : i + 3] == b"\x1d(k":
            length = data[i + 3] | data[i + 4] << 8
            body = data[i + 5 : i + 5 + length]
            assert body[0] == 49
            job.qr.append((body[1], body[2:]))
            i += 5 + length
        elif data[i : i + 3] == b"\x1dVB":
            job.cut = True
            assert i + 4 == len(data), "the cut is the last command"
            i += 4
        else:
            assert b >= 0x20, f"unknown command {data[i : i + 4]!r} at {i}"
            text.append(b)
            i += 1
    assert not text, "text after the last line feed"
    return job


@pytest.mark.parametrize("width", [48, 32])
@pytest.mark.parametrize("language", ["zh_CN", "en"])
def test_escpos_job(receipt: ReceiptData, width: int, language: str) -> None:
    marked = dataclasses.replace(receipt, copy_no=2, training=True)
    data = receipt_escpos(marked, language=language, width=width)
    assert data.startswith(INIT + CHINESE_ON)  # the customer's name is Chinese in both
    assert NAME.encode("gb18030") in data and ADDRESS[:10].encode("gb18030") in data
    payload = receipt.qr_payload.encode("ascii")
    store = b"\x1d(k" + bytes([(len(payload) + 3) & 0xFF, (len(payload) + 3) >> 8]) + b"1P0"
    assert store + payload in data
    assert data.endswith(CUT)

    job = parse_escpos(data)
    assert job.cut and job.chinese
    # model 2, module size, error level M, store, print - in this order
    assert [fn for fn, _ in job.qr] == [65, 67, 69, 80, 81]
    qr = dict(job.qr)
    assert qr[65] == b"2\x00" and qr[69] == b"1" and qr[80] == b"0" + payload and qr[81] == b"0"
    assert 3 <= qr[67][0] <= 8
    for line in job.lines:
        used = columns(line.text) * (2 if line.double_width else 1)
        assert used <= width, (line.text, used)
    texts = [line.text for line in job.lines]
    joined = "\n".join(texts)
    flat = squeeze(joined)
    assert NAME in flat and ADDRESS in flat and "500000000123" in joined and "3F2B8C1E" in joined
    assert "7K3QX9PA" in joined
    if language == "zh_CN":
        assert job.lines[0].text == "购电凭证" and job.lines[0].double_width and job.lines[0].bold
        assert "200.00 元" in joined and "33.18 千瓦时" in joined and "户名" in joined
        marks = ("副本 2", "培训 — 非真实售电")
    else:
        assert "Electricity purchase receipt" in squeeze(joined) or "Electricity" in texts[0]
        assert "200.00 yuan" in joined and "33.18 kWh" in joined and "Customer no." in joined
        marks = ("COPY 2", "TRAINING — not a real sale")
    for mark in marks:
        shown = [ln for ln in job.lines if ln.text == mark]
        assert len(shown) == 2 and all(ln.bold and ln.centred for ln in shown), mark
    # label left, value right-aligned to the last column
    fee = next(t for t in texts if t.startswith(("扣除费用", "Fees deducted")))
    assert columns(fee) == width and fee.endswith(("5.00 元", "5.00 yuan"))


def test_escpos_plain_ascii_receipt_leaves_chinese_mode(receipt: ReceiptData) -> None:
    ascii_receipt = dataclasses.replace(
        receipt, customer_name="Ouyang Nana", address="88 Changjiang Road, Binjiang",
        office_name="Chengdong office", operator_name="Li Xiuying", tariff_name="Tiered",
    )  # fmt: skip
    data = receipt_escpos(ascii_receipt, language="en", width=32)
    assert data.startswith(INIT + CHINESE_OFF)
    job = parse_escpos(data)
    assert all(line.text.isascii() for line in job.lines)
    assert all(len(line.text) <= 32 for line in job.lines)
    assert dict(job.qr)[67] == b"\x05"  # smaller modules on 58 mm paper


def test_escpos_data_cannot_inject_commands_or_lines(receipt: ReceiptData) -> None:
    hostile = dataclasses.replace(
        receipt, customer_name="王\x1b@\x1dVB\x00小明", address="第一行\n第二行\r\t第三行"
    )
    data = receipt_escpos(hostile, language="zh_CN", width=32)
    assert data.count(INIT) == 1 and data.count(CUT) == 1
    job = parse_escpos(data)
    texts = [line.text for line in job.lines]
    assert any(t.endswith("王 @ VB 小明") for t in texts)
    assert any("第一行 第二行 第三行" in t for t in texts)
    pdf_text_flat = squeeze(labels.receipt_text(hostile, "zh_CN").customer[2].value)
    assert pdf_text_flat == "第一行第二行第三行"


def test_escpos_remote_and_reversed(receipt: ReceiptData) -> None:
    remote = dataclasses.replace(receipt, kind="remote", meter_balance=None, state="reversed")
    job = parse_escpos(receipt_escpos(remote, language="en"))
    joined = " ".join(line.text for line in job.lines)
    assert "queued for the meter" in joined and "REVERSED" in joined
    balance = next(ln.text for ln in job.lines if ln.text.startswith("Meter balance"))
    assert balance.endswith("—")
    with pytest.raises(ValueError):
        receipt_escpos(receipt, language="en", width=12)


def test_status_bytes() -> None:
    assert STATUS_QUERY == b"\x10\x04\x04" and STATUS_PRINTER == b"\x10\x04\x01"
    assert escpos.STATUS_OFFLINE == b"\x10\x04\x02"
    # DLE EOT 1: fixed bits 0x12; bit 3 offline
    assert parse_printer_status(0x12) is None
    assert parse_printer_status(0x16) is None  # drawer pin 3 high is not a problem
    assert parse_printer_status(0x1A) == "offline"
    # DLE EOT 2: bit 2 cover open, bit 5 paper end stop, bit 6 error
    assert parse_offline_status(0x12) is None
    assert parse_offline_status(0x1A) is None  # paper being fed by the button
    assert parse_offline_status(0x16) == "cover_open"
    assert parse_offline_status(0x32) == "paper_out"
    assert parse_offline_status(0x52) == "offline"
    # DLE EOT 4: bits 2-3 near end, bits 5-6 paper end
    assert parse_paper_status(0x12) is None
    assert parse_paper_status(0x1E) == "paper_near_end"
    assert parse_paper_status(0x72) == "paper_out"
    assert parse_paper_status(0x7E) == "paper_out"


def test_concurrent_renders_match_serial_ones(receipt: ReceiptData) -> None:
    """Renders on several threads at once (a GUI worker and a printer) give the same bytes as
    one at a time: the font's per-document state is not shared between documents."""
    jobs = [
        (dataclasses.replace(receipt, purchase_count=i, customer_name=NAME[: 1 + i % 4]), size)
        for i, size in enumerate(SIZES * 10)
    ]
    serial = [render_receipt_pdf(r, size=s, language="zh_CN") for r, s in jobs]
    results: dict[int, bytes] = {}

    def work(k: int) -> None:
        for i in range(k, len(jobs), 4):
            r, s = jobs[i]
            results[i] = render_receipt_pdf(r, size=s, language="zh_CN")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(len(jobs))] == serial
