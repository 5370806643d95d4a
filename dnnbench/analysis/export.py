"""Results rows as flat tables: labels that name a comparison row, seed statistics, CSV.

Everything here reads the plain JSON rows of a results file (``results.read_results``), so the
commands that only look at results (``check``, ``plot``, ``export``, ``report``) never train and
never need JAX. A *label* names what a trial is apart from its seed: the optimizer, its tag values
and every config value that was swept among trials of that optimizer (e.g. ``lr=0.01``).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dnnbench.analysis import stats
from dnnbench.errors import DataError, printable
from dnnbench.results.metrics import FINAL, ROW_KEYS

Row = dict[str, Any]

#: Short names for swept config values in labels.
SHORT = {"learning_rate": "lr"}
_NOT_SWEPT = ("seed", "tags", "optimizer")


def require(rows: Sequence[Row], what: str = "results") -> None:
    """``DataError`` unless every row is a trial dict with an id and an optimizer."""
    for i, row in enumerate(rows, 1):
        for key in ("id", "optimizer"):
            if not isinstance(row, dict) or not isinstance(row.get(key), str):
                raise DataError(f"{what}: trial {i} has no {key!r}")


def tags(row: Row) -> dict[str, Any]:
    """The trial's free labels: ``config.tags`` when present, else extra top-level strings.

    Values keep their JSON types (``depth`` 8, not "8"; files written before tags were typed hold
    strings), so a CSV column holds numbers; labels are ``str(value)``."""
    config_tags = (row.get("config") or {}).get("tags")
    if isinstance(config_tags, dict):
        return {str(k): v for k, v in config_tags.items()}
    return {k: v for k, v in row.items() if k not in ROW_KEYS and isinstance(v, str)}


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flat(inner, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tuple(value) if isinstance(value, list) else value}


def _settings(row: Row) -> dict[str, Any]:
    """Everything that defines the trial except its seed, optimizer and tags, flattened."""
    config = row.get("config") or {"hyperparams": row.get("hyperparams") or {}}
    flat = _flat(config)
    return {k: v for k, v in flat.items() if k.split(".")[0] not in _NOT_SWEPT}


def _base(row: Row) -> str:
    return " ".join([row["optimizer"], *map(str, tags(row).values())])


def swept_keys(rows: Sequence[Row]) -> dict[str, list[str]]:
    """Per optimizer and tag set: the config keys whose value differs between its trials (a sweep).

    Only differences inside a group count, so ``optimizers`` (each with its own default rate)
    labels ``sgd`` and ``adam``, while an lr sweep of sgd labels ``sgd lr=0.1`` and ``sgd lr=0.01``.
    """
    seen: dict[str, dict[str, set[str]]] = {}
    for row in rows:
        values = seen.setdefault(_base(row), {})
        for key, value in _settings(row).items():
            values.setdefault(key, set()).add(repr(value))
    return {base: [k for k, v in values.items() if len(v) > 1] for base, values in seen.items()}


def _short(key: str, keys: Sequence[str]) -> str:
    last = key.rsplit(".", 1)[-1]
    unique = sum(k.rsplit(".", 1)[-1] == last for k in keys) == 1
    return SHORT.get(last, last) if unique else key


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ",".join(map(_show, value))
    return str(value)


def label(row: Row, swept: dict[str, list[str]] | None = None) -> str:
    """``adam l2 lr=0.01``: optimizer, tag values and this trial's values of its group's sweep."""
    base = _base(row)
    keys = (swept or {}).get(base, [])
    settings = _settings(row)
    return " ".join([base] + [f"{_short(k, keys)}={_show(settings[k])}" for k in keys if k in settings])


def trial_label(row: Row, swept: dict[str, list[str]] | None = None) -> str:
    """``label`` plus the seed: names one trial, stable across runs of the same command."""
    return f"{label(row, swept)} seed={row.get('seed')}"


def group(rows: Sequence[Row]) -> dict[str, list[Row]]:
    """Trials by label, in first-seen order: one comparison row, a curve or a table line each."""
    swept = swept_keys(rows)
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(label(row, swept), []).append(row)
    return groups


def number(value: Any) -> float:
    """A JSON value as a float: null and non-numbers are NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


#: Top-level row keys shown elsewhere (the HTML report's status cell), never as tag columns.
NOT_TAGS = frozenset({"error", "traceback"})


@dataclass(frozen=True)
class SpecView:
    """The two attributes of a ``TrialSpec`` that ``stats`` reads."""

    seed: Any
    learning_rate: float


@dataclass(frozen=True)
class RowTrial:
    """A results row seen as a ``TrialResult`` (status, metrics, history, ...): nulls become NaN.

    It has what ``stats.summarize`` and ``stats.paired_to_best`` read, so summarising a results
    file needs no JAX and no ``TrialSpec``."""

    row: Row
    label: str
    spec: SpecView
    status: str
    metrics: dict[str, float]
    history: dict[str, list]
    best_epoch: int
    diverged_epoch: int | None
    timing: dict[str, float]
    diagnosis: dict[str, Any] | None

    @classmethod
    def of(cls, row: Row, label: str) -> RowTrial:
        hyper = row.get("hyperparams") or {}
        diagnosis = row.get("diagnosis")
        return cls(
            row=row,
            label=label,
            spec=SpecView(row.get("seed"), number(hyper.get("learning_rate"))),
            status=str(row.get("status")),
            metrics={k: number(v) for k, v in (row.get("metrics") or {}).items()},
            history=dict(row.get("history") or {}),
            best_epoch=int(row.get("best_epoch") or 0),
            diverged_epoch=row.get("diverged_epoch"),
            timing={k: number(v) for k, v in (row.get("timing") or {}).items()},
            diagnosis=diagnosis if isinstance(diagnosis, dict) and "label" in diagnosis else None,
        )

    @property
    def optimizer(self) -> str:
        return str(self.row.get("optimizer"))

    @property
    def tags(self) -> dict[str, str]:
        """The row's tags (``tags``) and any other top-level scalar it carries: a key the report
        does not know (``phase`` from a future command) becomes a column, not an error."""
        extra = {
            k: str(v)
            for k, v in self.row.items()
            if k not in ROW_KEYS and k not in NOT_TAGS and isinstance(v, (str, int, float, bool))
        }
        return {**extra, **{k: str(v) for k, v in tags(self.row).items()}}


def row_trials(rows: Sequence[Row]) -> list[RowTrial]:
    """Each row as a ``RowTrial``, labelled as ``dnnbench report`` labels it (``label``)."""
    swept = swept_keys(rows)
    return [RowTrial.of(r, label(r, swept)) for r in rows]


def summarize(rows: Sequence[Row]) -> list[stats.Summary[RowTrial]]:
    """``stats.summarize`` of results rows, per label, over every final metric."""
    return stats.summarize(row_trials(rows), lambda t: t.label, metrics=FINAL)


def _union(dicts: Iterable[dict[str, Any] | None]) -> list[str]:
    keys: dict[str, None] = {}
    for d in dicts:
        keys.update(dict.fromkeys(d or {}))
    return list(keys)


def to_csv(rows: Sequence[Row]) -> str:
    """One CSV line per trial: id, optimizer, seed, status, ``hp_*``, tags, final metrics, epochs,
    diagnosis and ``timing_*``. Missing and null values are empty cells; floats keep full precision."""
    require(rows)
    hps = _union(r.get("hyperparams") for r in rows)
    tag_keys = _union(tags(r) for r in rows)
    metrics = [m for m in FINAL if any(m in (r.get("metrics") or {}) for r in rows)]
    metrics += [m for m in _union(r.get("metrics") for r in rows) if m not in metrics]
    timing = _union(r.get("timing") for r in rows)
    fixed = ["id", "optimizer", "seed", "status"]
    tag_cols = [t if t not in fixed else f"tag_{t}" for t in tag_keys]
    header = (
        fixed
        + [f"hp_{h}" for h in hps]
        + tag_cols
        + metrics
        + ["best_epoch", "stopped_epoch", "diverged_epoch", "diagnosis"]
        + [f"timing_{t}" for t in timing]
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for r in rows:
        trial_tags = tags(r)
        cells = [r.get("id"), r.get("optimizer"), r.get("seed"), r.get("status")]
        cells += [(r.get("hyperparams") or {}).get(h) for h in hps]
        cells += [trial_tags.get(t) for t in tag_keys]
        cells += [(r.get("metrics") or {}).get(m) for m in metrics]
        cells += [r.get("best_epoch"), r.get("stopped_epoch"), r.get("diverged_epoch")]
        cells.append((r.get("diagnosis") or {}).get("label"))
        cells += [(r.get("timing") or {}).get(t) for t in timing]
        writer.writerow(["" if c is None else c for c in cells])
    return printable(buffer.getvalue())  # names and tags come from files: no control character gets through
