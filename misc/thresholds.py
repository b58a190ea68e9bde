"""Thresholds chosen without ground truth, from the CAMs' own distribution (or from a few labelled tiles).

Every threshold IRN's recipe needs (the CAM/background threshold, the IR labels' confident foreground and background,
the pseudo masks' background score) is a cut of a CAM-score histogram. Without pixel labels we cut it where it
separates best: Otsu's threshold t of the pooled scores of the images whose tags say a class is present (the
activations of a class on its positive images are a mixture of "object" and "elsewhere"). The two modes' means
μ0 < t < μ1 then give the IR labels' cuts: confident foreground above (t + μ1) / 2, confident background below
(t + μ0) / 2 — halfway into each mode, so only pixels that are clearly on one side are trusted.
"""
from __future__ import annotations

import numpy as np

HIST_BINS = 200


def score_histogram(values: np.ndarray, bins: int = HIST_BINS, value_range: tuple[float, float] = (0.0, 1.0)
                    ) -> np.ndarray:
    """(bins,) int64 counts of ``values`` over ``value_range`` (values outside are clipped into the end bins)."""
    lo, hi = value_range
    v = np.clip(np.asarray(values, np.float64).ravel(), lo, hi)
    index = np.minimum(((v - lo) / (hi - lo) * bins).astype(np.int64), bins - 1)
    return np.bincount(index, minlength=bins)


def otsu_from_histogram(hist: np.ndarray, value_range: tuple[float, float] = (0.0, 1.0)
                        ) -> tuple[float, float, float]:
    """Otsu's threshold of a histogram and the means of the two sides: (t, μ0, μ1).

    t is the bin edge that maximises the between-class variance w0·w1·(μ1 − μ0)²; values < t are the lower class.
    Raises ValueError on an empty histogram or one whose mass sits in a single bin (nothing to separate).
    """
    hist = np.asarray(hist, np.float64)
    total = hist.sum()
    if total <= 0:
        raise ValueError("no scores to choose a threshold from (no image with a present class?)")
    lo, hi = value_range
    bins = len(hist)
    centres = lo + (np.arange(bins) + 0.5) * (hi - lo) / bins
    w0 = np.cumsum(hist)[:-1]  # mass below edge e (edges 1..bins-1)
    w1 = total - w0
    s0 = np.cumsum(hist * centres)[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        mu0 = s0 / w0
        mu1 = (s0[-1] + hist[-1] * centres[-1] - s0) / w1
        between = w0 * w1 * (mu1 - mu0) ** 2
    between = np.where((w0 > 0) & (w1 > 0), between, -1.0)
    if between.max() <= 0:
        raise ValueError("all scores fall in one histogram bin: there is nothing to separate")
    edge = int(np.argmax(between))
    return lo + (edge + 1) * (hi - lo) / bins, float(mu0[edge]), float(mu1[edge])


def ir_thresholds(t: float, mu0: float, mu1: float) -> tuple[float, float]:
    """(conf_fg_thres, conf_bg_thres) from Otsu's cut and its side means: halfway into each side."""
    return (t + mu1) / 2.0, (t + mu0) / 2.0


def side_means(hist: np.ndarray, t: float, value_range: tuple[float, float] = (0.0, 1.0)) -> tuple[float, float]:
    """(μ0, μ1): the mean score of the histogram's mass below and at-or-above ``t`` (a side without mass gives t)."""
    hist = np.asarray(hist, np.float64)
    lo, hi = value_range
    bins = len(hist)
    centres = lo + (np.arange(bins) + 0.5) * (hi - lo) / bins
    below = centres < t
    w0, w1 = hist[below].sum(), hist[~below].sum()
    mu0 = float((hist[below] * centres[below]).sum() / w0) if w0 else float(t)
    mu1 = float((hist[~below] * centres[~below]).sum() / w1) if w1 else float(t)
    return mu0, mu1
