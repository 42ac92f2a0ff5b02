"""No job waits for price alone beyond geo's bound (``max_wait_s``, default 6 h), on a scenario built to tempt it:
waiting is free (``value_usd_per_gpu_hour=0``), so every hour of running costs more than waiting and, without the
bound, geo would never start or would pause everything. Capacity is ample (each job fits in either factory on its
own), so any wait longer than the bound is a wait for price.

With the default value of a GPU-hour (the catalog's capital rate, ~$1.6 per H100-hour against ~$0.1 of power),
the same scenario has no price waits at all: every job starts at submission.
"""

from __future__ import annotations

from collections import defaultdict

from superfactory.domain.events import EventKind
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.twin import run_twin

from scenario_builders import factory, job, scenario

SLACK_S = 120  # one decision after the bound is reached


def _tempting():
    text = scenario(
        [factory("cheap", market="PJM", nodes=24), factory("dear", market="ERCOT", nodes=24)],
        [job(f"j{i}", gpus=64, work=f"{4 + 3 * (i % 3)}h", submit=f"{i * 50}min", preemptible=True,
             priority=i % 2) for i in range(5)],
        duration="3d", links=[{"a": "cheap", "b": "dear", "bandwidth": "400Gbps", "latency": "10ms"}],
    )
    return parse_scenario(text)


def _pending_spells(result) -> dict[str, list[tuple[int, int]]]:
    """Per job, every (start, end) spell it spent pending: from submission, a preemption or an interruption to
    the next placement (end = run end if never placed again)."""
    end = result.scenario.duration_s
    since: dict[str, int] = {}
    spells: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for e in result.events:
        if e.kind in (EventKind.JOB_SUBMITTED, EventKind.JOB_PREEMPTED, EventKind.JOB_INTERRUPTED):
            since.setdefault(e.job, e.time_s)
        elif e.kind is EventKind.JOB_PLACED and e.job in since:
            spells[e.job].append((since.pop(e.job), e.time_s))
        elif e.kind is EventKind.JOB_COMPLETED:
            since.pop(e.job, None)
    for j, t in since.items():
        spells[j].append((t, end))
    return spells


def test_no_job_waits_for_price_beyond_the_bound_when_waiting_is_free() -> None:
    sc = _tempting()
    r = run_twin(sc, policy="geo", policy_params={"value_usd_per_gpu_hour": 0.0, "max_wait_s": 6 * 3600})
    spells = _pending_spells(r)
    assert spells, "no job ever waited"
    longest = max(b - a for sp in spells.values() for a, b in sp)
    assert longest <= 6 * 3600 + SLACK_S, spells
    # the bound is what made them run: waiting was free, so each first start came at the bound, not before
    firsts = [sp[0][1] - sp[0][0] for sp in spells.values()]
    assert min(firsts) >= 6 * 3600 - SLACK_S
    done = {e.job for e in r.events if e.kind is EventKind.JOB_COMPLETED}
    assert done == {j.id for j in sc.jobs}, "every job finishes once the bound sends it running"
    assert any("cheaper power" in reason and "at most 6.0 h" in reason
               for hist in r.reason_history.values() for _, reason in hist)


def test_with_the_capital_value_of_a_gpu_hour_nothing_waits_for_price() -> None:
    sc = _tempting()
    r = run_twin(sc, policy="geo")
    spells = _pending_spells(r)
    assert max(b - a for sp in spells.values() for a, b in sp) <= SLACK_S, spells
    assert not any("cheaper power" in reason for hist in r.reason_history.values() for _, reason in hist)
