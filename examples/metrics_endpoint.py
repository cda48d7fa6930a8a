"""A service's ``/metrics`` endpoint for Prometheus, built from ``client.stats()``.

No exporter library needed: ``stats()`` is an immutable snapshot cheap enough to take on
every scrape, rendered here in Prometheus' text format. (With OpenTelemetry, configure a
``MeterProvider`` instead; see the README's "Observability" section.)

Run against the emulator, then ``curl localhost:8081/metrics``::

    python -m calltouch_async.testing --port 8080 --calls 1000 &
    CALLTOUCH_BASE_URL=http://127.0.0.1:8080 CALLTOUCH_ACCESS_TOKEN=test-token \\
        CALLTOUCH_SITE_ID=12345 python examples/metrics_endpoint.py
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import asdict

from aiohttp import web

from calltouch_async import CallMatch, CalltouchClient, LeadComment, Stats

CLIENT = web.AppKey("client", CalltouchClient)


def render(stats: Stats) -> str:
    """``stats`` in the Prometheus text exposition format."""
    site = next(iter(stats.requests_today), "")
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: dict[str, float]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples.items():
            label_text = f'site_id="{site}"' + (f",{labels}" if labels else "")
            lines.append(f"{name}{{{label_text}}} {value}")

    answers = asdict(stats.answers)
    metric("calltouch_requests_total", "counter", "HTTP requests sent", {"": stats.requests})
    metric("calltouch_answers_total", "counter", "Answers by kind",
           {f'kind="{k}"': v for k, v in answers.items()})
    metric("calltouch_retries_total", "counter", "Re-sent attempts", {"": stats.retries})
    metric("calltouch_leads_total", "counter", "Leads by final status",
           {f'status="{k}"': v for k, v in stats.leads.items()})
    metric("calltouch_requests_in_flight", "gauge", "Requests sent, not answered",
           {"": stats.in_flight})
    waits = stats.limiter_waits
    metric("calltouch_limiter_waits_total", "counter", "Permits taken", {"": waits.count})
    metric("calltouch_limiter_wait_seconds_total", "counter", "Time spent waiting for permits",
           {"": waits.total_seconds})
    metric("calltouch_limiter_wait_seconds_max", "gauge", "Longest wait for a permit",
           {"": waits.max_seconds})
    metric("calltouch_requests_today", "gauge", "Requests sent since the day began",
           {f'day="{stats.day}"': n for n in stats.requests_today.values()})
    if stats.daily_request_budget is not None:
        metric("calltouch_daily_request_budget", "gauge", "Requests allowed per day",
               {"": stats.daily_request_budget})
        metric("calltouch_budget_used", "gauge", "Requests charged to today's budget",
               {"": stats.budget_used})
    return "\n".join(lines) + "\n"


async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=render(request.app[CLIENT].stats()), content_type="text/plain")


async def comment(request: web.Request) -> web.Response:
    body = await request.json()
    lead = LeadComment([CallMatch(int(body["call_id"]))], str(body["text"]))
    result = await request.app[CLIENT].submit(lead)
    return web.json_response({"status": result.status.value})


async def client_context(app: web.Application) -> AsyncIterator[None]:
    budget = os.environ.get("CALLTOUCH_DAILY_REQUEST_BUDGET")
    async with CalltouchClient(
        site_id=os.environ["CALLTOUCH_SITE_ID"],
        access_token=os.environ["CALLTOUCH_ACCESS_TOKEN"],
        base_url=os.environ.get("CALLTOUCH_BASE_URL", "https://api.calltouch.ru"),
        daily_request_budget=int(budget) if budget else None,
    ) as client:
        app[CLIENT] = client
        yield


def make_app() -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(client_context)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/comment", comment)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=8081)
