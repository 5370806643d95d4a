"""Search spaces: which hyperparameters a tuning run samples, over which ranges, on which scale.

A dimension is a range ``lo..hi`` on a ``log`` or ``linear`` scale, ``log`` of ``1 - x`` for
averaging coefficients (``b1``, ``b2``, ``momentum``, ``decay``: their interesting values crowd
near 1), or a list of choices (a categorical). Defaults per optimizer, for every hyperparameter
that matters (built-in and optax optimizers alike):

- ``learning_rate``: log-uniform over two decades either side of the optimizer's default;
- ``b1``, ``b2``, ``b3``, ``momentum``, ``decay``, ``beta``: ``1 - x`` log-uniform over a decade
  either side of ``1 - default`` (``b2 = 0.999`` -> 0.99 .. 0.9999; capped at x >= 0);
- ``eps``: log-uniform over two decades either side of the default;
- ``weight_decay``: log-uniform over two decades either side of the default (1e-5 .. 1e-1 when
  the default is 0).

A user's optimizer gets the learning rate only, plus whatever ``--space`` names. ``--space``
texts: ``lr=1e-4..1e-1:log``, ``adam.b1=0.8..0.99`` (linear unless ``:log`` / ``:log1m``),
``b2=0.99,0.999`` (choices).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dnnbench import optim
from dnnbench.errors import InputError

SCALES = ("log", "linear", "log1m")
AVERAGING = ("b1", "b2", "b3", "momentum", "decay", "beta")
ALIASES = {"lr": "learning_rate"}


@dataclass(frozen=True)
class Dimension:
    """One searched hyperparameter: a range on a scale, or choices."""

    name: str
    lo: float = math.nan
    hi: float = math.nan
    scale: str = "linear"
    choices: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if self.choices:
            return
        if self.scale not in SCALES:
            raise InputError(f"search space {self.name}: unknown scale {self.scale!r}; valid: {', '.join(SCALES)}")
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)) or not self.lo < self.hi:
            raise InputError(
                f"search space {self.name}: the range must be lo..hi with lo < hi, got {self.lo:g}..{self.hi:g}"
            )
        if self.scale == "log" and self.lo <= 0:
            raise InputError(f"search space {self.name}: a log range needs lo > 0, got {self.lo:g}..{self.hi:g}")
        if self.scale == "log1m" and self.hi >= 1:
            raise InputError(
                f"search space {self.name}: a log1m range (of 1 - x) needs hi < 1, got {self.lo:g}..{self.hi:g}"
            )

    def value(self, u: float) -> Any:
        """The value at ``u`` in [0, 1): the quasi-random coordinate mapped onto the dimension."""
        if self.choices:
            return self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)]
        if self.scale == "linear":
            return self.lo + u * (self.hi - self.lo)
        if self.scale == "log":
            return math.exp(math.log(self.lo) + u * (math.log(self.hi) - math.log(self.lo)))
        # log1m: 1 - x log-uniform between 1 - hi and 1 - lo
        a, b = math.log(1 - self.hi), math.log(1 - self.lo)
        return 1 - math.exp(a + u * (b - a))

    def describe(self) -> str:
        if self.choices:
            return f"{self.name} in {{{', '.join(map(str, self.choices))}}}"
        return f"{self.name} {self.lo:.4g}..{self.hi:.4g}" + ("" if self.scale == "linear" else f" ({self.scale})")


@dataclass(frozen=True)
class SpaceSetting:
    """One ``--space`` text, parsed: target optimizer ("" = every one that has it), dimension."""

    target: str
    dimension: Dimension


def parse_space(items: Sequence[str]) -> tuple[SpaceSetting, ...]:
    """``--space`` texts -> settings (checked against the optimizers by ``space_for``)."""
    out: list[SpaceSetting] = []
    for item in items:
        target, name, text = optim.split_setting(item, "--space", "NAME=LO..HI[:log|:linear|:log1m] or NAME=V1,V2,...")
        name = ALIASES.get(name, name)
        if any(s.target == target and s.dimension.name == name for s in out):  # as --hp: which one was meant?
            raise InputError(f"--space sets {target + '.' if target else ''}{name} twice; give one range")
        out.append(SpaceSetting(target, parse_dimension(name, text, f"--space {item}")))
    return tuple(out)


def parse_dimension(name: str, text: Any, where: str) -> Dimension:
    """``1e-4..1e-1:log`` | ``0.8..0.99`` | ``0.99,0.999`` (or a list from a suite) -> a Dimension."""
    if isinstance(text, (list, tuple)):
        return Dimension(name, choices=tuple(text)) if text else _bad(where, "an empty list of choices")
    text = str(text).strip()
    match = re.fullmatch(r"(.+?)\.\.(.+?)(?::(\w+))?", text)
    if match:
        lo, hi = _number(match.group(1), where), _number(match.group(2), where)
        return Dimension(name, lo, hi, match.group(3) or ("log" if name == "learning_rate" else "linear"))
    choices = [part.strip() for part in text.split(",") if part.strip()]
    if not choices:
        _bad(where, "nothing to search")
    return Dimension(name, choices=tuple(_choice(c) for c in choices))


def _bad(where: str, what: str) -> Dimension:
    raise InputError(f"{where}: {what}")


def _number(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{where}: {text!r} is not a number") from None


def _choice(text: str) -> Any:
    try:
        return float(text) if re.fullmatch(r"[-+.\deE]+", text) else {"true": True, "false": False}.get(text, text)
    except ValueError:
        return text


def default_space(spec: str) -> dict[str, Dimension]:
    """The default dimensions of ``spec`` (see the module docstring)."""
    opt = optim.resolve_spec(spec)
    lr = opt.default_lr
    dims = {"learning_rate": Dimension("learning_rate", lr / 100, lr * 100, "log")}
    if opt.kind in ("file", "module", "plugin"):
        return dims
    for p in opt.params:
        if p.kind != optim.NUMBER or p.required:
            continue
        d = float(p.default)
        if p.name in AVERAGING and 0 < d < 1:
            # rounded: 1 - 10 * (1 - 0.9) is 2e-16 in binary, not 0
            dims[p.name] = Dimension(
                p.name, max(0.0, round(1 - 10 * (1 - d), 12)), round(1 - (1 - d) / 10, 12), "log1m"
            )
        elif p.name in ("eps", "weight_decay") and d > 0:
            dims[p.name] = Dimension(p.name, d / 100, d * 100, "log")
        elif p.name == "weight_decay":
            dims[p.name] = Dimension(p.name, 1e-5, 1e-1, "log")
    return dims


def space_for(
    spec: str, settings: Sequence[SpaceSetting], suite_space: Mapping[str, Any] | None = None
) -> dict[str, Dimension]:
    """``spec``'s search space: its defaults, then suite entries, then ``--space``: a setting for
    every optimizer (``b1=...``), then one for ``spec`` alone (``adam.b1=...``), whatever their order
    on the command line (as ``--hp``)."""
    dims = default_space(spec)
    params = optim.resolve_spec(spec).param
    for name, text in (suite_space or {}).items():
        name = ALIASES.get(name, name)
        dims[name] = _checked(spec, parse_dimension(name, text, f"space.{spec}.{name}"), params)
    for s in sorted(settings, key=lambda s: bool(s.target)):  # targeted last: they win
        if s.target and s.target != spec:
            continue
        if not s.target and s.dimension.name != "learning_rate" and s.dimension.name not in params:
            continue  # an untargeted dimension applies to the optimizers that have it
        dims[s.dimension.name] = _checked(spec, s.dimension, params)
    return dims


def check_settings(settings: Sequence[SpaceSetting], optimizers: Sequence[str]) -> None:
    """Every ``--space`` names an optimizer of the run and a hyperparameter that one of them has."""
    for s in settings:
        name = s.dimension.name
        if s.target:
            if s.target not in optimizers:
                raise InputError(
                    f"--space {s.target}.{name}: optimizer {s.target!r} is not being tuned ({', '.join(optimizers)})"
                )
            _checked(s.target, s.dimension, optim.resolve_spec(s.target).param)
        elif name != "learning_rate" and not any(name in optim.resolve_spec(o).param for o in optimizers):
            raise InputError(f"--space {name}: none of {', '.join(optimizers)} has a hyperparameter {name!r}")


def _checked(spec: str, dim: Dimension, params: Mapping[str, Any]) -> Dimension:
    if dim.name != "learning_rate" and dim.name not in params:
        valid = ", ".join(["learning_rate", *params])
        raise InputError(f"search space: {spec} has no hyperparameter {dim.name!r}; valid: {valid}")
    return dim
