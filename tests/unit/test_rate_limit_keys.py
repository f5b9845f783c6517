"""RateLimit's key: from the actor's arguments, a function of them, or the actor's name."""
import pytest

from storage.rate_limits import RateLimit


def deliver(provider: str, payload: dict, region: str = "eu") -> None:
    pass


def test_a_template_names_the_arguments_defaults_included():
    limit = RateLimit(limit=10, key="provider:{provider}:{region}")
    assert limit.key_for("webhooks.deliver", deliver, ("acme",), {"payload": {}}) == "provider:acme:eu"
    assert limit.key_for("webhooks.deliver", deliver, (), {"provider": "x", "payload": {}, "region": "us"}) == \
        "provider:x:us"


def test_a_function_key_is_prefixed_with_the_actor_and_no_key_is_the_actor():
    assert RateLimit(limit=1, key=lambda provider, payload: provider.upper()).key_for(
        "webhooks.deliver", deliver, ("acme", {}), {}) == "webhooks.deliver:ACME"
    assert RateLimit(limit=1).key_for("webhooks.deliver", deliver, ("acme", {}), {}) == "webhooks.deliver"


def test_arguments_that_do_not_bind_are_refused():
    with pytest.raises(TypeError):
        RateLimit(limit=1, key="{provider}").key_for("webhooks.deliver", deliver, (), {})
