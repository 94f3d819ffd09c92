"""SMS-SUBMIT PDUs (3GPP TS 23.040 §9.2.2.2) and how a message is split into SMS parts.

One part holds 160 GSM-7 septets or 70 UCS-2 characters; a multipart message carries a
concatenation header (IEI 0x00, 8-bit reference) and leaves 153 septets / 67 characters a part.
A GSM-7 escape pair and a UTF-16 surrogate pair are never split between parts.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from hamlet.sms import gsm7

SINGLE = {"gsm7": 160, "ucs2": 70}  # septets / UTF-16 units in a lone SMS
MULTI = {"gsm7": 153, "ucs2": 67}  # the same after a 6-octet concatenation header
MAX_PARTS = 255  # the 8-bit part counter's limit

_NUMBER = re.compile(r"^\+?[0-9]{3,20}$")


class Alphabet(enum.StrEnum):
    GSM7 = "gsm7"
    UCS2 = "ucs2"


class PduError(ValueError):
    """A message or number that cannot be made into an SMS-SUBMIT."""


@dataclass(frozen=True)
class Part:
    """One SMS of a message: the PDU hex for AT+CMGS and its TPDU length in octets."""

    pdu_hex: str
    tpdu_len: int  # what AT+CMGS=<n> wants: the octets after the SMSC field
    seq: int
    total: int


def choose_alphabet(text: str) -> Alphabet:
    return Alphabet.GSM7 if gsm7.is_gsm7(text) else Alphabet.UCS2


def for_one_sms(text: str) -> tuple[str, Alphabet]:
    """The text to send when it must fit a single SMS: as is when it does, else its unaccented
    GSM-7 form (cut at 160 septets, ending in '...' when cut)."""
    alphabet = choose_alphabet(text)
    if alphabet is Alphabet.GSM7 and gsm7.septet_len(text) <= SINGLE["gsm7"]:
        return text, alphabet
    if alphabet is Alphabet.UCS2 and len(text.encode("utf-16-be")) // 2 <= SINGLE["ucs2"]:
        return text, alphabet
    plain = gsm7.unaccent(text)
    if gsm7.septet_len(plain) <= SINGLE["gsm7"]:
        return plain, Alphabet.GSM7
    cut = plain
    while gsm7.septet_len(cut) > SINGLE["gsm7"] - 3:
        cut = cut[:-1]
    return cut + "...", Alphabet.GSM7


def split(text: str, alphabet: Alphabet) -> list[str]:
    """The text of each SMS part, in order (one element when it fits one SMS)."""
    if alphabet is Alphabet.GSM7:
        units = [gsm7.septet_len(ch) for ch in text]
    else:
        units = [len(ch.encode("utf-16-be")) // 2 for ch in text]
    if sum(units) <= SINGLE[alphabet]:
        return [text]
    parts: list[str] = []
    start, used = 0, 0
    for i, n in enumerate(units):
        if used + n > MULTI[alphabet]:
            parts.append(text[start:i])
            start, used = i, 0
        used += n
    parts.append(text[start:])
    if len(parts) > MAX_PARTS:
        raise PduError(f"message needs {len(parts)} SMS parts; at most {MAX_PARTS} can be joined")
    return parts


def encode_number(number: str) -> bytes:
    """TP-DA: digit count, type of address, BCD digits swapped in pairs (TS 23.040 §9.1.2.5)."""
    if not _NUMBER.match(number):
        raise PduError(f"phone number {number!r} must be digits, optionally starting with +")
    international = number.startswith("+")
    digits = number.lstrip("+")
    toa = 0x91 if international else 0x81
    padded = digits + ("F" if len(digits) % 2 else "")
    swapped = "".join(padded[i + 1] + padded[i] for i in range(0, len(padded), 2))
    return bytes([len(digits), toa]) + bytes.fromhex(swapped)


def submit_pdus(
    number: str, text: str, alphabet: Alphabet | None = None, ref: int = 0
) -> list[Part]:
    """The SMS-SUBMIT PDU of each part of ``text`` to ``number``; ``ref`` (0–255) ties the
    parts of one multipart message together at the phone."""
    if not text:
        raise PduError("an SMS needs some text")
    alphabet = alphabet or choose_alphabet(text)
    texts = split(text, alphabet)
    total = len(texts)
    da = encode_number(number)
    out: list[Part] = []
    for seq, chunk in enumerate(texts, start=1):
        udh = b"" if total == 1 else bytes([0x05, 0x00, 0x03, ref & 0xFF, total, seq])
        if alphabet is Alphabet.GSM7:
            septets = gsm7.to_septets(chunk)
            fill = (7 - (len(udh) * 8) % 7) % 7 if udh else 0
            header_septets = (len(udh) * 8 + fill) // 7
            body = gsm7.pack(septets, fill)
            udl = header_septets + len(septets)
            dcs = 0x00
        else:
            body = chunk.encode("utf-16-be")
            udl = len(udh) + len(body)
            dcs = 0x08
        # TP-MTI=01 (SUBMIT), TP-VPF=10 (relative), TP-UDHI when there is a header.
        first = 0x11 | (0x40 if udh else 0)
        # TP-MR 0 (the modem sets it), TP-PID 0, TP-VP 0xAA = 4 days.
        tpdu = bytes([first, 0x00]) + da + bytes([0x00, dcs, 0xAA, udl]) + udh + body
        # SMSC length 0: use the SMSC stored on the SIM (AT+CSCA).
        out.append(
            Part(pdu_hex="00" + tpdu.hex().upper(), tpdu_len=len(tpdu), seq=seq, total=total)
        )
    return out


@dataclass(frozen=True)
class Incoming:
    """An SMS the modem received (SMS-DELIVER), e.g. a farmer's STOP reply."""

    index: int  # its slot in the modem's storage, for AT+CMGD
    sender: str
    text: str


def normalize_number(number: str) -> str:
    """One spelling of a Vietnamese mobile number: 0912… and 84912… become +84912…"""
    n = re.sub(r"[\s.-]", "", number)
    if n.startswith("0") and not n.startswith("00"):
        return "+84" + n[1:]
    if n.startswith("84") and len(n) >= 11:
        return "+" + n
    return n


def decode_deliver(pdu_hex: str) -> tuple[str, str]:
    """Sender and text of an SMS-DELIVER PDU (TS 23.040 §9.2.2.1), SMSC field first."""
    try:
        raw = bytes.fromhex(pdu_hex)
        tpdu = raw[1 + raw[0] :]
        first = tpdu[0]
        if first & 0x03 != 0x00:
            raise PduError("not an SMS-DELIVER")
        digits_n, toa = tpdu[1], tpdu[2]
        oa_octets = (digits_n + 1) // 2
        oa = tpdu[3 : 3 + oa_octets]
        i = 3 + oa_octets
        dcs = tpdu[i + 1]
        udl = tpdu[i + 9]  # after PID, DCS and the 7-octet timestamp
        ud = tpdu[i + 10 :]
    except (ValueError, IndexError) as err:
        raise PduError("malformed SMS-DELIVER PDU") from err
    if toa & 0x70 == 0x50:  # alphanumeric sender (an operator's name), GSM-7 packed
        sender = gsm7.from_septets(gsm7.unpack(oa, digits_n * 4 // 7))
    else:
        bcd = oa.hex().upper()
        sender = "".join(bcd[k + 1] + bcd[k] for k in range(0, len(bcd), 2))[:digits_n]
        sender = ("+" if toa & 0x70 == 0x10 else "") + sender
    header = (ud[0] + 1) if first & 0x40 and ud else 0
    if (dcs >> 2) & 0x03 == 2:
        return sender, ud[header:udl].decode("utf-16-be", "replace")
    skip = ((header * 8 + 6) // 7) * 7
    try:
        septets = gsm7.unpack(ud, udl, 0)[skip // 7 :] if header else gsm7.unpack(ud, udl)
    except gsm7.EncodingError as err:
        raise PduError("SMS-DELIVER user data shorter than its length") from err
    return sender, gsm7.from_septets(septets)
