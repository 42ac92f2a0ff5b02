"""Total cost of ownership: capital and power per productive GPU-hour and PFLOP-hour, and the source's cost math.

Pure functions (no I/O). Two uses:

1. **A fleet's TCO** (:func:`price_factory`): an owned accelerator costs its capital every hour whether it
   works or not, so

       capital rate (USD/GPU-h) = list price per GPU x (1 + networking + storage) / (depreciation years x 8760 h)

   (annuity instead of straight line when ``cost_of_capital`` > 0: price x r / (1 - (1 + r)^-years) per year);
   a factory's capital over a run is GPUs x hours x rate, its power bill the twin's hourly energy x price, and
   both are divided by the *productive* GPU-hours (work retained, after failures) and productive PFLOP-hours
   (the work done, FLOP / 3.6e18) to compare factories, policies and generations.
2. **The source material's calculator** (:func:`llama3_405b_breakdown`, :func:`scale_table`,
   :func:`power_bill`, :func:`failure_cost`): rental GPU-hours at a flat price, with the formulas printed and,
   where the source rounds, both figures (:func:`source_rounding` reproduces its rounding: to the nearest
   5 x 10^(k-1) for a number with k+1 integer digits, i.e. 24 -> 25, 192 -> 200, 3,072 -> 3,000).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from superfactory.domain.accelerator import NETWORKING_SHARE, STORAGE_SHARE, SYSTEMS, SystemSpec

HOURS_PER_YEAR = 8760.0
FLOP_PER_PFLOP_HOUR = 1e15 * 3600.0


@dataclass(frozen=True, slots=True)
class CapitalAssumptions:
    """How capital turns into an hourly cost.

    Attributes:
        networking_share: networking per dollar of GPU systems (catalog default 0.20).
        storage_share: storage per dollar of GPU systems (catalog default 0.075).
        depreciation_years: write-off period; ``None`` = each system's catalog value.
        cost_of_capital: annual rate (0 = straight-line depreciation only).
    """

    networking_share: float = NETWORKING_SHARE
    storage_share: float = STORAGE_SHARE
    depreciation_years: float | None = None
    cost_of_capital: float = 0.0

    def __post_init__(self) -> None:
        if self.networking_share < 0 or self.storage_share < 0 or self.cost_of_capital < 0:
            raise ValueError("networking_share, storage_share and cost_of_capital must be >= 0")
        if self.depreciation_years is not None and self.depreciation_years <= 0:
            raise ValueError("depreciation_years must be > 0")


#: the catalog's assumptions (midpoint shares, each system's depreciation period, no cost of capital)
DEFAULT_CAPITAL = CapitalAssumptions()


def capital_usd_per_gpu_hour(system: SystemSpec, a: CapitalAssumptions = DEFAULT_CAPITAL) -> float | None:
    """The hourly capital cost of one GPU of ``system`` (``None`` when the catalog has no list price)."""
    if system.list_price_usd is None:
        return None
    years = a.depreciation_years if a.depreciation_years is not None else system.depreciation_years
    per_gpu = system.list_price_usd / system.gpus_per_domain * (1.0 + a.networking_share + a.storage_share)
    r = a.cost_of_capital
    per_year = per_gpu / years if r == 0 else per_gpu * r / (1.0 - (1.0 + r) ** -years)
    return per_year / HOURS_PER_YEAR


@dataclass(frozen=True, slots=True)
class FactoryUsage:
    """What a run measured at one factory (the inputs of its TCO).

    Attributes:
        factory: id.
        gpus_by_system: installed GPUs per catalog system name.
        hours: hours the factory was owned during the run (the simulated window).
        energy_mwh: facility energy.
        power_cost_usd: what that energy cost (market price, tariff applied).
        carbon_tco2: emissions of that energy.
        productive_gpu_hours: GPU-hours of work retained (after failures).
        productive_pflop_hours: work done, PFLOP-hours (FLOP / 3.6e18).
        price_source: where the factory's price series came from (``"real: ..."`` or ``"synthetic"``).
    """

    factory: str
    gpus_by_system: dict[str, int]
    hours: float
    energy_mwh: float
    power_cost_usd: float
    carbon_tco2: float
    productive_gpu_hours: float
    productive_pflop_hours: float
    price_source: str = ""


@dataclass(frozen=True, slots=True)
class FactoryCost:
    """A factory's TCO over a run (all USD; ``per_*`` are per productive unit, ``None`` when there was none)."""

    factory: str
    gpus: int
    capital_usd: float
    power_usd: float
    carbon_tco2: float
    productive_gpu_hours: float
    productive_pflop_hours: float
    unpriced_systems: tuple[str, ...] = ()
    price_source: str = ""
    total_usd: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total_usd", self.capital_usd + self.power_usd)

    def per_gpu_hour(self, usd: float) -> float | None:
        return usd / self.productive_gpu_hours if self.productive_gpu_hours > 0 else None

    def per_pflop_hour(self, usd: float) -> float | None:
        return usd / self.productive_pflop_hours if self.productive_pflop_hours > 0 else None

    def as_dict(self) -> dict[str, object]:
        """JSON-able, with the per-unit figures."""
        return {
            "factory": self.factory, "gpus": self.gpus, "capital_usd": self.capital_usd,
            "power_usd": self.power_usd, "total_usd": self.total_usd, "carbon_tco2": self.carbon_tco2,
            "productive_gpu_hours": self.productive_gpu_hours, "productive_pflop_hours": self.productive_pflop_hours,
            "capital_usd_per_productive_gpu_hour": self.per_gpu_hour(self.capital_usd),
            "power_usd_per_productive_gpu_hour": self.per_gpu_hour(self.power_usd),
            "total_usd_per_productive_gpu_hour": self.per_gpu_hour(self.total_usd),
            "total_usd_per_productive_pflop_hour": self.per_pflop_hour(self.total_usd),
            "kgco2_per_productive_gpu_hour": (self.carbon_tco2 * 1000.0 / self.productive_gpu_hours
                                              if self.productive_gpu_hours > 0 else None),
            "unpriced_systems": list(self.unpriced_systems), "price_source": self.price_source,
        }


def price_factory(u: FactoryUsage, a: CapitalAssumptions = DEFAULT_CAPITAL) -> FactoryCost:
    """The TCO of one factory's run: capital of every installed GPU for ``u.hours`` plus the power bill.

    Raises:
        KeyError: a system name that is not in the catalog.
    """
    capital = 0.0
    unpriced = []
    for name, gpus in sorted(u.gpus_by_system.items()):
        rate = capital_usd_per_gpu_hour(SYSTEMS[name], a)
        if rate is None:
            unpriced.append(name)
        else:
            capital += gpus * u.hours * rate
    return FactoryCost(u.factory, sum(u.gpus_by_system.values()), capital, u.power_cost_usd, u.carbon_tco2,
                       u.productive_gpu_hours, u.productive_pflop_hours, tuple(unpriced), u.price_source)


def fleet_total(costs: list[FactoryCost]) -> FactoryCost:
    """The fleet as one factory (sums)."""
    return FactoryCost(
        "fleet", sum(c.gpus for c in costs), sum(c.capital_usd for c in costs), sum(c.power_usd for c in costs),
        sum(c.carbon_tco2 for c in costs), sum(c.productive_gpu_hours for c in costs),
        sum(c.productive_pflop_hours for c in costs),
        tuple(sorted({s for c in costs for s in c.unpriced_systems})),
    )


# -- the source material's calculator ----------------------------------------------------------------------


def source_rounding(x: float) -> float:
    """Round as the source does: to the nearest 5 x 10^(k-1) for ``x`` with k+1 integer digits (24 -> 25)."""
    if x <= 0:
        return 0.0
    step = 5 * 10 ** (math.floor(math.log10(x)) - 1)
    return float(round(x / step) * step)


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a cost breakdown: what, the formula with its numbers, the value and the source's figure."""

    item: str
    formula: str
    usd: float
    source_usd: float | None = None
    source_note: str = ""  # the source's figure when it is not one number (a range)

    def as_dict(self) -> dict[str, object]:
        return {"item": self.item, "formula": self.formula, "usd": self.usd, "source_usd": self.source_usd,
                "source_note": self.source_note}


#: the source's scale table: GPUs -> its rounded USD per hour at $3/GPU-hour
SOURCE_SCALE_USD_PER_HOUR: dict[int, float] = {8: 25, 64: 200, 1024: 3_000, 16_384: 50_000, 100_000: 300_000}


def scale_table(usd_per_gpu_hour: float = 3.0, sizes: tuple[int, ...] = tuple(SOURCE_SCALE_USD_PER_HOUR)
                ) -> list[Line]:
    """USD per hour of a cluster of each size: ``GPUs x price``, with the source's rounded figure."""
    return [Line(f"{n:,} GPUs per hour", f"{n:,} x ${usd_per_gpu_hour:g}", n * usd_per_gpu_hour,
                 SOURCE_SCALE_USD_PER_HOUR.get(n) if usd_per_gpu_hour == 3.0 else None) for n in sizes]


def power_bill(nodes: int = 2048, node_kw: float = 10.2, usd_per_kwh: float = 0.10, pue: float = 1.0
               ) -> list[Line]:
    """The power bill of ``nodes`` systems at full load: per hour, day, 30-day month and year."""
    kw = nodes * node_kw * pue
    head = f"{nodes:,} x {node_kw:g} kW" + (f" x PUE {pue:g}" if pue != 1.0 else "") + f" x ${usd_per_kwh:g}/kWh"
    hourly = kw * usd_per_kwh
    return [Line("per hour", head, hourly), Line("per day", f"{head} x 24 h", hourly * 24),
            Line("per 30-day month", f"{head} x 720 h", hourly * 720),
            Line("per year", f"{head} x 8,760 h", hourly * 8760)]


def failure_cost(gpus: int = 16_384, usd_per_gpu_hour: float = 3.0, checkpoint_interval_h: float = 0.5,
                 detect_h: float = 2 / 60, restart_h: float = 5 / 60, failures: int = 419) -> list[Line]:
    """The cost of one failure under a checkpoint interval: on average half an interval of work is lost, plus
    detection and restart, on every GPU of the gang; and over ``failures`` failures (Llama 3: 419 in 54 days)."""
    lost_h = checkpoint_interval_h / 2 + detect_h + restart_h
    one = gpus * usd_per_gpu_hour * lost_h
    f = (f"{gpus:,} x ${usd_per_gpu_hour:g} x ({checkpoint_interval_h * 60:g} min / 2 + "
         f"{detect_h * 60:g} min detect + {restart_h * 60:g} min restart)")
    return [Line("one failure", f, one),
            Line(f"{failures} failures", f"{failures} x ${one:,.0f}", failures * one)]


@dataclass(frozen=True, slots=True)
class TrainingRun:
    """Parameters of the source's training-run estimate (defaults: Llama 3 405B as the source gives it).

    ``networking_share`` and ``storage_share`` are per dollar of GPU compute (see docs/cost.md); ``people`` is
    ``engineers x loaded cost per year`` for the run's duration (our assumption: the source names the line
    without a figure).
    """

    gpus: int = 16_384
    usd_per_gpu_hour: float = 3.0
    days: float = 54.0
    waste: float = 0.30
    networking_share: float = NETWORKING_SHARE
    storage_share: float = STORAGE_SHARE
    gpus_per_node: int = 8
    node_kw: float = 10.2
    usd_per_kwh: float = 0.10
    pue: float = 1.0
    engineers: int = 20
    usd_per_engineer_year: float = 400_000.0


def llama3_405b_breakdown(r: TrainingRun = TrainingRun()) -> list[Line]:
    """The source's cost of a training run, line by line; the last line is the total.

    Source figures: compute ~$63M, ~$82M with ~30 % waste, total ~$95-105M (printed beside ours).
    """
    hours = r.days * 24
    compute = r.gpus * r.usd_per_gpu_hour * hours
    waste = compute * r.waste
    nodes = r.gpus // r.gpus_per_node
    power = nodes * r.node_kw * r.pue * hours * r.usd_per_kwh
    people = r.engineers * r.usd_per_engineer_year * r.days / 365.0
    pue = f" x PUE {r.pue:g}" if r.pue != 1.0 else ""
    lines = [
        Line("compute", f"{r.gpus:,} GPUs x ${r.usd_per_gpu_hour:g}/GPU-h x {r.days:g} d x 24 h", compute, 63e6),
        Line("waste", f"compute x {r.waste:.0%} (failures, restarts, stalls, idle)", waste),
        Line("compute with waste", "compute + waste", compute + waste, 82e6),
        Line("networking", f"compute x {r.networking_share:.1%}", compute * r.networking_share),
        Line("storage", f"compute x {r.storage_share:.1%}", compute * r.storage_share),
        Line("power", f"{nodes:,} nodes x {r.node_kw:g} kW{pue} x {hours:,.0f} h x ${r.usd_per_kwh:g}/kWh", power),
        Line("people", f"{r.engineers} engineers x ${r.usd_per_engineer_year:,.0f}/yr x {r.days:g}/365", people),
    ]
    total = compute + waste + compute * (r.networking_share + r.storage_share) + power + people
    lines.append(Line("total", "compute with waste + networking + storage + power + people", total,
                      source_note="$95-105M"))
    return lines


def run_rental_view(usage: list[FactoryUsage], usd_per_gpu_hour: float = 3.0,
                    networking_share: float = NETWORKING_SHARE, storage_share: float = STORAGE_SHARE) -> list[Line]:
    """A twin run priced the source's way: every installed GPU-hour rented at a flat price, the waste *measured*
    (installed GPU-hours that produced no retained work) instead of assumed, networking and storage as shares
    of compute, and the twin's own power bill; the last line is the total per productive GPU-hour."""
    gpu_h = sum(sum(u.gpus_by_system.values()) * u.hours for u in usage)
    productive = sum(u.productive_gpu_hours for u in usage)
    power = sum(u.power_cost_usd for u in usage)
    compute = gpu_h * usd_per_gpu_hour
    waste_share = 1.0 - productive / gpu_h if gpu_h > 0 else 0.0
    net, sto = compute * networking_share, compute * storage_share
    total = compute + net + sto + power
    return [
        Line("compute", f"{gpu_h:,.0f} installed GPU-h x ${usd_per_gpu_hour:g}", compute),
        Line("  of which waste", f"compute x {waste_share:.1%} (1 - {productive:,.0f} productive / {gpu_h:,.0f} "
             "installed GPU-h: idle, failures, restarts, stalls)", compute * waste_share),
        Line("networking", f"compute x {networking_share:.1%}", net),
        Line("storage", f"compute x {storage_share:.1%}", sto),
        Line("power", "the twin's facility energy x hourly price (tariff applied)", power),
        Line("total", "compute + networking + storage + power", total),
        Line("total per productive GPU-h", f"${total:,.0f} / {productive:,.0f} productive GPU-h",
             total / productive if productive > 0 else 0.0),
    ]
