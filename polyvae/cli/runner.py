"""How a ``polyvae`` command runs: with its logging and warnings, and in a forked child
that turns a crash of compiled code or a signal into an error line. JAX's compiled code
is kept on disk between runs as for every caller of the package
(:mod:`polyvae._compile_cache`)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import warnings

from polyvae._compile_cache import COMPILE_CACHE_ENV
from polyvae.cli.messages import _error, cli_message
from polyvae.training.loop import repeated_signal

__all__ = ["COMPILE_CACHE_ENV"]

_CRASH_SIGNALS = ("SIGFPE", "SIGSEGV", "SIGBUS", "SIGILL", "SIGABRT")


def _execute(command, args) -> int:
    """Run ``command(args)`` with the command's logging and warnings; restore both after."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("polyvae: %(message)s"))
    log, engine_log = logging.getLogger("polyvae"), logging.getLogger("MDAnalysis")
    levels = (log.level, engine_log.level)
    log.addHandler(handler)
    log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    engine_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # the engines' own notices (file-format hints, deprecations) are not for this
            # command's user; MDAnalysis installs its own warning filter on import, so
            # filter at display time
            shown = warnings.showwarning

            def _show(message, category, filename, *rest):
                if not any(
                    f"{os.sep}{m}{os.sep}" in str(filename) for m in ("MDAnalysis", "mdtraj")
                ):
                    shown(message, category, filename, *rest)

            warnings.showwarning = _show
            import matplotlib  # heavy: loaded when a command runs, not for --help

            matplotlib.use("Agg")
            return command(args)
    except KeyboardInterrupt as exc:  # a training run says where its state went
        print(f"polyvae: {cli_message(str(exc)) or 'interrupted'}", file=sys.stderr)
        return 130
    except Exception as exc:  # every error: one line, exit code 2
        return _error(str(exc) or type(exc).__name__)
    finally:
        log.removeHandler(handler)
        log.setLevel(levels[0])
        engine_log.setLevel(levels[1])


def _interrupt_once(signum, frame):
    """The child's SIGINT handler: KeyboardInterrupt, once for signals that arrive within
    :data:`polyvae.training.trainer.REPEAT_SIGNAL_S` of each other."""
    if not repeated_signal():
        raise KeyboardInterrupt


def _execute_in_child(command, args) -> int:
    """Run :func:`_execute` in a forked child, so that a crash in compiled reader code (a
    corrupt trajectory can make a C decoder divide by zero) is reported, not fatal."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's exit status is what is tested
        code = 2
        try:
            signal.signal(signal.SIGINT, _interrupt_once)
            code = _execute(command, args)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def forward(signum, _frame):  # kill PID, a scheduler's SIGTERM/SIGHUP stop the work too
        try:
            os.kill(pid, signum)
        except ProcessLookupError:  # the child has just ended
            pass

    # Ctrl-C reaches the child twice (the process group's signal and this one's): it takes
    # a repeat within REPEAT_SIGNAL_S as the same request
    handlers = {sig: forward for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    previous = {sig: signal.signal(sig, h) for sig, h in handlers.items()}
    try:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:  # pragma: no cover - retried by Python since 3.5
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not os.WIFSIGNALED(status):
        return os.WEXITSTATUS(status)
    name = signal.Signals(os.WTERMSIG(status)).name
    inputs = [*(getattr(args, "data", None) or []), getattr(args, "model", None)]
    named = ", ".join(str(p) for p in inputs if p)
    if name in _CRASH_SIGNALS:
        return _error(
            f"the command crashed with {name} in compiled code while working on {named or 'its'} "
            "input; a trajectory file is probably corrupt (e.g. a damaged XTC frame): check it "
            "(e.g. gmx check -f FILE) or leave it out"
        )
    why = " (out of memory?)" if name == "SIGKILL" else ""
    return _error(f"the command was stopped by {name}{why}")
