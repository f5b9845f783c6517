"""Plain rules of issue 20's domains, without a database: the rule-based classifier, the webhook
retry delays and the settings that configure them."""
import random

import pytest

from domain import webhooks
from domain.classifier import Classification, RuleClassifier, Unclassifiable
from storage.settings import SettingsError, load


def test_rule_classifier_routes_by_name_or_content_and_refuses_what_it_cannot_read():
    classifier = RuleClassifier()
    assert classifier.classify("scan-0042.txt", b"INVOICE no. 42") == Classification("invoice", "finance")
    assert classifier.classify("NDA-acme.txt", b"...") == Classification("contract", "legal")
    assert classifier.classify("notes.txt", b"lunch") == Classification("other", "general-inbox")
    for head, reason in ((b"", "empty"), (b"%PDF\x00\x01", "binary")):
        with pytest.raises(Unclassifiable, match=reason):
            classifier.classify("x.pdf", head)
    with pytest.raises(Unclassifiable, match="no rule matched"):
        RuleClassifier(fallback=None).classify("notes.txt", b"lunch")


def test_webhook_retry_delays_follow_the_schedule_with_jitter_and_a_longer_retry_after():
    rng = random.Random(7)
    assert webhooks.RETRY_SCHEDULE == (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    assert webhooks.MAX_ATTEMPTS == 10
    for attempt, seconds in enumerate(webhooks.RETRY_SCHEDULE, 1):
        delays = [webhooks.retry_delay(attempt, None, rng) for _ in range(200)]
        assert seconds * 0.9 <= min(delays) < max(delays) <= seconds * 1.1  # spread, within ±10%
    assert 600 <= webhooks.retry_delay(1, 600, rng) <= 660  # Retry-After longer than 5 s wins
    assert 4.5 <= webhooks.retry_delay(1, 1, rng) <= 5.5  # a shorter one does not


def test_documents_billing_and_webhook_settings_are_checked_by_name():
    settings = load({"LAMPLIGHTER_DOCUMENTS_MAX_DOCUMENTS": "12", "LAMPLIGHTER_BILLING_URL": "https://billing.example/u",
                     "LAMPLIGHTER_BILLING_TOKEN": "t0k", "LAMPLIGHTER_WEBHOOKS_CONCURRENCY": "2"})
    assert (settings.documents.max_documents, settings.billing.url, settings.webhooks.concurrency_per_endpoint) == (
        12, "https://billing.example/u", 2)
    assert settings.public()["billing.token"] == "(set)" and settings.public()["billing.url"] == "(set)"
    for variable, value in (("LAMPLIGHTER_BILLING_URL", "ftp://x"), ("LAMPLIGHTER_WEBHOOKS_CONCURRENCY", "0"),
                            ("LAMPLIGHTER_DOCUMENTS_RETENTION_DAYS", "soon")):
        with pytest.raises(SettingsError, match=variable):
            load({variable: value})
