"""The command line's entry point: the app that combines the command families, and ``main``.

The commands live in one module per family (``training``, ``results``); each parses options,
builds a config, calls the library and renders. JAX is imported lazily (inside commands), so
``dnnbench --help`` answers at once. Every ``DnnbenchError`` and every usage error becomes one
line on stderr and an exit code (``main``).
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
from typing import Annotated, Any

import typer

import dnnbench.cli.results as results
import dnnbench.cli.training as training
from dnnbench import errors
from dnnbench.errors import DnnbenchError, InputError, Interrupted, OutputError, Terminated

app = typer.Typer(
    name="dnnbench",
    help="Optimizer and regularization benchmarking of deep networks: one task, many optimizers, honest numbers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from dnnbench import __version__

        print(f"dnnbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print dnnbench's version and exit.", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    """Only the app-wide ``--version``; every command has its own options."""


# One module per command family, each defining its commands on its own Typer app; here they are
# combined, in the order of ``dnnbench --help``.
app.add_typer(training.app)
app.add_typer(results.app)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, turn every expected failure into one line and a code.

    Exit codes: 0 ok; 1 trials ended in error or a check failed; 2 bad input or a file / stdout
    that cannot be written; 130 Ctrl-C; 143 SIGTERM and 129 SIGHUP (handled like Ctrl-C: finished
    trials kept, the lock released).
    """
    if sys.stdout is None:  # started with stdout closed (>&-): keep fd 1 from being reused by a file
        _stdout_to_devnull()
        print(
            "dnnbench: error: stdout is closed; redirect it (> file, > /dev/null) instead of closing it",
            file=sys.stderr,
        )
        return 2
    previous = _catch_stops()
    try:
        return _main(argv)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run() -> int:
    """The ``dnnbench`` program: ``main``, then an exit that skips the garbage collector's last
    passes over the process's objects (JAX's traced and compiled programs): 0.3-0.4 s at the end of
    every command that trained, measured on the 2-core machine; 0.05 s frozen. Atexit handlers and
    the flushing of files still run. Not in ``main``, which tests and scripts call in their own
    processes, where the collector must keep working.

    It also lets training commands spawn their worker processes before JAX is imported
    (``run.pool``), which in-process callers of ``main`` do not."""
    from dnnbench.run import pool

    pool.EARLY = True
    code = main()
    gc.disable()
    gc.freeze()
    return code


#: The signals that stop a run: Ctrl-C (exit 130), SIGTERM (143) and SIGHUP (129, a closed terminal).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _catch_stops() -> dict[int, Any]:
    """Each stop signal is recorded (``errors.STOPS``), then raises ``KeyboardInterrupt`` (Ctrl-C)
    or ``Terminated`` (SIGTERM, SIGHUP): one path for every stop, which releases the results
    file's lock. The record is what decides the exit code: Python drops an exception raised while
    a garbage-collection callback runs, so dnnbench checks it again (``errors.check_stop``)."""
    errors.STOPS.clear()
    if threading.current_thread() is not threading.main_thread():
        return {}

    def stop(signum: int, frame: object) -> None:
        errors.STOPS.append(signum)
        raise errors.stop_exception(signum)

    return {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}


def _stop_code(exc: BaseException | None = None) -> int:
    """One line for a stop outside training (training says what it kept itself) and its exit code."""
    signum = errors.stop_signal(exc) if exc is not None else errors.STOPS[0] if errors.STOPS else signal.SIGINT
    if signum == signal.SIGINT:
        print("dnnbench: interrupted", file=sys.stderr)
        return 130
    print(f"dnnbench: terminated ({signal.Signals(signum).name})", file=sys.stderr)
    return 128 + signum


def _stdout_to_devnull() -> None:
    """Point fd 1 at /dev/null, so output still buffered (or a later flush at exit) goes nowhere
    instead of failing again or landing in a file that took fd 1."""
    null = os.open(os.devnull, os.O_WRONLY)
    if null != 1:
        os.dup2(null, 1)
        os.close(null)


def _main(argv: list[str] | None) -> int:
    try:
        code = app(args=argv, prog_name="dnnbench", standalone_mode=False)
        sys.stdout.flush()  # a full disk behind stdout shows here, not as a traceback at exit
    except Interrupted as exc:  # Ctrl-C or SIGTERM while training: say what the results file holds
        print(f"dnnbench: {exc}", file=sys.stderr)
        return exc.exit_code
    except DnnbenchError as exc:
        print(f"dnnbench: error: {exc}", file=sys.stderr)
        return _stop_code() if errors.STOPS else exc.exit_code
    except SystemExit as exc:  # nothing of dnnbench's raises it inside the app: code it ran did (user code)
        if errors.STOPS:
            return _stop_code()
        print(f"dnnbench: error: code dnnbench ran called sys.exit({exc.code!r})", file=sys.stderr)
        return InputError.exit_code
    except typer.TyperException as exc:  # usage errors: unknown option, bad number, ...
        ctx = getattr(exc, "ctx", None)
        if argv is not None and not argv or (ctx is not None and type(exc).__name__ == "NoArgsIsHelpError"):
            print(ctx.get_help() if ctx is not None else str(exc))
            return 0
        print(f"dnnbench: error: {exc.format_message()}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except (typer.Abort, KeyboardInterrupt) as exc:
        return _stop_code(exc.__cause__ if isinstance(exc.__cause__, Terminated) else exc)
    except BrokenPipeError:  # `dnnbench export r.jsonl | head`: the reader had enough
        _stdout_to_devnull()
        return 0
    except OSError as exc:  # a write to stdout failed (files go through output_files: OutputError)
        _stdout_to_devnull()
        where = exc.filename or "stdout"
        print(f"dnnbench: error: {where}: cannot write ({exc.strerror or exc})", file=sys.stderr)
        return OutputError.exit_code
    if code == 130 or errors.STOPS:  # a stop outside training, or one whose raise Python dropped
        return _stop_code()
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(run())
