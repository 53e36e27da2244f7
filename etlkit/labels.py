"""Character codes -> Unicode, Shift-JIS and script class, with the ETL kana traps handled.

Labels always come from each record's own code, never from file position or the truncated
reading field (docs/etl-formats.md §6). Conversion runs once per distinct code (a file has at most a
few thousand) and is broadcast back, so it costs nothing per record. Python's `shift_jis` and
`euc_jp` codecs do the table work.
"""

import unicodedata
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np

from .errors import EtlError

SCRIPTS = ("hiragana", "katakana", "kanji", "digit", "latin", "symbol")
NO_SCRIPT = "none"
#: The yōon/sokuon small kana and the full-size kana they merge into for the "merged" tasks.
SMALL_KANA = dict(zip("ぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮヵヶ",
                      "あいうえおつやゆよわアイウエオツヤユヨワカケ", strict=True))

_KATA_TO_HIRA = {k: k - 0x60 for k in range(0x30A1, 0x30F7)}


@cache
def jis0201_char(code: int, *, hiragana: bool = False, wi_we: bool = False) -> str:
    """One JIS X 0201 byte as the character it stands for ("" if it stands for none).

    Kana become full-width; 0x5C is ¥ and 0x7E is ‾ (JIS X 0201, not ASCII); ﾞ/ﾟ become the
    spacing marks ゛/゜ rather than NFKC's combining ones. `wi_we` reads 0xA8/0xAA as ヰ/ヱ, which
    is how ETL-1, ETL-4 and ETL-5 store them (JIS X 0201 has no ヰ/ヱ); `hiragana` reads the kana
    as hiragana (ETL-4 and ETL-7 store hiragana under katakana codes).
    """
    if code in (0xA8, 0xAA) and wi_we:
        char = "ヰ" if code == 0xA8 else "ヱ"
    elif code in (0xDE, 0xDF):
        char = "゛" if code == 0xDE else "゜"
    elif 0x20 <= code <= 0x7E or 0xA1 <= code <= 0xDF:
        char = unicodedata.normalize("NFKC", bytes([code]).decode("shift_jis"))
        char = {"\\": "¥", "~": "‾"}.get(char, char)
    else:
        return ""
    return char.translate(_KATA_TO_HIRA) if hiragana else char


@cache
def jis0208_char(code: int) -> str:
    """One JIS X 0208 word (row << 8 | cell) as its character ("" if it has none)."""
    hi, lo = code >> 8, code & 0xFF
    if not (0x21 <= hi <= 0x7E and 0x21 <= lo <= 0x7E):
        return ""
    try:
        return bytes([hi | 0x80, lo | 0x80]).decode("euc_jp")
    except UnicodeDecodeError:
        return ""


def load_co59(path: str | Path) -> dict[int, str]:
    """AIST's `euc_co59.dat` (shipped with ETL-2): EUC-JP text of `char:hi,lo` entries.

    Returns CO-59 code (hi << 6 | lo) -> character. etlkit cannot ship this table; ETL-2 users
    receive it from AIST with the data.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("euc_jp")
    except (OSError, UnicodeDecodeError) as err:
        raise EtlError(f"{path}: not a readable EUC-JP CO-59 table ({err})") from None
    table = {}
    for entry in text.split():
        char, sep, pair = entry.rpartition(":")
        hi, comma, lo = pair.partition(",")
        if not (sep and comma and hi.isdigit() and lo.isdigit() and len(char) == 1):
            raise EtlError(f"{path}: entry {entry!r} is not of the form char:hi,lo")
        table[int(hi) << 6 | int(lo)] = char
    return table


@cache
def sjis_code(char: str) -> int:
    """The Shift-JIS code of a character as an int (two bytes for full-width ones), 0 if none."""
    try:
        return int.from_bytes(char.encode("shift_jis"), "big") if char else 0
    except UnicodeEncodeError:
        return 0


def class_code(name: str) -> int:
    """The Shift-JIS code a class named `name` has in every class table (manifest.json,
    config.json): its character's own, or 0 for a class that is not one character (the script
    task's "hiragana", ...). A table whose code differs from this has been changed."""
    return sjis_code(name) if len(name) == 1 else 0


@cache
def script_of(char: str) -> str:
    """hiragana, katakana, kanji, digit, latin or symbol; NO_SCRIPT for an empty label."""
    if not char:
        return NO_SCRIPT
    cp = ord(char)
    if 0x3041 <= cp <= 0x3096:
        return "hiragana"
    if 0x30A1 <= cp <= 0x30FA or cp == 0x30FC:
        return "katakana"
    if 0x4E00 <= cp <= 0x9FFF or cp in (0x3005, 0x3006, 0x3007):
        return "kanji"
    if char.isdigit():
        return "digit"
    if unicodedata.category(char).startswith("L") and unicodedata.name(char, "").find("LATIN") >= 0:
        return "latin"
    return "symbol"


def label_arrays(codes: np.ndarray, to_char: Callable[[int], str]):
    """codes -> (chars <U1, sjis int32, scripts <U8), converting each distinct code once."""
    uniq, inverse = np.unique(codes, return_inverse=True)
    chars = [to_char(int(c)) for c in uniq]
    u_chars = np.array(chars, dtype="<U1")
    u_sjis = np.array([sjis_code(c) for c in chars], dtype=np.int32)
    u_scripts = np.array([script_of(c) for c in chars], dtype="<U8")
    return u_chars[inverse], u_sjis[inverse], u_scripts[inverse]


def sjis_hex(code: int) -> str | None:
    """0x82A0-style, or None for classes that are not characters (the script task's)."""
    return f"0x{code:04X}" if code else None
