"""Durable SQLite buffer: group commit, seqs that only grow, a hard byte budget."""

from gateway.buffer.buffer import BufferError, DurableBuffer, NewRecord, PendingGap, StoredRecord

__all__ = ["BufferError", "DurableBuffer", "NewRecord", "PendingGap", "StoredRecord"]
