"""lancy.stats: standard errors, and the paired and seed-aware comparisons calibrated by simulation.

The simulated held-out rows have a difficulty each (a row's chance to be answered right, drawn from Beta(0.5,
0.5): most rows are easy or hard for every model, as on real benchmarks), and both models answer them
independently given that chance. 1,000 simulated comparisons per case: under a true null the share of false
positives must lie within 3-7% (5% nominal); a planted difference of 0.1 accuracy must be detected in at
least 80% of them.
"""
import math

import numpy as np
import pytest

from lancy import stats as S

SIMULATIONS = 1000
ROWS = 400


def _rows(rng, n: int, planted: float = 0.0, shift: float = 0.0):
    """Right/wrong rows of two models on the same n rows; B's chance of a right answer is A's + planted + shift."""
    chance = rng.beta(0.5, 0.5, n)
    a = rng.random(n) < chance
    b = rng.random(n) < np.clip(chance + planted + shift, 0, 1)
    return a.astype(float), b.astype(float)


def _rate(detected: list[bool]) -> float:
    return sum(detected) / len(detected)


def test_standard_error_of_a_mean_and_of_a_ratio():
    x = np.array([1.0, 0.0, 1.0, 1.0])
    assert S.ratio(x) == 0.75
    assert S.standard_error(x) == pytest.approx(np.std(x, ddof=1) / 2)
    # a ratio of sums: the delta method's influences (x - R w) / mean(w)
    nll, tokens = np.array([2.0, 6.0, 3.0]), np.array([1.0, 3.0, 2.0])
    r = 11 / 6
    z = (nll - r * tokens) / tokens.mean()
    assert S.ratio(nll, tokens) == pytest.approx(r)
    assert S.standard_error(nll, tokens) == pytest.approx(np.std(z, ddof=1) / math.sqrt(3))
    assert math.isnan(S.standard_error([1.0]))


def test_mcnemar_mid_p_counts_only_the_rows_where_the_models_disagree():
    a = np.array([1, 1, 1, 1, 1, 0, 0, 0])
    b = np.array([1, 1, 0, 0, 0, 0, 0, 0])  # A alone right on 3 rows, B alone on none
    # two-sided exact p = 2 * 0.5**3 = 0.25; the mid-p takes half of P(X = 0) off: 0.25 - 0.125
    assert S.mcnemar(a, b) == pytest.approx(0.125)
    assert S.mcnemar(a, a) == 1.0


def test_paired_comparison_of_identical_models_differs_by_nothing():
    a, _ = _rows(np.random.default_rng(0), ROWS)
    e = S.paired(a, a)
    assert (e.difference, e.low, e.high, e.p) == (0.0, 0.0, 0.0, 1.0)


def test_paired_comparison_is_seeded_and_its_interval_holds_the_difference():
    a, b = _rows(np.random.default_rng(1), ROWS, planted=0.05)
    first, again = S.paired(a, b, seed=3), S.paired(a, b, seed=3)
    assert first == again
    assert first.low < first.difference < first.high
    assert first.difference == pytest.approx(a.mean() - b.mean())
    assert first.mde == pytest.approx((1.959964 + 0.841621) * first.se, rel=1e-5)


def test_paired_test_is_calibrated_under_the_null_and_detects_a_planted_difference():
    rng = np.random.default_rng(2024)
    null, planted = [], []
    for i in range(SIMULATIONS):
        a, b = _rows(rng, ROWS)
        null.append(S.paired(a, b, seed=i, resamples=200).p < S.ALPHA)
        a, b = _rows(rng, ROWS, planted=0.1)
        e = S.paired(a, b, seed=i, resamples=200)
        planted.append(e.p < S.ALPHA and e.difference < 0)  # B better, as planted
    assert 0.03 <= _rate(null) <= 0.07
    assert _rate(planted) >= 0.8


def test_paired_bootstrap_interval_is_calibrated_for_a_loss():
    """A continuous per-row metric (answer losses): the percentile interval misses a zero difference 3-7% of the
    time, and its p-value agrees with it."""
    rng = np.random.default_rng(7)
    missed = []
    for i in range(SIMULATIONS):
        difficulty = rng.gamma(2.0, 1.0, ROWS)
        a, b = difficulty + rng.normal(0, 1, ROWS), difficulty + rng.normal(0, 1, ROWS)
        e = S.paired(a, b, seed=i, resamples=400)
        missed.append(not e.low <= 0 <= e.high)
        assert (e.p < S.ALPHA) == missed[-1] or abs(e.p - S.ALPHA) < 0.01
    assert 0.03 <= _rate(missed) <= 0.07


def _seeds(rng, planted: float, seed_sd: float, seeds: int = 3):
    """One paired Estimate per seed: each seed's training noise shifts B's chance by a draw of sd seed_sd."""
    estimates = []
    for _ in range(seeds):
        a, b = _rows(rng, ROWS, planted, rng.normal(0, seed_sd))
        estimates.append(S.Estimate(a.mean() - b.mean(), math.nan, math.nan, math.nan,
                                    float(np.std(a - b, ddof=1) / math.sqrt(ROWS)), ROWS))
    return estimates


@pytest.mark.parametrize("seed_sd", [0.0, 0.03])
def test_seed_aware_comparison_is_calibrated_and_detects_a_planted_difference(seed_sd):
    """3 seeds x 400 paired rows, with and without seed-to-seed noise (sd 0.03 of accuracy)."""
    rng = np.random.default_rng(11)
    null = [S.combine(_seeds(rng, 0.0, seed_sd)).p < S.ALPHA for _ in range(SIMULATIONS)]
    assert 0.03 <= _rate(null) <= 0.07
    if seed_sd == 0.0:  # with seed noise as large as 0.03, 3 seeds cannot promise 80% at 0.1: see the next test
        found = [(c := S.combine(_seeds(rng, 0.1, seed_sd))).p < S.ALPHA and c.difference < 0
                 for _ in range(SIMULATIONS)]
        assert _rate(found) >= 0.8


def test_seed_noise_widens_the_interval_and_the_detectable_difference():
    rng = np.random.default_rng(5)
    quiet = [S.combine(_seeds(rng, 0.0, 0.0)) for _ in range(200)]
    noisy = [S.combine(_seeds(rng, 0.0, 0.1)) for _ in range(200)]
    assert np.median([c.high - c.low for c in noisy]) > 1.5 * np.median([c.high - c.low for c in quiet])
    assert np.median([c.mde for c in noisy]) > np.median([c.mde for c in quiet])
    assert quiet[0].seeds == 3 and quiet[0].df == 2 and quiet[0].rows == 3 * ROWS


def test_one_seed_is_the_paired_comparison_itself():
    e = S.paired(*_rows(np.random.default_rng(3), ROWS))
    assert S.combine([e]) is e


def test_groups_without_shared_rows_are_compared_over_their_seeds():
    rng = np.random.default_rng(9)
    group = [S.Estimate(0.5 + d, math.nan, math.nan, math.nan, 0.02, ROWS) for d in rng.normal(0, 0.01, 3)]
    other = [S.Estimate(0.4 + d, math.nan, math.nan, math.nan, 0.02, ROWS) for d in rng.normal(0, 0.01, 3)]
    e = S.difference_of_groups(group, other)
    means = np.mean([g.difference for g in group]) - np.mean([o.difference for o in other])
    assert e.difference == pytest.approx(means, abs=0.01)
    assert e.seeds == 6 and 2 <= e.df <= 4 and e.low < e.difference < e.high


def test_holm_adjusts_a_family_and_verdicts_name_the_better_side():
    assert S.holm([0.01, 0.04, 0.03, math.nan]) == pytest.approx([0.03, 0.06, 0.06, math.nan], nan_ok=True)
    better_b = S.Estimate(-0.1, -0.15, -0.05, 0.001, 0.02, ROWS)
    assert S.verdict(better_b, 0.001, names=("sft", "grpo")) == "grpo better"
    assert S.verdict(better_b, 0.001, lower_is_better=True, names=("sft", "grpo")) == "sft better"
    assert S.verdict(better_b, 0.2) == "no detectable difference"


def test_a_seed_whose_runs_agree_on_every_row_does_not_decide_the_mean():
    """Seen with GRPO on fpb_allagree: one seed's two runs gave the same answer on all 1,500 rows (a row variance
    of 0). An inverse-variance meta-analysis put all its weight there (difference 8e-11 +- 3e-6)."""
    seeds = [S.Estimate(0.0153, -0.02, 0.05, 0.4, 0.0181, 1500), S.Estimate(0.0, 0.0, 0.0, 1.0, 0.0, 1500),
             S.Estimate(0.0093, -0.02, 0.04, 0.56, 0.0159, 1500)]
    c = S.combine(seeds)
    assert c.difference == pytest.approx((0.0153 + 0.0093) / 3)
    assert c.se == pytest.approx(np.std([0.0153, 0.0, 0.0093], ddof=1) / math.sqrt(3))
    assert c.low < 0 < c.high and c.df == 2 and c.p > 0.05
    same = S.combine([S.Estimate(0.01, 0, 0, 0, 0.02, 400)] * 3)  # identical seeds: the rows' noise alone
    assert same.se == pytest.approx(0.02 / math.sqrt(3))


def test_a_difference_without_noise_is_detected():
    """Two groups whose every row agrees within each (all right against all wrong): no noise, a real difference."""
    right, wrong = S.Estimate(1.0, 1.0, 1.0, 1.0, 0.0, 200), S.Estimate(0.0, 0.0, 0.0, 1.0, 0.0, 200)
    assert S.difference_of_groups([right], [wrong]).p == 0.0
    assert S.difference_of_groups([right], [right]).p == 1.0
