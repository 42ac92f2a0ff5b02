"""Issue 12, session 9: a snapshot revisits only the factories whose version moved since the last one while the
prices and carbon are the same objects (``SimulatedFleet.snapshot``, the ``touched`` list its factories share).
Every snapshot's factory states must still show each factory as it is now."""

from __future__ import annotations

from superfactory.domain.events import event_log_digest
from superfactory.scenario.loader import parse_scenario
from superfactory.sim import fleet as fleet_mod
from superfactory.sim.fleet import SimulatedFleet
from superfactory.sim.twin import run_twin

from scenario_builders import factory, job, scenario


def _text() -> str:
    facs = [factory("a", nodes=4 * 18, system="gb200-nvl72"), factory("b", nodes=16, market="ERCOT"),
            factory("c", nodes=16, market="CAISO")]
    jobs = [job(f"j{i}", gpus=8 * (1 + i % 4), work=f"{1 + i % 3}h", submit=f"{i * 11}min",
                **({"accelerator": "GB200"} if i % 3 == 0 else {})) for i in range(60)]
    return scenario(facs, jobs, duration="2d", failures={"rate_scale": 200.0, "planned": True},
                    events=[{"at": "5h", "kind": "factory_outage", "factory": "b", "duration": "3h"},
                            {"at": "7h", "kind": "price_shock", "market": "CAISO", "factor": 3.0, "duration": "2h"},
                            {"at": "550min", "kind": "link_degradation", "factory": "a", "domain": 1, "factor": 0.5,
                             "duration": "2h"}])


def _check_every_snapshot(monkeypatch: object) -> tuple[int, int]:
    real = SimulatedFleet.snapshot
    seen = [0, 0]

    def checked(self: SimulatedFleet):  # type: ignore[no-untyped-def]
        snap = real(self)
        price, carbon = self._signals_now(self.k.now)
        for r, st in zip(self.rt, snap.states, strict=True):
            f = r.factory
            probes = tuple(self.link_probes[r.index][d] for d in sorted(self.link_probes[r.index]))
            assert (st.factory_id, st.up, st.node_status, st.price_usd_per_mwh, st.carbon_g_per_kwh, st.it_power_w,
                    st.link_probes) == (f.id, r.up, r.status.tobytes(), price[f.market], carbon[f.grid],
                                        r.it_power_w, probes)
        seen[0] += 1
        seen[1] += bool(self._touched) is False and self._signals is self._states_signals
        return snap

    monkeypatch.setattr(SimulatedFleet, "snapshot", checked)  # type: ignore[attr-defined]
    return seen  # type: ignore[return-value]


def test_every_snapshot_shows_every_factory_as_it_is(monkeypatch: object) -> None:
    seen = _check_every_snapshot(monkeypatch)
    res = run_twin(parse_scenario(_text()), policy="greedy", check_invariants=True)
    assert seen[0] > 100  # many snapshots, each checked factory by factory
    assert res.decisions == seen[0]


def test_same_log_as_checking_every_factory_each_time(monkeypatch: object) -> None:
    sc = parse_scenario(_text())
    fast = run_twin(sc, policy="greedy")
    mp = monkeypatch
    mp.setattr(SimulatedFleet, "snapshot", _every_factory(SimulatedFleet.snapshot))  # type: ignore[attr-defined]
    slow = run_twin(sc, policy="greedy")
    assert event_log_digest(fast.events) == event_log_digest(slow.events)
    assert fleet_mod  # (the module under test)


def _every_factory(real):  # type: ignore[no-untyped-def]
    """``snapshot`` as before the touched list: every factory's key checked at every snapshot."""
    def snap(self: SimulatedFleet):  # type: ignore[no-untyped-def]
        self._states_signals = None  # never the fast path
        return real(self)
    return snap
