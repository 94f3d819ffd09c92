"""The edge trigger's open episodes on disk: round trip, ended ones dropped, damage survived."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.notify.episodes import EpisodeFile, Series
from hamlet.alerteval import Episode


def test_open_episodes_round_trip_and_ended_ones_are_dropped(tmp_path: Path) -> None:
    f = EpisodeFile(tmp_path / "notify" / "edge-episodes.json")
    assert f.load() == {}
    going = Series(Episode(start=1000, peak=0.9, peak_t=2000, last_t=3000, value=0.7), ours=True)
    series = {
        ("salinity.danger", "sal-1", "salinity"): going,
        ("salinity.watch", "sal-1", "salinity"): Series(),  # ended: nothing to go on with
    }
    f.save(series)
    assert f.load() == {("salinity.danger", "sal-1", "salinity"): going}
    assert not (tmp_path / "notify" / "edge-episodes.json.tmp").exists()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_a_damaged_file_starts_afresh_instead_of_failing(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "edge-episodes.json"
        path.write_bytes(data)
        loaded = EpisodeFile(path).load()
    assert all(isinstance(s.episode, Episode) for s in loaded.values())


_VALUES = st.none() | st.integers() | st.floats() | st.text(max_size=5) | st.booleans()
_EPISODE = st.dictionaries(
    st.sampled_from(["start", "peak", "peak_t", "last_t", "value", "end"]), _VALUES
)
_ROW = st.dictionaries(
    st.sampled_from(["rule", "device", "metric", "episode", "ours"]), _VALUES | _EPISODE
)


@given(st.lists(_ROW | _VALUES, max_size=4))
def test_rows_of_the_wrong_shape_start_afresh(rows: list[object]) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "edge-episodes.json"
        path.write_text(json.dumps({"series": rows}), encoding="utf-8")
        loaded = EpisodeFile(path).load()
    assert all(isinstance(s.episode, Episode) for s in loaded.values())
