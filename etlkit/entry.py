"""The `etlkit` command's entry point: it takes Ctrl-C before anything heavy is imported, so an
interrupt in the command's first instant (while numpy, typer and the CLI load) is the same
one line and status 130 as one later, not a KeyboardInterrupt traceback."""

import os
import signal
import sys

INTERRUPTED = 130  # 128 + SIGINT


def interrupted(_signum, _frame) -> None:
    sys.stderr.write("error: interrupted\n")
    sys.stderr.flush()
    os._exit(INTERRUPTED)


def main() -> None:
    signal.signal(signal.SIGINT, interrupted)
    from .cli import main as run

    run()
