"""A x10 price shock at a long training job's site makes ``geo`` move it, when another lawful site has room and
the move costs less than the shock; it stays when no other site has room, and when the move itself (a huge
checkpoint over a slow link, counted at the value of a GPU-hour) would cost more than the shock saves.

The fleet is the live control plane's case in miniature: two DGX H100 sites on flat prices (day/night ratio 1,
so the forecaster has no persistence to lean on and expects the shock to last about an hour), one 10-day job
running at the cheaper site, and ``superfactory chaos price-shock``'s x10 there for 6 h on day 1.
"""

from __future__ import annotations

from superfactory.domain.events import EventKind
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.twin import run_twin

from scenario_builders import factory, job, scenario

SHOCK_S = 86400
SETTLE_S = 300


def _fleet(b_clearances: tuple[str, ...] = ("US",), filler: bool = False, link: str = "400Gbps",
           ckpt: str = "1TB", factor: float = 10.0):
    jobs = [job("long", gpus=64, work="10d", checkpoint={"interval": "30min", "blocking": "30s", "size": ckpt,
                                                        "write_bandwidth": "800Gbps"})]
    if filler:  # a job only b may hold (its data is cleared there alone), filling b
        jobs.append(job("filler", gpus=64, work="10d", sovereignty=["EU_PERSONAL"]))
    text = scenario(
        [factory("a", market="PJM", nodes=8), factory("b", market="MISO", nodes=8, clearances=b_clearances)],
        jobs, duration="2d",
        links=[{"a": "a", "b": "b", "bandwidth": link, "latency": "10ms"}],
        markets={"PJM": {"mean_usd_per_mwh": 40, "day_night_ratio": 1.0},
                 "MISO": {"mean_usd_per_mwh": 45, "day_night_ratio": 1.0}},
        events=[{"at": "1d", "kind": "price_shock", "market": "PJM", "factor": factor, "duration": "6h"}],
    )
    return parse_scenario(text)


def _moves(r, jid: str = "long") -> list[tuple[int, str]]:
    return [(e.time_s, e.cause) for e in r.events if e.kind is EventKind.JOB_MIGRATED and e.job == jid]


def _started_at(r, jid: str = "long") -> str:
    return next(e.factory for e in r.events if e.kind is EventKind.JOB_PLACED and e.job == jid)


def test_a_x10_shock_moves_the_long_job_to_the_site_with_room_within_minutes() -> None:
    r = run_twin(_fleet(), policy="geo")
    assert _started_at(r) == "a", "before the shock the job runs at the cheaper site"
    moves = _moves(r)
    assert moves, "the x10 shock did not move the job"
    t, cause = moves[0]
    assert SHOCK_S <= t <= SHOCK_S + SETTLE_S and cause.startswith("a->b"), moves
    assert not any(e.kind is EventKind.JOB_PREEMPTED and e.job == "long" for e in r.events)


def test_no_move_without_room_and_no_pause_below_the_value_of_a_gpu_hour() -> None:
    r = run_twin(_fleet(b_clearances=("US", "EU_PERSONAL"), filler=True), policy="geo")
    assert _started_at(r) == "a" and _started_at(r, "filler") == "b"
    assert _moves(r) == []
    # x10 of 40 USD/MWh is ~0.5 USD per GPU-hour of power, below the ~1.6 USD an H100-hour is worth: keep running
    assert not any(e.kind is EventKind.JOB_PREEMPTED and e.job == "long" for e in r.events)


def test_a_move_that_costs_more_than_the_shock_saves_is_not_made() -> None:
    # 20 TB over 10 Gbps: ~4.4 h of 64 GPUs idle per move, more than a shock the forecast expects to fade
    r = run_twin(_fleet(link="10Gbps", ckpt="20TB"), policy="geo")
    assert _started_at(r) == "a"
    assert _moves(r) == []
    # a x1.3 "shock" saves less than the move's cost plus the hysteresis: no move either
    assert _moves(run_twin(_fleet(factor=1.3), policy="geo")) == []
