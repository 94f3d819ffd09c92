"""GSM 03.38 / 3GPP TS 23.038 default alphabet: characters, septet packing, diacritics.

A Vietnamese message with diacritics needs UCS-2 (70 characters an SMS); its unaccented form
("Do man 0,7 g/l") fits GSM-7 (160), which is what a one-SMS message falls back to.
"""

from __future__ import annotations

import unicodedata

# Index = septet value (TS 23.038 §6.2.1). 0x1B is the escape to the extension table.
BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
ESC = 0x1B
# Extension table (TS 23.038 §6.2.1.1): each costs two septets, ESC + code.
EXTENSION = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D,
             "]": 0x3E, "|": 0x40, "€": 0x65}  # fmt: skip

_BASIC_INDEX = {ch: i for i, ch in enumerate(BASIC) if i != ESC}
_EXT_DECODE = {v: k for k, v in EXTENSION.items()}

# Characters with no GSM-7 form that alert messages use, spelled so a farmer reads them.
# Salinity in ‰ is numerically g/l, the unit Mekong salinity bulletins use.
_TRANSLIT = {"đ": "d", "Đ": "D", "‰": " g/l", "–": "-", "—": "-", "…": "...", "‘": "'",
             "’": "'", "“": '"', "”": '"', "·": ".", "≥": ">=", "≤": "<=", "°": " do"}  # fmt: skip


class EncodingError(ValueError):
    """Text that cannot be put into the requested alphabet."""


def is_gsm7(text: str) -> bool:
    """True when every character is in the default alphabet or its extension."""
    return all(ch in _BASIC_INDEX or ch in EXTENSION for ch in text)


def to_septets(text: str) -> list[int]:
    """Septet values of ``text`` (extension characters become ESC + code)."""
    out: list[int] = []
    for ch in text:
        code = _BASIC_INDEX.get(ch)
        if code is not None:
            out.append(code)
        elif ch in EXTENSION:
            out += [ESC, EXTENSION[ch]]
        else:
            raise EncodingError(f"{ch!r} (U+{ord(ch):04X}) is not in the GSM 7-bit alphabet")
    return out


def from_septets(septets: list[int]) -> str:
    """Text of a septet sequence; an unknown extension code reads as a space (§6.2.1.1)."""
    out: list[str] = []
    it = iter(septets)
    for s in it:
        if s == ESC:
            nxt = next(it, None)
            if nxt is None:
                break  # a dangling escape at the end of a part: nothing to print
            out.append(_EXT_DECODE.get(nxt, " "))
        else:
            out.append(BASIC[s])
    return "".join(out)


def septet_len(text: str) -> int:
    """Septets ``text`` occupies (extension characters count twice)."""
    return sum(2 if ch in EXTENSION else 1 for ch in text)


def pack(septets: list[int], fill_bits: int = 0) -> bytes:
    """Pack 7-bit values LSB first into octets, after ``fill_bits`` zero bits (TS 23.038 §6.1.2.1;
    the fill aligns the text to a septet boundary after a user data header)."""
    acc = 0
    nbits = fill_bits
    out = bytearray()
    for s in septets:
        acc |= (s & 0x7F) << nbits
        nbits += 7
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc & 0xFF)
    return bytes(out)


def unpack(data: bytes, count: int, fill_bits: int = 0) -> list[int]:
    """``count`` septets from packed ``data``, skipping ``fill_bits`` leading bits."""
    value = int.from_bytes(data, "little")
    if (len(data) * 8 - fill_bits) // 7 < count:
        raise EncodingError(f"{len(data)} octets cannot hold {count} septets")
    return [(value >> (fill_bits + 7 * i)) & 0x7F for i in range(count)]


def unaccent(text: str) -> str:
    """The GSM-7 form of a Vietnamese (or any) text: diacritics stripped (đ→d, ế→e), a few
    symbols spelled out, anything else without a GSM-7 form replaced by '?'."""
    out: list[str] = []
    for ch in text:
        if ch in _BASIC_INDEX or ch in EXTENSION:
            out.append(ch)
            continue
        if ch in _TRANSLIT:
            out.append(_TRANSLIT[ch])
            continue
        base = "".join(c for c in unicodedata.normalize("NFD", ch) if not unicodedata.combining(c))
        base = "".join(_TRANSLIT.get(c, c) for c in base)
        out.append(base if base and is_gsm7(base) else "?")
    return "".join(out)
