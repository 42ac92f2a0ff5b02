"""The hourly histories a snapshot shows (``sim.fleet._History``): the tuple read is the series so far plus the
value now, bit for bit, whichever way it is built, and reading it leaves the fleet's lists with the same values
(issue 12: the one-pass build and the re-made floats must change no value)."""

from __future__ import annotations

import math
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from superfactory.sim import fleet as F

_values = st.floats(allow_nan=True, allow_infinity=True, width=64)


def _bits(xs: tuple[float, ...] | list[float]) -> list[bytes]:
    return [struct.pack("<d", x) for x in xs]


@settings(max_examples=60, deadline=None)
@given(series=st.lists(_values, max_size=700), now=_values, grown=st.lists(_values, max_size=3),
       hours=st.integers(min_value=1, max_value=4))
def test_read_is_the_series_so_far_and_the_value_now(series: list[float], now: float, grown: list[float],
                                                    hours: int) -> None:
    """Across several hours' snapshots (the kept ``dense`` marks carried between them): each read equals the
    list's values up to the snapshot's length followed by the value now, bit for bit (NaN payloads and -0.0
    included); the list keeps its values and length; a list grown after the snapshot is read up to the
    snapshot's length only."""
    series = [0.1 * i + 1e-9 for i in range(F._DENSE_BLOCK + 1)] + series  # (at least one block is re-made)
    lst: list[float] = []
    dense: dict[str, int] = {}
    expected: list[float] = []
    chunk = max(1, len(series) // hours)
    for h in range(hours):
        new = series[h * chunk:(h + 1) * chunk] if h < hours - 1 else series[h * chunk:]
        lst.extend(new)
        expected.extend(new)
        view = F._History({"m": lst}, {"m": now}, dense)
        before = _bits(lst)
        got = view["m"]
        assert isinstance(got, tuple)
        assert _bits(got) == _bits(expected) + _bits([now])
        assert view["m"] is got  # built once per snapshot
        assert _bits(lst) == before  # the fleet's list: the same values, the same length
    # a list that grew after the snapshot was taken: the snapshot still shows its own hours only
    view = F._History({"m": lst}, {"m": now}, dense)
    lst.extend(grown)
    assert _bits(view["m"]) == _bits(expected) + _bits([now])
    assert len(lst) == len(expected) + len(grown)


def test_floats_are_re_made_in_blocks_with_equal_values() -> None:
    """Once a block of new hours has come, the list's floats are new objects of the same values (the dense copy
    is really made: without it the objects stay those appended); a short tail is left as it is."""
    lst = [i * 0.1 - 7.3 for i in range(F._DENSE_BLOCK + 10)]
    lst[2] = 1e300
    lst[3] = -0.0
    lst[5] = math.nan
    originals = list(lst)
    dense: dict[str, int] = {}
    got = F._History({"p": lst}, {"p": 2.0}, dense)["p"]
    assert _bits(got[:-1]) == _bits(originals) and got[-1] == 2.0
    assert dense == {"p": len(lst)}
    assert all(a is not b for a, b in zip(lst, originals, strict=True))
    lst.extend([1.0, 2.0])  # fewer than a block since: left alone
    tail = lst[-2:]
    F._History({"p": lst}, {"p": 3.0}, dense)["p"]
    assert lst[-2] is tail[0] and lst[-1] is tail[1] and dense == {"p": len(lst) - 2}


def test_mapping_contract() -> None:
    view = F._History({"a": [1.0], "b": []}, {"a": 2.0, "b": 5.0})
    assert dict(view) == {"a": (1.0, 2.0), "b": (5.0,)}
    assert len(view) == 2 and list(view) == ["a", "b"]
    assert view.get("c", ()) == ()
