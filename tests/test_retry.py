"""The retry policy: which failures are retried, looked up, recorded, or stop the job."""

from __future__ import annotations

import random

import pytest

from distributor.pacing.retry import Action, backoff, backoff_testing, decide, is_testing
from distributor.voucherify import ApiError, RateLimitHeaders, TransportError


def api(status: int, key: str | None = None, **rate: object) -> ApiError:
    return ApiError(status, key=key, message="m", rate=RateLimitHeaders(**rate))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "action", "reason"),
    [
        (TransportError("timeout", "ReadTimeout"), Action.RETRY, "timeout"),
        (TransportError("connection", "RemoteProtocolError"), Action.RETRY, "connection"),
        (api(500), Action.RETRY, "server_error"),
        (api(502), Action.RETRY, "server_error"),
        (api(503), Action.RETRY, "server_error"),
        (api(504), Action.RETRY, "server_error"),
        (api(429, limit_type="api_calls", retry_after=3.0), Action.RETRY, "rate_limited"),
        (api(429), Action.RETRY, "rate_limited"),
        (api(400, "duplicate_source_id"), Action.LOOKUP, "duplicate_source_id"),
        (api(400, "voucher_cannot_be_published"), Action.FAIL_MEMBER, "voucher_cannot_be_published"),
        (api(400, "invalid_customer"), Action.FAIL_MEMBER, "invalid_customer"),
        (api(413), Action.FAIL_MEMBER, "http_413"),
        (api(404, "not_found", ), Action.STOP, "unknown_campaign"),
        (api(401, "unauthorized"), Action.STOP, "unauthorized"),
        (api(402), Action.STOP, "plan_exceeded"),
        (api(403, "forbidden"), Action.STOP, "forbidden"),
        (api(400, "no_voucher_suitable_for_publication"), Action.STOP, "out_of_codes"),
        (api(429, limit_type="api_calls_cycle", retry_after=86400.0), Action.STOP, "quota_spent"),
    ],
)
def test_classification(error: Exception, action: Action, reason: str) -> None:
    decision = decide(error, campaign="reactivation-20", now=1_000.0)  # type: ignore[arg-type]
    assert (decision.action, decision.reason) == (action, reason)
    if action is Action.STOP:
        assert decision.message  # a sentence naming the cause and what to do


def test_a_404_on_another_resource_is_the_members_problem_not_the_campaigns() -> None:
    error = ApiError(404, key="not_found", message="m", resource_type="customer")
    assert decide(error, campaign="c").action is Action.FAIL_MEMBER


def test_the_servers_hint_is_the_later_of_retry_after_and_x_rate_limit_retry() -> None:
    decision = decide(api(429, retry_after=5.0, retry_at=1_020.0), campaign="c", now=1_000.0)
    assert decision.not_before == 1_020.0
    decision = decide(api(429, retry_after=30.0, retry_at=1_020.0), campaign="c", now=1_000.0)
    assert decision.not_before == 1_030.0


def test_a_spent_cycle_quota_says_when_the_job_can_resume() -> None:
    decision = decide(api(429, limit_type="api_calls_cycle", retry_after=3600.0), campaign="c", now=1_000.0)
    assert decision.not_before == 4_600.0
    assert "next cycle" in decision.message


def test_backoff_is_capped_full_jitter() -> None:
    rng = random.Random(1)
    waits = [[backoff(attempt, base=0.5, cap=8.0, rng=rng) for _ in range(200)] for attempt in range(1, 8)]
    for attempt, sample in enumerate(waits, start=1):
        ceiling = min(8.0, 0.5 * 2 ** (attempt - 1))
        assert all(0.0 <= wait <= ceiling for wait in sample)
        assert max(sample) > 0.8 * ceiling  # full jitter spreads over the whole range
        assert min(sample) < 0.2 * ceiling


def test_testing_mode_removes_the_waits_and_restores_the_previous_mode() -> None:
    assert not is_testing()
    with backoff_testing():
        assert is_testing()
        assert [backoff(attempt, base=0.5, cap=30.0) for attempt in range(1, 10)] == [0.0] * 9
    assert not is_testing()
    assert any(backoff(3, base=0.5, cap=30.0) > 0.0 for _ in range(20))  # the real waits again


def test_testing_mode_with_waits_draws_the_same_jitter_on_every_run() -> None:
    def draws() -> list[float]:
        with backoff_testing(waits=True, seed=1):
            return [backoff(attempt, base=0.5, cap=8.0) for attempt in range(1, 8)]

    first = draws()
    assert first == draws()
    rng = random.Random(1)
    assert first == [rng.uniform(0.0, min(8.0, 0.5 * 2 ** (attempt - 1))) for attempt in range(1, 8)]
    with backoff_testing(waits=True, seed=1):  # a caller's own generator wins
        assert backoff(2, base=0.5, cap=8.0, rng=random.Random(7)) == random.Random(7).uniform(0.0, 1.0)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_stops_the_run_naming_the_api_url(status: int) -> None:
    error = ApiError(status, key=None, message="Moved", endpoint="POST /v1/publications", location="https://x/v1")
    decision = decide(error, campaign="c")
    assert decision.action is Action.STOP and decision.reason == "redirected"
    assert "--api-url" in decision.message and "https://x/v1" in decision.message


def test_a_pause_longer_than_max_pause_stops_the_run_with_the_time_to_resume() -> None:
    now = 1_800_000_000.0
    day = api(429, limit_type="api_calls", retry_after=86400.0)
    decision = decide(day, campaign="c", now=now, max_pause=900.0)
    assert decision.action is Action.STOP and decision.reason == "long_pause"
    assert decision.not_before == now + 86400.0 and "--max-pause 15min" in decision.message
    # within the bound: wait (the throttle pauses); the billing cycle keeps its own message
    assert decide(api(429, retry_after=600.0), campaign="c", now=now, max_pause=900.0).action is Action.RETRY
    cycle = decide(api(429, limit_type="api_calls_cycle", retry_after=86400.0 * 10), campaign="c", now=now)
    assert cycle.reason == "quota_spent"
