"""The options every training command shares: their Typer declarations, and how a command gets them.

A command receives them as typed values: a ``Job`` (built from the option groups of
``experiments.options``) and an ``Output``. No JAX here: ``dnnbench --help`` answers at once.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

import dnnbench.cli.streams as streams
from dnnbench.cli.results import COLUMNS_HELP, WIDE_HELP
from dnnbench.errors import TrialsErrored

DATA = "Data"
MODEL = "Model"
TRAIN = "Training"
REG = "Regularization"
OUTPUT = "Output"
BACKEND = "Backend"


def option(panel: str | None, help: str, *flags: str, **settings: Any) -> Any:
    """A ``typer.Option`` shown under ``panel`` in ``--help`` (None: Typer's own panel; ``flags``:
    its names, when not the parameter's)."""
    return typer.Option(*flags, help=help, rich_help_panel=panel, **settings)


# Options that ``run`` and ``datasets`` declare too.
DataDir = Annotated[
    Path | None, option(DATA, "Where MNIST-like datasets are cached (default: $DNNBENCH_DATA_DIR or the user cache).")
]
Json = Annotated[bool, option(OUTPUT, "Write the results lines to stdout instead of a table.", "--json")]
Quiet = Annotated[bool, option(OUTPUT, "No progress display.", "--quiet", "-q")]
Resume = Annotated[
    bool, option(OUTPUT, "Keep the finished trials already in --out, train the rest and append them.", "--resume")
]
Force = Annotated[
    bool, option(OUTPUT, "Replace --out if it exists (without it, an existing file is never replaced).", "--force")
]
Wide = Annotated[bool, option(OUTPUT, WIDE_HELP, "--wide")]
TableColumns = Annotated[str | None, option(OUTPUT, COLUMNS_HELP, "--columns", show_default=False)]
RayAddress = Annotated[
    str | None,
    option(
        BACKEND,
        "With --backend ray: the cluster to join (default: $RAY_ADDRESS, else a cluster started with `ray "
        "start` on this machine, else a new local one for this run).",
    ),
]
Threads = Annotated[
    str | None,
    option(
        TRAIN,
        "XLA's CPU threads per program (default 1, or $DNNBENCH_THREADS): the same number gives the same "
        "numbers on any machine and backend (Ray tasks declare that many CPUs); more speeds up a run of "
        "one large program. auto: the cores shared out between the run's programs (all of them for one "
        "program), recorded in the header; the numbers then depend on the machine's cores.",
        show_default=False,
        metavar="<N|auto>",
    ),
]


class SharedOptions:
    """The options every training command shares, in their ``--help`` order: each one's parameter
    name, its Typer declaration (the annotation) and its default. A declaration, never instantiated:
    ``shared_options`` reads it, and builds the typed groups from the values."""

    dataset: Annotated[
        str, option(DATA, "digits | synthetic[:train=N,test=N,features=D,classes=C,seed=S] | mnist | fashion-mnist.")
    ] = "digits"
    data: Annotated[
        Path | None,
        option(DATA, "An .npz in Keras's layout (x_train, y_train, x_test, y_test); overrides --dataset.", "--data"),
    ] = None
    data_dir: DataDir = None
    no_verify: Annotated[
        bool, option(DATA, "Skip the SHA-256 check of dataset files (your own copies).", "--no-verify")
    ] = False
    val_split: Annotated[float, option(DATA, "Fraction of the training set held out for validation, in [0, 1).")] = 0.1
    label_noise: Annotated[
        float, option(DATA, "Fraction of training labels replaced by a wrong class (val/test stay clean), in [0, 1).")
    ] = 0.0
    hidden: Annotated[str, option(MODEL, "Hidden layer widths, comma-separated.")] = "500,500"
    activation: Annotated[
        str, option(MODEL, "relu | sigmoid | tanh | gelu | elu | leaky_relu | selu | swish | linear.")
    ] = "relu"
    residual: Annotated[bool, option(MODEL, "Skip connections around equal-width hidden layers.", "--residual")] = False
    precision: Annotated[
        str, option(MODEL, "fp32 | bf16 (bfloat16 matmul inputs, float32 accumulation and weights).")
    ] = "fp32"
    loss: Annotated[str, option(TRAIN, "ce (categorical cross-entropy) | mse (softmax vs one-hot).")] = "ce"
    epochs: Annotated[int, option(TRAIN, "Training epochs.")] = 20
    batch_size: Annotated[int, option(TRAIN, "Minibatch size.")] = 100
    train_eval_samples: Annotated[
        int, option(TRAIN, "Training metrics are measured (test mode) on this many training samples; 0 = all.")
    ] = 10_000
    seeds: Annotated[int, option(TRAIN, "Number of seeds per configuration (seed, seed+1, ...).")] = 1
    seed: Annotated[int, option(TRAIN, "First seed: initial weights, batch order and dropout masks.")] = 0
    max_parallel: Annotated[int | None, option(TRAIN, "At most this many trials per compiled program.")] = None
    workers: Annotated[
        int | None,
        option(
            TRAIN,
            "Compiled programs trained at once (default: CPU cores / --threads, as many as memory holds; 1 on a "
            "GPU). Never changes a number.",
        ),
    ] = None
    hp: Annotated[
        list[str] | None,
        option(
            TRAIN,
            "Set an optimizer hyperparameter: NAME=VALUE (every compared optimizer that has it) or "
            "OPTIMIZER.NAME=VALUE (repeatable), e.g. --hp b1=0.95 --hp adam.eps=1e-8.",
            "--hp",
        ),
    ] = None
    schedule: Annotated[
        str,
        option(
            TRAIN,
            "Learning-rate schedule: constant | linear | cosine | warmup_cosine | step | exponential (a "
            "factor on every optimizer's update).",
            "--schedule",
        ),
    ] = "constant"
    warmup: Annotated[
        str | None,
        option(TRAIN, "Linear warmup: a fraction of training (0.1) or epochs (2e); default 0 (0.1 for warmup_cosine)."),
    ] = None
    decay_to: Annotated[
        float | None,
        option(TRAIN, "Final factor of linear, cosine and exponential schedules (default 0; 0.01 for exponential)."),
    ] = None
    step_every: Annotated[
        float | None, option(TRAIN, "step schedule: epochs between steps (default: a third of training).")
    ] = None
    step_factor: Annotated[float, option(TRAIN, "step schedule: the factor of each step.")] = 0.1
    target: Annotated[
        str | None,
        option(
            OUTPUT,
            "Time to target: METRIC=VALUE (val_acc=0.97, val_loss=0.1); each row records the first epoch, "
            "step and training time that reached it.",
            "--target",
        ),
    ] = None
    backend: Annotated[
        str,
        option(
            BACKEND,
            "Where the compiled programs train: local (processes for a run of much training or many programs, "
            "else threads) | "
            "processes (a pool of worker processes, one XLA each) | threads (threads of this process) | ray "
            "(one Ray task per program on a Ray cluster; pip install 'dnnbench[ray]'). The numbers are the same "
            "on each.",
            "--backend",
        ),
    ] = "local"
    ray_address: RayAddress = None
    ray_max_retries: Annotated[
        int,
        option(BACKEND, "With --backend ray: how many times a program whose worker process or node died runs again."),
    ] = 2
    threads: Threads = None
    l1: Annotated[float, option(REG, "L1 penalty strength on weight matrices.")] = 0.0
    l2: Annotated[float, option(REG, "L2 penalty strength on weight matrices.")] = 0.0
    dropout: Annotated[float, option(REG, "Dropout rate of every hidden layer's inputs, in [0, 1).")] = 0.0
    dropout_mode: Annotated[str, option(REG, "inverted | scale-at-test (the recipe's W*(1-p) at test).")] = "inverted"
    early_stopping: Annotated[
        bool, option(REG, "Stop when the monitored value stops improving; restore the best epoch.", "--early-stopping")
    ] = False
    monitor: Annotated[str, option(REG, "val_loss | val_acc (early stopping).")] = "val_loss"
    patience: Annotated[int, option(REG, "Epochs without improvement before stopping.")] = 5
    min_delta: Annotated[float, option(REG, "Smallest change that counts as an improvement.")] = 0.0
    augment_shift: Annotated[int, option(REG, "Random shifts of up to this many pixels (image data).")] = 0
    augment_noise: Annotated[float, option(REG, "Std of Gaussian noise added to every training batch.")] = 0.0
    train_fraction: Annotated[float, option(REG, "Train on this fraction of the training set, in (0, 1].")] = 1.0
    weight_decay: Annotated[
        float,
        option(
            REG,
            "Decoupled weight decay with any optimizer: after its step, theta -= lr * X * theta on the weight "
            "matrices, biases masked off (optax.add_decayed_weights, as adamw). A per-trial number: "
            "--vary weight_decay=0,1e-4.",
            "--weight-decay",
        ),
    ] = 0.0
    clip_norm: Annotated[
        float | None,
        option(
            TRAIN,
            "Clip the gradient to this global norm before the optimizer (optax.clip_by_global_norm); default: "
            "no clipping. A per-trial number: --vary clip_norm=0.5,1,5.",
            "--clip-norm",
        ),
    ] = None
    out: Annotated[Path | None, option(OUTPUT, "Write results as JSON Lines to this file.")] = None
    json: Json = False
    quiet: Quiet = False
    resume: Resume = False
    force: Force = False
    wide: Wide = False
    columns: TableColumns = None


# Each shared option's (annotation, default), in the declaration's order (Python keeps it).
_DECLARED = {
    name: (annotation, getattr(SharedOptions, name))
    for name, annotation in typing.get_type_hints(SharedOptions, include_extras=True).items()
}
TABLES = ("wide", "columns")  # a command that prints no table (``tables=False``) has neither

Group = TypeVar("Group")


def shared_options(
    command: Callable[..., object] | None = None, *, tables: bool = True, **defaults: Any
) -> Callable[..., Any]:
    """Give a training command the shared options: it declares its own options, ``job`` (the
    checked ``Job`` the shared options build) and ``output`` (``Output``: ``--out``, ``--json``,
    ``--quiet``, ``--resume``, ``--force`` and the ``--wide`` / ``--columns`` layout).
    ``@shared_options(epochs=40)`` changes a default for that command only; ``tables=False``: a
    command that prints no table (no ``--wide`` / ``--columns``). The command returns its trials;
    errored ones make the exit code 1 (``fail_on_errored``).

    The one place where a signature is composed. Typer reads a command's options from its
    function's signature and has no groups of parameters (fastapi/typer issues 153, 154 and 264 ask
    for them); spelling the 49 shared options out would repeat 49 parameter lines in each of six
    commands. So the function Typer sees takes the command's own parameters and then those of
    ``SharedOptions``, and turns the shared ones into the typed groups, once, before the command runs.
    """
    if command is None:
        return functools.partial(shared_options, tables=tables, **defaults)
    # the command's own annotations are objects (its module has no postponed annotations); job and
    # output are not Typer's
    own = [p for p in inspect.signature(command).parameters.values() if p.name not in ("job", "output")]
    shared = [
        inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=defaults.get(name, default), annotation=annotation
        )
        for name, (annotation, default) in _DECLARED.items()
        if tables or name not in TABLES
    ]

    @functools.wraps(command)
    def typer_command(**values: Any) -> None:
        from dnnbench.train import threads

        threads.use(values.pop("threads"))  # before anything starts JAX
        from dnnbench.run import pool

        if values["backend"] in ("local", "processes"):  # may train in worker processes: spawn them now
            pool.start_early(values["workers"] or pool.default_workers())
        try:
            _run_command(command, tables, values)
        finally:
            pool.end()  # unless the run adopted them

    typer_command.__signature__ = inspect.Signature(own + shared)  # type: ignore[attr-defined]
    typer_command.__annotations__ = {p.name: p.annotation for p in own + shared}  # what Typer evaluates
    return typer_command


def _run_command(command: Callable[..., object], tables: bool, values: dict[str, Any]) -> None:
    """The shared options' values as typed groups, then the command."""
    from dnnbench.cli.output import Output
    from dnnbench.experiments import options
    from dnnbench.render.layout import FIT, TableLayout

    layout = TableLayout.from_options(values.pop("wide"), values.pop("columns")) if tables else FIT
    output = _taken(values, Output, layout=layout)
    varied = {str(item).partition("=")[0].strip() for item in values.get("vary") or ()}  # sweep's --vary
    job = options.job_from_cli(
        data=_taken(values, options.DataOptions),
        model=_taken(values, options.ModelOptions),
        train=_taken(values, options.TrainOptions),
        reg=_taken(values, options.RegOptions),
        schedule_varied="schedule" in varied,
    )
    with streams.rows_only(output.json):  # user code's prints go to stderr, not into the rows
        fail_on_errored(command(job=job, output=output, **values))


def _taken(values: dict[str, Any], group: type[Group], **given: Any) -> Group:
    """Option group ``group`` (a frozen dataclass) of its fields' values, taken out of ``values``
    (the command line's), but for those ``given``."""
    fields = [f.name for f in dataclasses.fields(group) if f.name not in given]  # type: ignore[arg-type]
    return group(**{name: values.pop(name) for name in fields}, **given)


def fail_on_errored(outcome: Any) -> None:
    """After a training command has written and rendered everything: each errored trial's reason
    on stderr, then ``TrialsErrored`` (exit 1). ``diverged`` is a result, not a failure."""
    trials = outcome[0] if isinstance(outcome, tuple) and outcome else outcome
    errored = [t for t in trials or () if getattr(t, "status", None) == "error"] if isinstance(trials, list) else []
    if not errored:
        return
    from dnnbench.errors import printable

    for trial in errored:
        reason = str(trial.extra.get("error", "no reason recorded"))  # user code's text: ESC, CR, ... escaped
        print(
            f"dnnbench: trial {printable(trial.optimizer)} seed {trial.spec.seed} ({trial.id}): error: "
            f"{printable(reason, newlines=False)}",
            file=sys.stderr,
        )
    raise TrialsErrored(f"{len(errored)} of {len(trials)} trials ended in error (reasons above)")
