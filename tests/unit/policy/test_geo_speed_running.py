"""geo builds a running job's columns on a lean path (:mod:`superfactory.policy.geo_running`, issue 12); a job
with a carbon budget still takes the general path of :meth:`GeoColumns._columns`. With a budget too large to
refuse anything, both paths must build the same columns (same costs to the last bit), at every full solve of a
run in which jobs move, pause, fail and carry latency and carbon prices; the cached columns of a later full solve
in the same hour included."""

from __future__ import annotations

import dataclasses

import numpy as np

from superfactory.domain.fleet import FleetSnapshot, JobView
from superfactory.policy.geo import GeoPolicy
from superfactory.policy.geo_columns import _Col
from superfactory.policy.registry import register, unregister
from superfactory.scenario.loader import load_scenario
from superfactory.sim.twin import run_twin


class _Checked(GeoPolicy):
    compared_jobs = 0
    compared_moves = 0

    def _columns(self, snap: FleetSnapshot, views: list[JobView], running: set[int],
                 paths: list[np.ndarray], emergency: set[int], waiting: dict[str, str],
                 refusals: list[tuple[str, str, str]], settled: set[int] | None = None) -> list[_Col]:
        if running:
            budgeted = [dataclasses.replace(v, job=dataclasses.replace(v.job, carbon_budget_tco2=1e18))
                        if jx in running else v for jx, v in enumerate(views)]
            lean = super()._columns(snap, views, running, paths, emergency, dict(waiting), [], None)
            general = super()._columns(snap, budgeted, running, paths, emergency, dict(waiting), [], None)
            assert lean == general
            type(self).compared_jobs += len(running)
            type(self).compared_moves += sum(1 for c in lean if c.migrating and c.job in running)
        return super()._columns(snap, views, running, paths, emergency, waiting, refusals, settled)


def test_lean_running_columns_equal_the_general_ones() -> None:
    sc = load_scenario("default")
    cut = 3 * 86_400
    sc = dataclasses.replace(sc, duration_s=cut, jobs=tuple(j for j in sc.jobs if j.submit_s < cut),
                             events=tuple(e for e in sc.events if e.at_s < cut))
    register("geo-lean-checked")(_Checked)
    try:
        run_twin(sc, policy="geo-lean-checked",
                 policy_params={"gamma_usd_per_ms_mwh": 40.0, "beta_usd_per_tco2": 80.0, "hysteresis": 0.02,
                                "min_move_interval_s": 600})
    finally:
        unregister("geo-lean-checked")
    assert _Checked.compared_jobs > 1000  # many running jobs at many full solves
    assert _Checked.compared_moves > 100  # move columns (the governor let them) were compared too
