"""Face verification metrics and calibration, written once and tested on scores with known answers.

Every function takes pair `labels` (bool or 0/1, shape P: True = same person, "genuine"; False =
different people, "impostor") and pair `values` (float, shape P: a distance, a similarity or a score),
plus `higher_is_closer`, keyword-only and required, because guessing the direction silently turns an
AUC of 0.99 into 0.01. Distances (Euclidean, L1) are `higher_is_closer=False`, cosine similarity and
scores in [0, 1] are `True` (`model.distances.Distance.higher_is_closer` says which).

A pair is accepted ("same person") at threshold t when it is at least that close: `value <= t` for
distances, `value >= t` for similarities. Conventions, each stated where it is implemented:
- FAR = accepted impostors / impostors, TAR = accepted genuine / genuine, FRR = 1 − TAR.
- Operating thresholds lie midway between the last accepted and the first rejected value, so that a
  value equal to one seen in fitting is decided the same way, and float32 values never sit on them.
- TAR at FAR f: the most permissive threshold whose FAR on these pairs is ≤ f. It is reported only when
  the impostor count supports f, i.e. n_impostor · f ≥ 1 (at least one false accept is allowed at the
  target): with fewer impostors "FAR ≤ f" only means "no false accepts seen", which would read as a
  better number than the data can show. Unsupported targets give NaN and `supported=False`.
- EER: where the ROC polyline crosses FAR = FRR (linear between ROC points), so ties are handled.
- AUC: trapezoid under the ROC = P(genuine closer than impostor) + ½ P(tie) (Mann–Whitney).

Plots need matplotlib (imported inside `plot_roc_det`); nothing here needs torch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from model import distances
from model.calibration import Calibration, far_key
from model.distances import Distance
from training.evaluate import Accuracy, mean_ci95

LOG = logging.getLogger(__name__)

REPORT_FARS = (1e-2, 1e-3)
CARD_FARS = (1e-2, 1e-3, 1e-4)


# ---------------------------------------------------------------------------------------------- inputs
def _check(labels: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated (bool P, float64 P) copies; both classes must be present and values finite."""
    y = np.asarray(labels)
    v = np.asarray(values, dtype=np.float64)
    if y.ndim != 1 or v.shape != y.shape:
        raise ValueError(f"labels and values must be 1-d of one length, got {y.shape} and {v.shape}")
    if y.dtype != np.bool_:
        if not np.isin(y, (0, 1)).all():
            raise ValueError("labels must be bool or 0/1 (1 = same person)")
        y = y.astype(bool)
    if not np.isfinite(v).all():
        raise ValueError("values must be finite")
    n_gen = int(y.sum())
    if n_gen == 0 or n_gen == len(y):
        raise ValueError(f"need both genuine and impostor pairs, got {n_gen} genuine of {len(y)}")
    return y, v


def pair_values(a: np.ndarray, b: np.ndarray, distance: Distance | str, chunk: int = 512) -> np.ndarray:
    """Row-wise values between pairs: out[i] = distance(a[i], b[i]); a, b: P×D → float32 P.

    Uses `Distance.pairwise` on diagonal blocks, so the numbers are exactly those serving computes.
    """
    dist = distances.get(distance) if isinstance(distance, str) else distance
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"expected two P×D arrays of one shape, got {a.shape} and {b.shape}")
    out = np.empty(len(a), dtype=np.float32)
    for s in range(0, len(a), chunk):
        out[s : s + chunk] = np.diagonal(dist.pairwise(a[s : s + chunk], b[s : s + chunk]))
    return out


def all_pairs(embeddings: np.ndarray, labels: np.ndarray, distance: Distance | str) -> tuple[np.ndarray, np.ndarray]:
    """Every unordered pair i < j of a set (ORL / Yale held-out subjects): (same-identity bool, value).

    embeddings: N×D, labels: N identity ids → two arrays of N(N−1)/2, in `np.triu_indices(N, 1)` order.
    """
    dist = distances.get(distance) if isinstance(distance, str) else distance
    labels = np.asarray(labels)
    i, j = np.triu_indices(len(labels), 1)
    return labels[i] == labels[j], dist.pairwise(embeddings, embeddings)[i, j]


# ------------------------------------------------------------------------------------------------ ROC
@dataclass(frozen=True)
class RocCurve:
    """The empirical ROC, one point per distinct value (K distinct values → K + 1 points).

    far, tar: float64 K+1, non-decreasing, from (0, 0) (accept nothing) to (1, 1) (accept all).
    thresholds: float64 K+1 in value units; point i accepts exactly the pairs at least as close as
      thresholds[i]. thresholds[0] is ∓inf (accept nothing); the others are the distinct values.
    """

    far: np.ndarray
    tar: np.ndarray
    thresholds: np.ndarray
    n_genuine: int
    n_impostor: int
    higher_is_closer: bool

    @property
    def frr(self) -> np.ndarray:
        return 1.0 - self.tar

    def thinned(self, points: int = 1000) -> RocCurve:
        """At most about `points` of this curve's points, for plots and records: both corners, and for FARs
        spaced evenly on a log axis from 1/n_impostor to 1 the first point reaching each. Unchanged if small."""
        if len(self.far) <= points:
            return self
        fars = np.geomspace(1.0 / max(self.n_impostor, 1), 1.0, points - 2)
        idx = np.unique(np.concatenate([[0, len(self.far) - 1], np.searchsorted(self.far, fars, side="left")]))
        idx = idx[idx < len(self.far)]
        return RocCurve(
            self.far[idx], self.tar[idx], self.thresholds[idx], self.n_genuine, self.n_impostor, self.higher_is_closer
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the infinite first threshold becomes None); `from_dict` reads it back."""
        return {
            "far": self.far.tolist(),
            "tar": self.tar.tolist(),
            "thresholds": [None if math.isinf(t) else float(t) for t in self.thresholds],
            "n_genuine": self.n_genuine,
            "n_impostor": self.n_impostor,
            "higher_is_closer": self.higher_is_closer,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RocCurve:
        none = math.inf if d["higher_is_closer"] else -math.inf  # accept nothing (as roc_curve starts)
        return cls(
            np.asarray(d["far"], np.float64),
            np.asarray(d["tar"], np.float64),
            np.array([none if t is None else t for t in d["thresholds"]], np.float64),
            int(d["n_genuine"]),
            int(d["n_impostor"]),
            bool(d["higher_is_closer"]),
        )


def roc_curve(labels: np.ndarray, values: np.ndarray, *, higher_is_closer: bool) -> RocCurve:
    """The ROC of pairs `labels` (P) and `values` (P); tied values form one point (a diagonal step)."""
    y, v = _check(labels, values)
    closeness = v if higher_is_closer else -v
    order = np.argsort(-closeness, kind="stable")
    c, ys, vs = closeness[order], y[order], v[order]
    last = np.r_[np.flatnonzero(np.diff(c)), len(c) - 1]  # last index of each group of tied values
    tp = np.cumsum(ys)[last]
    fp = last + 1 - tp
    n_gen, n_imp = int(y.sum()), int((~y).sum())
    start = np.inf if higher_is_closer else -np.inf
    return RocCurve(
        far=np.r_[0.0, fp / n_imp],
        tar=np.r_[0.0, tp / n_gen],
        thresholds=np.r_[start, vs[last]],
        n_genuine=n_gen,
        n_impostor=n_imp,
        higher_is_closer=higher_is_closer,
    )


def auc(curve: RocCurve) -> float:
    """Area under the ROC (trapezoids): P(genuine closer than impostor) + ½ P(tie)."""
    return float(np.sum(np.diff(curve.far) * (curve.tar[1:] + curve.tar[:-1]) / 2.0))


def _operating_threshold(curve: RocCurve, i: int) -> float:
    """A finite threshold that accepts exactly what ROC point i accepts (the midpoint convention).

    Point 0 (accept nothing): the next float stricter than the closest value. Point K (accept all): the
    farthest value itself. Otherwise: midway between point i's value and point i+1's.
    """
    t = curve.thresholds
    if i == 0:
        return float(np.nextafter(t[1], np.inf if curve.higher_is_closer else -np.inf))
    if i == len(t) - 1:
        return float(t[i])
    return float((t[i] + t[i + 1]) / 2.0)


@dataclass(frozen=True)
class Eer:
    """Equal error rate (FAR = FRR, in [0, 1]) and a threshold in value units that operates near it."""

    eer: float
    threshold: float


def eer(curve: RocCurve) -> Eer:
    """Where the ROC polyline crosses FAR = FRR (i.e. FAR + TAR = 1), interpolated linearly.

    The threshold is the operating threshold of the ROC point next to the crossing with the smaller
    |FAR − FRR| (ties: the stricter one).
    """
    g = curve.far + curve.tar - 1.0  # FAR − FRR: −1 at point 0, +1 at the last point, non-decreasing
    i = int(np.argmax(g >= 0.0))
    if g[i] == 0.0:
        value = float(curve.far[i])
    else:
        alpha = -g[i - 1] / (g[i] - g[i - 1])
        value = float(curve.far[i - 1] + alpha * (curve.far[i] - curve.far[i - 1]))
    nearest = i if g[i] == 0.0 or abs(g[i]) < abs(g[i - 1]) else i - 1
    return Eer(eer=value, threshold=_operating_threshold(curve, nearest))


@dataclass(frozen=True)
class TarAtFar:
    """TAR at a FAR target on one set of pairs (the threshold is chosen on those same pairs).

    tar: NaN when not `supported` (n_impostor · far_target < 1); `tar_unsupported` keeps the value the
      rule gives anyway (the zero-false-accept TAR), for curves and debugging only.
    far: the FAR actually reached (≤ far_target). threshold: in value units (midpoint convention).
    """

    far_target: float
    tar: float
    far: float
    threshold: float
    supported: bool
    tar_unsupported: float


def far_supported(n_impostor: int, far: float) -> bool:
    """Whether `n_impostor` pairs can show a FAR of `far`: n_impostor · far ≥ 1 (one false accept allowed)."""
    return n_impostor * far >= 1.0 - 1e-9


def tar_at_far(curve: RocCurve, far: float) -> TarAtFar:
    """The most permissive ROC point with FAR ≤ `far` (a group of tied values is taken whole or not at
    all); see the module docstring for when a target is `supported`."""
    if not 0.0 < far < 1.0:
        raise ValueError(f"far must lie in (0, 1), got {far}")
    i = int(np.flatnonzero(curve.far <= far)[-1])
    ok = far_supported(curve.n_impostor, far)
    tar = float(curve.tar[i])
    return TarAtFar(
        far_target=far,
        tar=tar if ok else math.nan,
        far=float(curve.far[i]),
        threshold=_operating_threshold(curve, i),
        supported=ok,
        tar_unsupported=tar,
    )


def best_accuracy_threshold(labels: np.ndarray, values: np.ndarray, *, higher_is_closer: bool) -> tuple[float, float]:
    """(threshold, accuracy): the threshold that maximises accuracy on these pairs.

    Candidates are the ROC points (every way of splitting the sorted values), each at its midpoint
    threshold; ties in accuracy go to the stricter threshold (fewer false accepts).
    """
    curve = roc_curve(labels, values, higher_is_closer=higher_is_closer)
    correct = curve.tar * curve.n_genuine + (1.0 - curve.far) * curve.n_impostor
    i = int(np.argmax(correct))  # first maximum = strictest
    return _operating_threshold(curve, i), float(correct[i] / (curve.n_genuine + curve.n_impostor))


def accuracy_at(labels: np.ndarray, values: np.ndarray, threshold: float, *, higher_is_closer: bool) -> float:
    """Fraction of pairs decided correctly when accepting pairs at least as close as `threshold`."""
    y, v = _check(labels, values)
    accept = v >= threshold if higher_is_closer else v <= threshold
    return float((accept == y).mean())


# ---------------------------------------------------------------------------------------------- Platt
def fit_platt(labels: np.ndarray, values: np.ndarray, max_iter: int = 100, tol: float = 1e-10) -> tuple[float, float]:
    """(a, b) so that sigmoid(a·value + b) ≈ P(same person | value), by logistic regression on 1-d values.

    Platt (1999) with Lin, Lin & Weng's (2007) safeguards: targets smoothed to (N₊+1)/(N₊+2) for genuine
    and 1/(N₋+2) for impostor pairs (no infinite slope on separable data), Newton steps on the
    cross-entropy with a backtracking line search. Values are standardised while fitting and the result
    is mapped back, so the scale of the distance does not matter. The sign of `a` is not imposed: a
    model whose distance is anti-correlated with identity gets the wrong sign, and
    `model.calibration.Calibration` refuses it.
    """
    y, v = _check(labels, values)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    target = np.where(y, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    mu, sd = float(v.mean()), float(v.std())
    x = (v - mu) / (sd if sd > 0 else 1.0)

    def loss(w: np.ndarray) -> float:
        z = w[0] * x + w[1]
        # Cross-entropy with soft targets: log(1 + e^z) − t·z, computed without overflow.
        return float(np.sum(np.logaddexp(0.0, z) - target * z))

    w = np.array([0.0, math.log((n_pos + 1.0) / (n_neg + 1.0))])
    f = loss(w)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(w[0] * x + w[1])))
        r = p - target
        grad = np.array([np.dot(r, x), r.sum()])
        h = p * (1.0 - p)
        hess = np.array([[np.dot(h, x * x), np.dot(h, x)], [np.dot(h, x), h.sum()]]) + 1e-12 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        lr = 1.0
        while lr > 1e-10:
            w_new = w - lr * step
            f_new = loss(w_new)
            if f_new <= f - 1e-4 * lr * float(np.dot(grad, step)):  # Armijo condition
                break
            lr /= 2.0
        else:
            break  # no decrease possible: at the optimum up to rounding
        converged = abs(f - f_new) <= tol * max(1.0, abs(f))
        w, f = w_new, f_new
        if converged:
            break
    scale = sd if sd > 0 else 1.0
    a = w[0] / scale
    return float(a), float(w[1] - a * mu)


def _describe(source: str, n_genuine: int, n_impostor: int) -> str:
    return f"{source} ({n_genuine} genuine + {n_impostor} impostor pairs)"


def calibrate(
    labels: np.ndarray,
    values: np.ndarray,
    distance: Distance | str,
    fitted_on: str,
    fars: Sequence[float] = CARD_FARS,
    platt_labels: np.ndarray | None = None,
    platt_values: np.ndarray | None = None,
    platt_fitted_on: str | None = None,
) -> Calibration:
    """The card's `Calibration` from pairs of held-out identities.

    labels, values: pairs (P) the accuracy-optimal threshold and the FAR thresholds are fitted on;
      `fitted_on` says which (data, protocol); the pair counts are appended.
    fars: FAR targets; those the impostor count does not support (`far_supported`) are left out, with a
      warning, so a card never claims a 1e-4 threshold from 3,000 impostors.
    platt_labels, platt_values, platt_fitted_on: other pairs to fit the score mapping on (for example
      the held-out fold); by default the same pairs.
    """
    dist = distances.get(distance) if isinstance(distance, str) else distance
    hic = dist.higher_is_closer
    y, v = _check(labels, values)
    curve = roc_curve(y, v, higher_is_closer=hic)
    threshold, acc = best_accuracy_threshold(y, v, higher_is_closer=hic)
    far_thresholds: dict[str, float] = {}
    for far in fars:
        if not far_supported(curve.n_impostor, far):
            LOG.warning("no threshold for FAR %s: %d impostor pairs cannot show it", far_key(far), curve.n_impostor)
            continue
        far_thresholds[far_key(far)] = tar_at_far(curve, far).threshold
    if platt_labels is None or platt_values is None:
        py, pv, psource = y, v, fitted_on
    else:
        py, pv = _check(platt_labels, platt_values)
        psource = platt_fitted_on or "unnamed pairs"
    a, b = fit_platt(py, pv)
    desc = _describe(fitted_on, curve.n_genuine, curve.n_impostor)
    LOG.info(
        "calibrated %s: threshold %.4g (accuracy %.4f), FAR thresholds %s", dist.name, threshold, acc, far_thresholds
    )
    return Calibration(
        distance=dist.name,
        threshold=threshold,
        far_thresholds=far_thresholds,
        platt_a=a,
        platt_b=b,
        fitted_on={
            "threshold": f"accuracy-optimal on {desc}",
            "far_thresholds": f"highest TAR with FAR ≤ target on {desc}",
            "platt": "Platt scaling (smoothed targets) on " + _describe(psource, int(py.sum()), int((~py).sum())),
        },
        n_genuine=curve.n_genuine,
        n_impostor=curve.n_impostor,
    )


# --------------------------------------------------------------------------------------------- reports
@dataclass(frozen=True)
class VerificationReport:
    """Every number a verification report carries, for one set of pairs.

    accuracy: at `threshold`; `threshold_source` is "given" (chosen elsewhere, e.g. on the training
      folds: the LFW protocol) or "oracle" (accuracy-optimal on these same pairs: optimistic).
    tar_at_far: far_key → TAR, NaN where the impostor count does not support the FAR.
    curve: the ROC, for plots (not serialised).
    """

    accuracy: float
    threshold: float
    threshold_source: str
    auc: float
    eer: float
    eer_threshold: float
    tar_at_far: dict[str, float]
    n_genuine: int
    n_impostor: int
    higher_is_closer: bool
    curve: RocCurve | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN becomes None (JSON has no NaN)."""

        def clean(x: float) -> float | None:
            return None if math.isnan(x) else float(x)

        return {
            "accuracy": clean(self.accuracy),
            "threshold": clean(self.threshold),
            "threshold_source": self.threshold_source,
            "auc": clean(self.auc),
            "eer": clean(self.eer),
            "eer_threshold": clean(self.eer_threshold),
            "tar_at_far": {k: clean(v) for k, v in self.tar_at_far.items()},
            "n_genuine": self.n_genuine,
            "n_impostor": self.n_impostor,
            "higher_is_closer": self.higher_is_closer,
        }


def verification_report(
    labels: np.ndarray,
    values: np.ndarray,
    *,
    higher_is_closer: bool,
    threshold: float | None = None,
    fars: Sequence[float] = REPORT_FARS,
) -> VerificationReport:
    """Accuracy, AUC, EER and TAR at each of `fars` for pairs `labels`, `values` (P each).

    threshold: the decision threshold chosen on other pairs (LFW: the nine training folds); None picks
    the accuracy-optimal one on these pairs (reported as "oracle").
    """
    y, v = _check(labels, values)
    curve = roc_curve(y, v, higher_is_closer=higher_is_closer)
    if threshold is None:
        threshold, acc = best_accuracy_threshold(y, v, higher_is_closer=higher_is_closer)
        source = "oracle"
    else:
        acc, source = accuracy_at(y, v, threshold, higher_is_closer=higher_is_closer), "given"
    e = eer(curve)
    return VerificationReport(
        accuracy=acc,
        threshold=float(threshold),
        threshold_source=source,
        auc=auc(curve),
        eer=e.eer,
        eer_threshold=e.threshold,
        tar_at_far={far_key(f): tar_at_far(curve, f).tar for f in fars},
        n_genuine=curve.n_genuine,
        n_impostor=curve.n_impostor,
        higher_is_closer=higher_is_closer,
        curve=curve,
    )


def kfold_report(fold_results: Sequence[VerificationReport]) -> dict[str, Any]:
    """Mean ± std over folds (LFW View 2: 10 folds) of every metric of `verification_report`.

    Per metric: mean, std (sample, ddof=1), sem = std/√n (what the LFW README asks for) and the
    per-fold values; NaN folds (unsupported TAR@FAR) are left out of mean/std and `n` says how many
    folds counted. Also the total pair counts.
    """
    if not fold_results:
        raise ValueError("no folds")

    def summary(xs: list[float]) -> dict[str, Any]:
        arr = np.array(xs, dtype=np.float64)
        ok = arr[~np.isnan(arr)]
        mean = float(ok.mean()) if len(ok) else math.nan
        std = float(ok.std(ddof=1)) if len(ok) > 1 else math.nan
        return {
            "mean": None if math.isnan(mean) else mean,
            "std": None if math.isnan(std) else std,
            "sem": None if math.isnan(std) else std / math.sqrt(len(ok)),
            "n": len(ok),
            "folds": [None if math.isnan(x) else float(x) for x in arr],
        }

    out: dict[str, Any] = {"n_folds": len(fold_results)}
    for name in ("accuracy", "auc", "eer", "threshold"):
        out[name] = summary([getattr(r, name) for r in fold_results])
    keys = sorted({k for r in fold_results for k in r.tar_at_far}, key=float, reverse=True)
    out["tar_at_far"] = {k: summary([r.tar_at_far.get(k, math.nan) for r in fold_results]) for k in keys}
    out["n_genuine"] = sum(r.n_genuine for r in fold_results)
    out["n_impostor"] = sum(r.n_impostor for r in fold_results)
    return out


# ----------------------------------------------------------------------------------------------- plots
def _probit(p: np.ndarray, eps: float) -> np.ndarray:
    nd = NormalDist()
    return np.array([nd.inv_cdf(float(x)) for x in np.clip(p, eps, 1.0 - eps)])


def plot_roc_det(
    curves: Mapping[str, RocCurve | VerificationReport], path: Path | str, title: str | None = None
) -> Path:
    """Write a PNG with a ROC (TAR against FAR on a log axis) and a DET (FRR against FAR, normal-deviate
    axes) panel, one line per entry of `curves` (label → curve, or a report carrying one). Returns path.

    On the log axis FAR = 0 points are dropped; the DET clips rates to [1/(2n), 1 − 1/(2n)] (n: the
    largest pair count) so that zero rates stay on the plot, and shows rates up to 60%.
    """
    from matplotlib.figure import Figure  # lazy: matplotlib is a training-side dependency

    items: list[tuple[str, RocCurve]] = []
    for label, c in curves.items():
        curve = c.curve if isinstance(c, VerificationReport) else c
        if curve is None:
            raise ValueError(f"{label}: the report carries no ROC curve")
        items.append((label, curve))
    if not items:
        raise ValueError("nothing to plot")
    n_max = max(max(c.n_genuine, c.n_impostor) for _, c in items)
    eps = 0.5 / n_max
    fig = Figure(figsize=(11, 5), dpi=100)
    roc_ax, det_ax = fig.subplots(1, 2)
    for label, c in items:
        keep = c.far > 0
        roc_ax.plot(c.far[keep], c.tar[keep], label=label)  # ROC points already hold both corners of each step
        det_ax.plot(_probit(c.far, eps), _probit(c.frr, eps), label=label)
    roc_ax.set_xscale("log")
    roc_ax.set_xlim(min(1.0 / max(c.n_impostor, 1) for _, c in items) / 2, 1.0)
    roc_ax.set_ylim(0.0, 1.01)
    roc_ax.set_xlabel("false accept rate (FAR)")
    roc_ax.set_ylabel("true accept rate (TAR)")
    roc_ax.set_title("ROC")
    roc_ax.grid(True, which="both", alpha=0.3)
    roc_ax.legend(loc="lower right")
    # DET plots show the error-rate corner (up to 60%); a curve beyond it is a failed model anyway.
    ticks = [p for p in (1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5) if p >= eps]
    tick_labels = [f"{100 * p:g}%" for p in ticks]
    det_ax.set_xticks(_probit(np.array(ticks), eps), tick_labels)
    det_ax.set_yticks(_probit(np.array(ticks), eps), tick_labels)
    lim = (float(_probit(np.array([eps]), eps)[0]), NormalDist().inv_cdf(0.6))
    det_ax.set_xlim(*lim)
    det_ax.set_ylim(*lim)
    det_ax.plot(lim, lim, color="grey", lw=0.5, ls="--")  # FAR = FRR: the EER is where a curve crosses it
    det_ax.set_xlabel("false accept rate (FAR)")
    det_ax.set_ylabel("false reject rate (FRR)")
    det_ax.set_title("DET")
    det_ax.grid(True, alpha=0.3)
    det_ax.legend(loc="upper right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    LOG.info("wrote %s", path)
    return path


# ------------------------------------------------------------------------------------- identification
def one_shot_identification(
    gallery_emb: np.ndarray,
    gallery_labels: np.ndarray,
    probe_emb: np.ndarray,
    probe_labels: np.ndarray,
    distance: Distance | str,
) -> float:
    """Closed-set rank-1 accuracy: each probe (Q×D) gets the label of its nearest gallery row (G×D).

    Every probe label must be enrolled in the gallery (closed set); raises ValueError otherwise. With
    one gallery image per identity this is one-shot identification.
    """
    dist = distances.get(distance) if isinstance(distance, str) else distance
    gallery_labels, probe_labels = np.asarray(gallery_labels), np.asarray(probe_labels)
    missing = np.setdiff1d(probe_labels, gallery_labels)
    if len(missing):
        raise ValueError(f"probe identities not in the gallery: {missing[:5].tolist()}")
    if len(probe_labels) == 0:
        raise ValueError("no probes")
    pred = gallery_labels[dist.nearest(dist.pairwise(probe_emb, gallery_emb), axis=1)]
    return float((pred == probe_labels).mean())


def one_shot_rounds(
    embeddings: np.ndarray, labels: np.ndarray, distance: Distance | str, rounds: int = 10, seed: int = 0
) -> Accuracy:
    """One-shot identification over held-out subjects (ORL / Yale protocol).

    Each of `rounds` rounds (seeded by `seed`, numpy default_rng) enrols one randomly chosen image per
    identity as the gallery and uses every other image as a probe; all identities compete in each
    round. Identities with a single image can only be enrolled (they still act as distractors).
    Returns mean accuracy over rounds, its 95% CI over rounds, and the total probe count as `trials`.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    ids = np.unique(labels)
    members = [np.flatnonzero(labels == c) for c in ids]
    accs, trials = [], 0
    for _ in range(rounds):
        gallery = np.array([rng.choice(m) for m in members])
        probe = np.setdiff1d(np.arange(len(labels)), gallery)
        accs.append(
            one_shot_identification(embeddings[gallery], labels[gallery], embeddings[probe], labels[probe], distance)
        )
        trials += len(probe)
    mean, ci = mean_ci95(accs)
    return Accuracy(mean=mean, ci95=ci, trials=trials)
