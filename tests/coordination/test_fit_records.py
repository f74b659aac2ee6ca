"""The dashboard page's record of recent fits: bounded, and right in its numbers."""

from __future__ import annotations

import itertools

import pytest

from dask_asgd.coordination._fit_records import (
    ABORTED,
    FINISHED,
    RUNNING,
    FitRecords,
    Series,
    mean_loss,
)

SIGNALS = {
    "published": 10,
    "dropped": 1,
    "failed": 2,
    "received": 8,
    "lost": 3,
}


def test_series_keeps_at_most_its_capacity_and_spans_everything_appended():
    series = Series(("time", "value"), capacity=16)
    for i in range(1000):
        series.append(time=i, value=2 * i)
    assert len(series) < 16
    times = series.data["time"]
    # Still from the start to near the end, evenly spaced.
    assert times[0] == 0
    assert times[-1] >= 1000 - series.stride
    steps = {b - a for a, b in itertools.pairwise(times)}
    assert steps == {series.stride}
    assert series.data["value"] == [2 * t for t in times]


def test_series_below_capacity_keeps_every_row():
    series = Series(("time",), capacity=100)
    for i in range(50):
        series.append(time=i)
    assert series.data["time"] == list(range(50))
    assert series.stride == 1


def test_mean_loss_needs_loss_and_a_positive_weight():
    assert mean_loss({"loss": 6.0, "loss_weight": 3.0}) == 2.0
    assert mean_loss({"loss": 6.0}) is None
    assert mean_loss({"loss": 6.0, "loss_weight": 0.0}) is None
    assert mean_loss({"loss_weight": 3.0}) is None


def test_a_fit_records_its_loss_per_worker_and_overall():
    records = FitRecords()
    records.fit_started("f")
    for epoch in range(3):
        records.epoch_reported("f", "w1", epoch, {"loss": 4.0, "loss_weight": 2.0})
        records.epoch_reported("f", "w2", epoch, {"loss": 1.0, "loss_weight": 1.0})
        records.epoch_completed("f", epoch, {"loss": 5.0, "loss_weight": 3.0})
    record = records.get("f")
    assert record.outcome == RUNNING
    assert record.workers["w1"].loss.data["loss"] == [2.0] * 3
    assert record.workers["w2"].loss.data["loss"] == [1.0] * 3
    assert record.loss.data["epoch"] == [0, 1, 2]
    assert record.loss.data["loss"] == pytest.approx([5 / 3] * 3)
    times = record.loss.data["time"]
    assert times == sorted(times) and times[0] >= 0


def test_balancing_reports_become_rates_per_second_of_the_report_period():
    records = FitRecords()
    records.fit_started("f")
    record = records.get("f")
    # The period is measured on the record's clock: move its start back 2 s.
    record.origin -= 2.0
    decided = {"send_interval": 512, "message_size": 0.5}
    records.balanced("f", "w1", SIGNALS, decided)
    row = {k: v[0] for k, v in record.workers["w1"].exchange.data.items()}
    period = row["time"]
    assert period == pytest.approx(2.0, abs=0.5)
    assert row["send_interval"] == 512 and row["message_size"] == 0.5
    assert row["sent"] == pytest.approx(10 / period)
    assert row["lost"] == pytest.approx((1 + 2 + 3) / period)
    assert row["accepted"] == pytest.approx((8 - 3) / period)


def test_rates_use_the_period_the_worker_measured_when_it_says():
    records = FitRecords()
    records.fit_started("f")
    decided = {"send_interval": 512, "message_size": 0.5}
    records.balanced("f", "w1", {**SIGNALS, "period": 0.5}, decided)
    row = {k: v[0] for k, v in records.get("f").workers["w1"].exchange.data.items()}
    assert row["sent"] == pytest.approx(10 / 0.5)
    assert row["lost"] == pytest.approx(6 / 0.5)
    assert row["accepted"] == pytest.approx(5 / 0.5)


def test_only_the_last_finished_fits_are_kept():
    records = FitRecords(keep_finished=3)
    for i in range(5):
        records.fit_started(f"f{i}")
        records.fit_ended(f"f{i}", None if i % 2 == 0 else "a worker left")
    records.fit_started("running")
    kept = [r.fit_id for r in records.fits()]
    assert kept == ["running", "f4", "f3", "f2"]
    assert records.get("f0") is None
    assert records.get("f3").outcome == ABORTED
    assert records.get("f3").reason == "a worker left"
    assert records.get("f4").outcome == FINISHED


def test_reports_of_an_unknown_or_ended_fit_are_ignored():
    records = FitRecords()
    records.epoch_reported("nope", "w", 0, {"loss": 1.0, "loss_weight": 1.0})
    records.balanced("nope", "w", SIGNALS, {"send_interval": 1, "message_size": 1})
    records.fit_started("f")
    records.fit_ended("f")
    version = records.get("f").version
    records.epoch_completed("f", 0, {"loss": 1.0, "loss_weight": 1.0})
    assert records.get("f").version == version
    assert records.fits()[0].workers == {}


def test_close_ends_running_fits_and_marks_the_records_closed():
    records = FitRecords()
    records.fit_started("f")
    records.close()
    assert records.closed
    assert records.running == {}
    assert records.get("f").outcome == ABORTED
