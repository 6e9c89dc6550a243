"""Paired differences and their Student-t intervals, checked against values worked by hand and tables."""

import math

import pytest

from attnzoo.evaluate.paired import paired_difference, t_quantile_975


@pytest.mark.parametrize("df, expected", [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423),
                                          (40, 2.0211), (60, 2.0003), (120, 1.9799), (1000, 1.9623)])
def test_t_quantile_matches_published_tables(df, expected):
    assert t_quantile_975(df) == pytest.approx(expected, abs=1e-4)


def test_t_quantile_matches_scipy_where_installed():
    stats = pytest.importorskip("scipy.stats")
    for df in range(1, 400):
        assert t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-4)


def test_paired_difference_worked_example():
    # diffs 1, 2, 3, 4, 5: mean 3, sd sqrt(2.5), se sqrt(0.5), t(4) = 2.7764
    model = {s: 90.0 + s + 1 for s in range(5)}
    base = {s: 90.0 for s in range(5)}
    p = paired_difference(model, base)
    half = 2.7764 * math.sqrt(2.5) / math.sqrt(5)
    assert (p.n, p.mean) == (5, pytest.approx(3.0))
    assert (p.low, p.high) == (pytest.approx(3 - half, abs=1e-9), pytest.approx(3 + half, abs=1e-9))
    assert p.excludes_zero


def test_pairs_only_shared_seeds_and_an_interval_across_zero_is_not_marked():
    p = paired_difference({0: 1.0, 1: -1.0, 2: 0.5, 7: 50.0}, {0: 0.0, 1: 0.0, 2: 0.0, 3: 9.0})
    assert p.n == 3 and p.mean == pytest.approx(0.5 / 3) and p.low < 0 < p.high and not p.excludes_zero


def test_one_pair_has_no_interval_and_no_pair_gives_none():
    p = paired_difference({0: 2.0}, {0: 1.0})
    assert (p.n, p.mean, p.low, p.high, p.excludes_zero) == (1, 1.0, None, None, False)
    assert paired_difference({0: 1.0}, {1: 1.0}) is None


def test_nan_score_is_refused_not_averaged():
    with pytest.raises(ValueError, match="non-finite"):
        paired_difference({0: float("nan"), 1: 1.0}, {0: 1.0, 1: 1.0})
