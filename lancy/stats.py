"""Statistics of held-out results: standard errors, paired comparisons over rows, replicates over seeds, and
the minimum detectable difference. What `evaluate` and `lancy.compare` use to tell signal from noise.

Every held-out metric is a ratio of sums over rows, `sum(x) / sum(w)`: an accuracy is right rows over rows
(w = 1), an answer loss is the summed loss of the reference tokens over their count, a corpus's mean loss
(log-perplexity) is the windows' summed loss over their tokens. Its standard error is the delta method's: the
row influences z_i = (x_i - R w_i) / mean(w) have the metric's sampling variance var(z) / n.

Two results on the same rows (two models of one experiment, or one model of two experiments that evaluate the
same held-out rows) are compared **paired**, row by row (Miller 2024, "Adding Error Bars to Evals", arXiv
2411.00640): the difference's noise is that of the per-row differences, far smaller than that of two scores
taken apart when both models get the same rows right.
- interval: the paired bootstrap's 95% percentile interval (rows resampled together, seeded);
- p-value: McNemar's test (its mid-p version) when both sides are right/wrong rows (a binomial test on the
  rows where they disagree: scipy), otherwise the bootstrap's (twice the share of resampled differences on
  the far side of 0).

Replicates over seeds (one paired difference per seed) are combined by a t-test over the seeds: the mean of the
per-seed differences, with the standard error of their spread and a t distribution on seeds - 1 degrees of
freedom. Each seed's difference carries both noises, its rows' and its training's, so their spread measures
both, and the t distribution pays for estimating it from few seeds. With equal rows per seed this is the
Hartung-Knapp-Sidik-Jonkman random-effects interval; unlike a weighted meta-analysis, a seed whose two runs
agree on every row (a row variance of 0) gets no infinite weight. A plain bootstrap over 3 seeds would
understate the seed noise: it has only 10 distinct resamples of them, and treats the 3 as the population.

The minimum detectable difference is the true difference that a two-sided 5% test detects with 80% power at
the comparison's standard error: (q(0.975) + q(0.8)) x SE, with t quantiles on the comparison's degrees of
freedom (normal ones for rows alone): 2.80 x SE over rows, 6.1 x SE over 3 seeds.

Many comparisons in one table control the family-wise error rate with Holm's step-down method (statsmodels).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05  # two-sided level of every test and interval
POWER = 0.8  # of the minimum detectable difference
RESAMPLES = 2000  # paired bootstrap resamples


@dataclass(frozen=True)
class Estimate:
    """A difference (A - B) with its 95% interval, two-sided p-value and standard error; `rows` shared rows (all
    seeds together), `seeds` replicates, `df` the degrees of freedom of its t distribution (inf: normal)."""

    difference: float
    low: float
    high: float
    p: float
    se: float
    rows: int
    seeds: int = 1
    df: float = math.inf

    @property
    def mde(self) -> float:
        return detectable(self.se, self.df)


def _weights(x, w) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=float)
    return x, np.ones_like(x) if w is None else np.asarray(w, dtype=float)


def ratio(x, w=None) -> float:
    """The metric: sum(x) / sum(w) (the mean of x when w is None)."""
    x, w = _weights(x, w)
    return float(x.sum() / w.sum()) if len(x) and w.sum() > 0 else math.nan


def influence(x, w=None) -> np.ndarray:
    """Each row's influence on the ratio: (x_i - R w_i) / mean(w); its variance over n is the ratio's."""
    x, w = _weights(x, w)
    return (x - ratio(x, w) * w) / w.mean()


def _mean_se(z: np.ndarray) -> float:
    """The standard error of the mean of z: sd / sqrt(n) (NaN under two values)."""
    return float(np.std(z, ddof=1) / math.sqrt(len(z))) if len(z) > 1 else math.nan


def standard_error(x, w=None) -> float:
    """The standard error of ratio(x, w) over its rows (the delta method; for a mean: sd / sqrt(n))."""
    return _mean_se(influence(x, w)) if len(x) else math.nan


def detectable(se: float, df: float = math.inf) -> float:
    """The minimum detectable difference at this standard error: two-sided ALPHA, POWER."""
    from scipy import stats

    if not math.isfinite(se) or df <= 0:
        return math.nan
    q = stats.norm if math.isinf(df) else stats.t(df)
    return float((q.ppf(1 - ALPHA / 2) + q.ppf(POWER)) * se)


def _binary(*arrays) -> bool:
    return all(a is not None and np.isin(np.asarray(a), (0, 1)).all() for a in arrays)


def paired(xa, xb, wa=None, wb=None, seed: int = 0, resamples: int = RESAMPLES) -> Estimate:
    """ratio(xa, wa) - ratio(xb, wb) over the same rows (row i of A is row i of B): module docstring."""
    xa, wa = _weights(xa, wa)
    xb, wb = _weights(xb, wb)
    n = len(xa)
    if n != len(xb):
        raise ValueError(f"paired results need the same rows: {n} and {len(xb)}")
    difference = ratio(xa, wa) - ratio(xb, wb)
    se = _mean_se(influence(xa, wa) - influence(xb, wb))
    if n < 2:
        return Estimate(difference, math.nan, math.nan, math.nan, se, n)
    picks = np.random.default_rng(seed).integers(0, n, (resamples, n))
    boot = xa[picks].sum(1) / wa[picks].sum(1) - xb[picks].sum(1) / wb[picks].sum(1)
    low, high = np.quantile(boot, [ALPHA / 2, 1 - ALPHA / 2])
    if _binary(xa, xb) and (wa == 1).all() and (wb == 1).all():
        p = mcnemar(xa, xb)
    else:
        p = min(1.0, 2 * (min((boot <= 0).sum(), (boot >= 0).sum()) + 1) / (resamples + 1))
    return Estimate(difference, float(low), float(high), float(p), se, n)


def mcnemar(a, b) -> float:
    """McNemar's mid-p value for right/wrong pairs: on the rows where A and B disagree, a two-sided binomial test
    of "only A right" against p = 1/2, less half the probability of the observed count (scipy's binomial). The
    exact test is conservative (3.6% false positives at 5% in tests/test_stats.py's simulation); the mid-p keeps
    close to its level (Fagerland, Lydersen and Laake 2013, BMC Med Res Methodol 13:91)."""
    from scipy.stats import binom

    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    n, k = only_a + only_b, min(only_a, only_b)
    return 1.0 if n == 0 else float(min(1.0, 2 * binom.cdf(k, n, 0.5) - binom.pmf(k, n, 0.5)))


def combine(estimates: list[Estimate]) -> Estimate:
    """One difference over seeds from one paired Estimate per seed: their mean, and a t interval on seeds - 1
    degrees of freedom from their spread (module docstring). One seed: that seed's Estimate."""
    if len(estimates) == 1:
        return estimates[0]
    effects = np.array([e.difference for e in estimates])
    k, se = len(effects), _mean_se(effects)
    if se == 0:  # every seed gave the very same difference: fall back on the rows' noise alone
        se = float(math.sqrt(np.nanmean([e.se ** 2 for e in estimates]) / k))
    return _tested(float(effects.mean()), se, k - 1, sum(e.rows for e in estimates), k)


def _tested(difference: float, se: float, df: float, rows: int, seeds: int) -> Estimate:
    """An Estimate from a difference and its standard error: a two-sided test and 95% interval on a t distribution
    with df degrees of freedom (normal when infinite)."""
    from scipy import stats

    q = stats.norm if math.isinf(df) else stats.t(df)
    p = float(2 * q.sf(abs(difference) / se)) if se > 0 else float(difference == 0)
    half = float(q.ppf(1 - ALPHA / 2)) * se
    return Estimate(difference, difference - half, difference + half, p, se, rows, seeds, df)


def difference_of_groups(a: list[Estimate], b: list[Estimate]) -> Estimate:
    """mean(A) - mean(B) of two groups of seeds with no rows in common (no pairing): each group's seeds
    combined as in `combine` (each Estimate: that seed's metric and its standard error), the difference with
    Welch-Satterthwaite degrees of freedom."""
    ga, gb = combine(a), combine(b)
    se = math.hypot(ga.se, gb.se)
    terms = [(g.se ** 2) ** 2 / g.df for g in (ga, gb) if math.isfinite(g.df) and g.df > 0]
    df = se ** 4 / sum(terms) if terms and sum(terms) > 0 else math.inf
    return _tested(ga.difference - gb.difference, se, df, ga.rows + gb.rows, ga.seeds + gb.seeds)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (statsmodels); NaN stays NaN and is left out of the family."""
    from statsmodels.stats.multitest import multipletests

    values = np.asarray(pvalues, dtype=float)
    adjusted = np.full(len(values), math.nan)
    valid = ~np.isnan(values)
    if valid.any():
        adjusted[valid] = multipletests(values[valid], alpha=ALPHA, method="holm")[1]
    return adjusted.tolist()


def verdict(estimate: Estimate, p_adjusted: float, lower_is_better: bool = False, names=("A", "B")) -> str:
    """'<A> better', '<B> better' or 'no detectable difference' at the (adjusted) p-value."""
    if not p_adjusted < ALPHA:
        return "no detectable difference"
    a_higher = estimate.difference > 0
    return f"{names[0] if a_higher != lower_is_better else names[1]} better"

