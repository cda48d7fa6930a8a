"""The exceptions ``calltouch_async`` raises.

Per-lead problems are never raised: every lead gets a :class:`~calltouch_async.CommentResult`
with a status (see ``CommentStatus``). Exceptions are for conditions that stop a whole call::

    CalltouchError                  base of everything raised here
    ├── AuthError                   wrong access token or site id (401/403 or an auth API error);
    │                               fatal: raised at once, requests in flight are cancelled
    ├── ClientClosedError           the client was closed (or never opened) when used
    ├── DailyBudgetExhaustedError   comment_many stopped reading: daily_request_budget is spent
    │                               (raised after the results of every lead it had read)
    ├── MalformedResponseError      a body that is not what the API documents
    └── RateLimiterUnavailableError a shared limiter (Redis) cannot be reached; nothing was sent
                                    (raised by the limiter; the client reports the leads of
                                    that request ``failed`` with it as the reason)

No message ever contains the access token: they name the site id instead.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "CalltouchError",
    "ClientClosedError",
    "DailyBudgetExhaustedError",
    "MalformedResponseError",
    "RateLimiterUnavailableError",
    "WrongEventLoopError",
]

_EXCERPT_CHARS = 200


class CalltouchError(Exception):
    """Base class of every exception raised by ``calltouch_async``."""


class AuthError(CalltouchError):
    """Calltouch refused the credentials (site id or access token).

    Retrying cannot help, so it is raised from ``comment``/``comment_many``/``submit`` at once.
    """

    def __init__(self, site_id: int | str, status: int, detail: str = "") -> None:
        self.site_id = site_id
        self.status = status
        self.detail = detail
        message = f"Calltouch rejected the credentials for site id {site_id} (HTTP {status})"
        super().__init__(f"{message}: {detail}" if detail else message)


class ClientClosedError(CalltouchError, RuntimeError):
    """The client was used outside ``async with`` or after ``aclose()``."""


class DailyBudgetExhaustedError(CalltouchError):
    """``daily_request_budget`` is spent: ``comment_many`` stopped reading its input.

    Raised after the results of every lead read (those not sent are ``failed``). ``leads_read``
    is how many leads of the input were read: resume from that index after the day boundary.
    """

    def __init__(self, reason: str, leads_read: int) -> None:
        self.reason = reason
        self.leads_read = leads_read
        super().__init__(f"{reason}; stopped reading the input after {leads_read} leads")


class MalformedResponseError(CalltouchError):
    """A response body that is not the documented shape.

    ``excerpt`` holds the first characters of the body (responses never carry the token, and
    the excerpt is short, so it is safe to log).
    """

    def __init__(self, reason: str, body: bytes | str) -> None:
        self.reason = reason
        self.excerpt = excerpt(body)
        super().__init__(f"unexpected response body ({reason}): {self.excerpt!r}")


class RateLimiterUnavailableError(CalltouchError):
    """A shared rate limiter's backend could not be reached; nothing was sent."""


def excerpt(body: bytes | str, limit: int = _EXCERPT_CHARS) -> str:
    """A short, printable start of ``body`` for error messages."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return text if len(text) <= limit else text[:limit] + "…"


class WrongEventLoopError(CalltouchError, RuntimeError):
    """The client was used from an event loop other than the one it opened on.

    Raised before anything is sent. A client's connections belong to one event loop; create
    the client inside the loop that uses it (for example inside the coroutine given to
    ``asyncio.run()``), one per loop or per thread.
    """
