"""Keeping the access token where it belongs.

It goes to ``base_url``'s origin only, over TLS unless the host is this machine (or the caller
opted in), and it leaves the library in no text: not in messages, result errors, logs, or the
locals of frames that error reporters record. Knows nothing of HTTP exchanges.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from yarl import URL

from ._errors import excerpt

__all__ = ["Scrubber", "Secret", "argument_problem", "is_loopback"]


class Secret:
    """The access token, kept out of ``repr``: frames that error reporters record with their
    locals (Sentry does by default) show ``Secret('***')``, never the value."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "Secret('***')"


def argument_problem(
    site_id: object, token: Secret, base_url: object, allow_insecure_http: bool
) -> Exception | None:
    """Why a client cannot be built with these, or None (the message never holds the token).

    The token goes only to ``base_url``'s origin, and only over TLS unless the host is this
    machine (loopback) or the caller opted in with ``allow_insecure_http=True``.
    """
    value = token.value
    if not isinstance(value, str):
        return TypeError(f"access_token must be a str, got {type(value).__name__}")
    if not value.strip() or not value.isprintable():
        return ValueError("access_token must be non-empty printable text (no newlines)")
    if isinstance(site_id, bool) or not isinstance(site_id, int | str):
        return TypeError(f"site_id must be an int or str, got {type(site_id).__name__}")
    if not str(site_id).strip() or not str(site_id).isprintable():
        return ValueError(f"site_id must be non-empty printable text, got {site_id!r}")
    if not isinstance(base_url, str):
        return TypeError(f"base_url must be a str, got {type(base_url).__name__}")
    return _url_problem(base_url, allow_insecure_http)


def _url_problem(base_url: str, allow_insecure_http: bool) -> Exception | None:
    try:
        url = URL(base_url)
    except ValueError:
        return ValueError(f"base_url is not a URL: {base_url!r}")
    if url.scheme not in ("https", "http") or not url.host:
        return ValueError(f"base_url must be an https:// URL with a host, got {base_url!r}")
    if url.user is not None or url.password is not None:
        return ValueError("base_url must not hold a user name or password")
    if url.scheme == "http" and not (allow_insecure_http or is_loopback(url.host)):
        return ValueError(
            f"base_url {base_url!r} is plain http: the access token would travel unencrypted. "
            "Use https://, or pass allow_insecure_http=True if you accept that risk"
        )
    return None


def is_loopback(host: str) -> bool:
    """True for this machine: 127.0.0.0/8, ::1, ``localhost`` and its subdomains."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Scrubber:
    """Removes the access token from text that leaves the library (messages, errors, logs).

    It works on decoded text, never on the answer's bytes (a short token would corrupt them),
    and finds the token however the text quotes it: each character as is, escaped the ways
    JSON allows (``Ab3\\/xY9``, ``\\u002f``), backslashes doubled by a ``repr``, or
    percent-encoded as in a URL (``Ab3%2FxY9``).
    """

    __slots__ = ("_length", "_pattern")

    def __init__(self, token: str) -> None:
        self._pattern = re.compile("".join(map(_any_quoting, token))) if token else None
        self._length = len(token)

    def text(self, text: str) -> str:
        return self._pattern.sub("***", text) if self._pattern is not None else text

    def excerpt(self, raw: bytes) -> str:
        """A short start of a raw body, without the token even where the cut falls in it."""
        window = _EXCERPT_WINDOW + 12 * self._length  # the longest quoting: %XX per byte
        text = raw[: window * 4].decode("utf-8", "replace")[:window]
        return excerpt(self.text(text), _EXCERPT_WINDOW)


_EXCERPT_WINDOW: Final = 200


def _any_quoting(char: str) -> str:
    forms = [re.escape(char), r"\\+" + re.escape(char)]
    if ord(char) <= 0xFFFF:
        forms.append(rf"\\+u(?i:{ord(char):04x})")
    forms.append("".join(f"%(?i:{byte:02x})" for byte in char.encode()))
    return "(?:" + "|".join(forms) + ")"
