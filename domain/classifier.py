"""Document classification behind a small interface, so a model can replace the rules.

A :class:`Classifier` takes a document's name and the start of its content and returns a
:class:`Classification` (what the document is, and where it is routed), or raises
:class:`Unclassifiable` with the reason (the document is then ``failed``, and retried).
:class:`RuleClassifier` is the rule-based one the platform ships: keywords in the name or the
text, first rule that matches wins, anything else is ``other`` for the general inbox.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

HEAD_BYTES = 4096  # how much of the content the classifier sees


@dataclass(frozen=True)
class Classification:
    label: str
    destination: str


class Unclassifiable(Exception):
    """The classifier cannot tell (an empty or unreadable document); the reason is kept."""


class Classifier(Protocol):
    def classify(self, name: str, head: bytes) -> Classification: ...


@dataclass(frozen=True)
class Rule:
    label: str
    destination: str
    keywords: tuple[str, ...]


RULES = (
    Rule("invoice", "finance", ("invoice", "rechnung", "factura", "amount due")),
    Rule("receipt", "finance", ("receipt", "quittung")),
    Rule("contract", "legal", ("contract", "agreement", "nda", "vertrag")),
    Rule("resume", "hr", ("resume", "curriculum vitae", "cv_", "lebenslauf")),
    Rule("report", "operations", ("report", "bericht")),
)
FALLBACK = Classification("other", "general-inbox")


class RuleClassifier:
    def __init__(self, rules: tuple[Rule, ...] = RULES, fallback: Classification | None = FALLBACK):
        self.rules = rules
        self.fallback = fallback

    def classify(self, name: str, head: bytes) -> Classification:
        if not head:
            raise Unclassifiable("empty document")
        if b"\x00" in head:
            raise Unclassifiable("binary content: the rule-based classifier reads text only")
        text = f"{name}\n{head.decode('utf-8', errors='replace')}".lower()
        for rule in self.rules:
            if any(keyword in text for keyword in rule.keywords):
                return Classification(rule.label, rule.destination)
        if self.fallback is None:
            raise Unclassifiable("no rule matched")
        return self.fallback
