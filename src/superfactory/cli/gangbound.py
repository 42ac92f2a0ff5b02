"""``superfactory gangbound``: the theoretical occupancy bound of a scenario's training workload.

    superfactory gangbound nvl72-saturated            # the bound with NVLink-domain packing (gang-aware policies)
    superfactory gangbound nvl72-saturated --blind    # capacity and release only (bounds every policy)
    superfactory gangbound nvl72-saturated --json
    superfactory gangbound nvl72-saturated --failures # minus the node-seconds the seed's failures take down
    superfactory gangbound nvl72-saturated --failures --drains 20   # + hold caps (time-coupled rows 5)

The LP is :func:`superfactory.policy.occupancy_bound.occupancy_bound`; a run's GPU occupancy divided by this
number is its share of the achievable (``benchmarks/gang_bench.py`` prints ``gang_occupancy_share=``).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from superfactory.errors import SuperfactoryError


def gangbound(
    scenario: Annotated[str, typer.Argument(help="built-in scenario name or a YAML file")],
    blind: Annotated[bool, typer.Option("--blind", help="drop the NVLink-domain constraints (a bound for "
                                        "topology-blind policies too)")] = False,
    slot: Annotated[int, typer.Option(help="LP time slot, s")] = 900,
    failures: Annotated[bool, typer.Option("--failures", help="subtract the nodes the scenario's seed takes down "
                                           "(failure trace read from one firstfit-blind run: the same for every "
                                           "policy)")] = False,
    drains: Annotated[int | None, typer.Option(help="add the time-coupled hold rows for schedules with at most "
                                               "this many drains and hot swaps (preemptions, planned stops, "
                                               "SwapNodes) in the horizon")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON document on stdout (nothing else)")] = False,
) -> None:
    """Upper bound on GPU occupancy any schedule of the scenario's training jobs can reach (an LP relaxation)."""
    from superfactory.cli.stdio import emit_json, quiet_stdout
    from superfactory.policy.occupancy_bound import occupancy_bound
    from superfactory.scenario.loader import load_scenario

    if slot <= 0:
        raise SuperfactoryError(f"--slot {slot}: must be a positive number of seconds")
    if drains is not None and drains < 0:
        raise SuperfactoryError(f"--drains {drains}: must be >= 0")
    sc = load_scenario(scenario)
    if not sc.jobs:
        raise SuperfactoryError(f"scenario {sc.name!r} has no training jobs: nothing to bound")
    down: list[tuple[str, int, int, int]] = []
    with quiet_stdout():  # HiGHS prints a banner on the C side
        if failures:
            from superfactory.policy.occupancy_bound import down_spells
            from superfactory.sim.twin import run_twin

            down = down_spells(run_twin(sc, policy="firstfit-blind").events, sc.duration_s)
        b = occupancy_bound(sc.factories, sc.jobs, sc.duration_s, topology=not blind, slot_s=slot, down=down,
                            drains=drains)
    doc = {"scenario": sc.name, "jobs": len(sc.jobs), "horizon_s": sc.duration_s, "topology": b.topology,
           "occupancy_bound": b.occupancy, "busy_gpu_s": b.busy_gpu_s, "capacity_gpu_s": b.capacity_gpu_s,
           "node_outages": len(down), "down_node_s": float(sum(t1 - t0 for _, _, t0, t1 in down)),
           "drains": drains, "slots": b.slots, "variables": b.variables, "constraints": b.constraints,
           "binding": b.binding}
    if json_out:
        emit_json(doc)
        return
    kind = "with NVLink-domain packing" if b.topology else "capacity and release only (topology-blind)"
    if failures:
        kind += f", minus {len(down)} node outage(s) of the seed's failure trace"
    if drains is not None:
        kind += f", hold caps for schedules with <= {drains} drains"
    sys.stdout.write(
        f"{sc.name}: occupancy bound {b.occupancy:.4f} ({kind})\n"
        f"  {b.busy_gpu_s / 3600:,.0f} of {b.capacity_gpu_s / 3600:,.0f} GPU-h over {sc.duration_s / 3600:g} h, "
        f"{len(sc.jobs)} jobs; LP {b.variables} variables x {b.constraints} rows in {b.slots} slots; "
        f"mostly bound by: {b.binding}\n")


def register(app: typer.Typer) -> None:
    """Add the ``gangbound`` command to ``app``."""
    app.command("gangbound")(gangbound)
