"""Keeping the access token where it belongs.

It goes to ``base_url``'s origin only, over TLS unless the host is this machine (or the caller
opted in), and it leaves the library in no text: not in messages, result errors, logs, or the
locals of frames that error reporters record. Knows nothing of HTTP exchanges.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from html.entities import html5
from typing import Final

import msgspec
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
    """True for this machine: 127.0.0.0/8, ::1 and ``localhost`` itself.

    Not ``*.localhost``: without a resolver that special-cases it (glibc alone has none), such
    a name is looked up in DNS, search domains included, and may answer with another host.
    """
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Scrubber:
    """Removes the access token from text that leaves the library (messages, errors, logs).

    It works on decoded text, never on the answer's bytes (a short token would corrupt them),
    and finds the token however the text quotes it: each character as is, escaped the ways
    JSON allows (``Ab3\\/xY9``, ``\\u002f``), backslashes doubled by a ``repr``,
    percent-encoded as in a URL (``Ab3%2FxY9``, ``+`` for a space), or as an HTML/XML entity
    (``&#x2F;``, ``&#47;``, ``&sol;``), as error pages escape what they echo.
    """

    __slots__ = ("_length", "_pattern", "numeric")

    def __init__(self, token: str) -> None:
        self._pattern = re.compile("".join(map(_any_quoting, token))) if token else None
        self._length = len(token)
        # A token an integer id can echo whole ("-42" too): then numbers are scrubbed as well.
        self.numeric = _INTEGER.fullmatch(token) is not None

    def text(self, text: str) -> str:
        return self._pattern.sub("***", text) if self._pattern is not None else text

    def ids_are_plain(self, ids: msgspec.Struct) -> bool:
        """True when no id of ``ids`` can echo the token: numbers (unless the token is all
        digits) and strings shorter than it, which is what nearly every answer holds."""
        length, numeric = self._length, self.numeric
        for value in msgspec.structs.astuple(ids):
            if (type(value) is str and len(value) >= length) or (numeric and type(value) is int):
                return False
        return True

    def ident(self, value: int | str | None) -> int | str | None:
        """An id from an answer, with the token replaced by ``***`` if the id echoes it.

        An id that is the token (in any quoting) is always an echo. Inside a longer id the
        token is replaced only when it is at least :data:`_EMBEDDED_MIN` characters: a short
        token occurs by chance inside real ids (token ``7`` in call id ``12734``), and an id
        changed by that would no longer name its call. A short token cannot be kept out of
        every text anyway (``e`` is in any ``repr``); what matters is a real, long one.
        """
        pattern = self._pattern
        if pattern is None or value is None or (isinstance(value, int) and not self.numeric):
            return value  # a number can only be a token made of digits
        text = str(value)
        if len(text) < self._length:
            return value  # every quoting of the token is at least as long as the token
        if pattern.fullmatch(text):
            return "***"
        if self._length >= _EMBEDDED_MIN and pattern.search(text):
            return pattern.sub("***", text)
        return value

    def excerpt(self, raw: bytes) -> str:
        """A short start of a raw body, without the token even where the cut falls in it."""
        window = _EXCERPT_WINDOW + 12 * self._length  # the longest quoting: %XX per byte
        text = raw[: window * 4].decode("utf-8", "replace")[:window]
        return excerpt(self.text(text), _EXCERPT_WINDOW)


_EXCERPT_WINDOW: Final = 200
#: The shortest token replaced inside a longer id (:meth:`Scrubber.ident`); real tokens are
#: far longer, and a match this long inside an id is no accident.
_EMBEDDED_MIN: Final = 8

#: A token JSON could send back whole as a number (leading zeros only cost a slower check).
_INTEGER: Final = re.compile(r"-?[0-9]+")


_BACKSLASHES: Final = r"(?<!\\)\\++"


def _any_quoting(char: str) -> str:
    """A pattern for ``char`` as any quoting common in echoed text may have written it."""
    code = ord(char)
    # A run of backslashes is matched from its first one only, and never given back: a text of
    # many backslashes then costs linear time, not quadratic (a hostile answer's stall).
    forms = [re.escape(char), _BACKSLASHES + re.escape(char)]
    if code <= 0xFF:
        forms.append(rf"{_BACKSLASHES}x(?i:{code:02x})")  # Python and JavaScript string escapes
    if code <= 0xFFFF:
        forms.append(rf"{_BACKSLASHES}u(?i:{code:04x})")
    utf8 = char.encode()
    forms.append("".join(f"%(?i:{byte:02x})" for byte in utf8))
    forms.append("".join(f"%25(?i:{byte:02x})" for byte in utf8))  # percent-encoded twice
    if char == " ":
        forms.append(r"\+")  # form encoding (application/x-www-form-urlencoded)
    # HTML/XML character references: hex or decimal with any leading zeros (the ";" may be
    # missing, as browsers allow), and the named ones HTML5 defines for the character.
    forms.append(rf"&#(?:[xX]0*(?i:{code:x})|0*{code});?")
    forms += [re.escape(name) for name in _html_names().get(char, ())]
    return "(?:" + "|".join(forms) + ")"


@functools.cache
def _html_names() -> dict[str, list[str]]:
    """Every HTML5 named reference of one character, by that character (``/``: ``&sol;``)."""
    names: dict[str, list[str]] = {}
    for name, char in html5.items():
        if len(char) == 1:
            names.setdefault(char, []).append("&" + name)
    # Longest first, so that "&amp;" is taken whole rather than as "&amp" and a stray ";".
    return {char: sorted(forms, key=len, reverse=True) for char, forms in names.items()}
