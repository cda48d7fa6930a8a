"""The CPU that counting costs per 100-lead request: the dispatcher's telemetry calls alone.

Runs the exact sequence one request makes (budget charge, ``attempt`` enter, ``sending``,
``answered``, exit, ``count`` of 100 results) in a loop and reports microseconds of CPU per
request, three ways:

- ``plain``: no OpenTelemetry (what a client pays when the package is not installed);
- ``otel-noop``: the OpenTelemetry API with no SDK configured (the global no-op providers);
- ``otel-sdk``: the SDK recording spans into an in-memory exporter and metrics into an
  in-memory reader (the most a client pays).

Compare with the client's whole CPU per 100-lead request (``bench_overhead.py``: about 0.4-0.5 ms).

    python benchmarks/bench_telemetry.py [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from calltouch_async import CommentResult, CommentStatus, LeadComment
from calltouch_async._models import CallMatch
from calltouch_async._telemetry import Telemetry, new_telemetry
from calltouch_async._transport import Attempt, Exchange, Reply

LEADS = 100


async def per_request_us(telemetry: Telemetry, requests: int) -> float:
    lead = LeadComment([CallMatch(1)], "x")
    results = [
        CommentResult(index=i, lead=lead, status=CommentStatus.COMMENTED) for i in range(LEADS)
    ]
    exchange = Exchange(Reply.OK, 200)
    telemetry.use_limiter(object())
    cpu = time.process_time()
    for _ in range(requests):
        attempt = Attempt(None)
        attempt.may_be_sent = True
        async with telemetry.attempt(LEADS, 1, attempt) as record:
            record.sending()
            record.answered(exchange)
        telemetry.count(results)
    return (time.process_time() - cpu) / requests * 1e6


def sdk_telemetry() -> Telemetry:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return new_telemetry(
        1, "http://127.0.0.1/x", daily_request_budget=None, day_timezone=Telemetry(1).day_timezone,
        tracer_provider=tracer_provider, meter_provider=meter_provider,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    variants = {
        "plain": Telemetry(1),
        "plain+budget": Telemetry(1, daily_request_budget=10**9),
        "otel-noop": new_telemetry(
            1, "http://127.0.0.1/x", daily_request_budget=None,
            day_timezone=Telemetry(1).day_timezone, tracer_provider=None, meter_provider=None,
        ),
        "otel-sdk": sdk_telemetry(),
    }
    print(f"{'variant':<14} us CPU per {LEADS}-lead request (median of 3)")
    for name, telemetry in variants.items():
        runs = sorted([await per_request_us(telemetry, args.requests) for _ in range(3)])
        print(f"{name:<14} {runs[1]:8.1f}")


if __name__ == "__main__":
    asyncio.run(main())
