"""Every default in one place (the numbers users may want to look up or override)."""

from __future__ import annotations

from datetime import timedelta, timezone

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

#: Adaptive margin (README, "The rate limit"): a 429 the limiter did not expect widens the
#: margin at once to ADAPTIVE_MARGIN_MAX for everyone sharing the limiter; it stays there for
#: ADAPTIVE_MARGIN_HOLD seconds after the last such 429, then narrows by ADAPTIVE_MARGIN_STEP
#: every ADAPTIVE_MARGIN_STEP_EVERY seconds back to the base margin. Chosen with
#: benchmarks/bench_margin.py: see the README for the figures.
ADAPTIVE_MARGIN_MAX = 0.20
ADAPTIVE_MARGIN_HOLD = 60.0
ADAPTIVE_MARGIN_STEP = 0.05
ADAPTIVE_MARGIN_STEP_EVERY = 30.0

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

#: submit(): the oldest pending lead waits at most this long before its batch is sent. Its
#: callers are typically web handlers awaiting an answer, so the wait is kept short.
DEFAULT_LINGER = 0.05
DEFAULT_MAX_PENDING = 10_000
#: comment_many() over an async source (a queue): a partial chunk is sent once no lead has
#: come for this long. A queue consumer expects a lead to be handled within about one round
#: trip (~1 s), not held until 100 more arrive; 0.2 s is the spacing of the rate limit
#: (5 requests/s), so lingering alone never makes more partial requests than the limit can
#: start, while a source that is merely slow still fills its chunks (fewer points spent).
DEFAULT_STREAM_LINGER = 0.2
#: aclose(): how long requests already written (and pending submits) may take to answer.
DEFAULT_FLUSH_TIMEOUT = 30.0

USER_AGENT = "calltouch-async/0.1"

#: Where a day begins for daily_request_budget and stats().requests_today: midnight Moscow
#: time (UTC+3, no daylight saving), when Calltouch's daily counters most likely reset
#: (inferred: not published).
DAY_TIMEZONE = timezone(timedelta(hours=3))
