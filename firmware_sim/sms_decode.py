"""The network side of SMS for the simulated modem: decode what the gateway submits, and make
the SMS-DELIVER PDUs of replies a phone sends (a farmer's "STOP").

Written apart from :mod:`hamlet.sms.pdu` on purpose (bit strings rather than shifts, its own
copy of the alphabet's decoding), so a bug in the driver's encoder shows up as a wrong text in
what the simulated modem "sent" instead of being undone by the same bug.
"""

from __future__ import annotations

from dataclasses import dataclass

_GSM = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXT = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~",
            0x3E: "]", 0x40: "|", 0x65: "€"}  # fmt: skip


class SmsDecodeError(ValueError):
    """Bytes that are not a well-formed SMS-SUBMIT."""


@dataclass
class DecodedSubmit:
    number: str
    text: str
    alphabet: str
    ref: int | None = None
    seq: int = 1
    total: int = 1


def _septets_from(octets: bytes, skip_bits: int, count: int) -> list[int]:
    # Octets are LSB-first: write each octet's bits reversed, read 7-bit groups reversed back.
    bits = "".join(format(o, "08b")[::-1] for o in octets)[skip_bits:]
    if len(bits) < 7 * count:
        raise SmsDecodeError("user data shorter than its length says")
    return [int(bits[7 * i : 7 * i + 7][::-1], 2) for i in range(count)]


def _gsm_text(septets: list[int]) -> str:
    out, escaped = [], False
    for s in septets:
        if escaped:
            out.append(_GSM_EXT.get(s, " "))
            escaped = False
        elif s == 0x1B:
            escaped = True
        else:
            out.append(_GSM[s])
    return "".join(out)


def decode_submit(pdu_hex: str, tpdu_len: int | None = None) -> DecodedSubmit:
    """Decode ``pdu_hex`` (with its SMSC field first, as AT+CMGS takes it in PDU mode)."""
    try:
        return _decode_submit(pdu_hex, tpdu_len)
    except IndexError as err:
        raise SmsDecodeError("PDU too short") from err


def _decode_submit(pdu_hex: str, tpdu_len: int | None) -> DecodedSubmit:
    try:
        raw = bytes.fromhex(pdu_hex)
    except ValueError as err:
        raise SmsDecodeError("PDU is not hex") from err
    try:
        sca_len = raw[0]
        tpdu = raw[1 + sca_len :]
        if tpdu_len is not None and len(tpdu) != tpdu_len:
            raise SmsDecodeError(f"AT+CMGS said {tpdu_len} octets, PDU has {len(tpdu)}")
        first = tpdu[0]
        if first & 0x03 != 0x01:
            raise SmsDecodeError("not an SMS-SUBMIT")
        digits_n, toa = tpdu[2], tpdu[3]
        da_octets = (digits_n + 1) // 2
        bcd = tpdu[4 : 4 + da_octets].hex().upper()
        digits = "".join(bcd[i + 1] + bcd[i] for i in range(0, len(bcd), 2))[:digits_n]
        number = ("+" if toa == 0x91 else "") + digits
        i = 4 + da_octets
        dcs = tpdu[i + 1]
        vpf = (first >> 3) & 0x03
        i += 2 + {0: 0, 2: 1}.get(vpf, 7)
        udl = tpdu[i]
        ud = tpdu[i + 1 :]
    except IndexError as err:
        raise SmsDecodeError("PDU too short") from err
    ref, seq, total = None, 1, 1
    header_len = 0
    if first & 0x40:
        header_len = ud[0] + 1
        hdr = ud[1:header_len]
        j = 0
        while j + 1 < len(hdr):
            iei, ln = hdr[j], hdr[j + 1]
            if iei == 0x00 and ln == 3:
                ref, total, seq = hdr[j + 2], hdr[j + 3], hdr[j + 4]
            elif iei == 0x08 and ln == 4:
                ref, total, seq = (hdr[j + 2] << 8) | hdr[j + 3], hdr[j + 4], hdr[j + 5]
            j += 2 + ln
    alphabet_bits = (dcs >> 2) & 0x03
    if alphabet_bits == 0:
        skip = ((header_len * 8 + 6) // 7) * 7  # header plus fill, in whole septets
        text = _gsm_text(_septets_from(ud, skip, udl - skip // 7))
        return DecodedSubmit(number, text, "gsm7", ref, seq, total)
    if alphabet_bits == 2:
        body = ud[header_len:udl]
        if len(body) % 2:
            raise SmsDecodeError("UCS-2 body has an odd length")
        return DecodedSubmit(number, body.decode("utf-16-be", "replace"), "ucs2", ref, seq, total)
    raise SmsDecodeError(f"data coding scheme {dcs:#04x} is not GSM-7 or UCS-2")


def _pack_bits(septets: list[int]) -> bytes:
    bits = "".join(format(s, "07b")[::-1] for s in septets)
    bits += "0" * (-len(bits) % 8)
    return bytes(int(bits[i : i + 8][::-1], 2) for i in range(0, len(bits), 8))


def encode_deliver(sender: str, text: str, scts: bytes = bytes.fromhex("62119202000023")) -> str:
    """An SMS-DELIVER PDU (hex, empty SMSC field) from ``sender`` with ``text``: GSM-7 when
    every character is in the basic table, else UCS-2. ``scts`` is the centre's timestamp."""
    digits = sender.lstrip("+")
    toa = 0x91 if sender.startswith("+") else 0x81
    padded = digits + ("F" if len(digits) % 2 else "")
    oa = bytes([len(digits), toa]) + bytes.fromhex(
        "".join(padded[i + 1] + padded[i] for i in range(0, len(padded), 2))
    )
    if all(ch in _GSM and ch != "\x1b" for ch in text):
        ud = bytes([len(text)]) + _pack_bits([_GSM.index(ch) for ch in text])
        dcs = 0x00
    else:
        body = text.encode("utf-16-be")
        ud = bytes([len(body)]) + body
        dcs = 0x08
    tpdu = bytes([0x04]) + oa + bytes([0x00, dcs]) + scts + ud  # 0x04: DELIVER, no more msgs
    return "00" + tpdu.hex().upper()
