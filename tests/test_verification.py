"""Verification metrics and calibration on scores whose right answers are known in advance."""

from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest

from model import distances
from model.calibration import Calibration, CalibrationError, far_key
from training.verification import (
    RocCurve,
    accuracy_at,
    all_pairs,
    auc,
    best_accuracy_threshold,
    calibrate,
    eer,
    fit_platt,
    kfold_report,
    one_shot_identification,
    one_shot_rounds,
    pair_values,
    plot_roc_det,
    roc_curve,
    tar_at_far,
    verification_report,
)

PHI = NormalDist().cdf

# The hand-worked example. Distances (smaller = closer); G = genuine, I = impostor; one G/I tie at 0.3.
#   sorted: 0.1 G | 0.2 I | 0.3 G, 0.3 I | 0.5 G | 0.6 I | 0.7 I        (3 genuine, 4 impostor)
HAND_VALUES = np.array([0.1, 0.3, 0.5, 0.2, 0.3, 0.6, 0.7])
HAND_LABELS = np.array([1, 1, 1, 0, 0, 0, 0])


def test_roc_by_hand() -> None:
    c = roc_curve(HAND_LABELS, HAND_VALUES, higher_is_closer=False)
    np.testing.assert_allclose(c.far, [0, 0, 1 / 4, 2 / 4, 2 / 4, 3 / 4, 1])
    np.testing.assert_allclose(c.tar, [0, 1 / 3, 1 / 3, 2 / 3, 1, 1, 1])
    np.testing.assert_allclose(c.thresholds, [-np.inf, 0.1, 0.2, 0.3, 0.5, 0.6, 0.7])
    assert (c.n_genuine, c.n_impostor) == (3, 4)
    # Pairs (genuine, impostor) where the genuine is closer: 4 + 2 + 2, plus ½ for the tie: 8.5 of 12.
    assert auc(c) == pytest.approx(8.5 / 12)
    # FAR − FRR goes from −5/12 (point 2) to +1/6 (point 3): crossing at 5/7 of the way, FAR = FRR = 3/7.
    e = eer(c)
    assert e.eer == pytest.approx(3 / 7)
    assert e.threshold == pytest.approx(0.4)  # point 3 is nearer the crossing: midway between 0.3 and 0.5
    # Correct decisions per point: 4 5 4 4 5 4 3 -> the first (stricter) maximum, between 0.1 and 0.2.
    t, acc = best_accuracy_threshold(HAND_LABELS, HAND_VALUES, higher_is_closer=False)
    assert (t, acc) == (pytest.approx(0.15), pytest.approx(5 / 7))
    assert accuracy_at(HAND_LABELS, HAND_VALUES, 0.15, higher_is_closer=False) == pytest.approx(5 / 7)
    assert accuracy_at(HAND_LABELS, HAND_VALUES, 0.55, higher_is_closer=False) == pytest.approx(5 / 7)
    # FAR ≤ 1/4 (supported: 4 impostors · 1/4 = 1): the tie at 0.3 would make it 2/4, so stop at 0.2.
    r = tar_at_far(c, 0.25)
    assert (r.tar, r.far, r.threshold, r.supported) == (pytest.approx(1 / 3), 0.25, pytest.approx(0.25), True)
    # FAR ≤ 0.1 cannot be shown with 4 impostors: NaN, though the zero-false-accept TAR is kept aside.
    r = tar_at_far(c, 0.1)
    assert math.isnan(r.tar)
    assert not r.supported
    assert (r.tar_unsupported, r.far, r.threshold) == (pytest.approx(1 / 3), 0.0, pytest.approx(0.15))


def test_similarities_give_the_same_metrics_with_negated_thresholds() -> None:
    d = roc_curve(HAND_LABELS, HAND_VALUES, higher_is_closer=False)
    s = roc_curve(HAND_LABELS, -HAND_VALUES, higher_is_closer=True)
    np.testing.assert_array_equal(d.far, s.far)
    np.testing.assert_array_equal(d.tar, s.tar)
    np.testing.assert_array_equal(d.thresholds, -s.thresholds)
    assert eer(s).threshold == pytest.approx(-eer(d).threshold)
    t, acc = best_accuracy_threshold(HAND_LABELS, -HAND_VALUES, higher_is_closer=True)
    assert (t, acc) == (pytest.approx(-0.15), pytest.approx(5 / 7))
    # The wrong direction flips the ROC: AUC becomes 1 − AUC.
    assert auc(roc_curve(HAND_LABELS, HAND_VALUES, higher_is_closer=True)) == pytest.approx(1 - 8.5 / 12)


def test_perfect_separation() -> None:
    rng = np.random.default_rng(0)
    gen, imp = rng.uniform(0.0, 0.9, 500), rng.uniform(1.1, 2.0, 1500)
    y, v = np.r_[np.ones(500), np.zeros(1500)], np.r_[gen, imp]
    rep = verification_report(y, v, higher_is_closer=False, fars=(1e-2, 1e-3, 1e-4))
    assert (rep.auc, rep.eer, rep.accuracy) == (1.0, 0.0, 1.0)
    assert gen.max() < rep.threshold < imp.min()
    assert gen.max() < rep.eer_threshold < imp.min()
    assert rep.tar_at_far["1e-2"] == rep.tar_at_far["1e-3"] == 1.0
    assert math.isnan(rep.tar_at_far["1e-4"])  # 1,500 impostors cannot show 1e-4
    assert rep.threshold_source == "oracle"


def test_identical_distributions_are_chance() -> None:
    rng = np.random.default_rng(1)
    v = rng.normal(size=40_000)
    y = np.r_[np.ones(20_000), np.zeros(20_000)]
    c = roc_curve(y, v, higher_is_closer=False)
    assert auc(c) == pytest.approx(0.5, abs=0.01)
    assert eer(c).eer == pytest.approx(0.5, abs=0.01)
    assert tar_at_far(c, 1e-2).tar == pytest.approx(1e-2, abs=0.005)


def test_gaussian_scores_match_theory() -> None:
    # Genuine distances ~ N(0, 1), impostor ~ N(2, 1): AUC = Φ(2/√2), EER = Φ(−1) at the midpoint 1,
    # TAR at FAR f = Φ(2 + Φ⁻¹(f)).
    rng = np.random.default_rng(2)
    n = 50_000
    y = np.r_[np.ones(n), np.zeros(n)]
    v = np.r_[rng.normal(0, 1, n), rng.normal(2, 1, n)]
    rep = verification_report(y, v, higher_is_closer=False)
    assert rep.auc == pytest.approx(PHI(2 / math.sqrt(2)), abs=0.005)
    assert rep.eer == pytest.approx(PHI(-1), abs=0.005)
    assert rep.eer_threshold == pytest.approx(1.0, abs=0.05)
    assert rep.accuracy == pytest.approx(PHI(1), abs=0.005)
    for f in (1e-2, 1e-3):
        expected = PHI(2 + NormalDist().inv_cdf(f))
        assert rep.tar_at_far[far_key(f)] == pytest.approx(expected, abs=0.02)


def test_auc_is_mann_whitney_with_ties() -> None:
    rng = np.random.default_rng(3)
    v = rng.integers(0, 6, size=300).astype(float)  # many ties
    y = rng.random(300) < 0.4
    gen, imp = v[y], v[~y]
    closer = (gen[:, None] < imp[None, :]).mean() + 0.5 * (gen[:, None] == imp[None, :]).mean()
    assert auc(roc_curve(y, v, higher_is_closer=False)) == pytest.approx(closer)


def test_best_accuracy_threshold_beats_every_candidate() -> None:
    rng = np.random.default_rng(4)
    y = rng.random(400) < 0.5
    v = np.where(y, rng.normal(0, 1, 400), rng.normal(1.5, 1, 400)).astype(np.float32)
    t, acc = best_accuracy_threshold(y, v, higher_is_closer=False)
    assert accuracy_at(y, v, t, higher_is_closer=False) == pytest.approx(acc)
    s = np.unique(v.astype(np.float64))
    candidates = np.r_[s[0] - 1, (s[:-1] + s[1:]) / 2, s[-1] + 1]
    brute = max(accuracy_at(y, v, c, higher_is_closer=False) for c in candidates)
    assert acc == pytest.approx(brute)
    assert not np.isin(t, v)  # a midpoint, never on a float32 value


def test_tar_at_far_never_exceeds_the_target() -> None:
    rng = np.random.default_rng(5)
    y = rng.random(5000) < 0.3
    v = np.round(np.where(y, rng.normal(0, 1, 5000), rng.normal(2, 1, 5000)), 1)  # coarse: tied groups
    c = roc_curve(y, v, higher_is_closer=False)
    for f in (1e-2, 1e-3, 0.05, 0.2):
        r = tar_at_far(c, f)
        accepted = v <= r.threshold
        assert accepted[~y].mean() == pytest.approx(r.far)
        assert r.far <= f
        assert accepted[y].mean() == pytest.approx(r.tar_unsupported)
        # The next tied group would break the target: the choice is the most permissive one.
        nxt = v[v > r.threshold].min()
        assert (v <= nxt)[~y].mean() > f


@pytest.mark.parametrize("higher_is_closer", [True, False])
def test_roc_curve_json_round_trip_and_thinning(higher_is_closer: bool) -> None:
    rng = np.random.default_rng(9)
    y = rng.random(20_000) < 0.1
    v = np.where(y, rng.normal(1, 1, 20_000), rng.normal(-1, 1, 20_000)) * (1 if higher_is_closer else -1)
    c = roc_curve(y, v, higher_is_closer=higher_is_closer)
    back = RocCurve.from_dict(json.loads(json.dumps(c.to_dict())))
    for a, b in ((c.far, back.far), (c.tar, back.tar), (c.thresholds, back.thresholds)):
        np.testing.assert_array_equal(a, b)  # the infinite first threshold included
    assert (back.n_genuine, back.n_impostor, back.higher_is_closer) == (c.n_genuine, c.n_impostor, higher_is_closer)

    thin = c.thinned(200)
    assert len(thin.far) <= 200 < len(c.far)
    assert (thin.far[0], thin.tar[0], thin.far[-1], thin.tar[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(thin.far) >= 0)
    assert np.all(np.diff(thin.tar) >= 0)
    # every kept point is a point of the curve, and the strict-FAR end is still resolved
    rows = {(f, t) for f, t in zip(c.far, c.tar, strict=True)}
    assert all((f, t) in rows for f, t in zip(thin.far, thin.tar, strict=True))
    assert thin.far[1] <= 2.0 / c.n_impostor
    assert c.thinned(len(c.far)) is c


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="both genuine and impostor"):
        roc_curve(np.ones(4), np.arange(4.0), higher_is_closer=False)
    with pytest.raises(ValueError, match="one length"):
        roc_curve(np.array([0, 1]), np.arange(3.0), higher_is_closer=False)
    with pytest.raises(ValueError, match="0/1"):
        roc_curve(np.array([0, 2]), np.arange(2.0), higher_is_closer=False)
    with pytest.raises(ValueError, match="finite"):
        roc_curve(np.array([0, 1]), np.array([0.0, np.nan]), higher_is_closer=False)
    with pytest.raises(ValueError, match="far"):
        tar_at_far(roc_curve(HAND_LABELS, HAND_VALUES, higher_is_closer=False), 0.0)


def test_fit_platt_recovers_a_known_logistic() -> None:
    rng = np.random.default_rng(6)
    x = rng.uniform(0.0, 3.0, 200_000)
    y = rng.random(len(x)) < 1.0 / (1.0 + np.exp(-(-4.0 * x + 6.0)))
    a, b = fit_platt(y, x)
    assert a == pytest.approx(-4.0, abs=0.1)
    assert b == pytest.approx(6.0, abs=0.15)
    # The scale of the values does not matter: the slope scales, the intercept stays.
    a2, b2 = fit_platt(y, x * 1000.0)
    assert (a2 * 1000.0, b2) == (pytest.approx(a, rel=1e-4), pytest.approx(b, rel=1e-4))


def test_fit_platt_stays_finite_on_separable_pairs() -> None:
    # Without Platt's target smoothing the slope would run off to infinity here.
    y = np.r_[np.ones(50), np.zeros(50)]
    x = np.r_[np.linspace(0.0, 0.4, 50), np.linspace(0.6, 1.0, 50)]
    a, b = fit_platt(y, x)
    assert math.isfinite(a)
    assert math.isfinite(b)
    assert a < 0
    p = 1.0 / (1.0 + np.exp(-(a * x + b)))
    assert p[:50].min() > 0.5 > p[50:].max()
    assert p.max() < 1.0 - 1e-6  # smoothed targets keep scores off 0 and 1


def _gaussian_pairs(n_gen: int, n_imp: int, seed: int, cosine: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_gen, bool), np.zeros(n_imp, bool)]
    if cosine:
        v = np.r_[rng.normal(0.7, 0.1, n_gen), rng.normal(0.2, 0.15, n_imp)]
    else:
        v = np.r_[rng.normal(0.8, 0.2, n_gen), rng.normal(1.4, 0.2, n_imp)]
    return y, v.astype(np.float32)


def test_calibrate_fits_supported_thresholds_only() -> None:
    y, v = _gaussian_pairs(1000, 2000, seed=7)
    cal = calibrate(y, v, "euclidean", fitted_on="synthetic Gaussian pairs")
    assert cal.distance == "euclidean"
    assert cal.platt_a < 0
    assert sorted(cal.far_thresholds) == ["1e-2", "1e-3"]  # 2,000 impostors cannot show 1e-4
    assert cal.threshold == best_accuracy_threshold(y, v, higher_is_closer=False)[0]
    c = roc_curve(y, v, higher_is_closer=False)
    assert cal.far_thresholds["1e-2"] == tar_at_far(c, 1e-2).threshold
    assert cal.far_thresholds["1e-3"] <= cal.far_thresholds["1e-2"] <= cal.threshold
    assert (cal.n_genuine, cal.n_impostor) == (1000, 2000)
    assert "1000 genuine + 2000 impostor" in cal.fitted_on["threshold"]
    # Scores estimate P(same): at the logistic fit's optimum the scores sum to the (smoothed) targets,
    # and pairs binned by score are genuine about as often as their score says.
    scores = cal.score(v)
    assert scores.sum() == pytest.approx(1000 * 1001 / 1002 + 2000 / 2002, rel=1e-6)
    for lo, hi in ((0.0, 0.2), (0.2, 0.8), (0.8, 1.0)):
        inside = (scores >= lo) & (scores < hi)
        assert scores[inside].mean() == pytest.approx(y[inside].mean(), abs=0.05)
    # The score mapping may be fitted on other pairs, and says so.
    y2, v2 = _gaussian_pairs(300, 300, seed=8)
    cal2 = calibrate(y, v, "euclidean", "train folds", platt_labels=y2, platt_values=v2, platt_fitted_on="fold 3")
    assert cal2.fitted_on["platt"].endswith("fold 3 (300 genuine + 300 impostor pairs)")
    assert (cal2.platt_a, cal2.platt_b) == pytest.approx(fit_platt(y2, v2))


def test_calibrate_refuses_an_inverted_model() -> None:
    y, v = _gaussian_pairs(500, 500, seed=9)
    with pytest.raises(CalibrationError, match="platt_a must be"):
        calibrate(y, v, "cosine", "distances passed as similarities")


@pytest.mark.parametrize("name", ["euclidean", "cosine"])
def test_score_threshold_decides_like_the_distance(name: str) -> None:
    y, v = _gaussian_pairs(2000, 20_000, seed=10, cosine=name == "cosine")
    cal = calibrate(y, v, name, fitted_on="synthetic")
    assert sorted(cal.far_thresholds, key=float) == ["1e-4", "1e-3", "1e-2"]
    grid = np.linspace(-1.0, 3.0, 4001, dtype=np.float32)
    for far in (None, *cal.far_thresholds):
        t = np.float32(cal.threshold_for(far))
        # Values right at the threshold and at the neighbouring float32s on either side.
        near = np.array([np.nextafter(t, np.float32(-np.inf)), t, np.nextafter(t, np.float32(np.inf))])
        values = np.r_[grid, near, v]
        np.testing.assert_array_equal(cal.matches(values, far), cal.score(values) >= cal.score_threshold(far))
    s = cal.score(grid)
    assert (s >= 0).all()
    assert (s <= 1).all()
    assert (np.diff(s) >= 0).all() if name == "cosine" else (np.diff(s) <= 0).all()
    # Stricter FAR targets sit higher on the score scale.
    assert cal.score_threshold("1e-4") >= cal.score_threshold("1e-3") >= cal.score_threshold("1e-2")


def _calibration(**changes: object) -> Calibration:
    base: dict = {
        "distance": "euclidean",
        "threshold": 1.1,
        "far_thresholds": {"1e-2": 0.9, "1e-3": 0.8},
        "platt_a": -8.0,
        "platt_b": 8.8,
        "fitted_on": {"threshold": "x", "far_thresholds": "x", "platt": "x"},
        "n_genuine": 3000,
        "n_impostor": 3000,
    }
    base.update(changes)
    return Calibration(**base)


def test_calibration_round_trip_and_lookup() -> None:
    cal = _calibration()
    d = json.loads(json.dumps(cal.to_dict()))
    assert Calibration.from_dict(d) == cal
    assert cal.threshold_for() == 1.1
    assert cal.threshold_for(0.01) == cal.threshold_for("1e-2") == cal.threshold_for("0.01") == 0.9
    with pytest.raises(KeyError, match=r"1e-4.*1e-2, 1e-3"):
        cal.threshold_for(1e-4)
    assert cal.score_threshold() == pytest.approx(0.5)  # a·1.1 + b = 0
    np.testing.assert_array_equal(cal.matches(np.array([0.85, 0.95]), "1e-2"), [True, False])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"distance": "manhattan"}, "unknown distance"),
        ({"platt_a": 8.0}, "platt_a must be < 0"),
        ({"distance": "cosine"}, "platt_a must be > 0"),
        ({"far_thresholds": {"0.01": 0.9}}, "not canonical"),
        ({"far_thresholds": {"1e-2": 0.8, "1e-3": 0.9}}, "not monotone"),
        ({"threshold": float("nan")}, "finite"),
        ({"fitted_on": {"threshold": "x"}}, "fitted_on"),
        ({"fitted_on": {"threshold": "", "far_thresholds": "x", "platt": "x"}}, "non-empty"),
        ({"n_impostor": 0}, "n_impostor"),
        ({"far_thresholds": {"1e-2": 0.9, "1e-4": 0.7}}, "FAR 1e-4 needs 10000"),
        ({"threshold": -3.0}, "score 1"),  # a·t + b = 32.8: saturated
    ],
)
def test_calibration_validation(change: dict, message: str) -> None:
    with pytest.raises(CalibrationError, match=message):
        _calibration(**change)


def test_calibration_from_dict_refuses_malformed_dicts() -> None:
    d = _calibration().to_dict()
    with pytest.raises(CalibrationError, match="unknown"):
        Calibration.from_dict({**d, "thresholds": {}})
    with pytest.raises(CalibrationError, match="missing"):
        Calibration.from_dict({k: v for k, v in d.items() if k != "platt"})
    with pytest.raises(CalibrationError, match="schema"):
        Calibration.from_dict({**d, "schema": 2})
    with pytest.raises(CalibrationError, match="platt"):
        Calibration.from_dict({**d, "platt": {"a": -1.0}})


def test_far_key() -> None:
    cases = {1e-2: "1e-2", 1e-3: "1e-3", 1e-4: "1e-4", 0.005: "5e-3", "1e-02": "1e-2", 0.015: "1.5e-2"}
    assert {far: far_key(far) for far in cases} == cases
    for bad in (0.0, 1.0, -0.1, "x", float("nan")):
        with pytest.raises(CalibrationError):
            far_key(bad)


def test_report_with_a_given_threshold_and_to_dict() -> None:
    y, v = _gaussian_pairs(300, 300, seed=11)
    rep = verification_report(y, v, higher_is_closer=False, threshold=1.1)
    assert rep.threshold_source == "given"
    assert rep.threshold == 1.1
    assert rep.accuracy == pytest.approx(accuracy_at(y, v, 1.1, higher_is_closer=False))
    d = rep.to_dict()
    assert d["tar_at_far"]["1e-2"] is not None
    assert d["tar_at_far"]["1e-3"] is None
    assert (d["n_genuine"], d["n_impostor"]) == (300, 300)
    json.dumps(d, allow_nan=False)  # strict JSON: NaN became None


def test_kfold_report_mean_and_std() -> None:
    reps = []
    for k, seed in enumerate((12, 13, 14)):
        y, v = _gaussian_pairs(300, 300 if k else 1000, seed=seed)
        reps.append(verification_report(y, v, higher_is_closer=False))
    out = kfold_report(reps)
    accs = [r.accuracy for r in reps]
    assert out["n_folds"] == 3
    assert out["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert out["accuracy"]["std"] == pytest.approx(np.std(accs, ddof=1))
    assert out["accuracy"]["sem"] == pytest.approx(np.std(accs, ddof=1) / math.sqrt(3))
    assert out["accuracy"]["folds"] == pytest.approx(accs)
    # TAR@1e-3 is supported only on the fold with 1,000 impostors.
    assert out["tar_at_far"]["1e-3"]["n"] == 1
    assert out["tar_at_far"]["1e-3"]["mean"] == pytest.approx(reps[0].tar_at_far["1e-3"])
    assert out["tar_at_far"]["1e-3"]["std"] is None
    assert out["n_impostor"] == 1600
    json.dumps(out, allow_nan=False)


def test_plot_roc_det_writes_a_png(tmp_path: Path) -> None:
    y, v = _gaussian_pairs(500, 1500, seed=15)
    rep = verification_report(y, v, higher_is_closer=False)
    perfect = roc_curve(np.r_[np.ones(10), np.zeros(10)], np.arange(20.0), higher_is_closer=False)
    path = plot_roc_det({"gaussian": rep, "perfect": perfect}, tmp_path / "plots" / "roc.png", title="test")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000


def test_pair_values_and_all_pairs_use_the_shared_distance() -> None:
    rng = np.random.default_rng(16)
    a, b = rng.normal(size=(1100, 8)), rng.normal(size=(1100, 8))
    for name in distances.NAMES:
        dist = distances.get(name)
        got = pair_values(a, b, name, chunk=256)
        np.testing.assert_allclose(
            got, [dist.pairwise(a[i : i + 1], b[i : i + 1])[0, 0] for i in range(1100)], rtol=1e-5, atol=1e-6
        )
    labels = np.array([0, 0, 1, 1, 1])
    same, vals = all_pairs(rng.normal(size=(5, 4)), labels, "euclidean")
    assert len(same) == len(vals) == 10
    assert same.sum() == 1 + 3


def _clusters(n_ids: int, per_id: int, seed: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, 16)) * 5
    labels = np.repeat(np.arange(n_ids), per_id)
    return centres[labels] + noise * rng.normal(size=(len(labels), 16)), labels


def test_one_shot_identification() -> None:
    emb, labels = _clusters(10, 5, seed=17, noise=0.1)
    gallery = np.arange(0, 50, 5)  # the first image of each identity
    probe = np.setdiff1d(np.arange(50), gallery)
    for name in distances.NAMES:
        assert one_shot_identification(emb[gallery], labels[gallery], emb[probe], labels[probe], name) == 1.0
    # Swap the gallery labels of identities 0 and 1: their 8 probes are now wrong.
    wrong = labels[gallery].copy()
    wrong[[0, 1]] = wrong[[1, 0]]
    acc = one_shot_identification(emb[gallery], wrong, emb[probe], labels[probe], "euclidean")
    assert acc == pytest.approx(1 - 8 / 40)
    with pytest.raises(ValueError, match="not in the gallery"):
        one_shot_identification(emb[gallery[1:]], labels[gallery[1:]], emb[probe], labels[probe], "euclidean")


def test_one_shot_rounds_are_seeded() -> None:
    emb, labels = _clusters(8, 10, seed=18, noise=0.1)
    res = one_shot_rounds(emb, labels, distances.get("euclidean"), rounds=5, seed=0)
    assert (res.mean, res.trials) == (1.0, 5 * (80 - 8))
    noisy, labels = _clusters(8, 10, seed=18, noise=6.0)
    r1 = one_shot_rounds(noisy, labels, "euclidean", rounds=5, seed=1)
    assert r1 == one_shot_rounds(noisy, labels, "euclidean", rounds=5, seed=1)
    assert 0.0 < r1.mean < 1.0
    assert r1.ci95 > 0
