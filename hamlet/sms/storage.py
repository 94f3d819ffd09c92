"""Sending through the modem's storage, so a crash or a lost answer never sends twice.

An SMS is written to storage (``AT+CMGW``, STO UNSENT), its indexes made durable by the
caller, then sent from storage (``AT+CMSS``). The modem marks it STO SENT once it has gone,
whether or not the host lives to read the answer (3GPP TS 27.005 §3.5), so after a crash or a
timeout the stored status says whether it went. Used by the server's SMS channel and the
gateway's edge sender; each keeps the indexes in its own durable record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from hamlet.sms.errors import SendFailed
from hamlet.sms.modem import STO_SENT, STO_UNSENT, STORAGE_FULL, AsyncGsmModem


async def sweep(modem: AsyncGsmModem, held: set[int]) -> int:
    """Delete the outgoing messages in storage that no unsettled send holds (sent and
    settled before a crash, or stored by a send cut off before its indexes were kept: that
    one had not gone and goes again); how many. Run before anything is sent."""
    n = 0
    for index, _stat in await modem.outgoing_stored():
        if index not in held:
            await modem.delete(index)
            n += 1
    return n


async def store(
    modem: AsyncGsmModem, phone: str, text: str, held: Callable[[], Awaitable[set[int]]]
) -> list[int]:
    """``AT+CMGW`` the message; when storage is full of leftovers, sweep them and try again.

    Safe only for a sender that sends one message at a time: every stored message still
    wanted then has its indexes in ``held()``.
    """
    try:
        return await modem.store(phone, text)
    except SendFailed as err:
        if err.code != STORAGE_FULL or not await sweep(modem, await held()):
            raise
    return await modem.store(phone, text)


async def statuses(modem: AsyncGsmModem, slots: Sequence[int]) -> list[int | None] | None:
    """What storage says of a message stored before a crash or a lost answer: each part's
    status (STO UNSENT or STO SENT), or None when the modem no longer has it (power-cycled,
    swapped, or a reply received since into a freed index). Parts left over from a lost
    message are deleted: they are no longer trusted, and the message must go again."""
    stats = [await modem.stored_status(i) for i in slots]
    if all(stat in (STO_UNSENT, STO_SENT) for stat in stats):
        return list(stats)
    for index, stat in zip(slots, stats, strict=True):
        if stat in (STO_UNSENT, STO_SENT):
            await modem.delete(index)
    return None


def already_went(stats: Sequence[int | None]) -> bool:
    return all(stat == STO_SENT for stat in stats)


async def send(
    modem: AsyncGsmModem,
    slots: Sequence[int],
    stats: Sequence[int | None],
    forget: Callable[[], Awaitable[None]],
) -> None:
    """``AT+CMSS`` each part not yet sent (``stats``: None for a fresh message).

    On ``+CMS ERROR`` the part did not go: ``forget()`` drops the caller's record of the
    indexes, then the stored copies are deleted, and :class:`SendFailed` is raised (the retry
    stores the message anew). When the modem does not answer the part may have gone: the
    indexes stay, and the retry reads their status first.
    """
    try:
        for n, (index, stat) in enumerate(zip(slots, stats, strict=True)):
            if stat != STO_SENT:
                await modem.send_stored(index, n)
    except SendFailed:
        await forget()  # first: a crash after it leaves a leftover for the sweep, not a lie
        for index in slots:
            await modem.delete(index)
        raise
