"""The co-search module's schedules and settings."""

import pytest

from search.module import temperature_at


@pytest.mark.parametrize("schedule", ["exponential", "linear", "cosine"])
def test_temperature_runs_from_initial_to_final(schedule):
    values = [temperature_at(epoch, 10, 5.0, 0.5, schedule) for epoch in range(10)]
    assert values[0] == pytest.approx(5.0)
    assert values[-1] == pytest.approx(0.5)
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_exponential_temperature_is_geometric():
    assert temperature_at(1, 3, 4.0, 1.0) == pytest.approx(2.0)


def test_bad_schedules_are_refused_by_name():
    with pytest.raises(ValueError, match="schedule"):
        temperature_at(0, 10, 5.0, 0.5, "step")
    with pytest.raises(ValueError, match="initial"):
        temperature_at(0, 10, 0.0, 0.5)
