"""``SAE_SCALE``: what Measure Activation Scale measured, per site, and the units steering reads from it.

Sites are keyed by ``any_site.site_key``: ``double.img.out[18]`` (FLUX), ``up_blocks.0.attentions.1.update`` (UNet:
the name is the block), so a scale measured at a site is found by the steer node at the same site."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ...sae.running_stats import ActivationStats
from ...sae.sae_stats import SAEStats
from ..sites.any_site import site_key


@dataclass
class SiteScale:
    site: str
    block: int
    stats: ActivationStats
    sae_stats: SAEStats | None = None
    label: str = ""        # short name in the ``all blocks`` profile (D3, S0, U0.1); "" = not in the profile
    _summary: dict | None = field(default=None, init=False, repr=False)

    def summary(self) -> dict:
        """The statistics as plain numbers (computed once: the measurement is over)."""
        if self._summary is None:
            self._summary = self.stats.summary()
            if self.sae_stats is not None:
                self._summary.update(self.sae_stats.summary())
        return self._summary


class ActivationScale:
    """Sites in measurement order; ``to_dict()`` = {site name: statistics}."""

    def __init__(self, sites: list[SiteScale], settings: dict | None = None):
        self.sites = {site_key(s.site, s.block): s for s in sites}
        self.settings = dict(settings or {})

    def to_dict(self) -> dict[str, dict]:
        """A fresh copy each call: callers may change it without touching the measurement."""
        return {key: {name: list(v) if isinstance(v, list) else v for name, v in site.summary().items()}
                for key, site in self.sites.items()}

    def __repr__(self):
        return f"ActivationScale({', '.join(self.sites)})"

    def _site(self, site: str, block: int, unit: str) -> SiteScale:
        key = site_key(site, block)
        if key not in self.sites:
            raise ValueError(f"strength_unit {unit!r} needs statistics at {key}, but the scale measured "
                             f"{', '.join(self.sites) or 'nothing'}: measure that site (Measure Activation Scale)")
        return self.sites[key]

    def token_norm(self, site: str, block: int, unit: str = "× token norm") -> float:
        """The site's mean token L2 norm."""
        return float(self._site(site, block, unit).summary()["norm_mean"])

    def feature_mean(self, site: str, block: int, feature: int, d_sae: int, unit: str = "× feature mean") -> float:
        """Feature ``feature``'s mean activation when active at the site (needs SAE statistics of this SAE)."""
        measured = self._site(site, block, unit)
        key = site_key(site, block)
        if measured.sae_stats is None:
            raise ValueError(f"strength_unit {unit!r} needs SAE statistics at {key}; the scale has none: "
                             "connect the SAE to Measure Activation Scale")
        if measured.sae_stats.d_sae != d_sae:
            raise ValueError(f"the scale's SAE statistics at {key} are for an SAE with {measured.sae_stats.d_sae} "
                             f"features, this SAE has {d_sae}: measure with the same SAE")
        value = measured.summary()["feature_mean"][feature]
        if math.isnan(value):
            raise ValueError(f"strength_unit {unit!r}: feature {feature} never fired at {key} during the "
                             "measurement, so it has no mean activation; use another unit or measure other prompts")
        return float(value)
