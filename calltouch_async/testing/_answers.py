"""The emulator's canned answers: the ``apiError`` and ``validationError`` bodies it sends.

Kept apart from the handler so the body shapes (the API page's, plus the inferred statuses and
messages listed in ``_emulator``'s docstring) are read in one place.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import msgspec

from ._validation import Violation

__all__ = [
    "AUTH_FAILED",
    "JSON",
    "NOT_JSON",
    "NOT_OBJECT",
    "RATE_LIMITED",
    "SERVER_ERRORS",
    "TOO_LARGE",
    "UNMAPPED",
    "Answer",
    "encode",
    "validation_error",
]

JSON = "application/json"
encode = msgspec.json.Encoder().encode


class Answer(NamedTuple):
    """What to send: status, body, the ledger's ``outcome`` and the content type."""

    status: int
    body: bytes
    outcome: str
    content_type: str = JSON


def api_error(code: int, message: str) -> bytes:
    """An ``apiError`` body."""
    data = {"errorCode": code, "errorMessage": message}
    return encode(
        {
            "meta": [],
            "data": {"type": "apiError", "apiErrorData": data, "validationErrorData": None},
        }
    )


def validation_error(violations: Iterable[Violation]) -> bytes:
    """A ``validationError`` body listing ``violations``."""
    data = {"violations": [v.to_json() for v in violations]}
    return encode(
        {
            "meta": [],
            "data": {"type": "validationError", "apiErrorData": None, "validationErrorData": data},
        }
    )


RATE_LIMITED = Answer(429, api_error(429, "Too Many Requests"), "rate_limited")
AUTH_FAILED = Answer(401, api_error(401, "Invalid access token or site id"), "auth_failed")
TOO_LARGE = Answer(413, api_error(413, "Request body is too large"), "bad_request")
NOT_JSON = Answer(400, api_error(400, "Invalid JSON body"), "bad_request")
NOT_OBJECT = Answer(400, api_error(400, "Request body must be a JSON object"), "bad_request")
UNMAPPED = validation_error(
    [Violation("comments", "Invalid request"), Violation("", "Invalid request")]
)
"""A validationError whose fieldPaths name no lead (``Fault.UNMAPPED_VIOLATION``)."""
SERVER_ERRORS = (
    (500, api_error(500, "Internal Server Error"), JSON),
    (502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html"),
    (503, b"<html><body><h1>503 Service Unavailable</h1></body></html>", "text/html"),
)
"""The answers ``Fault.SERVER_ERROR`` picks from: status, body, content type."""
