"""Hand-written clients the benchmarks compare ``calltouch_async`` with."""
