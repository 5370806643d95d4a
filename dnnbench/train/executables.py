"""Compiled executables kept on disk, so that a warm process neither traces nor lowers its programs.

JAX's persistent compilation cache skips XLA's compile only: finding its entry needs the lowered
program, so every run still traces and lowers each program in Python, under the GIL. This store
keeps the executables themselves, in JAX's own serialized form
(``jax.experimental.serialize_executable``), one file per executable, named by the SHA-256 of
everything that decides it (``identity``). An optimizer whose code cannot be hashed cheaply (one
from an importable module or a plugin) is not stored.

Nothing here fails a run: an entry that is missing, truncated, corrupt or does not load is built
again and overwritten; a folder that cannot be written leaves the store off; an executable that
cannot be serialized (constants captured in it, another backend) is simply not stored. Writes are
atomic (a temporary file in the same folder, then ``os.replace``), so processes that build the
same program at once each leave a whole entry, the last one standing.

An entry is trusted as JAX's cache is: loading one may run code (a pickle, an executable), so the
folder must be the user's own; entries are written readable by their owner only.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pickle
import platform
import re
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
from jax.experimental import serialize_executable
from jax.sharding import NamedSharding, SingleDeviceSharding

from dnnbench import optim
from dnnbench.train import threads

#: ``$DNNBENCH_EXECUTABLES=off`` turns the store off alone (JAX's compilation cache stays on).
ENV = "DNNBENCH_EXECUTABLES"
OFF = ("0", "off", "false", "no", "none")
FOLDER = "executables"  # inside the compile cache's folder: the same switch, the same place
#: The file format: this line, the body's SHA-256 in hex and a newline, then the body (a pickle).
#: Version 2: version 1 could hold executables stored from JAX's cache, without their kernels (``built``).
_MAGIC = b"dnnbench-executable 2\n"
_HEAD = len(_MAGIC) + 64 + 1
#: A repr holding an object's address (``<function f at 0x7f...>``) differs between processes: such
#: a key names no entry another process could find, and could name a wrong one after address reuse.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def folder(root: Path | None) -> Path | None:
    """The store's folder under the compile cache's ``root``; None where it is off or cannot be
    written (quietly, as ``engine._use_compile_cache``)."""
    if root is None or os.environ.get(ENV, "").strip().lower() in OFF:
        return None
    path = root / FOLDER
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return path if os.access(path, os.W_OK | os.X_OK) else None


def in_use(root: Path | None) -> bool:
    """Whether the store keeps executables under the compile cache's ``root`` (on a CPU, where it
    is not off and its folder can be written)."""
    return jax.default_backend() == "cpu" and folder(root) is not None


def entry(root: Path | None, key: tuple, optimizer: str | None = None) -> tuple[Path, str] | None:
    """The file that holds the executable of the engine's ``key`` and the identity it is stored
    under; None where the store is off or the executable cannot be named safely. ``optimizer``:
    the spec whose code the program runs (None: no optimizer in it).

    CPU only: an executable loaded onto devices in another order than it was compiled for aborts
    the process when it runs (seen on CPU with jaxlib 0.10.2, which ``_devices`` avoids), and
    other backends are untested.
    """
    where = folder(root) if jax.default_backend() == "cpu" else None
    if where is None:
        return None
    text = identity(key, optimizer)
    if text is None:
        return None
    return where / f"{hashlib.sha256(text.encode()).hexdigest()}.bin", text


def identity(key: tuple, optimizer: str | None = None) -> str | None:
    """Everything that decides the executable of ``key``, as text; None where something of it has
    no stable text (a user optimizer from a module or plugin, an object's address in the key).

    The key holds the program's static structure (frozen dataclasses, whose repr lists every
    field), the trial count, shapes, devices and compiler options; per-trial numbers (learning
    rates, seeds) are arguments of the program and so are not in it.
    """
    code = "" if optimizer is None else optimizer_code(optimizer)
    key_text = repr(key)
    if code is None or _ADDRESS.search(key_text):
        return None
    return "\n".join(
        (
            key_text,
            f"optimizer code: {code}",
            f"XLA_FLAGS: {os.environ.get('XLA_FLAGS', '')}",
            f"XLA threads: {threads.current()}",
            f"jax config: {_jax_config()}",
            *_process(),
        )
    )


def optimizer_code(spec: str) -> str | None:
    """What names the code of optimizer ``spec`` beyond the package versions: "" for dnnbench's and
    optax's (their versions and dnnbench's source are in the identity), a file's path and content
    digest, None for code that cannot be hashed cheaply (a module, a plugin; a wrapper's inner
    optimizer counts)."""
    origin = optim.resolve_spec(spec).origin
    while origin.get("kind") == "composite":
        origin = origin["inner"]
    kind = origin.get("kind")
    if kind in ("builtin", "optax"):
        return ""
    if kind == "file":
        # the path too: the file's classes (a state NamedTuple) pickle under a module named by it;
        # the modules beside it too: the file may import one (deeper imports are not followed)
        return f"{origin['path']} sha256={origin['sha256']} beside={_folder_digest(Path(origin['path']))}"
    return None


def _folder_digest(path: Path) -> str:
    """SHA-256 of the ``.py`` files in ``path``'s folder (names and contents), "" where unreadable."""
    digest = hashlib.sha256()
    try:
        for sibling in sorted(path.resolve().parent.glob("*.py")):
            digest.update(sibling.name.encode() + b"\0" + sibling.read_bytes() + b"\0")
    except OSError:
        return ""
    return digest.hexdigest()


def _jax_config() -> str:
    """JAX's settings that can change a program (x64, matmul precision, PRNG, ...); the cache
    settings cannot, and the compile cache's folder differs between set-ups."""
    return repr(sorted((k, repr(v)) for k, v in jax.config.values.items() if "cache" not in k))


@functools.cache
def _process() -> tuple[str, ...]:
    """The parts of the identity that are fixed for a process: versions, device, CPU, source."""
    import flax
    import jaxlib
    import optax

    device = jax.devices()[0]
    return (
        f"python {platform.python_version()} jax {jax.__version__} jaxlib {jaxlib.__version__} "
        f"optax {optax.__version__} flax {flax.__version__}",
        f"device: {device.platform} {device.device_kind} {device.client.platform_version} x{len(jax.devices())}",
        f"cpu: {platform.machine()} {_cpu_flags()}",
        f"dnnbench source: {source_digest()}",
    )


def _cpu_flags() -> str:
    """The CPU's instruction-set extensions (XLA compiles for the host's), where Linux lists them."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):  # x86, ARM
                return line.partition(":")[2].strip()
    return platform.processor()


@functools.cache
def source_digest() -> str:
    """SHA-256 of every ``.py`` file of the dnnbench package (names and contents): any change to
    dnnbench's code may change a program, so it names new entries."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


#: How many executables JAX has loaded from its persistent compilation cache in this thread.
_JAX_CACHE = threading.local()


def _count_jax_cache_hit(event: str, **_: Any) -> None:
    if event == "/jax/compilation_cache/cache_hits":  # recorded by the thread that compiles
        _JAX_CACHE.hits = getattr(_JAX_CACHE, "hits", 0) + 1


jax.monitoring.register_event_listener(_count_jax_cache_hit)


def built(build: Callable[[], Any]) -> tuple[Any, bool]:
    """``build()`` and whether JAX loaded its executable from JAX's persistent compilation cache.

    Such an executable must not be stored: with jaxlib 0.10.2 a CPU executable that was itself
    deserialized serializes without its compiled kernels, and the entry fails when it runs
    ("NOT_FOUND: Function wrapped_broadcast.1 not found"). dnnbench leaves JAX's cache off while
    the store is in use (``engine._use_compile_cache``), so this happens only where the user turned
    JAX's cache on (``JAX_COMPILATION_CACHE_DIR``).
    """
    before = getattr(_JAX_CACHE, "hits", 0)
    executable = build()
    return executable, getattr(_JAX_CACHE, "hits", 0) > before


def load(found: tuple[Path, str] | None) -> Any:
    """The executable stored at ``found`` (from ``entry``), or None where there is none that is
    whole, of this identity and loads."""
    if found is None:
        return None
    path, text = found
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    head, body = blob[:_HEAD], blob[_HEAD:]
    # checked before unpickling: a truncated or damaged file never reaches pickle or XLA
    if head != _MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n":
        return None
    try:
        stored, device_ids, payload, in_tree, out_tree = pickle.loads(body)
        if stored != text:  # another identity under this name: never run it
            return None
        by_id = {device.id: device for device in jax.devices()}
        devices = [by_id[i] for i in device_ids]
        return serialize_executable.deserialize_and_load(payload, in_tree, out_tree, execution_devices=devices)
    except Exception:  # anything that does not load is built again (and the entry overwritten)
        return None


def save(found: tuple[Path, str] | None, compiled: Any) -> None:
    """Store ``compiled`` at ``found`` (from ``entry``), atomically; nothing where it cannot be
    serialized or written."""
    if found is None:
        return
    path, text = found
    try:
        device_ids = _devices(compiled)
        if device_ids is None:
            return
        payload, in_tree, out_tree = serialize_executable.serialize(compiled)
        body = pickle.dumps((text, device_ids, payload, in_tree, out_tree), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # not serializable here (constants in the program, a state class pickle cannot name)
        return
    blob = _MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body
    temp = None
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".writing-", delete=False) as out:
            temp = out.name
            out.write(blob)
        os.replace(temp, path)
        temp = None
    except OSError:
        pass  # a full or vanished folder: the program runs, it is just not stored
    finally:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)


def _devices(compiled: Any) -> list[int] | None:
    """The ids of the devices ``compiled`` runs on, in the order it was compiled for (a trial
    mesh's order): loading it needs them in that order (``entry``). None where its shardings do not
    say it plainly: such an executable is not stored."""
    orders: set[tuple[int, ...]] = set()
    for sharding in jax.tree.leaves((compiled.input_shardings, compiled.output_shardings)):
        if isinstance(sharding, NamedSharding):
            orders.add(tuple(int(device.id) for device in sharding.mesh.devices.flat))
        elif isinstance(sharding, SingleDeviceSharding):
            orders.add(tuple(int(device.id) for device in sharding.device_set))  # type: ignore[attr-defined]  # jaxlib's Device is untyped
        else:
            return None
    return list(orders.pop()) if len(orders) == 1 else None
