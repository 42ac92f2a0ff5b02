from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from superfactory.scenario.units import (
    UnitError,
    parse_bandwidth_gbps,
    parse_duration_s,
    parse_flop,
    parse_latency_ms,
    parse_power_w,
    parse_size_bytes,
)


@pytest.mark.parametrize(("text", "seconds"), [
    ("54d", 54 * 86400), ("30min", 1800), ("1.5h", 5400), ("90s", 90), ("2w", 1209600), (" 10 min ", 600), (0, 0),
])
def test_durations(text: object, seconds: int) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize(("text", "value"), [
    ("1.5TB", 1.5e12), ("512GiB", 512 * 2**30), ("1B", 1.0), ("0.3GB", 0.3e9),
])
def test_sizes(text: str, value: float) -> None:
    assert parse_size_bytes(text) == pytest.approx(value)


def test_rates_power_latency_flop() -> None:
    assert parse_bandwidth_gbps("400Gbps") == 400
    assert parse_bandwidth_gbps("50GB/s") == 400
    assert parse_bandwidth_gbps("51.2Tbps") == pytest.approx(51200)
    assert parse_power_w("300MW") == 3e8
    assert parse_power_w("120kW") == 1.2e5
    assert parse_latency_ms("15ms") == 15
    assert parse_latency_ms("0.2s") == pytest.approx(200)
    assert parse_flop("3.8e25FLOP") == 3.8e25
    assert parse_flop(3.8e25) == 3.8e25


@pytest.mark.parametrize(("fn", "bad", "needle"), [
    (parse_duration_s, "30MW", "unknown unit 'MW'"),
    (parse_duration_s, 30, "needs a unit"),
    (parse_size_bytes, "lots", "expected a size like '1.5TB'"),
    (parse_power_w, "300", "expected a power"),
    (parse_bandwidth_gbps, True, "expected a bandwidth"),
])
def test_errors_say_what_is_allowed(fn, bad, needle) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnitError, match=needle):
        fn(bad)


@given(st.integers(min_value=1, max_value=10**7), st.sampled_from(["s", "min", "h", "d"]))
def test_duration_round_trip(n: int, unit: str) -> None:
    scale = {"s": 1, "min": 60, "h": 3600, "d": 86400}[unit]
    assert parse_duration_s(f"{n}{unit}") == n * scale
