"""The dashboard's pure parts: the redrive form's argument check and the SVG charts."""
from datetime import datetime, timedelta, timezone

import pytest

from console.dashboard import charts
from console.dashboard.actions import parse_arguments
from console.dashboard.session import safe_next
from domain.errors import InvalidInput
from storage.performance import ActorSample

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=timezone.utc)


def _sample(minutes: int, actor: str, completed: int, failed: int, p50: float | None, p95: float | None):
    return ActorSample(taken_at=T0 + timedelta(minutes=minutes), period_start=T0, actor_name=actor, queue_name="q",
                       completed=completed, failed=failed, failure_rate=0.0, per_minute=1.0, run_p50_ms=p50,
                       run_p95_ms=p95, run_p99_ms=None, wait_p50_ms=None, wait_p95_ms=None)


def test_redrive_arguments_are_an_object_of_args_and_kwargs():
    assert parse_arguments('{"args": [1, "a"], "kwargs": {"x": null}}') == ([1, "a"], {"x": None})
    assert parse_arguments('{"kwargs": {"x": 1}}') == ([], {"x": 1})
    for text, reason in (("[1]", "JSON object"), ('{"args": 1}', "must be a list"), ('{"other": 1}', "JSON object"),
                         ("{", "not valid JSON"), ('{"kwargs": {"token": "[REDACTED]"}}', "REDACTED")):
        with pytest.raises(InvalidInput, match=reason):
            parse_arguments(text)


def test_sign_in_goes_back_to_dashboard_paths_only():
    assert safe_next("/dashboard/jobs?state=dead") == "/dashboard/jobs?state=dead"
    for elsewhere in ("https://evil.example/", "//evil.example/dashboard/", "/api/jobs", "", None):
        assert safe_next(elsewhere) == "/dashboard/"


def test_samples_of_every_actor_combine_per_time():
    points = charts.combine([_sample(5, "a", 10, 1, 20.0, 50.0), _sample(5, "b", 30, 0, 40.0, 90.0),
                             _sample(10, "a", 5, 2, None, None)])
    assert [(p.completed, p.failed) for p in points] == [(40, 1), (5, 2)]
    assert points[0].run_p50_ms == pytest.approx((20 * 11 + 40 * 30) / 41) and points[0].run_p95_ms == 90.0
    assert (points[1].run_p50_ms, points[1].run_p95_ms) == (None, None)


def test_a_chart_is_escaped_svg_with_a_line_per_series():
    points = charts.combine([_sample(m, "a", m, 0, 1.0, 2.0) for m in (5, 10, 15)])
    svg = charts.line_chart("<run>", points, {"run_p50_ms": "ok", "run_p95_ms": "warn"}, "ms")
    assert svg.count("<polyline") == 2 and "&lt;run&gt;" in svg and "<run>" not in svg
    assert "09:05 to 12-06 09:15 UTC" in svg
    assert "no samples yet" in charts.line_chart("empty", points[:1], {"completed": "ok"}, "jobs")


def test_each_chart_carries_its_values_as_a_table():
    samples = [_sample(m, "a", m, 0, 1.5 if m < 15 else None, 2.0) for m in (5, 10, 15)]
    [(_, _, throughput), _, (_, _, run_time)] = charts.charts(samples)
    assert "<th>completed (jobs)</th>" in throughput and throughput.count("<tr>") == 4
    assert "<td>12-06 09:10 UTC</td><td>10</td>" in throughput
    assert "<td>12-06 09:15 UTC</td><td>-</td><td>2</td>" in run_time  # no p50 in that sample
    assert "no samples yet" in charts.charts([])[0][2]
