"""The expiry rule, on plain data: which threshold's notice is due."""
from datetime import datetime, timedelta, timezone

import pytest

from domain.expiry import dedupe_key, due_threshold

EXPIRES = datetime(2027, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("days_left,due", [
    (45, None), (30.01, None), (30, 30), (29, 30), (7.5, 30), (7, 7), (2, 7), (1, 1), (0.01, 1), (0, None), (-3, None),
])
def test_the_nearest_threshold_is_due(days_left, due):
    assert due_threshold(EXPIRES - timedelta(days=days_left), EXPIRES) == due


def test_custom_thresholds():
    assert due_threshold(EXPIRES - timedelta(days=10), EXPIRES, (14, 3)) == 14
    assert due_threshold(EXPIRES - timedelta(hours=2), EXPIRES, (14, 3)) == 3


def test_the_key_names_the_item_its_expiry_and_the_threshold():
    assert dedupe_key("api_token", 42, EXPIRES, 7) == "expiry:api_token:42:2027-03-01T12:00:00Z:7d"
    later = EXPIRES.astimezone(timezone(timedelta(hours=2)))  # the same moment in another zone: the same key
    assert dedupe_key("api_token", 42, later, 7) == dedupe_key("api_token", 42, EXPIRES, 7)
