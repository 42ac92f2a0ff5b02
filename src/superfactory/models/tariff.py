"""How a factory pays for power: a fixed-price contract (PPA) for a share of its energy, the market for the rest.

Large sites buy most of their power under long-term power purchase agreements and the remainder at the hourly
wholesale price. Modelled here as a fixed-share contract: every hour, ``ppa_share`` of the energy costs the
contract price and ``1 - ppa_share`` costs the hourly market price, so

    effective price = ppa_share x ppa_price + (1 - ppa_share) x spot price          (USD/MWh)

Spot-only (``ppa_share = 0``) is the default of every scenario, so studies see the market. Policies keep
deciding on the spot signal: with a fixed-share contract the spot share still moves with the hour.
"""

from __future__ import annotations


def effective_price_usd_per_mwh(spot_usd_per_mwh: float, ppa_share: float, ppa_usd_per_mwh: float) -> float:
    """The blended price a factory pays for one MWh in an hour whose market price is ``spot_usd_per_mwh``.

    Args:
        spot_usd_per_mwh: hourly market price, USD/MWh (may be negative).
        ppa_share: share of energy under the contract, 0..1.
        ppa_usd_per_mwh: contract price, USD/MWh.

    Raises:
        ValueError: a share outside [0, 1].
    """
    if not 0.0 <= ppa_share <= 1.0:
        raise ValueError(f"ppa_share must be within [0, 1], got {ppa_share}")
    if ppa_share == 0.0:
        return spot_usd_per_mwh
    return ppa_share * ppa_usd_per_mwh + (1.0 - ppa_share) * spot_usd_per_mwh
