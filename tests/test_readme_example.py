"""The README's "Testing your code with the emulator" example, as written there."""

from datetime import datetime

from calltouch_async import CallMatch, CalltouchClient, LeadComment
from calltouch_async.testing import CalltouchEmulator, Fault


async def test_my_service_comments_once(calltouch_emulator: CalltouchEmulator) -> None:
    calltouch_emulator.add_call(42, phones=["79001234567"], time=datetime(2024, 5, 1, 10))
    calltouch_emulator.inject(Fault.SERVER_ERROR, on_requests=[2])
    async with CalltouchClient(12345, "test-token", base_url=calltouch_emulator.base_url) as c:
        [result] = await c.comment([LeadComment([CallMatch(42)], "hello")])
    assert result.commented
    assert calltouch_emulator.ledger.comments_for("call", 42) == ["hello"]
    assert calltouch_emulator.ledger.max_in_window(1.0) <= 5
