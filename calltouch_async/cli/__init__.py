"""``calltouch-async``: comment leads from a JSON-lines or CSV file; a demo; the emulator.

Commands::

    calltouch-async comment FILE [--format jsonl|csv] [--csv-delimiter C] [--encoding E]
                                 [--site-id ID] [--base-url URL] [--out PATH] [--resume]
                                 [--resend-unknown] [--dry-run] [--failed-out PATH]
                                 [--max-in-flight N] [--grace S] [--no-progress]
    calltouch-async demo [--leads N] [--seed S] [--latency-min S] [--latency-max S] [--jitter S]
    calltouch-async emulator [--port P] [--calls N] [--requests M] ...
    calltouch-async --version

``comment`` reads FILE (``-``: stdin), one lead per line in Calltouch's wire shape::

    {"matching": [{"type": "call", "callParams": {"callId": 1}}], "addComment": "text"}

or CSV (``_csv.CSV_HELP`` documents the columns). Results go to ``--out`` as JSON lines with
``index`` (0-based position among the input's leads), ``line`` (1-based), ``status``,
``call_id``, ``request_id`` and ``error`` (relative to the lead), one unbuffered write per
line; ``--resume`` reads them back. Exit codes are listed in ``_main._EPILOG``.

The package, a lead's way through it:

- ``_lines``: the input's bytes cut into lines (reader thread);
- ``_input``: the reader thread, the input-format protocol, JSON lines;
- ``_csv``: CSV input (sniffed delimiter, encodings, the column mapping);
- ``_source``: numbering, ``--resume`` skipping, malformed lines, index to input line;
- ``_results``: result lines written and read back, ``--failed-out``;
- ``_progress``: the progress bar or plain line, client warnings above it;
- ``_run``: the run (signals, honest leftovers), the dry run, the summary;
- ``_main``: the parser, checks, files, ``main``;
- ``_demo`` / ``_demo_server``: the demo, the emulator in its own process.
"""

from ._main import build_parser, main
from ._run import (
    EXIT_AUTH,
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PIPE,
    EXIT_REDIRECT,
    EXIT_TERMINATED,
    EXIT_UNKNOWN,
    EXIT_USAGE,
)

__all__ = [
    "EXIT_AUTH",
    "EXIT_ERROR",
    "EXIT_FAILED",
    "EXIT_INPUT",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PIPE",
    "EXIT_REDIRECT",
    "EXIT_TERMINATED",
    "EXIT_UNKNOWN",
    "EXIT_USAGE",
    "build_parser",
    "main",
]
