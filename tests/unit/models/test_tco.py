"""Total-cost-of-ownership math (models/tco.py), PPA tariffs (models/tariff.py) and a run's TCO by factory."""

from __future__ import annotations

import math

import pytest

from superfactory.domain.accelerator import SYSTEMS
from superfactory.models.tariff import effective_price_usd_per_mwh
from superfactory.models.tco import (
    SOURCE_SCALE_USD_PER_HOUR,
    CapitalAssumptions,
    FactoryUsage,
    TrainingRun,
    capital_usd_per_gpu_hour,
    failure_cost,
    fleet_total,
    llama3_405b_breakdown,
    power_bill,
    price_factory,
    run_rental_view,
    scale_table,
    source_rounding,
)
from superfactory.observe.summary import summarize
from superfactory.observe.tco import sources_line
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.twin import run_twin

from scenario_builders import factory, job, scenario


def test_scale_table_matches_the_source_within_its_rounding() -> None:
    lines = scale_table(3.0)
    assert [ln.usd for ln in lines] == [24, 192, 3_072, 49_152, 300_000]
    for ln, (gpus, source) in zip(lines, SOURCE_SCALE_USD_PER_HOUR.items(), strict=True):
        assert ln.usd == gpus * 3.0
        assert source_rounding(ln.usd) == source, ln
        # the source rounds to the nearest 5 x 10^(digits-2): the formula is within half such a step
        step = 5 * 10 ** (math.floor(math.log10(ln.usd)) - 1)
        assert abs(ln.usd - source) <= step / 2


def test_llama3_405b_total_is_in_the_source_range_and_adds_up() -> None:
    lines = {ln.item: ln for ln in llama3_405b_breakdown()}
    assert lines["compute"].usd == 16_384 * 3.0 * 54 * 24  # $63.7M; the source prints ~$63M
    assert lines["compute with waste"].usd == pytest.approx(lines["compute"].usd * 1.3)  # ~$82M in the source
    assert abs(lines["compute with waste"].usd - 82e6) < 1e6
    assert lines["power"].usd == pytest.approx(2_048 * 10.2 * 54 * 24 * 0.10)
    parts = ("compute with waste", "networking", "storage", "power", "people")
    assert lines["total"].usd == pytest.approx(sum(lines[p].usd for p in parts))
    assert 95e6 <= lines["total"].usd <= 105e6
    # the inputs matter: twice the price, about twice the total
    doubled = llama3_405b_breakdown(TrainingRun(usd_per_gpu_hour=6.0))[-1].usd
    assert 1.9 < doubled / lines["total"].usd < 2.0


def test_power_bill_and_failure_cost() -> None:
    hourly = power_bill(2048, 10.2, 0.10)[0].usd
    assert hourly == pytest.approx(2_088.96)
    one, many = failure_cost(16_384, 3.0, checkpoint_interval_h=0.5, detect_h=0.0, restart_h=0.0, failures=419)
    assert one.usd == pytest.approx(16_384 * 3.0 * 0.25)  # half an interval lost on every GPU
    assert many.usd == pytest.approx(419 * one.usd)
    shorter = failure_cost(16_384, 3.0, checkpoint_interval_h=0.25, detect_h=0.0, restart_h=0.0)[0].usd
    assert shorter == pytest.approx(one.usd / 2)


def test_capital_rate_formula_and_cost_of_capital() -> None:
    dgx = SYSTEMS["dgx-h100"]
    rate = capital_usd_per_gpu_hour(dgx)
    assert rate == pytest.approx(350_000 / 8 * 1.275 / (4 * 8760))
    assert 1.0 < rate < 4.0  # an idle H100 costs its owner dollars per hour, power cents
    financed = capital_usd_per_gpu_hour(dgx, CapitalAssumptions(cost_of_capital=0.08))
    assert financed is not None and financed > rate
    tiny = capital_usd_per_gpu_hour(dgx, CapitalAssumptions(cost_of_capital=1e-9))
    assert tiny == pytest.approx(rate, rel=1e-6)
    assert capital_usd_per_gpu_hour(dgx, CapitalAssumptions(depreciation_years=8)) == pytest.approx(rate / 2)
    assert capital_usd_per_gpu_hour(SYSTEMS["hgx-h200"]) is None  # no list price in the catalog
    with pytest.raises(ValueError):
        CapitalAssumptions(depreciation_years=0)


def test_price_factory_counts_idle_capital_and_unpriced_systems() -> None:
    u = FactoryUsage("f", {"dgx-h100": 800, "hgx-h200": 80}, hours=720, energy_mwh=5_000, power_cost_usd=250_000,
                     carbon_tco2=1_800, productive_gpu_hours=400_000, productive_pflop_hours=150_000)
    c = price_factory(u)
    rate = capital_usd_per_gpu_hour(SYSTEMS["dgx-h100"])
    assert rate is not None
    assert c.capital_usd == pytest.approx(800 * 720 * rate)
    assert c.total_usd == pytest.approx(c.capital_usd + 250_000)
    assert c.unpriced_systems == ("hgx-h200",)
    assert c.per_gpu_hour(c.total_usd) == pytest.approx(c.total_usd / 400_000)
    idle = price_factory(FactoryUsage("g", {"dgx-h100": 8}, 10, 0, 0, 0, 0, 0))
    assert idle.capital_usd > 0 and idle.as_dict()["total_usd_per_productive_gpu_hour"] is None
    fleet = fleet_total([c, idle])
    assert fleet.capital_usd == pytest.approx(c.capital_usd + idle.capital_usd) and fleet.gpus == 888


def test_rental_view_measures_waste() -> None:
    u = FactoryUsage("f", {"dgx-h100": 100}, hours=10, energy_mwh=1, power_cost_usd=50, carbon_tco2=0,
                     productive_gpu_hours=750, productive_pflop_hours=0)
    lines = {ln.item: ln for ln in run_rental_view([u], 2.0, 0.1, 0.05)}
    assert lines["compute"].usd == 2_000
    assert lines["  of which waste"].usd == pytest.approx(500)  # 250 of 1,000 GPU-h produced nothing retained
    assert lines["total"].usd == pytest.approx(2_000 * 1.15 + 50)
    assert lines["total per productive GPU-h"].usd == pytest.approx(lines["total"].usd / 750)


def test_tariff_blends_contract_and_market() -> None:
    assert effective_price_usd_per_mwh(80.0, 0.0, 50.0) == 80.0
    assert effective_price_usd_per_mwh(-20.0, 1.0, 50.0) == 50.0
    assert effective_price_usd_per_mwh(200.0, 0.7, 50.0) == pytest.approx(0.7 * 50 + 0.3 * 200)
    with pytest.raises(ValueError):
        effective_price_usd_per_mwh(1.0, 1.5, 1.0)


def _run(tariff: dict[str, float] | None = None) -> dict[str, object]:
    extra = {"tariff": tariff} if tariff else {}
    text = scenario([factory("a", market="ERCOT", nodes=16, **extra), factory("b", nodes=16)],
                    [job("j1", gpus=64, work="2d"), job("j2", gpus=64, work="1d", submit="6h")], duration="3d")
    return summarize(run_twin(parse_scenario(text)))


def test_tco_in_a_twin_run_and_a_full_ppa() -> None:
    spot = _run()
    by = {r["factory"]: r for r in spot["cost_by_factory"]}  # type: ignore[union-attr]
    rate = capital_usd_per_gpu_hour(SYSTEMS["dgx-h100"])
    assert rate is not None
    assert by["a"]["capital_usd"] == pytest.approx(128 * 72 * rate)  # 16 DGX x 8 GPUs x 3 days, busy or not
    assert spot["capital_cost_usd"] == pytest.approx(2 * 128 * 72 * rate)
    assert sum(r["productive_gpu_hours"] for r in by.values()) == pytest.approx(spot["training_throughput"])
    assert spot["total_cost_usd"] == pytest.approx(spot["capital_cost_usd"] + spot["power_cost_usd"])
    assert spot["signal_sources"] == {"price:ERCOT": "synthetic", "price:PJM": "synthetic",  # type: ignore[comparison-overlap]
                                      "carbon:ERCOT": "synthetic", "carbon:PJM": "synthetic"}
    assert sources_line(spot) == "synthetic: price ERCOT, PJM; carbon ERCOT, PJM"
    ppa = _run({"ppa_share": 1.0, "ppa_price": 40.0})
    a_spot = {r["factory"]: r for r in ppa["cost_by_factory"]}  # type: ignore[union-attr]
    energy_a = sum(r["energy_mwh"] for r in ppa["cost_inputs"] if r["factory"] == "a")  # type: ignore[union-attr]
    assert a_spot["a"]["power_usd"] == pytest.approx(energy_a * 40.0)  # every MWh at the contract price
    assert a_spot["b"]["power_usd"] == pytest.approx(by["b"]["power_usd"])  # the other factory is unchanged
