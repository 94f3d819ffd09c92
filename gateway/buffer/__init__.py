"""Durable SQLite buffer: group commit, seqs that only grow, a hard byte budget."""

from gateway.buffer.buffer import (
    DUPLICATE,
    REFUSED,
    BufferError,
    DurableBuffer,
    NewRecord,
    PendingGap,
    StoredRecord,
)

__all__ = [
    "DUPLICATE",
    "REFUSED",
    "BufferError",
    "DurableBuffer",
    "NewRecord",
    "PendingGap",
    "StoredRecord",
]
