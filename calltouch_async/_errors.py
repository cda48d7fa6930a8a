"""The exceptions ``calltouch_async`` raises.

Per-lead problems are never raised: every lead gets a :class:`~calltouch_async.CommentResult`
with a status (see ``CommentStatus``). Exceptions are for conditions that stop a whole call::

    CalltouchError                  base of everything raised here
    ├── AuthError                   wrong access token or site id (401/403 or an auth API error);
    │                               fatal and sticky: raised at once, requests in flight are
    │                               cancelled, every later call raises it too
    ├── RedirectError               Calltouch answered 3xx (a wrong ``base_url``, a proxy):
    │                               never followed; fatal and sticky like AuthError
    ├── ClientClosedError           (also a RuntimeError) the client is closing or closed when
    │                               a call starts, or aclose() left a comment_many input unread
    ├── WrongEventLoopError         (also a RuntimeError) the client was used from an event loop
    │                               other than the one it opened on; nothing was sent
    ├── DailyBudgetExhaustedError   comment_many stopped reading: daily_request_budget is spent
    │                               (raised after the results of every lead it had read)
    ├── MalformedResponseError      a body that is not what the API documents (low-level decoder
    │                               only: in the client such an answer makes its leads unknown)
    └── RateLimiterUnavailableError a shared limiter or budget (Redis) cannot be reached; nothing
                                    was sent (raised by the limiter; the client reports the
                                    leads of that request ``failed`` with it as the reason)

No message ever contains the access token (AuthError names the site id instead).
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "CalltouchError",
    "ClientClosedError",
    "DailyBudgetExhaustedError",
    "MalformedResponseError",
    "RateLimiterUnavailableError",
    "RedirectError",
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


class RedirectError(CalltouchError):
    """Calltouch (or something in front of it) answered a redirect: status 3xx.

    The redirect is never followed: the request carries the access token, and a 307/308 would
    send it, with the comments, to whatever origin ``Location`` names. A wrong ``base_url``
    will not fix itself, so it is raised at once, as :class:`AuthError` is. ``location`` is
    the ``Location`` header as received (empty if there was none), cut to a readable length.
    """

    def __init__(self, status: int, location: str) -> None:
        self.status = status
        self.location = location
        target = repr(location) if location else "no Location"
        super().__init__(
            f"Calltouch answered HTTP {status} redirecting to {target}; redirects are never "
            "followed: check base_url"
        )


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

    ``excerpt`` holds the first characters of the body, decoded from only the bytes it shows.
    Raised by the low-level decoder only: in the client, a malformed answer makes its leads
    ``unknown``, and the excerpt quoted in their ``error`` has been through the token scrub.
    """

    def __init__(self, reason: str, body: bytes | str) -> None:
        self.reason = reason
        self.excerpt = excerpt(body)
        super().__init__(f"unexpected response body ({reason}): {self.excerpt!r}")


class RateLimiterUnavailableError(CalltouchError):
    """A shared rate limiter's backend could not be reached; nothing was sent."""


def excerpt(body: bytes | str, limit: int = _EXCERPT_CHARS) -> str:
    """A short, printable start of ``body`` for error messages.

    Decodes only the bytes it can show (at most 4 per character), never the whole body.
    """
    if isinstance(body, bytes):
        text = body[: limit * 4 + 4].decode("utf-8", "replace")
        cut = len(body) > limit * 4 + 4 or len(text) > limit
    else:
        text, cut = body, len(body) > limit
    return text[:limit] + "…" if cut else text


class WrongEventLoopError(CalltouchError, RuntimeError):
    """The client was used from an event loop other than the one it opened on.

    Raised before anything is sent. A client's connections belong to one event loop; create
    the client inside the loop that uses it (for example inside the coroutine given to
    ``asyncio.run()``), one per loop or per thread.
    """
