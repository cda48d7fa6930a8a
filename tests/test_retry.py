"""Retry pieces: Retry-After parsing and honouring, backoff bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from calltouch_async import CommentStatus, RetryPolicy
from calltouch_async._transport import parse_retry_after
from calltouch_async.testing import Fault
from helpers import EmulatorFactory, client_for, make_leads


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("-4") == 0.0
    in_ten = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    assert 8.0 < (parse_retry_after(in_ten) or 0.0) <= 10.0
    past = format_datetime(datetime.now(UTC) - timedelta(minutes=5), usegmt=True)
    assert parse_retry_after(past) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


def test_backoff_honours_retry_after_up_to_the_cap_and_grows_otherwise() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0, retry_after_cap=30.0)
    assert policy.backoff(1, retry_after=2.0) == 2.0
    assert policy.backoff(1, retry_after=3600.0) == 30.0
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (10, 8.0)]:
        delay = policy.backoff(attempt)
        assert ceiling / 2 <= delay <= ceiling
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


async def test_the_client_waits_as_long_as_retry_after_says(emulator: EmulatorFactory) -> None:
    async with emulator(calls=10, retry_after=1) as emu:
        emu.inject(Fault.RATE_LIMIT, on_requests=[1])
        async with client_for(emu, retry=RetryPolicy(base_delay=0.01)) as client:
            results = await client.comment(make_leads(3))
    assert [r.status for r in results] == [CommentStatus.COMMENTED] * 3
    first, second = emu.ledger.requests
    assert first.status == 429 and second.status == 200
    assert second.arrived_at - first.arrived_at >= 0.95  # not the 10 ms backoff
