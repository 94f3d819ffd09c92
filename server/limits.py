"""``GET /api/v1/limits``: the ingest bounds of this server, for clients sizing batches.

Public and read-only: the figures are the contract's and the configuration's, no data.
"""

from __future__ import annotations

from fastapi import APIRouter

from hamlet.contract import IngestLimits
from server.deps import State

router = APIRouter(prefix="/api/v1", tags=["ingest"])


@router.get("/limits", response_model=IngestLimits, summary="Ingest limits of this server")
async def limits(state: State) -> IngestLimits:
    cfg = state.config.ingest
    return IngestLimits(
        max_body_bytes=cfg.max_body_bytes, max_decompressed_bytes=cfg.max_decompressed_bytes
    )
