"""The ``[privacy]`` section: DP-FedAvg's clipping, noise and accounting (fl/privacy.py)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import ClassVar

from .base import _Section

__all__ = ["PrivacyConfig"]


@dataclass(frozen=True)
class PrivacyConfig(_Section):
    """Central differential privacy: each client's update clipped to ``clip`` (L2), and
    Gaussian noise of std ``noise_multiplier * clip`` added to each cluster's sum."""

    _section: ClassVar[str] = "privacy"
    enabled: bool = False
    noise_multiplier: float = 1.0  # sigma: the noise's std in units of the clip norm
    clip: float = 1.0  # the L2 bound of one client's update (the initial one when adaptive)
    delta: float = 1e-5  # the delta of the (epsilon, delta) guarantee reported
    adaptive: bool = False  # Andrew et al. 2021: the clip follows a quantile of the norms
    target_quantile: float = 0.5  # adaptive: the fraction of updates left unclipped
    clip_lr: float = 0.2  # adaptive: the geometric step of the clip norm
    count_noise: float = 0.0  # adaptive: the std of the noised unclipped count (0: m / 20)

    def __post_init__(self) -> None:
        self._check("noise_multiplier", self.noise_multiplier >= 0, "a number >= 0")
        self._check("clip", self.clip > 0, "a number > 0 (the L2 bound of one update)")
        self._check("delta", 0 < self.delta < 1, "a number in (0, 1)")
        self._check("target_quantile", 0 < self.target_quantile < 1, "a fraction in (0, 1)")
        self._check("clip_lr", self.clip_lr > 0, "a number > 0")
        self._check("count_noise", self.count_noise >= 0,
                    "a number >= 0 (0: clients per round / 20)")
        self._check("enabled", not self.enabled or
                    importlib.util.find_spec("dp_accounting") is not None,
                    "false, or install the optional dependency dp-accounting "
                    "(pip install 'fedcluster[privacy]') for the privacy accountant")
