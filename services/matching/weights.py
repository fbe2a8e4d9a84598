"""Scoring weights: versioned configuration per network, kept as data in `weights/`.

Each `weights/<version>.json` holds the weight of every factor and the few parameters of
the factors; `weights/networks.json` says which version each network uses now. A version is
never edited once used (past proposals name it), so a replay can score with it again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.matching.scoring import FACTORS

WEIGHTS_DIR = Path(__file__).with_name("weights")


class WeightsError(ValueError):
    """A weights file is missing or invalid; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class Weights:
    version: str
    factors: Mapping[str, float]
    # at most this many candidates per role (plus one per extra seat)
    max_candidates: int = 10
    # a request for a broader term scores a narrower capability x this, per step
    broader_term_factor: float = 0.7
    # proximity is 0.5 at this distance, 1 on site, -> 0 far away
    proximity_half_km: float = 300.0
    # "lately", for fairness: proposals and invitations of the last N days of the log
    fairness_window_days: float = 30.0

    def __post_init__(self) -> None:
        missing = [name for name in FACTORS if name not in self.factors]
        unknown = [name for name in self.factors if name not in FACTORS]
        if missing or unknown:
            raise WeightsError(
                f"weights {self.version}: factors must be exactly {', '.join(FACTORS)} "
                f"(missing {missing}, unknown {unknown})"
            )
        for name, weight in self.factors.items():
            if not (isinstance(weight, int | float) and math.isfinite(weight) and weight >= 0):
                raise WeightsError(f"weights {self.version}: {name} must be a number >= 0")
        if sum(self.factors.values()) <= 0:
            raise WeightsError(f"weights {self.version}: at least one weight must be > 0")
        if self.max_candidates < 1:
            raise WeightsError(f"weights {self.version}: max_candidates must be >= 1")
        if not 0 < self.broader_term_factor <= 1:
            raise WeightsError(f"weights {self.version}: broader_term_factor must be in (0, 1]")
        if self.proximity_half_km <= 0 or self.fairness_window_days <= 0:
            raise WeightsError(
                f"weights {self.version}: proximity_half_km and fairness_window_days must be > 0"
            )

    def weight(self, factor: str) -> float:
        return float(self.factors[factor])

    @classmethod
    def from_data(cls, data: Mapping) -> Weights:
        try:
            parameters = dict(data.get("parameters", {}))
            return cls(
                version=str(data["version"]),
                factors={name: float(value) for name, value in data["factors"].items()},
                **parameters,
            )
        except (KeyError, TypeError, ValueError) as error:
            if isinstance(error, WeightsError):
                raise
            raise WeightsError(f"invalid weights data: {error!r}") from error


def load_weights(version: str, directory: Path = WEIGHTS_DIR) -> Weights:
    path = directory / f"{version}.json"
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.json") if p.stem != "networks")
        raise WeightsError(f"no weights version {version!r} in {directory} (known: {known})")
    weights = Weights.from_data(json.loads(path.read_text()))
    if weights.version != version:
        raise WeightsError(f"{path.name} declares version {weights.version!r}")
    return weights


def active_weights(network: str = "default", directory: Path = WEIGHTS_DIR) -> Weights:
    """The weights a network uses now (`weights/networks.json`)."""
    active = json.loads((directory / "networks.json").read_text())["active"]
    if network not in active:
        raise WeightsError(f"no active weights for network {network!r} (known: {sorted(active)})")
    return load_weights(active[network], directory)
