"""The edge trigger's open episodes on disk, so a restarted gateway goes on with them.

An alert's natural id holds its episode's start (``hamlet.edgeplan.natural_alert_id``). Kept
only in memory, an episode going on when the gateway restarted began afresh at the next
reading: a later start, another id, and a second SMS for the same salinity event. The file is
rewritten only when an episode starts, ends or becomes the gateway's to send (not at every
reading: a few writes a day on the SD card), and before the SMS that depends on it goes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from hamlet.alerteval import Episode
from hamlet.durable import write_atomic

log = logging.getLogger(__name__)

SeriesKey = tuple[str, str, str]  # rule, device, metric


@dataclass
class Series:
    """One rule on one device's metric: the episode going on, and whether it is ours to send
    (it fired while the uplink was down; otherwise the server got the readings and sends)."""

    episode: Episode | None = None
    ours: bool = False

    def identity(self) -> tuple[int | None, bool]:
        """What the file must agree with (the peak and last reading may lag behind)."""
        return (self.episode.start if self.episode is not None else None, self.ours)


class _EpisodeRow(BaseModel):
    start: int
    peak: float
    peak_t: int
    last_t: int
    value: float
    end: int | None = None


class _Row(BaseModel):
    rule: str
    device: str
    metric: str
    episode: _EpisodeRow
    ours: bool


class _Doc(BaseModel):
    series: list[_Row]


class EpisodeFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[SeriesKey, Series]:
        """The episodes open when the gateway stopped; none from a missing or damaged file
        (they start afresh at the next reading, as before the file existed)."""
        try:
            doc = _Doc.model_validate_json(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:  # pydantic's ValidationError is a ValueError
            log.warning("edge alerts: open episodes unreadable (%s); they start afresh", err)
            return {}
        return {
            (r.rule, r.device, r.metric): Series(Episode(**r.episode.model_dump()), r.ours)
            for r in doc.series
        }

    def save(self, series: dict[SeriesKey, Series]) -> None:
        """Replace the file (``hamlet.durable.write_atomic``)."""
        rows = [
            {"rule": r, "device": d, "metric": m, "episode": s.episode.to_json(), "ours": s.ours}
            for (r, d, m), s in series.items()
            if s.episode is not None
        ]
        write_atomic(self.path, json.dumps({"series": rows}, ensure_ascii=False).encode())
