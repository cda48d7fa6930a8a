"""Asyncio client for Calltouch's lead-commenting API."""

from .errors import (
    AuthError,
    CalltouchError,
    ClientClosedError,
    MalformedResponseError,
    RateLimiterUnavailableError,
)
from .models import (
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

__all__ = [
    "AuthError",
    "CallContactMatch",
    "CallInfo",
    "CallMatch",
    "CallTypeToMatch",
    "CalltouchError",
    "ClientClosedError",
    "CommentResult",
    "CommentStatus",
    "LeadComment",
    "MalformedResponseError",
    "RateLimiterUnavailableError",
    "RequestContactMatch",
    "RequestInfo",
    "RequestMatch",
    "RequestTypeToMatch",
    "TagsLogic",
    "normalize_phone",
]
