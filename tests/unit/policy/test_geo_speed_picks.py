"""geo keeps a waiting job's node pick per factory while the factory's node bytes are unchanged (issue 12: a job
that did not fit is asked again at later decisions). With the memo and without it, a run must be the same event
for event, and the memo must have answered some picks."""

from __future__ import annotations

import dataclasses
from typing import Any

from superfactory.domain.events import event_log_digest
from superfactory.policy.geo import GeoPolicy
from superfactory.policy.registry import register, unregister
from superfactory.scenario.loader import load_scenario
from superfactory.sim.twin import run_twin


class _NoMemo(dict[Any, Any]):
    def get(self, key: Any, default: Any = None) -> Any:
        return default  # every pick computed afresh


class _CountingMemo(dict[Any, Any]):
    hits = 0

    def get(self, key: Any, default: Any = None) -> Any:
        got = super().get(key, default)
        if got is not None:
            type(self).hits += 1
        return got


class _Fresh(GeoPolicy):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._pick_memo = _NoMemo()


class _Counted(GeoPolicy):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._pick_memo = _CountingMemo()


def test_memoised_picks_change_nothing() -> None:
    sc = load_scenario("fleet-year")
    cut = 2 * 86_400
    sc = dataclasses.replace(sc, duration_s=cut, jobs=tuple(j for j in sc.jobs if j.submit_s < cut),
                             events=tuple(e for e in sc.events if e.at_s < cut))
    runs = []
    for cls in (_Fresh, _Counted):  # one policy name for both (the name is in the event log)
        register("geo-picks")(cls)
        try:
            runs.append(run_twin(sc, policy="geo-picks"))
        finally:
            unregister("geo-picks")
    fresh, counted = runs
    assert event_log_digest(counted.events) == event_log_digest(fresh.events)
    assert _CountingMemo.hits > 0
