"""Every default in one place (the numbers users may want to look up or override)."""

from __future__ import annotations

DEFAULT_BASE_URL = "https://api.calltouch.ru"
COMMENT_PATH = "/lead-service/v1/api/comment/lead/add"

#: Calltouch's documented limits.
MAX_LEADS_PER_REQUEST = 100
RATE_LIMIT_REQUESTS = 5
RATE_LIMIT_PERIOD = 1.0

#: Extra window length, as a fraction of the period, that absorbs the spread between taking a
#: permit and the request reaching Calltouch (network jitter, a connection being opened). With
#: the sliding log, 5% kept zero 429s at 30 ms of inbound jitter and 99% of the ceiling; see
#: the README's margin sweep for the figures.
DEFAULT_RATE_MARGIN = 0.05

#: Requests running at once: a round trip of ~1-2 s at 5 requests/s needs ~10 in flight.
DEFAULT_MAX_IN_FLIGHT = 10

#: Seconds for one request, retries included (a deadline, not per attempt).
DEFAULT_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 10.0

#: Attempts for what is safe to repeat (429, failures before the request was sent).
DEFAULT_MAX_ATTEMPTS = 5
RETRY_BASE_DELAY = 0.5
RETRY_MAX_DELAY = 8.0
#: Longest Retry-After we honour; a larger value is capped to this.
RETRY_AFTER_CAP = 30.0

#: Keep idle connections this long so permits go to warm connections, but close them before
#: the server side does: a connection the server closes just as a request is written on it
#: loses that request's answer. Common idle timeouts are 5 s (Apache, Node.js, uvicorn), 60 s
#: (AWS ALB) and 75 s (nginx); 4 s is under all of them and, at 5 requests/s, still keeps a
#: busy client's connections warm.
KEEPALIVE_TIMEOUT = 4.0

#: Largest answer read (after decompression). A 100-lead answer is about 12-30 KB; anything
#: near this is not Calltouch's, and its request's leads end ``unknown``.
MAX_ANSWER_BYTES = 1 << 20
#: Bytes read from the socket per step while an answer is read up to the cap.
READ_CHUNK_BYTES = 1 << 16

#: submit(): the oldest pending lead waits at most this long before its batch is sent.
DEFAULT_LINGER = 0.05
DEFAULT_MAX_PENDING = 10_000
#: aclose(): how long pending submits may take to flush.
DEFAULT_FLUSH_TIMEOUT = 30.0

USER_AGENT = "calltouch-async/0.1"
