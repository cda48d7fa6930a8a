"""A local Calltouch comment server for tests, demos and users' own test suites.

```python
from calltouch_async.testing import CalltouchEmulator, Fault

async with CalltouchEmulator() as emu:
    emu.add_call(1, phones=["79001234567"], time=datetime(2020, 10, 1, 12))
    emu.inject(Fault.SERVER_ERROR, on_requests=[2])
    ...  # point the code under test at emu.base_url
    assert emu.ledger.max_in_window(1.0) <= 5
```

The emulator imports nothing from the client side of this package: it is an independent
reading of Calltouch's documentation, so the client's tests cannot pass merely because both
sides share a mistake. ``python -m calltouch_async.testing`` runs it standalone; the pytest
plugin (``calltouch_emulator`` and ``calltouch_emulator_factory`` fixtures) is registered
automatically when the package is installed.
"""

from ._data import Call, Request
from ._emulator import COMMENT_PATH, CalltouchEmulator, serve_forever
from ._faults import Fault
from ._ledger import AppliedComment, Ledger, RequestRecord

__all__ = [
    "COMMENT_PATH",
    "AppliedComment",
    "Call",
    "CalltouchEmulator",
    "Fault",
    "Ledger",
    "Request",
    "RequestRecord",
    "serve_forever",
]
