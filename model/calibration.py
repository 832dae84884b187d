"""Verification calibration: the thresholds and the distance → score mapping a card carries (NumPy only).

Serving reads a `Calibration` from the card and answers "same person?" with it. Values are in the units
of the card's distance (`model.distances`): for Euclidean / L1 a smaller value is closer and a pair
matches when `value <= threshold`; for cosine (a similarity, `higher_is_closer`) a pair matches when
`value >= threshold`. `matches` applies the right comparison, so no caller has to remember which.

The score `sigmoid(a·value + b)` (Platt scaling) is in [0, 1], higher = more likely the same person, and
is monotone in closeness (a < 0 for distances, a > 0 for similarities; validated). Hence
`matches(values, far) == (score(values) >= score_threshold(far))`: the service can return a score and a
threshold in the same units and the decision it reports is the one the distance threshold makes. The
equivalence is exact in float64 unless the threshold's score saturates at 1.0, which `__post_init__`
refuses. Decide with `matches` (on the distance); the score is for people and for ranking.

Fitting (ROC, Platt's Newton steps, threshold selection) lives in `training.verification.calibrate`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model import distances

# What each part of a calibration was fitted on must be stated (the card is the contract).
FITTED_ON_KEYS = ("threshold", "far_thresholds", "platt")
# Scores this close to 1.0 cannot separate neighbouring distances in float64 (see module docstring).
_MAX_LOGIT = 30.0


class CalibrationError(ValueError):
    """A calibration that breaks its contract (unknown distance, wrong slope sign, malformed keys)."""


def far_key(far: float | str) -> str:
    """The canonical key of a false-accept rate: 0.01 → "1e-2", 0.001 → "1e-3", 0.005 → "5e-3".

    Strings are parsed and re-formatted, so "1e-02" and "0.01" both give "1e-2". Raises
    CalibrationError unless 0 < far < 1.
    """
    try:
        value = float(far)
    except (TypeError, ValueError) as e:
        raise CalibrationError(f"not a false-accept rate: {far!r}") from e
    if not 0.0 < value < 1.0:
        raise CalibrationError(f"a false-accept rate must lie in (0, 1), got {far!r}")
    mantissa, exponent = f"{value:.6e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + e^−z), float64, without overflow for large |z|."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


@dataclass(frozen=True)
class Calibration:
    """Thresholds and a score mapping for one model and one distance.

    distance: the `model.distances` name the values are measured with.
    threshold: the accuracy-optimal threshold, in value units (see `matches` for the comparison).
    far_thresholds: "1e-2" → threshold whose false-accept rate on the fitting impostor pairs is ≤ 1e-2;
      only FARs the impostor count supports (n_impostor · far ≥ 1; validated). Keys as `far_key` writes them.
    platt_a, platt_b: score(value) = sigmoid(platt_a · value + platt_b); platt_a < 0 for distances where
      smaller is closer, > 0 for similarities.
    fitted_on: one free-text line per part, keys FITTED_ON_KEYS: which pairs (data, protocol, counts)
      the threshold, the FAR thresholds and the Platt mapping were fitted on.
    n_genuine, n_impostor: same-person and different-person pair counts the thresholds were fitted on.
    """

    distance: str
    threshold: float
    far_thresholds: dict[str, float]
    platt_a: float
    platt_b: float
    fitted_on: dict[str, str]
    n_genuine: int
    n_impostor: int
    schema: int = field(default=1)

    def __post_init__(self) -> None:
        try:
            dist = distances.get(self.distance)
        except ValueError as e:
            raise CalibrationError(str(e)) from e
        if not isinstance(self.far_thresholds, dict):
            raise CalibrationError(f"far_thresholds must be a dict, got {self.far_thresholds!r}")
        numbers = {"threshold": self.threshold, "platt_a": self.platt_a, "platt_b": self.platt_b}
        numbers.update({f"far_thresholds[{k!r}]": v for k, v in self.far_thresholds.items()})
        for name, v in numbers.items():
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise CalibrationError(f"{name} must be a finite number, got {v!r}")
        if not (self.platt_a > 0 if dist.higher_is_closer else self.platt_a < 0):
            want = "> 0" if dist.higher_is_closer else "< 0"
            raise CalibrationError(
                f"platt_a must be {want} for {self.distance} so that the score grows with closeness, got {self.platt_a}"
            )
        for name in ("n_genuine", "n_impostor"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise CalibrationError(f"{name} must be a positive integer, got {v!r}")
        for k in self.far_thresholds:
            if far_key(k) != k:
                raise CalibrationError(f"far_thresholds key {k!r} is not canonical; write {far_key(k)!r}")
            if self.n_impostor * float(k) < 1.0 - 1e-9:
                need = math.ceil(1 / float(k) - 1e-9)
                raise CalibrationError(f"FAR {k} needs {need}+ impostor pairs, the thresholds had {self.n_impostor}")
        # A stricter (smaller) FAR target must never give a more permissive threshold.
        ordered = sorted(self.far_thresholds, key=float)
        closeness = [self._closeness(self.far_thresholds[k]) for k in ordered]
        if any(looser > stricter for stricter, looser in itertools.pairwise(closeness)):
            raise CalibrationError(f"far_thresholds are not monotone in the FAR: {self.far_thresholds}")
        if not isinstance(self.fitted_on, dict) or sorted(self.fitted_on) != sorted(FITTED_ON_KEYS):
            raise CalibrationError(f"fitted_on must have exactly the keys {FITTED_ON_KEYS}, got {self.fitted_on!r}")
        if not all(isinstance(v, str) and v.strip() for v in self.fitted_on.values()):
            raise CalibrationError("every fitted_on entry must be a non-empty description")
        for t in [self.threshold, *self.far_thresholds.values()]:
            if self.platt_a * t + self.platt_b > _MAX_LOGIT:
                raise CalibrationError(
                    f"threshold {t} has score 1 − {math.exp(-_MAX_LOGIT):.0e} or closer: in score units it "
                    "could not separate neighbouring distances; refit with Platt's target smoothing"
                )

    @property
    def higher_is_closer(self) -> bool:
        return distances.get(self.distance).higher_is_closer

    def _closeness(self, value: float) -> float:
        return value if self.higher_is_closer else -value

    def threshold_for(self, far: float | str | None = None) -> float:
        """The threshold in value units: accuracy-optimal for `far=None`, else the one for that FAR.

        The FAR must be one the calibration has (exactly, after `far_key`); otherwise KeyError names
        the available ones.
        """
        if far is None:
            return self.threshold
        key = far_key(far)
        if key not in self.far_thresholds:
            available = ", ".join(sorted(self.far_thresholds, key=float, reverse=True)) or "none"
            raise KeyError(f"no threshold for FAR {key}; this calibration has: {available}")
        return self.far_thresholds[key]

    def matches(self, values: np.ndarray, far: float | str | None = None) -> np.ndarray:
        """Boolean array (shape of `values`): same person at the chosen threshold (see `threshold_for`)."""
        # float64: under NumPy 2's promotion rules `float32_array <= python_float` compares in float32,
        # which rounds the threshold and can flip the decision for values next to it.
        values = np.asarray(values, dtype=np.float64)
        t = self.threshold_for(far)
        return values >= t if self.higher_is_closer else values <= t

    def score(self, values: np.ndarray) -> np.ndarray:
        """Values (any shape) → float64 scores in [0, 1], same shape, higher = more likely the same person."""
        return sigmoid(self.platt_a * np.asarray(values, dtype=np.float64) + self.platt_b)

    def score_threshold(self, far: float | str | None = None) -> float:
        """`threshold_for(far)` in score units: `score(v) >= score_threshold(far)` ⇔ `matches(v, far)`."""
        return float(self.score(np.array([self.threshold_for(far)]))[0])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (plain floats and strings) that `from_dict` reads back."""
        return {
            "schema": self.schema,
            "distance": self.distance,
            "threshold": float(self.threshold),
            "far_thresholds": {
                k: float(v) for k, v in sorted(self.far_thresholds.items(), key=lambda kv: -float(kv[0]))
            },
            "platt": {"a": float(self.platt_a), "b": float(self.platt_b)},
            "fitted_on": dict(self.fitted_on),
            "n_genuine": int(self.n_genuine),
            "n_impostor": int(self.n_impostor),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """Read `to_dict`'s output. Missing or unknown keys, a newer schema, or values that break the
        contract raise CalibrationError."""
        if not isinstance(d, dict):
            raise CalibrationError(f"a calibration is a dict, got {type(d).__name__}")
        required = {"distance", "threshold", "far_thresholds", "platt", "fitted_on", "n_genuine", "n_impostor"}
        missing = sorted(required - set(d))
        unknown = sorted(set(d) - required - {"schema"})
        if missing or unknown:
            raise CalibrationError(f"calibration keys: missing {missing}, unknown {unknown}")
        schema = d.get("schema", 1)
        if not isinstance(schema, int) or schema > 1:
            raise CalibrationError(f"calibration schema {schema!r} is newer than this code (1)")
        platt = d["platt"]
        if not isinstance(platt, dict) or sorted(platt) != ["a", "b"]:
            raise CalibrationError(f"platt must be {{'a': ..., 'b': ...}}, got {platt!r}")
        fars = d["far_thresholds"]
        if not isinstance(fars, dict):
            raise CalibrationError(f"far_thresholds must be a dict, got {fars!r}")
        return cls(
            distance=d["distance"],
            threshold=d["threshold"],
            far_thresholds=dict(fars),
            platt_a=platt["a"],
            platt_b=platt["b"],
            fitted_on=d["fitted_on"],
            n_genuine=d["n_genuine"],
            n_impostor=d["n_impostor"],
            schema=schema,
        )
