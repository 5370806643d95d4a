"""Suites: several comparisons on one dataset, described in a TOML file and run by ``dnnbench run``.

    [data]             dataset, path, val_split, label_noise, data_dir, verify
    [model]            hidden, activation, residual, precision
    [train]            epochs, batch_size, loss, seeds, seed, max_parallel, workers,
                       backend ("local" | "ray"), ray_address, ray_max_retries, ray_cpus,
                       schedule, warmup (0.1 or "2e"), decay_to, step_every, step_factor,
                       target ("val_acc=0.97": time to target, per experiment too)
    [regularization]   l1, l2, dropout, dropout_mode, early_stopping, monitor, patience, min_delta,
                       augment_shift, augment_noise, train_fraction
    [[experiment]]     name, kind = "optimizers"   (optimizers, lr = 0.01 or {adam = 1e-3, ...})
                                  | "regularizers" (methods, optimizer, lr)
                                  | "tune"         (optimizers, budget, metric, [experiment.space.<optimizer>])
    [experiment.hyperparams]  per optimizer: adam = {b1 = 0.95}, "lion" = {b2 = 0.98}
    [experiment.model], [experiment.train], [experiment.regularization]: that experiment's overrides

Unset keys take the command line's defaults. Everything is validated on load, before anything
trains: an unknown key or a bad value is one ``InputError`` naming the file, the line and the key.
``tomllib`` gives no line numbers, so the line is found by searching the key in its table's text
(good enough for hand-written files). A relative ``path`` or ``data_dir`` -- and the file of an
optimizer named ``file.py:factory`` -- is relative to the suite.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dnnbench import optim, options, regularizers, runner, targets, tuning
from dnnbench.backends import Settings as BackendSettings
from dnnbench.config import MAX_SEED, MAX_SEEDS, DataConfig, ModelConfig, Regularization, TrainConfig, TrialSpec
from dnnbench.errors import InputError
from dnnbench.job import Job
from dnnbench.optim import user

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

INT, FLOAT, BOOL, STR = "an integer", "a number", "true or false", "a string"
NAMES, HIDDEN, LR = "a list of names", "a list of layer widths like [500, 500]", "a number or a table like {adam = 1e-3}"
WARMUP = 'a fraction of training like 0.1 or epochs like "2e"'
HYPERPARAMS = "a table of tables like {adam = {b1 = 0.95}}"
SPACE = 'a table of tables like {adam = {b1 = "0.8..0.99", lr = "1e-4..1e-1:log", b2 = [0.99, 0.999]}}'
SCHEDULE_KEYS = ("schedule", "warmup", "decay_to", "step_every", "step_factor")
BACKEND_KEYS = ("backend", "ray_address", "ray_max_retries", "ray_cpus")  # one per suite, like workers

SECTIONS: dict[str, dict[str, str]] = {
    "data": {"dataset": STR, "path": STR, "val_split": FLOAT, "label_noise": FLOAT, "data_dir": STR, "verify": BOOL},
    "model": {"hidden": HIDDEN, "activation": STR, "residual": BOOL, "precision": STR},
    "train": {"epochs": INT, "batch_size": INT, "loss": STR, "seeds": INT, "seed": INT, "max_parallel": INT,
              "workers": INT, "schedule": STR, "warmup": WARMUP, "decay_to": FLOAT, "step_every": FLOAT,
              "step_factor": FLOAT, "target": STR, "backend": STR, "ray_address": STR, "ray_max_retries": INT, "ray_cpus": INT},
    "regularization": {"l1": FLOAT, "l2": FLOAT, "dropout": FLOAT, "dropout_mode": STR, "early_stopping": BOOL,
                       "monitor": STR, "patience": INT, "min_delta": FLOAT, "augment_shift": INT,
                       "augment_noise": FLOAT, "train_fraction": FLOAT},
}
#: The keys of each experiment kind (besides name, kind and the model/train/regularization overrides).
KINDS: dict[str, dict[str, str]] = {
    "optimizers": {"optimizers": NAMES, "lr": LR, "hyperparams": HYPERPARAMS},
    "regularizers": {"methods": NAMES, "optimizer": STR, "lr": FLOAT, "hyperparams": HYPERPARAMS},
    "tune": {"optimizers": NAMES, "budget": INT, "metric": STR, "space": SPACE, "hyperparams": HYPERPARAMS},
}
OVERRIDABLE = ("model", "train", "regularization")
DEFAULT_OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam")


@dataclass(frozen=True)
class Experiment:
    """One comparison of a suite: its trials are tagged ``experiment=<name>``."""

    name: str
    kind: str
    job: Job
    specs: tuple[TrialSpec, ...]
    settings: dict[str, Any]  # the kind's own keys as given (optimizers, lr, methods, ...)
    tuning: tuning.TuningPlan | None = None  # kind "tune": its final runs follow from its search

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, **self.settings, **self.job.describe()}


@dataclass(frozen=True)
class Suite:
    """A validated suite file: the suite-wide job (data, defaults) and its experiments in file order."""

    path: Path
    job: Job
    experiments: tuple[Experiment, ...]

    @property
    def specs(self) -> tuple[TrialSpec, ...]:
        return tuple(spec for experiment in self.experiments for spec in experiment.specs)

    def describe(self) -> dict[str, Any]:
        return {"command": "run", "suite": str(self.path), "experiments": [e.describe() for e in self.experiments]}

    @property
    def tunes(self) -> bool:
        return any(e.tuning is not None for e in self.experiments)

    def finals(self, trials: list[Any]) -> list[TrialSpec]:
        """The second stage of a suite with ``tune`` experiments: each one's final runs, from its
        search results among ``trials`` (every experiment's first-stage results)."""
        out: list[TrialSpec] = []
        for e in self.experiments:
            if e.tuning is not None:
                mine = [t for t in trials if t.tags.get("experiment") == e.name]
                out += e.tuning.finals(mine, tags=(("experiment", e.name),))
        return out


@dataclass(frozen=True)
class _Source:
    """The suite's text, to point errors at a line."""

    path: Path
    text: str

    def error(self, message: str, table: str, key: str | None = None, index: int | None = None) -> InputError:
        line = find_line(self.text, table, key, index)
        label = f"[[{table}]]" if table == "experiment" else f"[{table}]" if table else ""
        return InputError(f"{self.path}{f':{line}' if line else ''}: {label + ' ' if label else ''}{message}")


_TABLE = re.compile(r"^\s*\[(\[)?\s*([^\]]+?)\s*\]")


def find_line(text: str, table: str, key: str | None, index: int | None = None) -> int | None:
    """The 1-based line of ``key`` in ``table`` (the ``index``-th ``[[experiment]]`` for experiment
    tables), else the table's header line, else None. A sub-table's keys are also looked for in
    its parent (inline tables, dotted keys)."""
    current, count, header = "", -1, None
    pattern = re.compile(rf"(?:^|[\s{{,.]){re.escape(key)}\s*=") if key else None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0]
        match = _TABLE.match(line)
        if match:
            current = match.group(2).replace('"', "").replace(" ", "")
            count += bool(match.group(1)) and current == "experiment"
            if table == "" and key is not None and current.split(".")[0] == key:  # a top-level table
                return number
            if current == table and (index is None or count == index) and header is None:
                header = number
            continue
        same = current == table or current == table.rpartition(".")[0] != ""
        if same and (index is None or count == index) and pattern is not None and pattern.search(line):
            return number
    return header


def _typed(value: Any, kind: str) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == FLOAT:
        return number and (isinstance(value, int) or math.isfinite(value))
    if kind == BOOL:
        return isinstance(value, bool)
    if kind == STR:
        return isinstance(value, str)
    if kind == NAMES:
        return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)
    if kind == HIDDEN:
        return isinstance(value, list) and bool(value) and all(_typed(v, INT) for v in value)
    if kind == LR:
        return _typed(value, FLOAT) or (isinstance(value, dict) and all(_typed(v, FLOAT) for v in value.values()))
    if kind == WARMUP:
        return _typed(value, FLOAT) or isinstance(value, str)
    if kind in (HYPERPARAMS, SPACE):
        return isinstance(value, dict) and all(isinstance(v, dict) for v in value.values())
    raise AssertionError(kind)


def _checked(src: _Source, raw: Any, table: str, schema: dict[str, str], index: int | None) -> dict[str, Any]:
    """``raw`` if it is a table of known keys with values of the right types; else one error."""
    if not isinstance(raw, dict):
        parent, _, leaf = table.rpartition(".")
        raise src.error(f"{leaf} must be a table, got {raw!r}", parent, leaf, index)
    for key, value in raw.items():
        if key not in schema:
            raise src.error(f"unknown key {key!r}; valid: {', '.join(schema)}", table, key, index)
        if not _typed(value, schema[key]):
            raise src.error(f"{key} must be {schema[key]}, got {value!r}", table, key, index)
    return dict(raw)


def _build(src: _Source, make: Callable[..., Any], values: dict[str, tuple[Any, str, int | None]]) -> Any:
    """``make(**values)``; its ``InputError`` is pinned to the line of the key that caused it."""
    try:
        return make(**{key: value for key, (value, _, _) in values.items()})
    except InputError as exc:
        for key, (value, table, index) in values.items():
            try:
                make(**{key: value})
            except InputError:
                raise src.error(str(exc), table, key, index) from None
        _, table, index = next(iter(values.values()), (None, "", None))
        raise src.error(str(exc), table, None, index) from None  # no single key to blame: the table


def _job(src: _Source, suite: dict[str, dict[str, Any]], over: dict[str, dict[str, Any]], index: int | None,
         folder: Path) -> Job:
    """The Job of the suite's sections with ``over`` (an experiment's tables) on top."""
    def merged(section: str) -> dict[str, tuple[Any, str, int | None]]:
        out = {key: (value, section, None) for key, value in suite[section].items()}
        out.update({key: (value, f"experiment.{section}", index) for key, value in over.get(section, {}).items()})
        return out

    data = merged("data")
    for key in ("path", "data_dir"):
        if key in data:
            value, table, i = data[key]
            data[key] = (str(folder / Path(value).expanduser()), table, i)
    train = merged("train")
    schedule_values = {key: train.pop(key) for key in SCHEDULE_KEYS if key in train}
    target_value = train.pop("target", None)
    seeds, seed = train.pop("seeds", (1, "", None)), train.pop("seed", (0, "", None))
    parallel = train.pop("max_parallel", None)
    workers = train.pop("workers", None)
    backend_values = {key: train.pop(key) for key in BACKEND_KEYS if key in train}
    model = merged("model")
    if "hidden" in model:
        model["hidden"] = (tuple(model["hidden"][0]), *model["hidden"][1:])
    if not 0 < seeds[0] <= MAX_SEEDS:
        raise src.error(f"seeds must be a positive integer up to {MAX_SEEDS}, got {seeds[0]}", seeds[1], "seeds", seeds[2])
    if not 0 <= seed[0] or seed[0] + seeds[0] - 1 > MAX_SEED:
        raise src.error(f"seeds {seed[0]}..{seed[0] + seeds[0] - 1} must lie in [0, {MAX_SEED}]", seed[1] or seeds[1],
                        "seed", seed[2])
    if parallel is not None and parallel[0] <= 0:
        raise src.error(f"max_parallel must be a positive integer, got {parallel[0]}", "train", "max_parallel")
    if workers is not None and workers[0] <= 0:
        raise src.error(f"workers must be a positive integer, got {workers[0]}", "train", "workers")
    train_config = _build(src, TrainConfig, train)

    def make_schedule(schedule: str = "constant", warmup: Any = None, decay_to: float | None = None,
                      step_every: float | None = None, step_factor: float = 0.1) -> optim.Schedule:
        made = options.make_schedule(schedule, warmup, decay_to, step_every, step_factor)
        made.check_epochs(train_config.epochs)
        return made

    return Job(data=_build(src, DataConfig, data), model=_build(src, ModelConfig, model),
               train=train_config, reg=_build(src, Regularization, merged("regularization")),
               seeds=tuple(range(seed[0], seed[0] + seeds[0])), max_parallel=parallel[0] if parallel else None,
               workers=workers[0] if workers else None, schedule=_build(src, make_schedule, schedule_values),
               target=_build(src, lambda target=None: targets.parse_target(target),
                             {"target": target_value} if target_value else {}),
               backend=_build(src, BackendSettings, backend_values))


def _experiment(src: _Source, index: int, raw: Any, suite: dict[str, dict[str, Any]], folder: Path,
                max_parallel: int | None, workers: int | None) -> Experiment:
    if not isinstance(raw, dict):
        raise src.error("must be a table", "experiment", None, index)
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise src.error(f"kind must be one of {', '.join(KINDS)}, got {kind!r}", "experiment", "kind", index)
    schema = {"name": STR, "kind": STR, **KINDS[kind], **dict.fromkeys(OVERRIDABLE, "a table")}
    own = _checked(src, {k: v for k, v in raw.items() if k not in OVERRIDABLE}, "experiment", schema, index)
    over = {}
    for section in OVERRIDABLE:
        # one per suite, in [train]: how the whole run is split into programs
        allowed = {k: v for k, v in SECTIONS[section].items() if k not in ("max_parallel", "workers", *BACKEND_KEYS)}
        over[section] = _checked(src, raw.get(section, {}), f"experiment.{section}", allowed, index)
    name = own.pop("name", kind)
    if not name.strip():
        raise src.error("name must not be empty", "experiment", "name", index)
    job = dataclasses.replace(_job(src, suite, over, index, folder), max_parallel=max_parallel, workers=workers)
    settings = {k: v for k, v in own.items() if k != "kind"}

    def fail(message: str, key: str) -> InputError:
        return src.error(message, "experiment", key, index)

    def spec_of(name: str) -> str:  # a relative optimizer file is relative to the suite
        if user.is_file_spec(name):
            where, _, attr = name.rpartition(":")
            return f"{folder / Path(where).expanduser()}:{attr}"
        return name

    def checked_optimizer(name: str, key: str) -> str:
        try:
            optim.resolve_spec(spec_of(name))
        except InputError as exc:
            raise fail(str(exc), key) from None
        return spec_of(name)

    given_hp = settings.get("hyperparams", {})
    for n, values in given_hp.items():  # each optimizer's values checked on its own line
        try:
            optim.resolve(spec_of(n), **values)
        except InputError as exc:
            raise src.error(str(exc), "experiment.hyperparams", n, index) from None
    planned = None
    if kind == "tune":
        names = list(dict.fromkeys(settings.get("optimizers", DEFAULT_OPTIMIZERS)))
        specs_of = {n: checked_optimizer(n, "optimizers") for n in names}
        for n in [*given_hp, *settings.get("space", {})]:
            if n not in names:
                raise fail(f"hyperparams / space name optimizer {n!r}, which is not being tuned ({', '.join(names)})", n)
        try:
            planned = tuning.plan(job, list(specs_of.values()), budget=settings.get("budget", 32),
                                  metric=settings.get("metric", "val_acc"),
                                  suite_space={specs_of[n]: sp for n, sp in settings.get("space", {}).items()},
                                  hyperparams={specs_of[n]: hp for n, hp in given_hp.items()})
        except InputError as exc:
            raise fail(str(exc), "space" if settings.get("space") else "budget") from None
        specs = planned.search
    elif kind == "optimizers":
        names = list(dict.fromkeys(settings.get("optimizers", DEFAULT_OPTIMIZERS)))
        specs_of = {n: checked_optimizer(n, "optimizers") for n in names}
        lr = settings.get("lr")
        lrs: dict[str, float | None] = dict.fromkeys(specs_of.values(), lr if not isinstance(lr, dict) else None)
        for n, value in (lr.items() if isinstance(lr, dict) else ()):
            if n not in names:
                raise fail(f"lr names optimizer {n!r}, which is not being run ({', '.join(names)})", n)
            lrs[specs_of[n]] = value
        for n in given_hp:
            if n not in names:
                raise src.error(f"hyperparams names optimizer {n!r}, which is not being run ({', '.join(names)})",
                                "experiment.hyperparams", n, index)
        try:
            specs = runner.optimizer_specs(job, list(specs_of.values()), lrs,
                                           {specs_of[n]: hp for n, hp in given_hp.items()})
        except InputError as exc:
            raise fail(str(exc), "hyperparams" if given_hp else "lr") from None
    else:
        optimizer, lr, methods = settings.get("optimizer", "adam"), settings.get("lr"), settings.get("methods")
        spec = checked_optimizer(optimizer, "optimizer")
        for n in given_hp:
            if n != optimizer:
                raise src.error(f"hyperparams names optimizer {n!r}, but this experiment runs {optimizer!r}",
                                "experiment.hyperparams", n, index)
        try:
            optim.resolve(spec, lr, **given_hp.get(optimizer, {}))
        except InputError as exc:
            raise fail(str(exc), "hyperparams" if given_hp else "lr") from None
        for m in methods or ():
            if m not in regularizers.METHODS:
                raise fail(f"unknown regularizer {m!r}; valid: {', '.join(regularizers.METHODS)}", "methods")
        try:
            _, _, specs = regularizers.comparison_specs(job, ",".join(methods) if methods else None, spec, lr,
                                                        given_hp.get(optimizer))
        except InputError as exc:
            raise fail(str(exc), "methods") from None
    tagged = tuple(dataclasses.replace(s, tags=(("experiment", name), *s.tags)) for s in specs)
    return Experiment(name=name, kind=kind, job=job, specs=tagged, settings=settings, tuning=planned)


def load(path: Path) -> Suite:
    """Read and validate a suite file; ``InputError`` (file:line: what is wrong) for anything bad."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such suite file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the suite file ({exc})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    src = _Source(path, text)
    for key in doc:
        if key not in (*SECTIONS, "experiment"):
            raise src.error(f"unknown table {key!r}; valid: {', '.join(SECTIONS)}, [[experiment]]", "", key)
    suite = {name: _checked(src, doc.get(name, {}), name, schema, None) for name, schema in SECTIONS.items()}
    folder = path.parent
    job = _job(src, suite, {}, None, folder)
    raw = doc.get("experiment")
    if not isinstance(raw, list) or not raw:
        raise src.error("a suite needs at least one [[experiment]] table (kind = \"optimizers\" or "
                        "\"regularizers\")", "", "experiment")
    experiments = [_experiment(src, i, item, suite, folder, job.max_parallel, job.workers)
                   for i, item in enumerate(raw)]
    seen: set[str] = set()
    for i, experiment in enumerate(experiments):
        if experiment.name in seen:
            raise src.error(f"experiment name {experiment.name!r} is used twice; give each [[experiment]] its own "
                            "name", "experiment", "name", i)
        seen.add(experiment.name)
    return Suite(path=path, job=job, experiments=tuple(experiments))
