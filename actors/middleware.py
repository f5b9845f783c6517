"""Where the domain's outcome vocabulary meets dramatiq: Lamplighter's Retries middleware.

It is dramatiq's own :class:`dramatiq.middleware.Retries` (max_retries, min_backoff /
max_backoff for exponential backoff with jitter and a cap, ``throws`` for permanent exception
classes, ``retry_when``) plus:

* ``retry_schedule=[60, 300, 900, 3600, 14400]`` — an explicit schedule in seconds: the n-th
  retry waits the n-th entry (the last one repeats). It replaces the exponential backoff.
* :class:`domain.outcomes.RetryLater` — retried after its ``delay`` (else the schedule).
* :class:`domain.outcomes.PermanentFailure` (and ``throws``) — dead at once, no retry.
* :class:`domain.outcomes.Cancel` — the job ends ``cancelled``.
* dramatiq's ``Shutdown`` (actors declared with ``notify_shutdown=True``, interrupted by a
  worker shutdown) — handed back to the queue without consuming an attempt.

The decision is told to the broker (``broker.settle``), which stores it with the attempt's
history row in the grouped finish: the next attempt's time lands in ``available_at``.
"""
from __future__ import annotations

import dramatiq
from dramatiq.middleware import Retries as DramatiqRetries
from dramatiq.middleware import MiddlewareError, Shutdown

from domain.outcomes import Cancel, PermanentFailure, RetryLater


class RetryPolicyError(ValueError, MiddlewareError):
    """A bad retry policy on an actor declaration. A MiddlewareError, because dramatiq logs
    and swallows any other exception raised by a middleware hook."""


class Retries(DramatiqRetries):
    @property
    def actor_options(self):
        return super().actor_options | {"retry_schedule"}

    def before_declare_actor(self, broker, actor):
        schedule = actor.options.get("retry_schedule")
        if schedule is not None:
            if (not isinstance(schedule, (list, tuple)) or not schedule
                    or not all(isinstance(s, (int, float)) and s >= 0 for s in schedule)):
                raise RetryPolicyError(f"{actor.actor_name}: retry_schedule must be a non-empty list of seconds")
            if "max_retries" not in actor.options:
                raise RetryPolicyError(f"{actor.actor_name}: an actor with a retry_schedule must declare max_retries")

    def after_process_message(self, broker, message, *, result=None, exception=None):
        if exception is None:
            return
        actor = broker.get_actor(message.actor_name)
        if isinstance(exception, Shutdown):
            broker.settle(message, "handback")
            return
        if isinstance(exception, Cancel):
            broker.settle(message, "cancelled")
            return
        throws = message.options.get("throws") or actor.options.get("throws")
        if isinstance(exception, PermanentFailure) or (throws and isinstance(exception, throws)):
            broker.settle(message, "dead")
            message.fail()
            return
        delay_ms = self.next_delay_ms(actor, message, exception)
        if delay_ms is not None:
            # dramatiq's Retries honours Retry.delay; the attempt's history keeps the original error.
            exception = dramatiq.Retry(str(exception), delay=delay_ms)
        super().after_process_message(broker, message, result=result, exception=exception)

    @staticmethod
    def next_delay_ms(actor, message, exception) -> int | None:
        if isinstance(exception, RetryLater) and exception.delay is not None:
            return int(exception.delay * 1000)
        schedule = message.options.get("retry_schedule") or actor.options.get("retry_schedule")
        if schedule:
            retries = message.options.get("retries", 0)  # attempts before this one
            return int(schedule[min(retries, len(schedule) - 1)] * 1000)
        return None


class AlertOptionError(ValueError, MiddlewareError):
    """A bad alerting option on an actor declaration (raised through dramatiq's declaration)."""


class JobAlertOptions(dramatiq.Middleware):
    """Makes dramatiq accept the alerting options that alerts.failed_jobs reads (domain/job_alerts.py):

    * ``critical=True`` — an attempt that ends dead opens (or counts on) a ``jobs.critical_failed``
      alert for the actor; its next completed attempt resolves it.
    * ``failure_threshold=10, failure_window=3600`` — more failed, dead or lost attempts than the
      threshold within the window (seconds) opens a ``jobs.failure_rate`` alert (these defaults
      apply to every actor that declares nothing).

    It checks them at declaration and has no message hooks.
    """

    @property
    def actor_options(self):
        return {"critical", "failure_threshold", "failure_window"}

    def before_declare_actor(self, broker, actor):
        options = actor.options
        if not isinstance(options.get("critical", False), bool):
            raise AlertOptionError(f"{actor.actor_name}: critical must be True or False")
        for name, least in (("failure_threshold", 0), ("failure_window", 60)):
            value = options.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
                raise AlertOptionError(f"{actor.actor_name}: {name} must be an integer of at least {least}")
