"""Suites: several comparisons on one dataset, described in a TOML file and run by ``dnnbench run``.

    [data]             dataset, path, val_split, label_noise, data_dir, verify
    [model]            hidden, activation, residual, precision
    [train]            epochs, batch_size, loss, seeds, seed, max_parallel, workers,
                       backend ("local" | "processes" | "threads" | "ray"), ray_address, ray_max_retries,
                       schedule, warmup (0.1 or "2e"), decay_to, step_every, step_factor,
                       target ("val_acc=0.97": time to target, per experiment too)
    [regularization]   l1, l2, dropout, dropout_mode, early_stopping, monitor, patience, min_delta,
                       augment_shift, augment_noise, train_fraction, weight_decay, clip_norm
    [[experiment]]     name, kind = "optimizers"   (optimizers, lr = 0.01 or {adam = 1e-3, ...})
                                  | "regularizers" (methods, optimizer, lr)
                                  | "tune"         (optimizers, budget, metric, [experiment.space.<optimizer>])
    [experiment.hyperparams]  per optimizer: adam = {b1 = 0.95}, "lion" = {b2 = 0.98}
    [experiment.model], [experiment.train], [experiment.regularization]: that experiment's overrides

Unset keys take the command line's defaults. Everything is validated on load, before anything
trains: an unknown key or a bad value is one ``InputError`` naming the file, the line and the key.
The file's shape (tables, keys, types) is checked by pydantic models built from ``SECTIONS`` and
``KINDS``; the values then by the config classes the command line builds too. ``tomllib`` gives
no line numbers, so the line is found by searching the key in its table's text (good enough for
hand-written files). A relative ``path`` or ``data_dir`` -- and the file of an optimizer named
``file.py:factory`` -- is relative to the suite.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from dnnbench import optim
from dnnbench.analysis import targets
from dnnbench.config import MAX_SEED, MAX_SEEDS, DataConfig, ModelConfig, Regularization, TrainConfig, TrialSpec
from dnnbench.errors import InputError
from dnnbench.experiments import options, regularizers, tuning
from dnnbench.experiments.job import Job
from dnnbench.experiments.optimizers import optimizer_specs
from dnnbench.optim import user
from dnnbench.results.reading import MAX_DEPTH, too_deep
from dnnbench.run.backends import Settings as BackendSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: How an error names what a key holds: by its type, or by the description of its field.
WORDS: dict[Any, str] = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
Names = Annotated[list[str], Field(min_length=1, description="a list of names")]
Hidden = Annotated[list[int], Field(min_length=1, description="a list of layer widths like [500, 500]")]
LR = Annotated[float | dict[str, float], Field(description="a number or a table like {adam = 1e-3}")]
Warmup = Annotated[float | str, Field(description='a fraction of training like 0.1 or epochs like "2e"')]
Positive = Annotated[int, Field(gt=0, description="a positive integer")]
Seeds = Annotated[int, Field(gt=0, le=MAX_SEEDS, description=f"a positive integer up to {MAX_SEEDS}")]
Hyperparams = Annotated[dict[str, dict[str, Any]], Field(description="a table of tables like {adam = {b1 = 0.95}}")]
Space = Annotated[
    dict[str, dict[str, Any]],
    Field(description='a table of tables like {adam = {b1 = "0.8..0.99", lr = "1e-4..1e-1:log", b2 = [0.99, 0.999]}}'),
]
Name = Annotated[str, Field(pattern=r"\S", description="a non-empty string")]
SCHEDULE_KEYS = ("schedule", "warmup", "decay_to", "step_every", "step_factor")
BACKEND_KEYS = ("backend", "ray_address", "ray_max_retries")
PER_SUITE = (
    "max_parallel",
    "workers",
    *BACKEND_KEYS,
)  # in [train] only: how the whole run is split and where it trains

SECTIONS: dict[str, dict[str, Any]] = {
    "data": {"dataset": str, "path": str, "val_split": float, "label_noise": float, "data_dir": str, "verify": bool},
    "model": {"hidden": Hidden, "activation": str, "residual": bool, "precision": str},
    "train": {
        "epochs": int,
        "batch_size": int,
        "loss": str,
        "seeds": Seeds,
        "seed": int,
        "max_parallel": Positive,
        "workers": Positive,
        "schedule": str,
        "warmup": Warmup,
        "decay_to": float,
        "step_every": float,
        "step_factor": float,
        "target": str,
        "backend": str,
        "ray_address": str,
        "ray_max_retries": int,
    },
    "regularization": {
        "l1": float,
        "l2": float,
        "dropout": float,
        "dropout_mode": str,
        "early_stopping": bool,
        "monitor": str,
        "patience": int,
        "min_delta": float,
        "augment_shift": int,
        "augment_noise": float,
        "train_fraction": float,
        "weight_decay": float,
        "clip_norm": float,
    },
}
#: The keys of each experiment kind (besides name, kind and the model/train/regularization overrides).
KINDS: dict[str, dict[str, Any]] = {
    "optimizers": {"optimizers": Names, "lr": LR, "hyperparams": Hyperparams},
    "regularizers": {"methods": Names, "optimizer": str, "lr": float, "hyperparams": Hyperparams},
    "tune": {"optimizers": Names, "budget": int, "metric": str, "space": Space, "hyperparams": Hyperparams},
}
OVERRIDABLE = ("model", "train", "regularization")
DEFAULT_OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam")

# The schema as pydantic models, one per table, made from the tables above. Strict: no "2" for 2,
# no true for 1 (an integer is a number); numbers finite; unknown keys forbidden. Every key is
# optional (unset: the command line's default); the values are used as tomllib read them, so an
# integer given for a number stays an integer in the config (and in the trial ids).
_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _model(name: str, keys: dict[str, Any]) -> type[BaseModel]:
    """A table's model: each key a type (optional) or a (type, default) pair."""
    fields: dict[str, Any] = {k: t if isinstance(t, tuple) else (t, None) for k, t in keys.items()}
    return create_model(name, __config__=_STRICT, **fields)


_OVERRIDES = {s: _model(s, {k: t for k, t in SECTIONS[s].items() if k not in PER_SUITE}) for s in OVERRIDABLE}
_EXPERIMENTS = {
    kind: _model(kind, {"name": Name, "kind": (Literal[kind], ...), **keys, **_OVERRIDES})
    for kind, keys in KINDS.items()
}
_Experiments: Any = Union[tuple(_EXPERIMENTS.values())]  # noqa: UP007 -- X | Y cannot be built from a tuple
SuiteFile = _model(
    "suite",
    {
        **{s: _model(s, keys) for s, keys in SECTIONS.items()},
        "experiment": (list[Annotated[_Experiments, Field(discriminator="kind")]], Field(min_length=1)),
    },
)


@dataclass(frozen=True)
class Experiment:
    """One comparison of a suite: its job tags its trials ``experiment=<name>``."""

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
                out += e.tuning.finals(mine)  # tagged experiment=<name> by the experiment's job
        return out

    def possible_finals(self) -> list[TrialSpec]:
        """Every final run the suite's ``tune`` experiments could train, whichever candidates win."""
        out: list[TrialSpec] = []
        for e in self.experiments:
            if e.tuning is not None:
                out += e.tuning.possible_finals()
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
            sub = f"{table}.{key}".lstrip(".")
            if (
                key is not None
                and (current == sub or current.startswith(f"{sub}."))
                and (index is None or count == index)
            ):
                return number  # the key is a table itself: [train], [experiment.hyperparams]
            if current == table and (index is None or count == index) and header is None:
                header = number
            continue
        same = current == table or current == table.rpartition(".")[0] != ""
        if same and (index is None or count == index) and pattern is not None and pattern.search(line):
            return number
    return header


#: What is wrong and where: (message, table, key, [[experiment]] index), as ``_Source.error`` takes it.
Problem = tuple[str, str, str | None, int | None]


def _problem(doc: dict[str, Any], error: Any) -> Problem:
    """A pydantic error as a ``Problem``: its ``loc`` is the path of keys to the bad value (for an
    [[experiment]]: its index, then its kind, then keys)."""
    loc, table, index, model, raw = error["loc"], "", None, SuiteFile, doc
    if loc == ("experiment",):  # missing, empty, or not an array of tables
        return (
            'a suite needs at least one [[experiment]] table (kind = "optimizers" or "regularizers")',
            "",
            "experiment",
            None,
        )
    if loc[0] == "experiment" and len(loc) == 2:  # an [[experiment]] that is not a table, or its kind
        index, raw = loc[1], doc["experiment"][loc[1]]
        if not isinstance(raw, dict):
            return "must be a table", "experiment", None, index
        return f"kind must be one of {', '.join(KINDS)}, got {raw.get('kind')!r}", "experiment", "kind", index
    if loc[0] == "experiment":
        table, index, model, raw, loc = "experiment", loc[1], _EXPERIMENTS[loc[2]], doc["experiment"][loc[1]], loc[3:]
    if len(loc) > 1 and loc[0] in (*SECTIONS, *OVERRIDABLE):  # a key of a section, or of an experiment's override
        table, model, raw, loc = (
            f"{table}.{loc[0]}".lstrip("."),
            cast(type[BaseModel], model.model_fields[loc[0]].annotation),  # a section's field is its model
            raw[loc[0]],
            loc[1:],
        )
    key = str(loc[0])
    if error["type"] == "extra_forbidden":
        if model is SuiteFile:
            return f"unknown table {key!r}; valid: {', '.join(SECTIONS)}, [[experiment]]", "", key, None
        return f"unknown key {key!r}; valid: {', '.join(model.model_fields)}", table, key, index
    field = model.model_fields[key]
    what = field.description or WORDS.get(field.annotation, "a table")  # a key that is none of these is a table
    return f"{key} must be {what}, got {raw[key]!r}", table, key, index


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


def _job(
    src: _Source, suite: dict[str, dict[str, Any]], over: dict[str, dict[str, Any]], index: int | None, folder: Path
) -> Job:
    """The Job of the suite's sections with ``over`` (an experiment's tables) on top."""

    def merged(section: str) -> dict[str, tuple[Any, str, int | None]]:
        out: dict[str, tuple[Any, str, int | None]] = {
            key: (value, section, None) for key, value in suite[section].items()
        }
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
    if not 0 <= seed[0] or seed[0] + seeds[0] - 1 > MAX_SEED:  # seeds itself is checked by TrainTable
        raise src.error(
            f"seeds {seed[0]}..{seed[0] + seeds[0] - 1} must lie in [0, {MAX_SEED}]",
            seed[1] or seeds[1],
            "seed",
            seed[2],
        )
    train_config = _build(src, TrainConfig, train)

    def make_schedule(
        schedule: str = "constant",
        warmup: Any = None,
        decay_to: float | None = None,
        step_every: float | None = None,
        step_factor: float = 0.1,
    ) -> optim.Schedule:
        made = options.make_schedule(schedule, warmup, decay_to, step_every, step_factor)
        made.check_epochs(train_config.epochs)
        return made

    return Job(
        data=_build(src, DataConfig, data),
        model=_build(src, ModelConfig, model),
        train=train_config,
        reg=_build(src, Regularization, merged("regularization")),
        seeds=tuple(range(seed[0], seed[0] + seeds[0])),
        max_parallel=parallel[0] if parallel else None,
        workers=workers[0] if workers else None,
        schedule=_build(src, make_schedule, schedule_values),
        target=_build(
            src, lambda target=None: targets.parse_target(target), {"target": target_value} if target_value else {}
        ),
        backend=_build(src, BackendSettings, backend_values),
    )


def _experiment(
    src: _Source,
    index: int,
    raw: dict[str, Any],
    suite: dict[str, dict[str, Any]],
    folder: Path,
    max_parallel: int | None,
    workers: int | None,
) -> Experiment:
    """The ``index``-th [[experiment]] (of a checked shape) and its trials."""
    kind, name = raw["kind"], raw.get("name", raw["kind"])
    over = {section: raw.get(section, {}) for section in OVERRIDABLE}
    job = dataclasses.replace(
        _job(src, suite, over, index, folder), max_parallel=max_parallel, workers=workers, tags=(("experiment", name),)
    )
    settings = {k: v for k, v in raw.items() if k not in (*OVERRIDABLE, "name", "kind")}

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
                raise fail(
                    f"hyperparams / space name optimizer {n!r}, which is not being tuned ({', '.join(names)})", n
                )
        try:
            planned = tuning.plan(
                job,
                list(specs_of.values()),
                budget=settings.get("budget", 32),
                metric=settings.get("metric", "val_acc"),
                suite_space={specs_of[n]: sp for n, sp in settings.get("space", {}).items()},
                hyperparams={specs_of[n]: hp for n, hp in given_hp.items()},
            )
        except InputError as exc:
            raise fail(str(exc), "space" if settings.get("space") else "budget") from None
        specs = planned.search
    elif kind == "optimizers":
        names = list(dict.fromkeys(settings.get("optimizers", DEFAULT_OPTIMIZERS)))
        specs_of = {n: checked_optimizer(n, "optimizers") for n in names}
        lr = settings.get("lr")
        lrs: dict[str, float | None] = dict.fromkeys(specs_of.values(), lr if not isinstance(lr, dict) else None)
        for n, value in lr.items() if isinstance(lr, dict) else ():
            if n not in names:
                raise fail(f"lr names optimizer {n!r}, which is not being run ({', '.join(names)})", n)
            lrs[specs_of[n]] = value
        for n in given_hp:
            if n not in names:
                raise src.error(
                    f"hyperparams names optimizer {n!r}, which is not being run ({', '.join(names)})",
                    "experiment.hyperparams",
                    n,
                    index,
                )
        try:
            specs = optimizer_specs(job, list(specs_of.values()), lrs, {specs_of[n]: hp for n, hp in given_hp.items()})
        except InputError as exc:
            raise fail(str(exc), "hyperparams" if given_hp else "lr") from None
    else:
        optimizer, lr, methods = settings.get("optimizer", "adam"), settings.get("lr"), settings.get("methods")
        spec = checked_optimizer(optimizer, "optimizer")
        for n in given_hp:
            if n != optimizer:
                raise src.error(
                    f"hyperparams names optimizer {n!r}, but this experiment runs {optimizer!r}",
                    "experiment.hyperparams",
                    n,
                    index,
                )
        try:
            optim.resolve(spec, lr, **given_hp.get(optimizer, {}))
        except InputError as exc:
            raise fail(str(exc), "hyperparams" if given_hp else "lr") from None
        for m in methods or ():
            if m not in regularizers.METHODS:
                raise fail(f"unknown regularizer {m!r}; valid: {', '.join(regularizers.METHODS)}", "methods")
        try:
            _, _, specs = regularizers.comparison_specs(
                job, ",".join(methods) if methods else None, spec, lr, given_hp.get(optimizer)
            )
        except InputError as exc:
            raise fail(str(exc), "methods") from None
    return Experiment(name=name, kind=kind, job=job, specs=tuple(specs), settings=settings, tuning=planned)


def load(path: Path) -> Suite:
    """Read and validate a suite file; ``InputError`` (file:line: what is wrong) for anything bad."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (editors on Windows) is not TOML
    except FileNotFoundError:
        raise InputError(f"{path}: no such suite file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the suite file ({exc})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    except RecursionError:  # tomllib reads nested inline tables and arrays recursively
        doc = None
    if doc is None or too_deep(doc):  # before any recursive code (validation, messages) sees it
        raise InputError(f"{path}: tables or arrays nested more than {MAX_DEPTH} deep (a suite needs at most 6)")
    src = _Source(path, text)
    try:
        SuiteFile.model_validate(doc)
    except ValidationError as exc:  # the first problem in the file (those without a line last)
        problems = [_problem(doc, e) for e in exc.errors()]
        raise src.error(*min(problems, key=lambda p: find_line(text, *p[1:]) or len(text))) from None
    suite = {name: doc.get(name, {}) for name in SECTIONS}
    folder = path.parent
    job = _job(src, suite, {}, None, folder)
    experiments = [
        _experiment(src, i, item, suite, folder, job.max_parallel, job.workers)
        for i, item in enumerate(doc["experiment"])
    ]
    seen: set[str] = set()
    for i, experiment in enumerate(experiments):
        if experiment.name in seen:
            raise src.error(
                f"experiment name {experiment.name!r} is used twice; give each [[experiment]] its own name",
                "experiment",
                "name",
                i,
            )
        seen.add(experiment.name)
    return Suite(path=path, job=job, experiments=tuple(experiments))
