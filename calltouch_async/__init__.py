"""Asyncio client for Calltouch's lead-commenting API."""

from ._client import UNSET, CalltouchClient
from ._errors import (
    AuthError,
    CalltouchError,
    ClientClosedError,
    DailyBudgetExhaustedError,
    MalformedResponseError,
    RateLimiterUnavailableError,
)
from ._limiter import Permit, RateLimiter, SlidingWindowLimiter, SpacedLimiter
from ._models import (
    CallContactMatch,
    CallInfo,
    CallMatch,
    CallTypeToMatch,
    CommentResult,
    CommentStatus,
    LeadComment,
    RequestContactMatch,
    RequestInfo,
    RequestMatch,
    RequestTypeToMatch,
    TagsLogic,
    normalize_phone,
)
from ._retry import RetryPolicy
from ._telemetry import AnswerCounts, LimiterWaits, Stats
from ._transport import SendTimeTrace

__all__ = [
    "UNSET",
    "AnswerCounts",
    "AuthError",
    "CallContactMatch",
    "CallInfo",
    "CallMatch",
    "CallTypeToMatch",
    "CalltouchClient",
    "CalltouchError",
    "ClientClosedError",
    "CommentResult",
    "CommentStatus",
    "DailyBudgetExhaustedError",
    "LeadComment",
    "LimiterWaits",
    "MalformedResponseError",
    "Permit",
    "RateLimiter",
    "RateLimiterUnavailableError",
    "RequestContactMatch",
    "RequestInfo",
    "RequestMatch",
    "RequestTypeToMatch",
    "RetryPolicy",
    "SendTimeTrace",
    "SlidingWindowLimiter",
    "SpacedLimiter",
    "Stats",
    "TagsLogic",
    "normalize_phone",
]
