"""The parser and ``main``: arguments checked, files opened, the run started.

``emulator`` hands its arguments to ``calltouch_async.testing.__main__`` (its parser, not a
copy), imported only for that command, so ``comment`` never loads the emulator or
``aiohttp.web``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import stat
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any, Final, NoReturn, TypeAlias, cast

from yarl import URL

from .._constants import DEFAULT_BASE_URL, DEFAULT_MAX_IN_FLIGHT
from .._token import Secret, argument_problem, is_loopback
from .._version import __version__
from ._csv import CSV_HELP, CsvRows
from ._input import BatchReader, InputError, InputFormat, JsonLines
from ._lines import ascii_compatible
from ._progress import Progress, client_logs_to
from ._results import FailedOut, ResultSink, load_previous
from ._run import (
    DEFAULT_GRACE,
    EXIT_INTERRUPTED,
    EXIT_PIPE,
    EXIT_USAGE,
    Settings,
    UsageError,
    comment_file,
    dry_run,
    print_lines,
    summary_lines,
)
from ._source import LeadSource

__all__ = ["PROG", "SITE_ID_ENV", "TOKEN_ENV", "UsageError", "build_parser", "main"]

TOKEN_ENV: Final = "CALLTOUCH_ACCESS_TOKEN"
SITE_ID_ENV: Final = "CALLTOUCH_SITE_ID"
PROG: Final = "calltouch-async"

_EPILOG: Final = """\
exit codes (comment):
  0    every lead was commented or not_commented
  1    an unexpected error stopped the run
  2    usage error (arguments, missing token/site id, unreadable FILE, a CSV header
       naming no lead column, a bad --base-url or a plain http:// one off this machine
       without --allow-insecure-http)
  3    Calltouch refused the credentials (leads not applied: written failed)
  4    some leads invalid or rejected (fix those input lines)
  5    some leads failed (not applied; safe to send again: --resume does)
  6    some leads unknown (sent, unanswered: may or may not be applied)
  7    Calltouch answered a redirect (check --base-url; redirects are never followed):
       the redirected request's leads written unknown
  130  interrupted (SIGINT, Ctrl-C); 143 terminated (SIGTERM); 141 the results pipe closed
the worst lead status wins: unknown > failed > invalid/rejected; with --resume, leads
settled by earlier runs count too.

environment:
  CALLTOUCH_ACCESS_TOKEN  the API key (required by comment; never accepted as a flag)
  CALLTOUCH_SITE_ID       the site id, unless --site-id is given
"""


# --------------------------------------------------------------------------- checks


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _delimiter(text: str) -> str:
    value = "\t" if text in ("tab", "\\t") else text
    if len(value) != 1 or value in "\"\r\n":
        raise argparse.ArgumentTypeError("must be one character (not a quote or newline), or tab")
    return value


def _encoding(text: str) -> str:
    if not ascii_compatible(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an encoding that keeps ASCII as is (e.g. utf-8-sig, cp1251)"
        )
    return text


def check_base_url(text: str, *, allow_insecure_http: bool = False) -> str:
    """``text`` if it is an http(s) URL with a host; plain http only for loopback (the token
    would travel in clear) unless ``--allow-insecure-http`` was given."""
    try:
        url = URL(text)
    except (ValueError, TypeError):
        url = URL()
    if url.scheme not in ("http", "https") or not url.host:
        raise UsageError(f"--base-url must be an http(s) URL such as {DEFAULT_BASE_URL}")
    if url.scheme == "http" and not (allow_insecure_http or is_loopback(url.host)):
        raise UsageError(
            "--base-url: use https (plain http would send the access token unencrypted; it is "
            "allowed for loopback only, or with --allow-insecure-http)"
        )
    return text


def _comment_settings(args: argparse.Namespace) -> Settings:
    insecure = args.allow_insecure_http
    base_url = check_base_url(args.base_url, allow_insecure_http=insecure)
    # Held as a Secret: the UsageErrors below leave this frame, whose locals error
    # reporters record.
    token = Secret(os.environ.get(TOKEN_ENV, "").strip())
    if not token.value:
        raise UsageError(f"set {TOKEN_ENV} to the API key (it is never taken as a flag)")
    site_id = (args.site_id or os.environ.get(SITE_ID_ENV, "")).strip()
    if not site_id:
        raise UsageError(f"give --site-id or set {SITE_ID_ENV}")
    # Whatever else the client would refuse with ValueError is a usage error too, found
    # before any file is opened; its messages never hold the token.
    problem = argument_problem(site_id, token, base_url, insecure)
    if problem is not None:
        raise UsageError(str(problem))
    if not (site_id.isascii() and site_id.isdigit()):
        # Calltouch's site ids are numbers: any other is a typo, not worth a run of failures.
        raise UsageError(f"--site-id must be the site's number, got {site_id!r}")
    return Settings(site_id, token.value, base_url, args.max_in_flight, args.grace, insecure)


def _is_csv(args: argparse.Namespace) -> bool:
    """CSV by ``--format``, else by FILE's extension (stdin: JSON lines)."""
    csv_input = args.format == "csv" or (args.format is None and args.file.lower().endswith(".csv"))
    if not csv_input and args.csv_delimiter is not None:
        raise UsageError("--csv-delimiter applies to CSV input only (--format csv)")
    return csv_input


def _check_combinations(args: argparse.Namespace) -> None:
    if args.resume and args.out == "-":
        raise UsageError("--resume reads and appends to --out FILE: give one")
    if args.resend_unknown and not args.resume:
        raise UsageError("--resend-unknown applies with --resume only")


# --------------------------------------------------------------------------- files


def _open_input(name: str, stack: ExitStack) -> int:
    """The file descriptor to read leads from."""
    if name == "-":
        if sys.stdin.isatty():
            print("reading leads from the terminal; end with Ctrl-D", file=sys.stderr)
        return sys.stdin.fileno()
    try:
        handle = stack.enter_context(open(name, "rb"))  # noqa: SIM115 - closed by the stack
    except OSError as exc:
        raise UsageError(f"cannot open {name}: {exc.strerror}") from None
    return handle.fileno()


def _open_output(name: str, stack: ExitStack, *, append: bool = False) -> int:
    """A raw descriptor: result lines go out whole, one ``write`` each, unbuffered."""
    if name == "-":
        return sys.stdout.fileno()
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    try:
        fd = os.open(name, flags, 0o666)
    except OSError as exc:
        raise UsageError(f"cannot write {name}: {exc.strerror}") from None
    stack.callback(os.close, fd)
    return fd


def _file_size(fd: int) -> int | None:
    info = os.fstat(fd)
    return info.st_size if stat.S_ISREG(info.st_mode) else None


# --------------------------------------------------------------------------- comment


def _run_comment(args: argparse.Namespace) -> int:
    csv_input = _is_csv(args)
    _check_combinations(args)
    settings = None if args.dry_run else _comment_settings(args)
    if args.dry_run:
        check_base_url(args.base_url, allow_insecure_http=args.allow_insecure_http)
    try:
        previous = load_previous(args.out) if args.resume else None
    except (OSError, ValueError) as exc:
        raise UsageError(f"--resume: {exc}") from None
    with ExitStack() as stack:
        fd = _open_input(args.file, stack)
        out = _open_output(args.out, stack, append=args.resume)
        failed_fd = _open_output(args.failed_out, stack) if args.failed_out else None
        mode = "off" if args.no_progress else "bar" if sys.stderr.isatty() else "plain"
        progress = Progress(sys.stderr, mode=mode, total_bytes=_file_size(fd))
        fmt: InputFormat[Any] = (
            CsvRows(args.csv_delimiter, warn=progress.say, encoding=args.encoding)
            if csv_input else JsonLines(args.encoding)
        )
        reader = BatchReader(fd, fmt.parse)
        progress.bytes_read = lambda: reader.bytes_read
        failed = None if failed_fd is None else FailedOut(failed_fd, lambda: fmt.header)
        sink = ResultSink(out, progress.update, failed)
        source = LeadSource(
            fmt, reader, sink, previous=previous, resend_unknown=args.resend_unknown,
            say=progress.say,
        )
        with client_logs_to(progress):
            return asyncio.run(_comment(source, sink, settings, progress))


async def _comment(
    source: LeadSource[Any], sink: ResultSink, settings: Settings | None, progress: Progress
) -> int:
    try:
        await source.prime()
    except InputError as exc:
        raise UsageError(str(exc)) from None
    if settings is None:
        report = await dry_run(source, sink)
        _finish(sink)
        print_lines(report.lines())
        return report.exit_code()
    outcome = await comment_file(source, sink, settings, progress)
    if outcome.stopped == "pipe":
        _quiet_stdout()
        return EXIT_PIPE
    _finish(sink)
    print_lines(summary_lines(outcome))
    return outcome.exit_code()


def _finish(sink: ResultSink) -> None:
    if sink.failed_out is not None:
        sink.failed_out.finish()


def _quiet_stdout() -> None:
    # Whoever read stdout is gone: point it at /dev/null so Python's own flush at exit
    # does not print a BrokenPipeError.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


# --------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """argparse, except that its errors never echo argument values.

    ``unrecognized arguments: --token SECRET`` would print a key someone tried to pass as
    a flag; only the option names are shown.
    """

    def error(self, message: str) -> NoReturn:
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            words = message[len(prefix):].split()
            names = [word.split("=", 1)[0] for word in words if word.startswith("-")]
            message = prefix + (" ".join(names) or "(values not shown)")
            if any("token" in name.lower() for name in names):
                message += f"; the access token is read from ${TOKEN_ENV} only"
        super().error(message)


_Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Comment Calltouch leads in bulk, within the API's 5 requests/second.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = cast(
        _Commands, parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    )
    _add_comment_parser(commands)
    _add_demo_parser(commands)
    # Parsed by the emulator's own parser (main() hands the arguments over before this one
    # runs); listed here for --help only.
    commands.add_parser(
        "emulator", add_help=False, help="run the local Calltouch emulator until Ctrl-C "
        "(see: calltouch-async emulator --help)",
    )
    return parser


def _add_comment_parser(commands: _Commands) -> None:
    p = commands.add_parser(
        "comment",
        help="comment the leads of a JSON-lines or CSV file",
        description="Comment every lead of FILE (JSON lines in Calltouch's wire shape: "
        '{"matching": [...], "addComment": "..."}, or CSV with the columns below), writing '
        "one result line per lead.",
        epilog=CSV_HELP + _EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", help="file of leads, or - for stdin")
    p.add_argument(
        "--format", choices=("jsonl", "csv"),
        help="input format (default: csv for a FILE ending in .csv, else jsonl)",
    )
    p.add_argument(
        "--csv-delimiter", type=_delimiter, metavar="CHAR",
        help="CSV cell separator (default: , ; or tab, whichever the header line uses)",
    )
    p.add_argument(
        "--encoding", type=_encoding, default="utf-8-sig",
        help="input encoding (%(default)s; cp1251 for a Russian Excel CSV)",
    )
    p.add_argument("--site-id", help=f"Calltouch site id (default: ${SITE_ID_ENV})")
    p.add_argument("--base-url", default=DEFAULT_BASE_URL, help="API base URL (%(default)s)")
    p.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="accept a plain http:// --base-url off this machine (the access token then "
        "travels unencrypted)",
    )
    p.add_argument(
        "--out", default="-", metavar="PATH", help="results as JSON lines (default: - = stdout)"
    )
    p.add_argument(
        "--resume", action="store_true",
        help="read the results already in --out and append: send only leads without a final "
        "result (failed or none); unknown ones are held back",
    )
    p.add_argument(
        "--resend-unknown", action="store_true",
        help="with --resume, send unknown leads again (they may then be applied twice)",
    )
    p.add_argument(
        "--dry-run", action="store_true",
        help="validate only: no token needed, nothing sent; invalid results go to --out",
    )
    p.add_argument(
        "--failed-out", metavar="PATH",
        help="write leads that ended failed, unknown, rejected or invalid here, in the input's "
        "format (JSON lines as read, or CSV under the same header), to fix and run again",
    )
    p.add_argument(
        "--max-in-flight", type=_positive_int, default=DEFAULT_MAX_IN_FLIGHT, metavar="N",
        help="requests running at once (%(default)s)",
    )
    p.add_argument(
        "--grace", type=_non_negative_float, default=DEFAULT_GRACE, metavar="S",
        help="on SIGINT/SIGTERM, seconds requests in flight may take to answer (%(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress display on stderr")
    p.set_defaults(run=_run_comment)


def _add_demo_parser(commands: _Commands) -> None:
    p = commands.add_parser(
        "demo",
        help="comment synthetic leads against the built-in emulator",
        description="Start the emulator in its own process (strict 5 requests/second "
        "window), write a synthetic lead file with a few deliberately bad lines, run the real "
        "comment path on it, and check the emulator's ledger.",
    )
    p.add_argument("--leads", type=_positive_int, default=10_000, help="(%(default)s)")
    p.add_argument("--seed", type=int, default=0, help="(%(default)s)")
    p.add_argument("--latency-min", type=_non_negative_float, default=0.05, metavar="S",
                   help="emulator answer latency, lower bound in seconds (%(default)s)")
    p.add_argument("--latency-max", type=_non_negative_float, default=0.3, metavar="S",
                   help="emulator answer latency, upper bound in seconds (%(default)s)")
    p.add_argument("--jitter", type=_non_negative_float, default=0.03, metavar="S",
                   help="network spread before requests reach the emulator (%(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress display on stderr")
    p.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo  # the demo's code loads only for the demo

    return run_demo(args)


def _run_emulator(argv: Sequence[str]) -> int:
    from ..testing.__main__ import main as emulator_main

    try:
        return emulator_main(argv, prog=f"{PROG} emulator")
    except SystemExit as exc:  # its --help, or its parser's usage error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(argv)
    except BrokenPipeError:  # e.g. ``--help | head -1``
        _quiet_stdout()
        return EXIT_PIPE


def _main(argv: list[str]) -> int:
    if argv[:1] == ["emulator"]:
        return _run_emulator(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or argparse's own usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return int(args.run(args))
    except UsageError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # a Ctrl-C outside the run's own handling
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
