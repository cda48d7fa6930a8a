"""stats(), OpenTelemetry spans and metrics, and log records, judged by the emulator's ledger.

Real SDK exporters (``InMemorySpanExporter``, ``InMemoryMetricReader``), the real client, real
HTTP on 127.0.0.1. The "nothing imported" check runs in a subprocess with ``opentelemetry``
hidden from the import system.
"""

from __future__ import annotations

import enum
import importlib.util
import json
import logging
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from dataclasses import FrozenInstanceError
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from calltouch_async import (
    CallMatch,
    CalltouchClient,
    CommentResult,
    LeadComment,
    RetryPolicy,
    SlidingWindowLimiter,
)
from calltouch_async._telemetry import answer_kind
from calltouch_async.testing import CalltouchEmulator, Fault
from conftest import SITE_ID, TOKEN, EmulatorFactory, client_for, make_leads

ROOT = Path(__file__).parent.parent
FAST_RETRY = RetryPolicy(base_delay=0.01, max_delay=0.02)


def mixed_leads() -> list[LeadComment]:
    """501 leads: 498 that match, one invalid, two that match nothing (not_commented).

    The 500 valid ones make five full requests, whichever of them the faults hit.
    """
    leads = make_leads(498)
    leads.insert(10, LeadComment([CallMatch(1)], "   "))  # blank comment: invalid
    leads += [LeadComment([CallMatch(999_999)], f"nobody-{i}") for i in range(2)]
    return leads


def inject_trouble(emu: CalltouchEmulator) -> None:
    """Two 429s (retried), one answer lost after applying, one 5xx."""
    emu.inject(Fault.RATE_LIMIT, on_requests=[1, 3])
    emu.inject(Fault.APPLY_THEN_DROP, on_requests=[2])
    emu.inject(Fault.SERVER_ERROR, on_requests=[4])


async def run(client: CalltouchClient, leads: list[LeadComment]) -> list[CommentResult]:
    return [r async for r in client.comment_many(leads)]


def ledger_answers(emu: CalltouchEmulator) -> dict[str, int]:
    """The answer kinds the client should have counted, from the emulator's side."""
    requests = emu.ledger.requests
    return {
        "ok": sum(1 for r in requests if r.outcome == "ok"),
        "rate_limited": sum(1 for r in requests if r.status == 429),
        "violations": sum(1 for r in requests if r.outcome == "validation_error"),
        "auth": 0,
        "client_error": 0,
        "server_error": sum(1 for r in requests if r.status >= 500),
        "lost": sum(1 for r in requests if r.outcome == "fault:apply_then_drop"),
        "other": 0,
    }


# --- stats() -------------------------------------------------------------------------------


async def test_stats_agree_with_the_emulators_ledger(emulator: EmulatorFactory) -> None:
    limiter = SlidingWindowLimiter(rate=100)
    async with emulator(calls=498) as emu:
        inject_trouble(emu)
        async with client_for(emu, rate_limiter=limiter, retry=FAST_RETRY) as client:
            before = client.stats()
            results = await run(client, mixed_leads())
            stats = client.stats()
    assert before.requests == 0 and sum(before.leads.values()) == 0
    requests = len(emu.ledger.requests)
    assert requests == 7  # five chunks, two of them re-sent after a 429
    assert stats.requests == requests
    answers = {k: getattr(stats.answers, k) for k in ledger_answers(emu)}
    assert answers == ledger_answers(emu)
    assert stats.answers.rate_limited == 2 and stats.answers.lost == 1
    assert stats.retries == 2
    assert stats.in_flight == 0
    by_status = Counter(str(r.status) for r in results)
    assert {k: v for k, v in stats.leads.items() if v} == dict(by_status)
    assert by_status["unknown"] == 200 and by_status["invalid"] == 1
    assert by_status["not_commented"] == 2
    assert stats.limiter_waits.count == requests  # every attempt that went out took a permit
    assert 0 <= stats.limiter_waits.max_seconds <= stats.limiter_waits.total_seconds
    assert stats.requests_today == {str(SITE_ID): requests}
    assert stats.daily_request_budget is None


async def test_stats_are_an_immutable_snapshot(emulator: EmulatorFactory) -> None:
    async with emulator(calls=10) as emu, client_for(emu) as client:
        stats = client.stats()
        await client.comment(make_leads(3))
        after = client.stats()
    assert stats.requests == 0 and after.requests == 1  # the old snapshot did not move
    with pytest.raises(FrozenInstanceError):
        stats.requests = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        stats.leads["commented"] = 1  # type: ignore[index]
    assert after.leads["commented"] == 3
    assert set(after.leads) == {
        "commented", "not_commented", "invalid", "rejected", "failed", "unknown",
    }


async def test_requests_in_flight_are_counted(emulator: EmulatorFactory) -> None:
    async with emulator(calls=10) as emu, client_for(emu) as client:
        emu.inject(Fault.SLOW, on_requests=[1], delay=0.5)
        import asyncio

        task = asyncio.create_task(client.comment(make_leads(2)))
        for _ in range(500):  # wait for the condition, with a generous cap
            if client.stats().in_flight == 1:
                break
            await asyncio.sleep(0.01)
        assert client.stats().in_flight == 1
        await task
        assert client.stats().in_flight == 0


def test_answer_kinds_tolerate_reply_kinds_added_later() -> None:
    new_reply = enum.Enum("NewReply", {"REDIRECT": "redirect", "OK": "ok", "UNKNOWN": "unknown"})
    assert answer_kind(new_reply.REDIRECT, 302) == "other"  # type: ignore[arg-type]
    assert answer_kind(new_reply.REDIRECT, 404) == "client_error"  # type: ignore[arg-type]
    assert answer_kind(new_reply.REDIRECT, 503) == "server_error"  # type: ignore[arg-type]
    assert answer_kind(new_reply.OK, 200) == "ok"  # type: ignore[arg-type]
    assert answer_kind(new_reply.UNKNOWN, 0) == "lost"  # type: ignore[arg-type]


# --- OpenTelemetry -------------------------------------------------------------------------


@pytest.fixture
def otel() -> Iterator[tuple[TracerProvider, InMemorySpanExporter, MeterProvider, Any]]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield tracer_provider, exporter, meter_provider, reader
    tracer_provider.shutdown()
    meter_provider.shutdown()


def points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def by_attribute(reader: InMemoryMetricReader, name: str, key: str) -> dict[str, int]:
    return {p.attributes[key]: p.value for p in points(reader, name) if p.value}


async def test_spans_and_metrics_agree_with_the_ledger(
    emulator: EmulatorFactory, otel: tuple[TracerProvider, InMemorySpanExporter, MeterProvider, Any]
) -> None:
    tracer_provider, exporter, meter_provider, reader = otel
    async with emulator(calls=498) as emu:
        inject_trouble(emu)
        async with client_for(
            emu, retry=FAST_RETRY, rate_limiter=SlidingWindowLimiter(rate=100),
            tracer_provider=tracer_provider, meter_provider=meter_provider,
        ) as client:
            comment_url = emu.comment_url
            with tracer_provider.get_tracer("job").start_as_current_span("nightly job") as job:
                results = await run(client, mixed_leads())
            stats = client.stats()
    spans = [s for s in exporter.get_finished_spans() if s.name == "calltouch comment"]
    # One span per request the emulator received, each a child of the caller's span.
    assert len(spans) == len(emu.ledger.requests) == 7
    assert {s.parent.span_id for s in spans if s.parent} == {job.get_span_context().span_id}
    assert all(s.parent is not None and s.kind is SpanKind.CLIENT for s in spans)
    received = Counter(r.status for r in emu.ledger.requests if r.status)
    answered = Counter(s.attributes.get("http.response.status_code") for s in spans)
    answered.pop(None, None)  # the dropped answer has no status code
    assert answered == received
    for span in spans:
        attrs = span.attributes
        assert attrs["http.request.method"] == "POST"
        assert attrs["server.address"] == "127.0.0.1"
        assert attrs["url.full"] == comment_url
        assert attrs["calltouch.site_id"] == str(SITE_ID)
        assert attrs["calltouch.attempt"] in (1, 2)
        assert TOKEN not in json.dumps(dict(attrs))
        ok = attrs["calltouch.reply"] == "ok"
        assert span.status.status_code is (StatusCode.UNSET if ok else StatusCode.ERROR)
        assert ("error.type" in attrs) is not ok
    # Requests answered "ok" carried as many leads as the emulator read from their bodies.
    ok_leads = sorted(s.attributes["calltouch.leads"] for s in spans if s.status.is_ok)
    assert ok_leads == sorted(r.lead_count for r in emu.ledger.requests if r.outcome == "ok")
    lost = [s for s in spans if s.attributes["calltouch.reply"] == "lost"]
    assert len(lost) == 1 and lost[0].attributes["error.type"] == "lost"
    # Metrics: leads per status equal the results; requests per reply equal the answers.
    assert by_attribute(reader, "calltouch.leads", "status") == Counter(
        str(r.status) for r in results
    )
    expected = {k: v for k, v in ledger_answers(emu).items() if v}
    assert by_attribute(reader, "calltouch.requests", "reply") == expected
    durations = points(reader, "calltouch.request.duration")
    assert sum(p.count for p in durations) == 7
    waits = points(reader, "calltouch.limiter.wait")
    assert sum(p.count for p in waits) == stats.limiter_waits.count == 7


# --- logging ---------------------------------------------------------------------------------


async def test_log_records_carry_structured_fields_and_nothing_per_lead(
    emulator: EmulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="calltouch_async")
    async with emulator(calls=498) as emu:
        inject_trouble(emu)
        async with client_for(emu, retry=FAST_RETRY) as client:
            await run(client, mixed_leads())
    records = [r for r in caplog.records if r.name.startswith("calltouch_async")]
    assert records
    for record in records:
        assert record.site_id == str(SITE_ID)  # type: ignore[attr-defined]
        assert isinstance(record.leads, int)  # type: ignore[attr-defined]
        assert isinstance(record.attempt, int)  # type: ignore[attr-defined]
        assert record.status  # type: ignore[attr-defined]
        assert TOKEN not in record.getMessage()
    loud = [r for r in records if r.levelno >= logging.INFO]
    # Two retries after 429 and two requests of unknown outcome: per request, not per lead.
    assert len(loud) == 4
    assert Counter(r.status for r in loud) == {  # type: ignore[attr-defined]
        "rate_limited": 2, "unknown": 2,
    }
    assert all(r.leads == 100 for r in loud)  # type: ignore[attr-defined]


# --- nothing imported without the package ----------------------------------------------------

_PROBE = textwrap.dedent(
    """
    import asyncio, importlib.abc, json, sys

    class Hide(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "opentelemetry":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    exporter = None
    if sys.argv[1] == "hide":
        sys.meta_path.insert(0, Hide())
    else:  # the global provider, which the client uses when given none
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)

    from calltouch_async import CallMatch, CalltouchClient, LeadComment
    from calltouch_async.testing import CalltouchEmulator

    async def main():
        async with CalltouchEmulator(site_id=1, access_token="probe-token") as emu:
            emu.generate(calls=5)
            url = emu.base_url
            async with CalltouchClient(1, "probe-token", base_url=url, rate_limiter=None) as c:
                results = await c.comment([LeadComment([CallMatch(i)], f"x{i}") for i in (1, 2)])
                requests = c.stats().requests
        refused = None
        if sys.argv[1] == "hide":
            try:
                CalltouchClient(1, "t", tracer_provider=object())
            except ImportError as exc:
                refused = str(exc)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
        print(json.dumps({
            "statuses": [str(r.status) for r in results], "requests": requests,
            "loaded": loaded, "refused": refused,
            "spans": None if exporter is None else len(exporter.get_finished_spans()),
        }))

    asyncio.run(main())
    """
)


def probe(mode: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=60,
        cwd=ROOT, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_without_opentelemetry_nothing_is_imported_and_the_client_works() -> None:
    hidden = probe("hide")
    assert hidden["loaded"] == []
    assert hidden["statuses"] == ["commented", "commented"] and hidden["requests"] == 1
    assert hidden["refused"] is not None and "calltouch-async[otel]" in hidden["refused"]
    # The control: with the package present the same run loads it and records a span on
    # the global tracer provider.
    present = probe("show")
    assert "opentelemetry.trace" in present["loaded"]
    assert present["spans"] == present["requests"] == 1


# --- the example's /metrics endpoint ----------------------------------------------------------


async def test_metrics_endpoint_example_serves_the_stats(
    emulator: EmulatorFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location(
        "metrics_endpoint", ROOT / "examples" / "metrics_endpoint.py"
    )
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    monkeypatch.setenv("CALLTOUCH_SITE_ID", str(SITE_ID))
    monkeypatch.setenv("CALLTOUCH_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("CALLTOUCH_DAILY_REQUEST_BUDGET", "1")
    async with emulator(calls=10) as emu:
        monkeypatch.setenv("CALLTOUCH_BASE_URL", emu.base_url)
        async with TestClient(TestServer(example.make_app())) as http:
            statuses = []
            for i in (1, 2):
                response = await http.post("/comment", json={"call_id": i, "text": f"m-{i}"})
                statuses.append((await response.json())["status"])
            text = await (await http.get("/metrics")).text()
    assert statuses == ["commented", "failed"]  # the budget of one request is spent
    site = f'site_id="{SITE_ID}"'
    assert f"calltouch_requests_total{{{site}}} 1\n" in text
    assert f'calltouch_answers_total{{{site},kind="ok"}} 1\n' in text
    assert f'calltouch_leads_total{{{site},status="commented"}} 1\n' in text
    assert f'calltouch_leads_total{{{site},status="failed"}} 1\n' in text
    assert f"calltouch_budget_used{{{site}}} 1\n" in text
    assert "# TYPE calltouch_requests_today gauge" in text
    assert TOKEN not in text


async def test_answers_add_up_to_requests_minus_in_flight_at_every_moment(
    emulator: EmulatorFactory,
) -> None:
    import asyncio
    import dataclasses

    async with emulator(calls=400, latency=0.2) as emu, client_for(emu, retry=FAST_RETRY) as c:
        emu.inject(Fault.RATE_LIMIT, on_requests=[2])
        emu.inject(Fault.APPLY_THEN_DROP, on_requests=[3])
        async def run() -> None:
            async for _ in c.comment_many(make_leads(400)):
                pass

        task = asyncio.create_task(run())
        snapshots = []
        while not task.done():
            snapshots.append(c.stats())
            await asyncio.sleep(0)
        await task
        snapshots.append(c.stats())
    for s in snapshots:
        assert sum(dataclasses.astuple(s.answers)) == s.requests - s.in_flight, s
    # Requests at the server are counted while they wait there, not only once answered.
    assert max(s.in_flight for s in snapshots) >= 3
    assert any(s.requests >= s.in_flight >= 3 for s in snapshots)
    assert snapshots[-1].requests == len(emu.ledger.requests)
