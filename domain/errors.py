"""The domain's refusals, one hierarchy that each edge maps once: the CLI to exit codes (2 for
bad input, 1 for the rest), the HTTP API to 400, 401, 403, 404 and 409. Messages never carry a
password, a token or a session id."""
from __future__ import annotations


class DomainError(Exception):
    """Base of the platform domains' refusals."""


class InvalidInput(DomainError, ValueError):
    """The request itself is malformed (an unknown role, a short password, a bad e-mail)."""


class NotFound(DomainError, LookupError):
    """No such row, or none the principal may see (another tenant's rows are not found, so
    their existence is not revealed)."""


class Conflict(DomainError):
    """The request clashes with what exists (an e-mail address or a tenant id already taken)."""


class Forbidden(DomainError):
    """The principal is known but lacks the scope, or its tenant's status forbids the action."""


class Unauthenticated(DomainError):
    """No principal: an unknown, revoked or expired token or session, or a failed sign-in."""
