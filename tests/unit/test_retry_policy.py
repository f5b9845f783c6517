"""A bad retry policy stops the actor's declaration (dramatiq swallows other hook errors)."""
import dramatiq
import pytest

import actors
from actors.middleware import RetryPolicyError


@pytest.mark.parametrize("options, message", [
    ({"retry_schedule": [], "max_retries": 1}, "non-empty list of seconds"),
    ({"retry_schedule": [60, -1], "max_retries": 2}, "non-empty list of seconds"),
    ({"retry_schedule": "60,300", "max_retries": 2}, "non-empty list of seconds"),
    ({"retry_schedule": [60, 300]}, "must declare max_retries"),
])
def test_bad_retry_policy_is_refused_at_declaration(options, message):
    with pytest.raises(RetryPolicyError, match=message):
        dramatiq.actor(lambda: None, broker=actors.broker, actor_name="tests.bad_policy", queue_name="tests",
                       **options)
    assert "tests.bad_policy" not in actors.broker.actors
