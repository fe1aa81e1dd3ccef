"""What the benchmark commands share: percentiles that work from a single sample up."""

from __future__ import annotations

import pytest

from devtools.benchkit import percentile


def test_one_sample_is_every_percentile_of_itself() -> None:
    assert percentile([42.0], 50) == percentile([42.0], 95) == 42.0


def test_percentiles_interpolate_between_samples() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert percentile(samples, 50) == pytest.approx(50.5)
    assert percentile(samples, 95) == pytest.approx(95.05)


def test_no_sample_is_an_error_that_says_so() -> None:
    with pytest.raises(ValueError, match="nothing was measured"):
        percentile([], 50)
