"""Asyncio client for Calltouch's lead-commenting API."""

from ._client import UNSET, CalltouchClient
from ._errors import (
    AuthError,
    CalltouchError,
    ClientClosedError,
    MalformedResponseError,
    RateLimiterUnavailableError,
    RedirectError,
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
from ._transport import SendTimeTrace

__all__ = [
    "UNSET",
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
    "LeadComment",
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
    "TagsLogic",
    "normalize_phone",
]
