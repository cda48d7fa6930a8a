"""Asyncio client for Calltouch's lead-commenting API."""

from msgspec import UNSET

from ._client import CalltouchClient
from ._errors import (
    AuthError,
    CalltouchError,
    ClientClosedError,
    DailyBudgetExhaustedError,
    MalformedResponseError,
    RateLimiterUnavailableError,
    RedirectError,
    WrongEventLoopError,
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
from ._version import __version__

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
    "RedirectError",
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
    "WrongEventLoopError",
    "__version__",
    "normalize_phone",
]
