"""The Ray backend (``--backend ray``): one compiled program = one Ray task on a Ray cluster.

The driver (this process) plans the run as for a local one, puts the dataset into Ray's object
store once (``ray.put``: tasks read it from there, nothing is shipped per task or re-generated on
the workers) and submits one task per program. Each task declares as many CPUs as the driver's
XLA threads (``--threads``, default 1; and one GPU where the cluster has GPUs, with JAX's
preallocation off) and runs XLA on that many threads (``dnnbench.train.threads``), so that tasks
sharing a node do not oversubscribe it -- Ray's CPUs are only logical -- and every program's
numbers are those a local run gives.
Outcomes come back as programs finish (``ray.wait``); the runner writes rows in group order.
Progress: each task tells an ``Events`` actor when it starts (and on which node) and each epoch's
metrics; the driver drains it between waits (programs queued / running / finished, nodes in use).

Failures: a task whose worker process or node died is run again by Ray (``max_retries``); one
that still fails, and an exception raised inside a program (a bad user optimizer), become
``error`` rows with the reason -- never retried (``retry_exceptions=False``). ``stop`` (Ctrl-C)
keeps what finished and force-cancels every queued and running task: a cooperative cancel only
lands after the current XLA call.

Workers need dnnbench (and the optimizers' packages) installed. An optimizer file
(``path.py:factory``) travels with the run: its text goes into the object store with its SHA-256;
a worker uses the file at the same absolute path when it holds the same bytes, else a copy of
the shipped text under its temporary directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import pickle
import re
import signal
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from dnnbench.config import TrialSpec
from dnnbench.errors import STOPS, DnnbenchError, InputError, Terminated
from dnnbench.run.backends.base import (
    RAY_MISSING,
    EpochCallback,
    GroupCallback,
    Outcome,
    Settings,
    Status,
    StatusCallback,
    program_outcome,
    ray_host_port,
)
from dnnbench.train import threads as xla_threads

_WAIT_S = 0.5  # ray.wait's timeout: Ctrl-C lands, and progress is refreshed, between waits


def import_ray() -> Any:
    """The ``ray`` module, or the one-line ``InputError`` that says how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError(RAY_MISSING) from None
    return ray


class Events:
    """A Ray actor that collects what tasks tell about themselves (started on node N, finished
    epoch E, ended) until the driver drains it: progress for programs that train on other machines.

    Tasks call ``tell`` without waiting for it (``.remote()`` alone): a task blocked in
    ``ray.get`` lends its CPU to the next queued task, which would oversubscribe the node. That is
    also why this is not ``ray.util.queue.Queue``, whose ``put`` waits. It declares no CPU."""

    def __init__(self) -> None:
        self.items: list[tuple] = []

    def tell(self, item: tuple) -> None:
        self.items.append(item)

    def drain(self) -> list[tuple]:
        items, self.items = self.items, []
        return items


class RayExecution:
    """``backends.Execution`` on Ray tasks."""

    def __init__(
        self,
        settings: Settings,
        programs: Sequence[Sequence[TrialSpec]],
        data: Any,
        on_group: GroupCallback | None,
        on_epoch: EpochCallback | None,
        on_status: StatusCallback | None,
    ) -> None:
        self.ray = ray = import_ray()
        self.programs = [list(specs) for specs in programs]
        self.on_group, self.on_epoch, self.on_status = on_group, on_epoch, on_status
        # Ray prints what it hears of dead workers ("(raylet) A worker died ...") to sys.stdout,
        # which is the results stream with --json: while Ray runs, sys.stdout is stderr (the
        # results writer holds the real stdout since before the run).
        self.stdout: Any = contextlib.redirect_stdout(sys.stderr)
        self.stdout.__enter__()
        self.started_here = False
        self.nodes: dict[int, str] = {}  # program -> the Ray node id that trained it
        self.running: dict[int, str] = {}  # program -> the node training it now (as its task told)
        self.shown: set[int] = set()  # programs given to on_group
        self.done: set[int] = set()
        self.status: Status | None = None
        self.events: Any = None
        try:
            self.started_here = connect(settings)
            self.alive_nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
            if on_group or on_epoch or on_status:  # progress wanted: tasks tell what they do
                self.events = ray.remote(num_cpus=0, max_restarts=0)(Events).remote()
            data_ref = ray.put(data)
            files_ref = ray.put(optimizer_files(spec for specs in self.programs for spec in specs))
            gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0  # one program per GPU
            cpus = xla_threads.current() or 1  # the driver's: a program's numbers are as they would be here
            task = ray.remote(train_program).options(
                num_cpus=cpus,
                num_gpus=gpus,
                max_retries=settings.ray_max_retries,
                retry_exceptions=False,
                runtime_env={"env_vars": worker_env(cpus, gpus)},
            )
            self.pending: dict[Any, int] = {
                task.remote(g, specs, data_ref, files_ref, self.events): g for g, specs in enumerate(self.programs)
            }
            self.submitted = dict(self.pending)
            self._tell_status()
        except BaseException:
            self.close()
            raise

    def finished(self) -> Iterator[tuple[int, Outcome]]:
        while self.pending:
            ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=_WAIT_S)
            self._drain()
            for ref in ready:
                g = self.pending.pop(ref)
                outcome = self._outcome(ref)
                self._report(g, outcome)
                yield g, outcome

    def _outcome(self, ref: Any) -> Outcome:
        ray = self.ray
        try:
            node, outcome = ray.get(ref)
            self.nodes[self.submitted[ref]] = node
            return outcome
        except ray.exceptions.RayTaskError as exc:  # raised by the task itself: bad input stops the run
            if isinstance(exc.cause, DnnbenchError):
                raise exc.cause from None
            return _with_report(RuntimeError(str(exc).splitlines()[0]), str(exc))
        except ray.exceptions.RayError as exc:  # its worker or node died, retries exhausted; cancelled
            return _with_report(exc, str(exc))

    def _drain(self) -> None:
        """Progress from what the tasks told since the last wait: programs that started (again,
        after a retry: its epochs count from 0), and epochs that ended."""
        if self.events is None:
            return
        try:
            items = self.ray.get(self.events.drain.remote(), timeout=10)
        except self.ray.exceptions.RayError:  # progress is not worth failing a run for
            self.events = None
            return
        for kind, g, *rest in items:
            if g in self.done:  # a late word from a program already finished
                continue
            if kind == "start":
                self.running[g] = rest[0]
                self._show(g)
            elif kind == "epoch" and self.on_epoch is not None and g in self.shown:
                self.on_epoch(g, rest[0], rest[1])
            elif kind == "end":  # before its result is seen: its CPU may already train the next one
                self.running.pop(g, None)
        self._tell_status()

    def _show(self, g: int) -> None:
        if g not in self.shown and self.on_group is not None:
            self.shown.add(g)
            self.on_group(g, len(self.programs), self.programs[g])

    def _report(self, g: int, outcome: Outcome) -> None:
        """Progress for a program that ended: its bar (shown now if its start was not heard) at
        its last epoch."""
        self.done.add(g)
        self.running.pop(g, None)
        self._show(g)
        history = getattr(outcome, "history", None)
        if self.on_epoch is not None and history:
            epochs = len(next(iter(history.values())))
            self.on_epoch(g, epochs - 1, {name: values[-1] for name, values in history.items()})
        self._tell_status()

    def _tell_status(self) -> None:
        if self.on_status is None:
            return
        running = len(self.running)
        status = Status(
            finished=len(self.done),
            running=running,
            queued=len(self.programs) - len(self.done) - running,
            nodes_in_use=len(set(self.running.values())),
            nodes=self.alive_nodes,
        )
        if status != self.status:
            self.status = status
            self.on_status(status)

    def stop(self) -> dict[int, Outcome]:
        ray, kept = self.ray, {}
        if self.pending:
            ready, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0)
            for ref in ready:  # finished before the stop: kept
                g = self.pending.pop(ref)
                try:
                    outcome = self._outcome(ref)
                except DnnbenchError:  # bad input, raised by a task: the error being handled says enough
                    continue
                if not isinstance(outcome, ray.exceptions.RayError):
                    kept[g] = outcome
            for ref in self.pending:
                ray.cancel(ref, force=True)
            self.pending.clear()
        return kept

    def close(self) -> None:
        for ref in getattr(self, "pending", {}):
            self.ray.cancel(ref, force=True)
        if self.events is not None:
            self.ray.kill(self.events)
            self.events = None
        if self.started_here:
            self.ray.shutdown()  # a cluster started for the run stops; one we joined stays
            self.started_here = False
        if self.stdout is not None:
            self.stdout.__exit__(None, None, None)
            self.stdout = None


def start(
    settings: Settings,
    programs: Sequence[Sequence[TrialSpec]],
    data: Any,
    *,
    on_group: GroupCallback | None = None,
    on_epoch: EpochCallback | None = None,
    on_status: StatusCallback | None = None,
) -> RayExecution:
    return RayExecution(settings, programs, data, on_group, on_epoch, on_status)


@contextlib.contextmanager
def session(settings: Settings) -> Iterator[None]:
    """Join (or start) the run's Ray cluster for a whole command, before anything is written: a
    cluster that cannot be reached or refuses this driver is one line, and no results file is
    left behind. Disconnects at the end when it connected."""
    ray = import_ray()
    started = connect(settings)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def connect(settings: Settings) -> bool:
    """Join ``--ray-address``, else ``$RAY_ADDRESS``, else a cluster started on this machine (``ray
    start``), else start a local one with this machine's cores. True when this call connected
    (and ``close`` must disconnect); False when Ray was already initialised (tests, the Python API):
    that connection is used, once a given address has passed its check.

    An address is checked first: one that is not an address, or where nothing answers, is an
    ``InputError`` within seconds (Ray itself retries for minutes). A cluster started with
    ``ray start`` may require token authentication, and Ray's driver sends its token to an address
    given explicitly only under ``RAY_AUTH_MODE=token``: where a token is at hand
    (``$RAY_AUTH_TOKEN``, ``$RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``), that mode is set, as
    ``ray start`` and ``ray.init("auto")`` do; without one, the error says where to put it.
    ``ray.init`` installs its own SIGTERM handler (``sys.exit(15)``); dnnbench's stop handlers are
    put back, so that a SIGTERM still ends the run with 143 and keeps what finished."""
    ray = import_ray()
    option, address = "--ray-address", settings.ray_address
    if not address:
        option, address = "$RAY_ADDRESS", os.environ.get("RAY_ADDRESS")
    # checked even where Ray is initialised already: a wrong address is the user's error either way
    address = _checked_address(option, address) if address else None
    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    with warnings.catch_warnings(), _own_stop_handlers():
        # Ray starts its processes by fork + exec: JAX's fork warning does not apply
        warnings.filterwarnings("ignore", r"os\.fork\(\) was called", RuntimeWarning)
        return _init(ray, address, quiet)


def _init(ray: Any, address: str | None, quiet: dict[str, Any]) -> bool:
    if address:
        token = _use_token_auth()
        if not address.startswith("ray://") and address not in ("auto", "local"):
            _probe_gcs(address, token)
        try:
            ray.init(address=address, **quiet)
        except Exception as exc:  # noqa: BLE001 -- Ray's errors: ConnectionError, AuthenticationError, ...
            raise _cannot_join(address, exc, token) from None
        return True
    try:
        ray.init(address="auto", **quiet)
    except ConnectionError:  # no cluster on this machine: one for this run
        ray.init(address="local", num_cpus=xla_threads.cores(), **quiet)  # "local": never a stale `ray start` address
    return True


_PROBE_S = 5.0  # how long an address may take to accept a connection


def _checked_address(option: str, address: str) -> str:
    """``address`` (``HOST:PORT``, ``ray://HOST:PORT``, ``auto``, ``local``) once something answers
    there; ``InputError`` naming ``option`` otherwise."""
    import socket

    text = address.strip()
    where = ray_host_port(option, text)
    if where is None:
        return text
    host, port = where
    try:
        with socket.create_connection((host, port), timeout=_PROBE_S):
            pass
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc)).lower()
        raise InputError(
            f"cannot reach the Ray cluster at {text} ({option}): {reason}; is `ray start --head` running there?"
        ) from None
    return text


def _use_token_auth() -> bool:
    """Set ``RAY_AUTH_MODE=token`` for this process where it is unset and a token is at hand (what
    ``ray start`` and ``ray.init("auto")`` do; ``ray.init(address=...)`` does not). Whether a token is set."""
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is not None:
        return mode.lower() == "token"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    found = bool(os.environ.get("RAY_AUTH_TOKEN")) or any(
        Path(p).expanduser().is_file() for p in ([path] if path else []) + ["~/.ray/auth_token"]
    )
    if not found:
        return False
    os.environ["RAY_AUTH_MODE"] = "token"
    with contextlib.suppress(Exception):  # Ray caches its config: read the mode again (ray start does)
        from ray._raylet import Config  # type: ignore[attr-defined]  # a Cython module without stubs

        Config.initialize("")
    return True


_GCS_S = 10.0  # how long a cluster's GCS may take to answer a first request


def _probe_gcs(address: str, token: bool) -> None:
    """Ask the cluster's GCS (its head's address) who it is, as ``ray.init`` will, but for
    ``_GCS_S`` at most, and in a thread: Ray's own first request retries for 20-30 s inside C++,
    where no signal is handled, and says only "Failed to connect" when the real answer was a
    missing or wrong token. ``InputError`` when it refuses or does not answer."""
    try:
        from ray._private.services import canonicalize_bootstrap_address
        from ray._raylet import GcsClient  # type: ignore[attr-defined]  # a Cython module without stubs
    except ImportError:  # another Ray: ray.init says what it says
        return
    answer: dict[str, Any] = {}

    def ask() -> None:
        try:
            GcsClient(address=canonicalize_bootstrap_address(address)).cluster_id  # noqa: B018 -- a request
            answer["ok"] = True
        except Exception as exc:  # noqa: BLE001 -- said below
            answer["error"] = exc

    asking = threading.Thread(target=ask, name="dnnbench-ray-probe", daemon=True)
    asking.start()
    asking.join(_GCS_S)  # the main thread waits in Python: SIGTERM and Ctrl-C land at once
    if asking.is_alive():
        raise InputError(
            f"the Ray cluster at {address} did not answer within {_GCS_S:g} s (is it the HOST:PORT "
            "`ray start --head` printed, and is its head running?)"
        )
    if "error" in answer:
        raise _cannot_join(address, answer["error"], token)


def _cannot_join(address: str, exc: Exception, token: bool) -> InputError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if re.search(r"auth|token|unauthenticated", f"{type(exc).__name__} {exc}", re.IGNORECASE):
        if token:
            return InputError(
                f"the Ray cluster at {address} refused this machine's token ($RAY_AUTH_TOKEN or "
                "~/.ray/auth_token): use the head node's (`ray get-auth-token` there)"
            )
        return InputError(
            f"the Ray cluster at {address} requires token authentication and no token was found: copy the "
            "head node's (`ray get-auth-token` there) to ~/.ray/auth_token, or set $RAY_AUTH_TOKEN"
        )
    return InputError(f"cannot join the Ray cluster at {address}: {type(exc).__name__}: {text}")


@contextlib.contextmanager
def _own_stop_handlers() -> Iterator[None]:
    """Keep dnnbench's SIGINT / SIGTERM / SIGHUP handlers across ``ray.init``, which installs a
    SIGTERM handler of its own (``sys.exit(15)``); a SIGTERM during ``ray.init`` is a stop."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kept = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    except SystemExit as exc:
        if exc.code != signal.SIGTERM:
            raise
        STOPS.append(signal.SIGTERM)
        raise Terminated(signal.SIGTERM) from None
    finally:
        for sig, handler in kept.items():
            if handler is not None:
                signal.signal(sig, handler)


def worker_env(cpus: int, gpus: int) -> dict[str, str]:
    """The task's environment, set before dnnbench starts JAX in the worker: XLA's CPU threads =
    the task's CPUs (``dnnbench.train.threads``: the driver's number, so the numbers are the driver's);
    no GPU memory preallocation (programs may share a GPU's memory with others)."""
    env = {xla_threads.ENV: str(cpus)}
    if gpus:
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    if "DNNBENCH_COMPILE_CACHE" in os.environ:
        env["DNNBENCH_COMPILE_CACHE"] = os.environ["DNNBENCH_COMPILE_CACHE"]
    return env


def optimizer_files(specs: Any) -> dict[str, tuple[str, str, str]]:
    """Per optimizer-file spec of the run: (its file's absolute path, SHA-256, text)."""
    from dnnbench.optim import user

    out = {}
    for spec in {s.optimizer for s in specs}:
        if user.is_file_spec(spec):
            path = Path(spec.rpartition(":")[0]).expanduser().resolve()
            text = path.read_bytes()
            out[spec] = (str(path), hashlib.sha256(text).hexdigest(), text.decode("utf-8"))
    return out


def _local_spec(spec: str, files: dict[str, tuple[str, str, str]]) -> str:
    """``spec`` as this worker loads it: the same file where it holds the same bytes, else the
    shipped text written to a file named by its SHA-256."""
    if spec not in files:
        return spec
    path, sha, text = files[spec]
    factory = spec.rpartition(":")[2]
    here = Path(path)
    if not (here.is_file() and hashlib.sha256(here.read_bytes()).hexdigest() == sha):
        here = Path(tempfile.gettempdir()) / "dnnbench-optimizers" / sha / Path(path).name
        if not here.is_file():
            here.parent.mkdir(parents=True, exist_ok=True)
            part = here.with_suffix(f".{os.getpid()}.part")
            part.write_text(text, encoding="utf-8")
            part.replace(here)
    return f"{here}:{factory}"


def train_program(
    program: int, specs: list[TrialSpec], data: Any, files: dict[str, tuple[str, str, str]], events: Any
) -> tuple[str, Outcome]:
    """The Ray task: train one program; the node's id and the program's output (parameters as
    NumPy arrays) or the exception that failed it (with ``.report``). A ``DnnbenchError`` (bad
    input) is raised: it stops the run. ``events`` (an ``Events`` actor, or None) hears that it
    started, where, and each epoch's metrics."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    _tell(events, ("start", program, node))
    try:
        return node, _train(
            specs, data, files, lambda epoch, metrics: _tell(events, ("epoch", program, epoch, metrics))
        )
    finally:
        _tell(events, ("end", program))


def _tell(events: Any, item: tuple) -> None:
    if events is not None:
        try:
            events.tell.remote(item)  # not waited for: see Events
        except Exception:  # noqa: BLE001 -- progress must never fail a program
            pass


def _train(specs: list[TrialSpec], data: Any, files: dict[str, tuple[str, str, str]], on_epoch: Any = None) -> Outcome:
    import jax

    local = [dataclasses.replace(spec, optimizer=_local_spec(spec.optimizer, files)) for spec in specs]
    output = program_outcome(local, data, on_epoch)
    if isinstance(output, Exception):
        return _portable(output)
    return dataclasses.replace(output, specs=tuple(specs), params=jax.device_get(output.params))


def _with_report(exc: BaseException, report: str) -> Any:
    exc.report = report  # type: ignore[attr-defined]
    return exc


def _portable(exc: Exception) -> Exception:
    """``exc`` if the driver can unpickle it, else a ``RuntimeError`` with its type and message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 -- a user's exception class may not travel
        return _with_report(RuntimeError(f"{type(exc).__name__}: {exc}"), getattr(exc, "report", ""))
