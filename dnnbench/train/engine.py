"""The engine: the ONE place where jit, vmap and device placement happen.

A *group* is a list of trials with the same ``Structure`` (optimizer kind, model shape, batch
size, epochs, ...). The group trains as one compiled program: every per-trial number (learning
rate, optimizer hyperparameters, seed, L1/L2, dropout rate, noise, patience) is an array with a
leading trial axis and the pure per-trial functions in ``dnnbench.train.step`` are ``jax.vmap``-ed over
it. One epoch -- shuffle, every minibatch a step of one compiled loop, evaluation on train/val/test,
early-stopping bookkeeping -- is one call of one compiled executable (which also trains part of an
epoch where two worker processes share one: ``step``'s ``epoch``). Executables are cached by
structure and shapes, so a second group of the same shape does not compile again; a later process
loads them from disk (``executables``) instead of tracing them again.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dnnbench.config import TrialSpec
from dnnbench.data import Dataset, with_train_fraction
from dnnbench.errors import InputError
from dnnbench.optim import schedules
from dnnbench.train import executables, threads
from dnnbench.train import step as core
from dnnbench.train.models import weight_count

#: Rows per evaluation chunk: bounds the activations held at once when evaluating big sets.
EVAL_CHUNK = 2048


@dataclass(frozen=True, eq=False)
class GroupOutput:
    """What training a group produced, per trial (leading axis of every array = trial)."""

    specs: tuple[TrialSpec, ...]
    history: dict[str, np.ndarray]  # metric -> (epochs_run, trials); grad_norm -> (epochs, trials, layers)
    best_epoch: np.ndarray  # (trials,) 0-based epoch of the best monitored value (early stopping)
    stopped_epoch: np.ndarray  # (trials,) 0-based epoch training stopped at, -1 = ran to the end
    params: Any  # final parameters per trial (restored best for early-stopping trials)
    graphdef: Any  # the model's nnx.GraphDef: nnx.merge(graphdef, params_of_one_trial) is a model
    compile_s: float
    train_s: float
    samples_seen: int  # training samples processed per trial


@dataclass(frozen=True, eq=False)
class Progress:
    """A group part-way through its epochs, on the host: what ``train_part`` hands back when told
    to stop early, and resumes from, in this process or another (a worker process of the pool).
    The steps trained from it are the very loop bodies one ``train_group`` would have run, so the
    numbers are the same bit for bit."""

    epochs_done: int
    steps_into_epoch: int  # steps of the next epoch already trained (0 at an epoch's end)
    state: list[np.ndarray]  # the TrialState's leaves, in its tree's order
    rows: tuple[dict[str, np.ndarray], ...]  # each epoch's metrics so far
    compile_s: float
    train_s: float


#: The shape of ``step``'s ``epoch`` argument ``part``: the first and the end step of the call.
_PART = jax.ShapeDtypeStruct((2,), jnp.int32)


class _Programs(NamedTuple):
    init_params: Any
    init: Any
    epoch: Any
    graphdef: Any


_EXECUTABLES: dict[tuple, Any] = {}
#: How many executables were compiled in this process (tests assert a second call adds none).
compile_count = 0
#: How many were loaded from the executable store instead (``executables``): not compiles.
loaded_count = 0


def clear_cache() -> None:
    _EXECUTABLES.clear()
    _DEVICE_CACHE.clear()


_GUARD = threading.Lock()
_KEY_LOCKS: dict[tuple, threading.Lock] = {}

#: ``$DNNBENCH_COMPILE_CACHE``: where compiled programs persist between runs (a directory: JAX's
#: compilation cache, and ``executables``' store in a folder of it), or ``off``. Default:
#: ``<user cache>/dnnbench/xla``.
COMPILE_CACHE_ENV = "DNNBENCH_COMPILE_CACHE"
_cache_checked = False


def compile_cache_dir() -> Path | None:
    """The persistent compilation cache directory this process uses, or ``None`` (off)."""
    setting = os.environ.get(COMPILE_CACHE_ENV, "").strip()
    if setting.lower() in ("0", "off", "false", "no", "none"):
        return None
    if setting:
        return Path(setting).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("dnnbench")) / "xla"


#: Where the processes of one run share the executables they build while the persistent cache is
#: off (``share_executables``): a folder of the run's shared data, removed with it.
_RUN_STORE: Path | None = None


def share_executables(folder: Path | None) -> None:
    """Keep this process's executables in ``folder`` (``executables``' store, under it) while the
    persistent compilation cache is off; None: no longer.

    ``backends.processes`` gives its run's data folder to the driver and to every worker: what one
    process needs after another built it (a program's last epochs handed to another worker, the
    weight init for a worker that starts after the driver built it) is then loaded, not compiled
    again, and nothing outlives the run (two processes that build the same executable at once
    still both compile it). With the persistent cache on, its store already does this (and more).
    """
    global _RUN_STORE
    _RUN_STORE = folder


def _store_root() -> Path | None:
    """The folder the executable store is kept under: the persistent cache's, else the run's."""
    return compile_cache_dir() or _RUN_STORE


def compile_cache_problem() -> str | None:
    """Why the persistent compilation cache cannot be used (a file, a folder that cannot be made or
    written), as a line to say once; None when it can, or is off. ``_use_compile_cache`` then
    leaves it off without a word (in every worker process too)."""
    path = compile_cache_dir()
    if path is None:
        return None
    given = os.environ.get(COMPILE_CACHE_ENV, "").strip()
    where = f"${COMPILE_CACHE_ENV} {path}" if given else f"the compile cache {path}"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"{where}: cannot be made a folder ({exc.strerror or exc}); compiled programs are not cached"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"{where}: the folder is not writable; compiled programs are not cached"
    return None


def _use_compile_cache() -> None:
    """Turn on JAX's persistent compilation cache, once, before the first compile, where the
    executable store (``executables``) is not in use.

    A second run of the same command loads its programs from disk instead of compiling them
    (figures: docs/performance.md). An unwritable directory leaves the cache off rather than warn
    on every compile; a cache directory the user gave JAX itself (``JAX_COMPILATION_CACHE_DIR``)
    is left as it is.

    Where the store is in use (on a CPU, unless ``$DNNBENCH_EXECUTABLES=off``), JAX's cache stays
    off: an executable JAX loads from its cache cannot be stored again (jaxlib 0.10.2 writes it
    without its compiled kernels, and the entry fails when it runs: "Function ... not found"), so
    after any change to dnnbench (a new store identity, the same programs) the store would have
    been filled from JAX's cache with entries that fail. Off, a store miss compiles afresh. It
    costs little: the programs the store does not keep (JAX's small helpers) took 0.1-0.2 s to
    compile in a warm main job. Optimizers from a module or plugin, which the store does not keep,
    then compile in every run.
    """
    global _cache_checked
    with _GUARD:
        if _cache_checked:
            return
        _cache_checked = True
        if jax.config.jax_compilation_cache_dir:  # type: ignore[attr-defined]  # options are set as attributes at runtime
            return
        path = compile_cache_dir()
        if path is None:
            return
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            return
        if not os.access(path, os.W_OK) or executables.in_use(path):
            return
        jax.config.update("jax_compilation_cache_dir", str(path))
        # Every program: ours compile in 0.5-4 s, JAX's default threshold (1 s) would skip some.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


#: Seconds this thread spent building executables (tracing, lowering, compiling): what a group's
#: ``compile_s`` reports, so a group that waited for another's identical executable reports ~0,
#: not the wait.
_BUILDING = threading.local()


def _compiled(key: tuple, build: Callable[[], Any], optimizer: str | None = None) -> Any:
    """The cached executable for ``key``, built once even when threads ask at the same time: from
    memory, else from the executable store on disk, else ``build()`` (and stored). ``optimizer``:
    the spec whose code the program runs, which decides whether it may be stored."""
    global compile_count, loaded_count
    _use_compile_cache()
    with _GUARD:
        lock = _KEY_LOCKS.setdefault(key, threading.Lock())
    with lock:
        if key not in _EXECUTABLES:
            start = time.perf_counter()
            found = executables.entry(_store_root(), key, optimizer)
            executable = executables.load(found)
            loaded = executable is not None
            if not loaded:
                executable, from_jax_cache = executables.built(build)
                if not from_jax_cache:  # (``_use_compile_cache``): it would be stored without its kernels
                    executables.save(found, executable)
            _EXECUTABLES[key] = executable
            # a load counts as building time too: it is what this group waited for its programs
            _BUILDING.seconds = getattr(_BUILDING, "seconds", 0.0) + time.perf_counter() - start
            with _GUARD:
                if loaded:
                    loaded_count += 1
                else:
                    compile_count += 1
        return _EXECUTABLES[key]


def _building_seconds(call: Callable[[], Any]) -> tuple[Any, float]:
    """``call()`` and the seconds it spent building executables in this thread."""
    before = getattr(_BUILDING, "seconds", 0.0)
    out = call()
    return out, getattr(_BUILDING, "seconds", 0.0) - before


def _trial_shardings(n_trials: int) -> tuple[Any, Any, int] | None:
    """(trial-axis sharding, replicated sharding, device count) when several local devices can
    share a group's trials; ``None`` for one device or one trial."""
    devices = jax.local_devices()
    if len(devices) < 2 or n_trials < 2:
        return None
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.asarray(devices), ("trials",))
    return NamedSharding(mesh, PartitionSpec("trials")), NamedSharding(mesh, PartitionSpec()), len(devices)


def _programs(
    plan: core.Plan, numbers: core.Numbers, data: core.DeviceData, shardings: tuple[Any, Any, int] | None = None
) -> _Programs:
    """The group's compiled executables, from the cache when the shapes were seen before.

    The weight initialisation depends on the model shape only, so the optimizers of a
    comparison share it; ``init`` (optimizer state) and ``epoch`` are per structure.
    """
    n = int(numbers.seed.shape[0])
    shapes = jax.tree.map(lambda a: (a.shape, str(a.dtype)), data)
    s = plan.sizes
    model_key = ("init_params", plan.structure.model, s.n_features, s.n_classes, n)
    options = _compiler_options(plan, n)
    opt_key = tuple(sorted(options.items()))
    trials, replicated = (shardings[0], shardings[1]) if shardings else (None, None)
    on: dict[str, Any] = {"in_shardings": trials, "out_shardings": trials} if shardings else {}
    devices = shardings[2] if shardings else 1
    # The two init programs run once per group: they always compile for speed of compiling
    # (on CPU the weight init's RNG took 1.19 s at the default level, 0.41 s at level 1, with
    # bit-identical weights; a run of it takes 8-9 ms either way).
    once = _FAST_COMPILE if jax.default_backend() == "cpu" else {}
    init_params_fn = core.make_init_params(plan)
    once_key = tuple(sorted(once.items()))
    init_params = _compiled(
        model_key + (devices, once_key),
        lambda: jax.jit(jax.vmap(init_params_fn), **on).lower(numbers.seed).compile(once),
    )
    init_fn, epoch_fn, graphdef = core.make_trial_fns(plan)

    @functools.cache
    def traced() -> tuple[Any, Any, Any]:
        """(weights' shapes, the state's vmap axes, the state's shapes): traced only when an
        executable below is built, not when both come from the cache."""
        params_shape = jax.eval_shape(jax.vmap(init_params_fn), numbers.seed)
        axes = _state_axes(init_fn, epoch_fn, params_shape, numbers, data) if n > 1 and not shardings else 0
        return params_shape, axes, jax.eval_shape(jax.vmap(init_fn, out_axes=axes), params_shape, numbers)

    optimizer = plan.structure.optimizer
    init = _compiled(
        ("init", plan, n, devices, once_key),
        lambda: jax.jit(jax.vmap(init_fn, out_axes=traced()[1]), **on).lower(traced()[0], numbers).compile(once),
        optimizer,
    )
    epoch_on: dict[str, Any] = (
        {"in_shardings": (trials, trials, replicated, replicated), "out_shardings": (trials, trials)}
        if shardings
        else {}
    )
    epoch = _compiled(
        ("epoch", plan, n, shapes, devices, opt_key),
        lambda: (
            jax.jit(_over_trials(epoch_fn, n, traced()[1]), donate_argnums=0, **epoch_on)
            .lower(traced()[2], numbers, data, _PART)
            .compile(options)
        ),
        optimizer,
    )
    return _Programs(init_params, init, epoch, graphdef)


def _state_axes(init_fn: Callable, epoch_fn: Callable, params_shape: Any, numbers: Any, data: Any) -> Any:
    """The vmap axes of a group's ``TrialState``: every leaf per trial (axis 0), except the
    optimizer's step counters, which all trials of a group advance in lockstep and so keep once.

    Why: an optimizer that branches on its step count (GaLore's SVD every ``update_proj_gap``
    steps, ``MultiSteps``, lookahead's sync) uses ``lax.cond``, which under ``vmap`` with a
    per-trial predicate becomes ``select`` and computes both branches at every step (GaLore: an
    SVD per step). With the counter shared, the predicate is one value and the branch taken is
    the only one computed. Same values either way, so the same numbers.

    A counter that can differ between trials (it depends on the trial's numbers or data, or on
    early stopping freezing a trial) makes tracing fail with shared counters; then every leaf
    stays per trial (axis 0, the general case).
    """
    state = jax.eval_shape(jax.vmap(init_fn), params_shape, numbers)
    counter = lambda leaf: None if leaf.ndim == 1 and jnp.issubdtype(leaf.dtype, jnp.integer) else 0  # noqa: E731
    opt_axes = jax.tree.map(counter, state.opt_state)
    if None not in jax.tree.leaves(opt_axes, is_leaf=lambda axis: axis is None):
        return 0  # no counters
    axes = jax.tree.map(lambda _: 0, state)._replace(opt_state=opt_axes)
    try:
        shared = jax.eval_shape(jax.vmap(init_fn, out_axes=axes), params_shape, numbers)
        jax.eval_shape(
            jax.vmap(epoch_fn, in_axes=(axes, 0, None, None), out_axes=(axes, 0)), shared, numbers, data, _PART
        )
    except ValueError:  # a counter is per trial after all
        return 0
    return axes


#: Below this much training work (FLOP) a group compiles for speed of compiling: much less compile
#: time for slower epochs, which only pays while compiling outweighs training (figures:
#: docs/performance.md). LLVM's optimization level 1, and XLA's older elementwise emitters instead
#: of its MLIR fusion emitters: the five digits programs' compile CPU 9.5 s -> 5.9 s for +11% epoch
#: time (jaxlib 0.10.2), their histories bit for bit those of level 1 alone (the grad norms of some
#: other configurations differ in the last bit). Not for larger groups: an MNIST-sized adam epoch
#: took 30% longer for 10% less compiling. The choice depends on the plan alone, like the numbers.
FAST_COMPILE_FLOP = 2e11
_FAST_COMPILE: dict[str, Any] = {"xla_backend_optimization_level": 1, "xla_cpu_use_fusion_emitters": False}


def _compiler_options(plan: core.Plan, n_trials: int) -> dict[str, Any]:
    if jax.default_backend() != "cpu":
        return {}
    s, st = plan.sizes, plan.structure
    weights = weight_count(s.n_features, st.model.hidden, s.n_classes, biases=False)
    work = 6.0 * weights * s.n_train * st.train.epochs * n_trials
    return _FAST_COMPILE if work < FAST_COMPILE_FLOP else {}


def concurrency(program_threads: int | None = None) -> int:
    """How many compiled programs the runner trains at once by default: one per ``--threads``
    cores on a CPU (each worker process runs XLA on that many threads; ``program_threads`` where a
    run's programs have another number than this process, ``--threads auto``), one on a GPU, whose
    stream runs one program at a time (there the vmapped trial axis fills the device). The runner
    lowers it where memory cannot hold that many programs (``runner.memory_bounded``)."""
    if jax.default_backend() != "cpu":
        return 1
    return max(1, threads.cores() // (program_threads or threads.current() or 1))


#: On a CPU a run is planned as at least this many programs where its groups can be cut into equal
#: parts (``runner.balance``), whatever the machine: the most programs ``concurrency`` ever trains
#: at once, so every core count finds work for all its workers, and the plan -- hence every
#: trial's numbers -- is the same on any machine.
PLAN_PROGRAMS_CPU = 4


def plan_programs() -> int:
    """How many programs a run is cut into at least (equal parts of its groups): fixed per kind of
    device, so the plan does not depend on the core count. A GPU trains one program at a time;
    there the vmapped trial axis fills the device, so groups stay whole."""
    return PLAN_PROGRAMS_CPU if jax.default_backend() == "cpu" else 1


def _over_trials(epoch_fn: Callable, n: int, state_axes: Any = 0) -> Callable:
    """``epoch_fn`` over a leading trial axis: ``vmap`` for a group, a plain call for one trial.

    A single trial gains nothing from vmap, and on CPU the batched matmuls it produces are slower
    than plain ones (figures: docs/performance.md); same numbers. ``state_axes``: see ``_state_axes``.
    """
    if n > 1:
        return jax.vmap(epoch_fn, in_axes=(state_axes, 0, None, None), out_axes=(state_axes, 0))

    def single(state: Any, numbers: Any, data: Any, part: Any) -> Any:
        squeeze = lambda tree: jax.tree.map(lambda leaf: leaf[0], tree)  # noqa: E731
        out = epoch_fn(squeeze(state), squeeze(numbers), data, part)
        return jax.tree.map(lambda leaf: leaf[None], out)

    return single


def _as_means(sums: dict[str, np.ndarray], sizes: core.Sizes) -> dict[str, np.ndarray]:
    """Per-split sums of losses and correct counts -> means, in float64 on the host."""
    out = dict(sums)
    for split, n in (("train", sizes.n_train_eval), ("val", sizes.n_val), ("test", sizes.n_test)):
        for what in ("loss", "acc"):
            name = f"{split}_{what}"
            out[name] = np.asarray(sums[name], np.float64) / n if n else np.full_like(sums[name], np.nan, np.float64)
    return out


_DEVICE_CACHE: dict[tuple, tuple[Dataset, Any]] = {}


def to_device(data: Dataset, train_fraction: float = 1.0, train_eval: int = 0) -> tuple[core.DeviceData, core.Sizes]:
    """``_to_device``, remembered for the last dataset: the groups of a run share one copy."""
    key = (id(data), train_fraction, train_eval)
    with _GUARD:
        hit = _DEVICE_CACHE.get(key)
        if hit is not None and hit[0] is data:
            return hit[1]
    result = _to_device(data, train_fraction, train_eval)
    with _GUARD:
        if any(cached is not data for cached, _ in _DEVICE_CACHE.values()):
            _DEVICE_CACHE.clear()  # a new dataset: let the old device arrays go
        _DEVICE_CACHE[key] = (data, result)
    return result


def _to_device(data: Dataset, train_fraction: float, train_eval: int) -> tuple[core.DeviceData, core.Sizes]:
    """Move a dataset to the default device as float32, padded for chunked evaluation."""
    data = with_train_fraction(data, train_fraction)

    def put(x: np.ndarray, y: np.ndarray) -> tuple[jax.Array, jax.Array, int]:
        n = len(y)
        chunk = min(EVAL_CHUNK, max(n, 1))
        padded = math.ceil(max(n, 1) / chunk) * chunk
        xd = jnp.asarray(x)
        # uint8 images travel to the device as bytes and are scaled there.
        xd = xd.astype(jnp.float32) / 255.0 if xd.dtype == jnp.uint8 else xd.astype(jnp.float32)
        yd = jnp.asarray(y, jnp.int32)
        if padded != n:
            xd = jnp.pad(xd if n else jnp.zeros((0, x.shape[1]), jnp.float32), ((0, padded - n), (0, 0)))
            yd = jnp.pad(yd, (0, padded - n))
        return xd, yd, n

    xt, yt, nt = put(data.x_train, data.y_train)
    xv, yv, nv = put(data.x_val, data.y_val)
    xs, ys, ns = put(data.x_test, data.y_test)
    sizes = core.Sizes(
        n_train=nt,
        n_train_eval=min(nt, train_eval) if train_eval > 0 else nt,
        n_val=nv,
        n_test=ns,
        n_features=data.n_features,
        n_classes=data.n_classes,
        image_shape=data.image_shape,
    )
    return core.DeviceData(xt, yt, xv, yv, xs, ys), sizes


def _numbers(specs: Sequence[TrialSpec]) -> core.Numbers:
    hp_names = specs[0].structure.hyperparam_names  # the numbers; static settings are in the program
    stack = lambda values: jnp.asarray(np.asarray(values, np.float32))  # noqa: E731
    regs = [spec.reg.numbers for spec in specs]
    scheds = [spec.schedule.numbers for spec in specs]
    return core.Numbers(
        hyperparams={name: stack([dict(s.hyperparams)[name] for s in specs]) for name in hp_names},
        schedule={key: stack([sch[key] for sch in scheds]) for key in schedules.NUMBER_KEYS},
        seed=jnp.asarray(np.asarray([s.seed for s in specs], np.uint32)),
        **{key: stack([r[key] for r in regs]) for key in core.REG_KEYS},
    )


class _Group(NamedTuple):
    plan: core.Plan
    data: core.DeviceData
    numbers: core.Numbers
    shardings: tuple[Any, Any, int] | None
    n_real: int


def _setup(specs: tuple[TrialSpec, ...], data: Dataset) -> _Group:
    """The static plan, device data and stacked numbers of a group of one structure."""
    structures = {spec.structure for spec in specs}
    if len(structures) != 1:
        raise ValueError("train_group needs trials of one structure; group them with runner.group_by_structure")
    structure = structures.pop()
    device_data, sizes = to_device(data, structure.train_fraction, structure.train.train_eval_samples)
    plan = core.Plan(
        structure=structure,
        sizes=sizes,
        uses_dropout=any(s.reg.dropout > 0 for s in specs),
        uses_noise=any(s.reg.augment_noise > 0 for s in specs),
        uses_early_stopping=any(s.reg.early_stopping for s in specs),
        max_shift=max(s.reg.augment_shift for s in specs),
        uses_penalty=any(s.reg.l1 > 0 or s.reg.l2 > 0 for s in specs),
        uses_schedule=any(s.schedule.active for s in specs),
        uses_weight_decay=any(s.reg.weight_decay > 0 for s in specs),
        uses_clip=any(s.reg.clip_norm is not None for s in specs),
    )
    _check_plan(plan)
    n_real = len(specs)
    shardings = _trial_shardings(n_real)
    # With several devices the trial axis is split across them; pad it to a multiple of the
    # device count with copies of the last trial, whose results are dropped.
    padded = specs + (specs[-1],) * (-n_real % shardings[2] if shardings else 0)
    numbers = _numbers(padded)
    if shardings:
        numbers = jax.device_put(numbers, shardings[0])
        device_data = jax.device_put(device_data, shardings[1])
    return _Group(plan, device_data, numbers, shardings, n_real)


def prepare(specs: Sequence[TrialSpec], data: Dataset) -> float:
    """Compile a group's programs ahead of training (or find them cached); the seconds this call
    spent building them (about 0 where another group built the same executables).

    The runner calls it for every group at once from a few threads: XLA compiles outside the
    GIL, so the compile time of a comparison is shared between the cores.
    """
    group = _setup(tuple(specs), data)
    _, seconds = _building_seconds(lambda: _programs(group.plan, group.numbers, group.data, group.shardings))
    return seconds


def train_group(
    specs: Sequence[TrialSpec],
    data: Dataset,
    *,
    on_epoch: Callable[[int, dict[str, np.ndarray]], None] | None = None,
    compile_s: float = 0.0,
) -> GroupOutput:
    """Train trials that share one structure together, as one vmapped compiled program.

    ``compile_s``: compile time already spent on this group by ``prepare`` (reported with it).
    """
    output = train_part(specs, data, on_epoch=on_epoch, compile_s=compile_s)
    assert isinstance(output, GroupOutput)  # no ``until_step``: it trains to the end
    return output


def train_part(
    specs: Sequence[TrialSpec],
    data: Dataset,
    *,
    on_epoch: Callable[[int, dict[str, np.ndarray]], None] | None = None,
    compile_s: float = 0.0,
    start: Progress | None = None,
    until_step: int | None = None,
) -> GroupOutput | Progress:
    """``train_group``, from ``start`` (a ``Progress`` this group handed back before) and, with
    ``until_step``, only until that many training steps are done (counted from its first epoch's
    first step; it may be part-way through an epoch): then the group's ``Progress``, unless it
    ended first (its last epoch, or early stopping stopped every trial), which is its output.

    A worker process can train a program's first steps and another its last (the process pool
    evens out the end of a run this way: ``run.schedule.first_steps``).
    """
    specs = tuple(specs)
    plan, device_data, numbers, shardings, n_real = _setup(specs, data)
    structure, sizes = plan.structure, plan.sizes

    programs, built = _building_seconds(lambda: _programs(plan, numbers, device_data, shardings))
    compile_s += built

    train_start = time.perf_counter()
    state = programs.init(programs.init_params(numbers.seed), numbers)
    rows: list[dict[str, np.ndarray]] = []
    done, train_s = 0, 0.0  # steps trained
    steps = sizes.n_train // structure.train.batch_size
    if start is not None:
        if shardings:
            raise ValueError("a group trained on several devices cannot resume from a Progress")
        # the same tree as a fresh state (init runs in milliseconds), the leaves of the one handed back
        state = jax.tree.unflatten(jax.tree.structure(state), [jnp.asarray(leaf) for leaf in start.state])
        rows, done = list(start.rows), start.epochs_done * steps + start.steps_into_epoch
        compile_s, train_s = compile_s + start.compile_s, start.train_s
    epochs = structure.train.epochs
    stop_at = epochs * steps if until_step is None else min(until_step, epochs * steps)

    def part(first: int, end: int) -> jax.Array:
        """The steps of one call (``step``'s ``epoch``), where the program's inputs are."""
        bounds = np.asarray([first, end], np.int32)
        return jax.device_put(bounds, shardings[1]) if shardings else jnp.asarray(bounds)

    whole = part(0, steps)
    ended = False
    while done < stop_at:
        epoch, into = divmod(done, steps)
        end = min(steps, stop_at - epoch * steps)
        state, metrics = programs.epoch(
            state, numbers, device_data, whole if (into, end) == (0, steps) else part(into, end)
        )
        done = epoch * steps + end
        if end < steps:  # part of an epoch: its metrics come from the call that ends it
            break
        host = _as_means(jax.tree.map(lambda a: a[:n_real], jax.device_get(metrics)), sizes)
        rows.append(host)
        if on_epoch is not None:
            on_epoch(epoch, host)
        if plan.uses_early_stopping and bool(np.all(jax.device_get(state.stopped))):
            ended = True
            break
    if not ended and stop_at < epochs * steps:
        leaves = [np.asarray(leaf) for leaf in jax.device_get(jax.tree.leaves(state))]
        return Progress(
            done // steps, done % steps, leaves, tuple(rows), compile_s, train_s + time.perf_counter() - train_start
        )
    # the weights the optimizer means to be evaluated (schedule-free's x, lookahead's slow weights)
    final_params = state.params if state.eval_params is None else state.eval_params
    if plan.uses_early_stopping:  # early-stopping trials end with their best epoch's weights
        restore = lambda best, last: jnp.where(  # noqa: E731
            (numbers.early_stopping > 0).reshape((-1,) + (1,) * (last.ndim - 1)), best, last
        )
        final_params = jax.tree.map(restore, state.best_params, final_params)
    jax.block_until_ready(final_params)
    train_s += time.perf_counter() - train_start

    history = {name: np.stack([row[name] for row in rows]) for name in rows[0]}
    stopped = np.asarray(jax.device_get(state.stop_epoch))[:n_real]
    if int(numbers.seed.shape[0]) > n_real:
        final_params = jax.tree.map(lambda leaf: leaf[:n_real], final_params)
    return GroupOutput(
        specs=specs,
        history=history,
        best_epoch=np.asarray(jax.device_get(state.best_epoch))[:n_real],
        stopped_epoch=stopped,
        params=final_params,
        graphdef=programs.graphdef,
        compile_s=compile_s,
        train_s=train_s,
        samples_seen=len(rows) * (sizes.n_train // structure.train.batch_size) * structure.train.batch_size,
    )


def check_specs(specs: Sequence[TrialSpec], data: Dataset) -> None:
    """Raise ``InputError`` if any trial cannot run on ``data`` -- before anything is trained."""
    for structure in dict.fromkeys(spec.structure for spec in specs):
        members = [spec for spec in specs if spec.structure == structure]
        n_train = len(with_train_fraction(data, structure.train_fraction).y_train)
        sizes = core.Sizes(
            n_train, n_train, len(data.y_val), len(data.y_test), data.n_features, data.n_classes, data.image_shape
        )
        _check_plan(
            core.Plan(
                structure,
                sizes,
                uses_dropout=False,
                uses_noise=False,
                uses_early_stopping=any(spec.reg.early_stopping for spec in members),
                max_shift=max(spec.reg.augment_shift for spec in members),
            )
        )


def _check_plan(plan: core.Plan) -> None:
    sizes, structure = plan.sizes, plan.structure
    if structure.train.batch_size > sizes.n_train:
        raise InputError(
            f"batch size {structure.train.batch_size} is larger than the training set ({sizes.n_train} samples)"
        )
    if plan.uses_early_stopping and sizes.n_val == 0:
        raise InputError("early stopping needs a validation set; use --val-split > 0")
    if plan.max_shift > 0:
        shape = sizes.image_shape
        if shape is None or shape[0] * shape[1] != sizes.n_features:
            raise InputError("augment shift needs single-channel image data (e.g. digits, mnist)")
        if plan.max_shift >= min(shape):  # shifting 8x8 digits by 100 pixels blanks them all
            raise InputError(
                f"augment shift {plan.max_shift} pixels is not smaller than the {shape[0]}x{shape[1]} "
                f"images; use at most {min(shape) - 1}"
            )


def _samples(graphdef: Any, params: Any, x: Any) -> tuple[np.ndarray, int]:
    """``x`` as rows of the model's input width (a 1-D sample is one row) and the class count;
    ``InputError`` naming the mismatch instead of a JAX shape error."""
    from flax import nnx

    layers = nnx.merge(graphdef, params).layers
    features, classes = int(layers[0].kernel.shape[0]), int(layers[-1].kernel.shape[1])
    x = np.asarray(x)
    if x.ndim == 0 or x.size == 0:
        raise InputError(f"x must hold samples of {features} features, got an array of shape {x.shape}")
    rows = x.reshape(1, -1) if x.ndim == 1 else x.reshape(len(x), -1)
    if rows.shape[1] != features:
        raise InputError(f"x has {rows.shape[1]} features per sample (shape {x.shape}); the model takes {features}")
    if not np.issubdtype(rows.dtype, np.number) or np.issubdtype(rows.dtype, np.complexfloating):
        raise InputError(f"x must be real numbers, got dtype {rows.dtype}")
    return rows, classes


def evaluate(
    graphdef: Any,
    params: Any,
    x: np.ndarray,
    y: np.ndarray,
    *,
    loss: str = "ce",
    dropout_rate: float = 0.0,
    dropout_mode: str = "inverted",
) -> dict[str, float]:
    """Loss and accuracy of ONE trial's params on (x, y): the test-mode forward pass."""
    rows, classes = _samples(graphdef, params, x)
    labels = np.asarray(y).reshape(-1) if np.ndim(y) <= 1 else np.asarray(y)
    if labels.ndim != 1 or len(labels) != len(rows):
        raise InputError(f"x has {len(rows)} samples but y has shape {np.shape(y)}; give one label per sample")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise InputError("y must be integer class labels")
    bad = (labels < 0) | (labels >= classes)
    if bad.any():
        raise InputError(
            f"y holds labels outside 0..{classes - 1} (the model's {classes} classes), e.g. {labels[bad][0]}"
        )
    xd = jnp.asarray(rows, jnp.float32) / (255.0 if rows.dtype == np.uint8 else 1.0)
    fn = jax.jit(core.eval_fn, static_argnames=("graphdef", "loss", "dropout_mode"))
    total, correct = fn(
        graphdef,
        params,
        xd,
        jnp.asarray(labels, jnp.int32),
        jnp.float32(dropout_rate),
        loss=loss,
        dropout_mode=dropout_mode,
    )
    n = max(len(labels), 1)
    return {"loss": float(total) / n, "acc": float(correct) / n}


def predict_proba(
    graphdef: Any, params: Any, x: np.ndarray, *, dropout_rate: float = 0.0, dropout_mode: str = "inverted"
) -> np.ndarray:
    """Class probabilities of ONE trial's params for samples ``x`` (test mode; a 1-D ``x`` is one
    sample, one row out)."""
    rows, _ = _samples(graphdef, params, x)
    xd = jnp.asarray(rows, jnp.float32) / (255.0 if rows.dtype == np.uint8 else 1.0)
    fn = jax.jit(core.proba_fn, static_argnames=("graphdef", "dropout_mode"))
    return np.asarray(fn(graphdef, params, xd, jnp.float32(dropout_rate), dropout_mode=dropout_mode))


def trial_params(output: GroupOutput, index: int) -> Any:
    """The final parameters of trial ``index`` of a group (un-stacked from the trial axis)."""
    return jax.tree.map(lambda leaf: leaf[index], output.params)
