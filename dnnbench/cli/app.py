"""The command line: parse options, build a config, call the library, render. Nothing else.

JAX is imported lazily (inside commands), so ``dnnbench --help`` answers at once. Every
``DnnbenchError`` and every usage error becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import inspect
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

import dnnbench.cli.streams as streams
from dnnbench import errors
from dnnbench.cli.results import COLUMNS_HELP, WIDE_HELP
from dnnbench.errors import DnnbenchError, InputError, Interrupted, OutputError, Terminated, TrialsErrored

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


DATA = "Data"
MODEL = "Model"
TRAIN = "Training"
REG = "Regularization"
OUTPUT = "Output"
BACKEND = "Backend"

Dataset = Annotated[
    str,
    typer.Option(
        help="digits | synthetic[:train=N,test=N,features=D,classes=C,seed=S] | mnist | fashion-mnist.",
        rich_help_panel=DATA,
    ),
]
DataFile = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="An .npz in Keras's layout (x_train, y_train, x_test, y_test); overrides --dataset.",
        rich_help_panel=DATA,
    ),
]
DataDir = Annotated[
    Path | None,
    typer.Option(
        help="Where MNIST-like datasets are cached (default: $DNNBENCH_DATA_DIR or the user cache).",
        rich_help_panel=DATA,
    ),
]
NoVerify = Annotated[
    bool,
    typer.Option(
        "--no-verify", help="Skip the SHA-256 check of dataset files (your own copies).", rich_help_panel=DATA
    ),
]
LabelNoise = Annotated[
    float,
    typer.Option(
        help="Fraction of training labels replaced by a wrong class (val/test stay clean), in [0, 1).",
        rich_help_panel=DATA,
    ),
]
ValSplit = Annotated[
    float, typer.Option(help="Fraction of the training set held out for validation, in [0, 1).", rich_help_panel=DATA)
]
Hidden = Annotated[str, typer.Option(help="Hidden layer widths, comma-separated.", rich_help_panel=MODEL)]
Activation = Annotated[
    str,
    typer.Option(
        help="relu | sigmoid | tanh | gelu | elu | leaky_relu | selu | swish | linear.", rich_help_panel=MODEL
    ),
]
Residual = Annotated[
    bool, typer.Option("--residual", help="Skip connections around equal-width hidden layers.", rich_help_panel=MODEL)
]
Precision = Annotated[
    str,
    typer.Option(help="fp32 | bf16 (bfloat16 matmul inputs, float32 accumulation and weights).", rich_help_panel=MODEL),
]
Loss = Annotated[
    str, typer.Option(help="ce (categorical cross-entropy) | mse (softmax vs one-hot).", rich_help_panel=TRAIN)
]
Epochs = Annotated[int, typer.Option(help="Training epochs.", rich_help_panel=TRAIN)]
BatchSize = Annotated[int, typer.Option(help="Minibatch size.", rich_help_panel=TRAIN)]
TrainEval = Annotated[
    int,
    typer.Option(
        help="Training metrics are measured (test mode) on this many training samples; 0 = all.", rich_help_panel=TRAIN
    ),
]
Seeds = Annotated[
    int, typer.Option(help="Number of seeds per configuration (seed, seed+1, ...).", rich_help_panel=TRAIN)
]
Seed = Annotated[
    int, typer.Option(help="First seed: initial weights, batch order and dropout masks.", rich_help_panel=TRAIN)
]
MaxParallel = Annotated[
    int | None, typer.Option(help="At most this many trials per compiled program.", rich_help_panel=TRAIN)
]
Workers = Annotated[
    int | None,
    typer.Option(
        help=(
            "Compiled programs trained at once (default: CPU cores / --threads, as many as memory holds; 1 on a "
            "GPU). Never changes a number."
        ),
        rich_help_panel=TRAIN,
    ),
]
L1 = Annotated[float, typer.Option(help="L1 penalty strength on weight matrices.", rich_help_panel=REG)]
L2 = Annotated[float, typer.Option(help="L2 penalty strength on weight matrices.", rich_help_panel=REG)]
Dropout = Annotated[
    float, typer.Option(help="Dropout rate of every hidden layer's inputs, in [0, 1).", rich_help_panel=REG)
]
DropoutMode = Annotated[
    str, typer.Option(help="inverted | scale-at-test (the recipe's W*(1-p) at test).", rich_help_panel=REG)
]
EarlyStopping = Annotated[
    bool,
    typer.Option(
        "--early-stopping",
        help="Stop when the monitored value stops improving; restore the best epoch.",
        rich_help_panel=REG,
    ),
]
Monitor = Annotated[str, typer.Option(help="val_loss | val_acc (early stopping).", rich_help_panel=REG)]
Patience = Annotated[int, typer.Option(help="Epochs without improvement before stopping.", rich_help_panel=REG)]
MinDelta = Annotated[float, typer.Option(help="Smallest change that counts as an improvement.", rich_help_panel=REG)]
AugmentShift = Annotated[
    int, typer.Option(help="Random shifts of up to this many pixels (image data).", rich_help_panel=REG)
]
AugmentNoise = Annotated[
    float, typer.Option(help="Std of Gaussian noise added to every training batch.", rich_help_panel=REG)
]
TrainFraction = Annotated[
    float, typer.Option(help="Train on this fraction of the training set, in (0, 1].", rich_help_panel=REG)
]
WeightDecay = Annotated[
    float,
    typer.Option(
        "--weight-decay",
        help=(
            "Decoupled weight decay with any optimizer: after its step, theta -= lr * X * theta on the weight "
            "matrices, biases masked off (optax.add_decayed_weights, as adamw). A per-trial number: "
            "--vary weight_decay=0,1e-4."
        ),
        rich_help_panel=REG,
    ),
]
ClipNorm = Annotated[
    float | None,
    typer.Option(
        "--clip-norm",
        help=(
            "Clip the gradient to this global norm before the optimizer (optax.clip_by_global_norm); default: "
            "no clipping. A per-trial number: --vary clip_norm=0.5,1,5."
        ),
        rich_help_panel=TRAIN,
    ),
]
Out = Annotated[Path | None, typer.Option(help="Write results as JSON Lines to this file.", rich_help_panel=OUTPUT)]
Json = Annotated[
    bool, typer.Option("--json", help="Write the results lines to stdout instead of a table.", rich_help_panel=OUTPUT)
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.", rich_help_panel=OUTPUT)]
Resume = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Keep the finished trials already in --out, train the rest and append them.",
        rich_help_panel=OUTPUT,
    ),
]
Force = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Replace --out if it exists (without it, an existing file is never replaced).",
        rich_help_panel=OUTPUT,
    ),
]
Hp = Annotated[
    list[str] | None,
    typer.Option(
        "--hp",
        help=(
            "Set an optimizer hyperparameter: NAME=VALUE (every compared optimizer that has it) or "
            "OPTIMIZER.NAME=VALUE (repeatable), e.g. --hp b1=0.95 --hp adam.eps=1e-8."
        ),
        rich_help_panel=TRAIN,
    ),
]
ScheduleKind = Annotated[
    str,
    typer.Option(
        "--schedule",
        help=(
            "Learning-rate schedule: constant | linear | cosine | warmup_cosine | step | exponential (a "
            "factor on every optimizer's update)."
        ),
        rich_help_panel=TRAIN,
    ),
]
Warmup = Annotated[
    str | None,
    typer.Option(
        help="Linear warmup: a fraction of training (0.1) or epochs (2e); default 0 (0.1 for warmup_cosine).",
        rich_help_panel=TRAIN,
    ),
]
DecayTo = Annotated[
    float | None,
    typer.Option(
        help="Final factor of linear, cosine and exponential schedules (default 0; 0.01 for exponential).",
        rich_help_panel=TRAIN,
    ),
]
StepEvery = Annotated[
    float | None,
    typer.Option(help="step schedule: epochs between steps (default: a third of training).", rich_help_panel=TRAIN),
]
StepFactor = Annotated[float, typer.Option(help="step schedule: the factor of each step.", rich_help_panel=TRAIN)]
Wide = Annotated[bool, typer.Option("--wide", help=WIDE_HELP, rich_help_panel=OUTPUT)]
TableColumns = Annotated[
    str | None, typer.Option("--columns", help=COLUMNS_HELP, show_default=False, rich_help_panel=OUTPUT)
]
TargetOpt = Annotated[
    str | None,
    typer.Option(
        "--target",
        help=(
            "Time to target: METRIC=VALUE (val_acc=0.97, val_loss=0.1); each row records the first epoch, "
            "step and training time that reached it."
        ),
        rich_help_panel=OUTPUT,
    ),
]

BackendOpt = Annotated[
    str,
    typer.Option(
        "--backend",
        help=(
            "Where the compiled programs train: local (threads of this process) | processes (a pool of worker "
            "processes, one XLA each) | threads (the same as local) | ray (one Ray task per "
            "program on a Ray cluster; pip install 'dnnbench[ray]'). The numbers are the same on each."
        ),
        rich_help_panel=BACKEND,
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        help=(
            "With --backend ray: the cluster to join (default: $RAY_ADDRESS, else a cluster started with `ray "
            "start` on this machine, else a new local one for this run)."
        ),
        rich_help_panel=BACKEND,
    ),
]
RayMaxRetries = Annotated[
    int,
    typer.Option(
        help="With --backend ray: how many times a program whose worker process or node died runs again.",
        rich_help_panel=BACKEND,
    ),
]
Threads = Annotated[
    int | None,
    typer.Option(
        help=(
            "XLA's CPU threads per program (default 1, or $DNNBENCH_THREADS): the same number gives the same "
            "numbers on any machine and backend (Ray tasks declare that many CPUs); more speeds up a run of "
            "one large program."
        ),
        rich_help_panel=TRAIN,
        show_default=False,
    ),
]

# The options every training command shares: (parameter name, annotated type, default).
SHARED_OPTIONS: list[tuple[str, object, object]] = [
    ("dataset", Dataset, "digits"),
    ("data", DataFile, None),
    ("data_dir", DataDir, None),
    ("no_verify", NoVerify, False),
    ("val_split", ValSplit, 0.1),
    ("label_noise", LabelNoise, 0.0),
    ("hidden", Hidden, "500,500"),
    ("activation", Activation, "relu"),
    ("residual", Residual, False),
    ("precision", Precision, "fp32"),
    ("loss", Loss, "ce"),
    ("epochs", Epochs, 20),
    ("batch_size", BatchSize, 100),
    ("train_eval_samples", TrainEval, 10_000),
    ("seeds", Seeds, 1),
    ("seed", Seed, 0),
    ("max_parallel", MaxParallel, None),
    ("workers", Workers, None),
    ("hp", Hp, None),
    ("schedule", ScheduleKind, "constant"),
    ("warmup", Warmup, None),
    ("decay_to", DecayTo, None),
    ("step_every", StepEvery, None),
    ("step_factor", StepFactor, 0.1),
    ("target", TargetOpt, None),
    ("backend", BackendOpt, "local"),
    ("ray_address", RayAddress, None),
    ("ray_max_retries", RayMaxRetries, 2),
    ("threads", Threads, None),
    ("l1", L1, 0.0),
    ("l2", L2, 0.0),
    ("dropout", Dropout, 0.0),
    ("dropout_mode", DropoutMode, "inverted"),
    ("early_stopping", EarlyStopping, False),
    ("monitor", Monitor, "val_loss"),
    ("patience", Patience, 5),
    ("min_delta", MinDelta, 0.0),
    ("augment_shift", AugmentShift, 0),
    ("augment_noise", AugmentNoise, 0.0),
    ("train_fraction", TrainFraction, 1.0),
    ("weight_decay", WeightDecay, 0.0),
    ("clip_norm", ClipNorm, None),
    ("out", Out, None),
    ("json", Json, False),
    ("quiet", Quiet, False),
    ("resume", Resume, False),
    ("force", Force, False),
    ("wide", Wide, False),
    ("columns", TableColumns, None),
]
_OUTPUT_KEYS = ("out", "json", "quiet", "resume", "force")
_TABLE_KEYS = ("wide", "columns")  # become output["layout"], a report_layout.TableLayout


def shared_options(
    command: Callable[..., object] | None = None, *, tables: bool = True, **defaults: Any
) -> Callable[..., Any]:
    """Give a command the shared options; it receives them as ``job`` (a built, validated
    ``job.Job``) and ``output`` (``out``, ``json``, ``quiet``, ``resume``, ``force``, and ``layout``:
    ``--wide`` / ``--columns``, whose names the command checks against its table before training).
    One list, many commands. A command returns its trials; errored ones make the exit code 1
    (``fail_on_errored``). ``@shared_options(epochs=40)`` changes a default for that command only;
    ``tables=False``: a command that prints no table (no ``--wide`` / ``--columns``)."""
    if command is None:
        return functools.partial(shared_options, tables=tables, **defaults)
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name not in ("job", "output")]
    extra = [
        inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=defaults.get(name, default), annotation=annotation
        )
        for name, annotation, default in SHARED_OPTIONS
        if tables or name not in _TABLE_KEYS
    ]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        from dnnbench.train import threads

        threads.use(kwargs.pop("threads"))  # before anything starts JAX
        from dnnbench.experiments import options

        shared = {
            name: kwargs.pop(name)
            for name, _, _ in SHARED_OPTIONS
            if (tables or name not in _TABLE_KEYS) and name != "threads"
        }
        output = {key: shared.pop(key) for key in _OUTPUT_KEYS}
        if tables:
            from dnnbench.render.layout import TableLayout

            output["layout"] = TableLayout.from_options(shared.pop("wide"), shared.pop("columns"))
        varied = {str(item).partition("=")[0].strip() for item in kwargs.get("vary") or ()}  # sweep's --vary
        job = options.job_from_cli(**shared, schedule_varied="schedule" in varied)
        with streams.rows_only(bool(output["json"])):  # user code's prints go to stderr, not into the rows
            fail_on_errored(command(job=job, output=output, **kwargs))

    wrapper.__signature__ = inspect.Signature(own + extra)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in own + extra}
    return wrapper


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


def _optimizer(text: str) -> str:
    """``--optimizer``: a file spec in one spelling (``./x.py:f`` is ``x.py:f``)."""
    from dnnbench.optim import user

    return user.normalized(text.strip())


def _optimizers(text: str) -> list[str]:
    from dnnbench.experiments import options

    return options.check_optimizers(options.parse_names(text))


@app.command()
@shared_options
def optimizers(
    job: Any,  # a Job (shared_options builds it); Any: importing Job here would load JAX at start-up
    output: dict,
    optimizers: Annotated[
        str,
        typer.Option(
            "--optimizers",
            help=(
                "Comma-separated optimizers to compare: built-in names, any optax optimizer (lion, "
                "optax.adam, optax.contrib.muon), path/to/file.py:factory, package.module:factory, or a "
                "plugin."
            ),
            rich_help_panel=TRAIN,
        ),
    ] = "sgd,momentum,adagrad,rmsprop,adam",
    lr: Annotated[
        str | None,
        typer.Option(
            help="Learning rate for all (0.01) or per optimizer (adam=1e-3,sgd=0.1); default: each optimizer's own.",
            rich_help_panel=TRAIN,
        ),
    ] = None,
    list_: Annotated[
        bool,
        typer.Option(
            "--list",
            help=(
                "List the built-in and plugin optimizers (update rules, defaults), and those named by "
                "--optimizers if given; then exit."
            ),
        ),
    ] = False,
    all_: Annotated[
        bool,
        typer.Option(
            "--all",
            help="With --list: also every optax optimizer dnnbench can run, with its hyperparameters and defaults.",
        ),
    ] = False,
    tune: Annotated[
        bool,
        typer.Option(
            "--tune",
            help=(
                "Also tune each optimizer's learning rate (lr-sensitivity grid, chosen on validation) and "
                "show default and tuned side by side."
            ),
            rich_help_panel=TRAIN,
        ),
    ] = False,
) -> object:
    """Train the same task with each optimizer (same seeds, same initial weights, same batches) and compare."""
    import dnnbench.cli.commands as commands

    if list_ or all_:
        if all_ and not list_:
            raise InputError("--all goes with --list: dnnbench optimizers --list --all")
        if tune or lr is not None:
            raise InputError(f"--list lists and trains nothing: drop {'--tune' if tune else '--lr'}")
        from dnnbench.experiments import options

        commands.list_optimizers(options.parse_names(optimizers), every=all_)
        return None
    if tune:
        import dnnbench.cli.explore as explore

        if lr is not None:
            raise InputError(
                "--lr and --tune both set the learning rates (--tune compares each default with the rate it "
                "finds); give one"
            )
        return explore.run_tuned(job, _optimizers(optimizers), **output)
    return commands.compare_optimizers(job, _optimizers(optimizers), lr, **output)


@app.command()
@shared_options(
    train_fraction=None,
    label_noise=None,
    epochs=25,
    batch_size=32,
    seeds=3,
    l1=1e-4,
    l2=1e-3,
    dropout=0.5,
    augment_shift=None,
    augment_noise=0.05,
)
def regularizers(
    job: Any,
    output: dict,
    methods: Annotated[
        str | None,
        typer.Option(
            help=(
                "Comma-separated subset of none,l1,l2,dropout,early_stopping,augment,all (augment: shifts + "
                "noise on images, noise on feature vectors)."
            ),
            rich_help_panel=REG,
        ),
    ] = None,
    optimizer: Annotated[str, typer.Option(help="The optimizer every method uses.", rich_help_panel=TRAIN)] = "adam",
    lr: Annotated[
        float | None, typer.Option(help="Learning rate (default: the optimizer's own).", rich_help_panel=TRAIN)
    ] = None,
) -> object:
    """Compare the overfitting remedies on one task: none, L1, L2, dropout, early stopping, augmentation, all.

    --l1/--l2/--dropout/--patience/--augment-shift/--augment-noise set the strength of their method
    only (defaults 1e-4, 1e-3, 0.5, 5, 1 on images, 0.05; an explicit 0 is kept). On the bundled digits demo
    only, the defaults train on half its training set with 20% of its labels wrong (25 epochs), so the
    unregularized network memorises the noise -- plain overfitting -- and what each remedy does shows
    in the gap and the test accuracy. On any other data (--data, synthetic, mnist, ...) the defaults
    are no label noise and the full training set; --label-noise and --train-fraction set them
    explicitly anywhere. What was applied is printed above the table. augment is shift + noise on
    image data and noise on feature vectors.
    """
    import dnnbench.cli.commands as commands

    return commands.compare_regularizers(job, methods, _optimizer(optimizer), lr, **output)


@app.command()
@shared_options(tables=False)
def diagnose(
    job: Any,
    output: dict,
    optimizer: Annotated[str, typer.Option(help="The optimizer.", rich_help_panel=TRAIN)] = "adam",
    lr: Annotated[
        float | None, typer.Option(help="Learning rate (default: the optimizer's own).", rich_help_panel=TRAIN)
    ] = None,
) -> object:
    """Train one configuration and say whether it underfits, overfits or fits, with the next commands to try."""
    import dnnbench.cli.commands as commands

    return commands.diagnose_one(job, _optimizer(optimizer), lr, **output)


@app.command()
@shared_options
def sweep(
    job: Any,
    output: dict,
    vary: Annotated[
        list[str],
        typer.Option(
            "--vary",
            help=(
                "KEY=V1,V2,... (repeatable): lr, optimizer, batch_size, epochs, loss, activation, hidden "
                "(500x500), depth, residual, l1, l2, dropout, dropout_mode, early_stopping, patience, "
                "augment_shift, augment_noise, train_fraction."
            ),
            rich_help_panel=TRAIN,
        ),
    ],
    optimizer: Annotated[str, typer.Option(help="The optimizer (unless swept).", rich_help_panel=TRAIN)] = "adam",
    lr: Annotated[
        float | None,
        typer.Option(help="Learning rate (unless swept; default: the optimizer's own).", rich_help_panel=TRAIN),
    ] = None,
    width: Annotated[
        int | None,
        typer.Option(
            help="Width of every hidden layer when depth is swept (default: the first of --hidden).",
            rich_help_panel=MODEL,
        ),
    ] = None,
    sort: Annotated[
        str, typer.Option(help="Metric to sort the trials by and to compute main effects on.", rich_help_panel=OUTPUT)
    ] = "test_acc",
    ctx: typer.Context = None,  # type: ignore[assignment]  # Typer passes it: which options were given
) -> object:
    """Vary any knob over the cartesian product of its values: trials table, gradient flow, main effects."""
    import dnnbench.cli.explore as explore

    given = [name for name in ctx.params if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"]
    return explore.run_sweep(
        job, vary, optimizer=_optimizer(optimizer), lr=lr, width=width, sort=sort, given=given, **output
    )


@app.command("lr-sensitivity")
@shared_options(epochs=10)
def lr_sensitivity(
    job: Any,
    output: dict,
    optimizers: Annotated[
        str, typer.Option("--optimizers", help="Comma-separated optimizers.", rich_help_panel=TRAIN)
    ] = "sgd,momentum,adagrad,rmsprop,adam",
    lr_min: Annotated[float, typer.Option(help="Smallest learning rate of the grid.", rich_help_panel=TRAIN)] = 1e-5,
    lr_max: Annotated[float, typer.Option(help="Largest learning rate of the grid.", rich_help_panel=TRAIN)] = 10.0,
    points: Annotated[
        int,
        typer.Option(help="Log-spaced grid points (13 over 1e-5 ... 10 = half-decade steps).", rich_help_panel=TRAIN),
    ] = 13,
    metric: Annotated[
        str, typer.Option(help="val_acc | val_loss | best_val_acc | train_acc | train_loss.", rich_help_panel=OUTPUT)
    ] = "val_acc",
    tolerance: Annotated[
        float,
        typer.Option(help="A learning rate within this of the best metric counts as good.", rich_help_panel=OUTPUT),
    ] = 0.02,
) -> object:
    """For each optimizer, a log-spaced learning-rate grid in one compiled program: best rate, how forgiving."""
    import dnnbench.cli.explore as explore

    return explore.run_sensitivity(
        job,
        _optimizers(optimizers),
        lr_min=lr_min,
        lr_max=lr_max,
        points=points,
        metric=metric,
        tolerance=tolerance,
        **output,
    )


@app.command()
@shared_options(seeds=3)
def tune(
    job: Any,
    output: dict,
    optimizers: Annotated[
        str,
        typer.Option(
            "--optimizers", help="Comma-separated optimizers to tune (any optimizer spec).", rich_help_panel=TRAIN
        ),
    ] = "sgd,momentum,adagrad,rmsprop,adam",
    budget: Annotated[
        int,
        typer.Option(
            help="Candidates per optimizer (quasi-random: Sobol for powers of 2, else Halton), trained as one program.",
            rich_help_panel=TRAIN,
        ),
    ] = 32,
    space: Annotated[
        list[str] | None,
        typer.Option(
            "--space",
            help=(
                "Search range: NAME=LO..HI[:log|:linear|:log1m] or NAME=V1,V2 (choices); OPTIMIZER.NAME for "
                "one optimizer; repeatable. Default: lr over 2 decades either side of the default, "
                "1-b1/1-b2/1-momentum/1-decay, eps, weight_decay."
            ),
            rich_help_panel=TRAIN,
        ),
    ] = None,
    metric: Annotated[
        str, typer.Option(help="Selection metric on the validation set: val_acc | val_loss.", rich_help_panel=TRAIN)
    ] = "val_acc",
) -> object:
    """Tune every optimizer under the same budget (quasi-random search, selected on validation), then compare default
    vs tuned on --seeds fresh seeds."""
    import dnnbench.cli.explore as explore

    return explore.run_tune(job, _optimizers(optimizers), budget=budget, space=space or [], metric=metric, **output)


@app.command()
def datasets(data_dir: DataDir = None) -> None:
    """List the datasets: input shape, classes, sizes, source, and whether they are available offline."""
    import dnnbench.cli.commands as commands

    commands.list_datasets(data_dir)


@app.command()
def run(
    suite: Annotated[
        Path,
        typer.Argument(
            help="A suite file (TOML): [data], [model], [train], [regularization], [[experiment]]...",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write results as JSON Lines to this file (default: results/<suite name>.jsonl).",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    json: Json = False,
    quiet: Quiet = False,
    resume: Resume = False,
    force: Force = False,
    wide: Wide = False,
    columns: TableColumns = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help="local | processes | threads | ray (default: the suite's [train] backend, else local).",
            rich_help_panel=BACKEND,
        ),
    ] = None,
    ray_address: RayAddress = None,
    ray_max_retries: Annotated[
        int | None,
        typer.Option(
            help="With --backend ray: retries of a program whose worker died (default: the suite's, else 2).",
            rich_help_panel=BACKEND,
        ),
    ] = None,
    threads: Threads = None,
) -> None:
    """Run every experiment of a suite file (optimizer and regularizer comparisons) into one results file."""
    from dnnbench.train import threads as xla_threads

    xla_threads.use(threads)  # before anything starts JAX
    import dnnbench.cli.commands as commands
    from dnnbench.render.layout import TableLayout

    layout = TableLayout.from_options(wide, columns)
    with streams.rows_only(json):  # user code's prints go to stderr, not into the rows
        fail_on_errored(
            commands.run_suite(
                suite,
                out=out,
                json=json,
                quiet=quiet,
                resume=resume,
                force=force,
                layout=layout,
                backend=backend,
                ray_address=ray_address,
                ray_max_retries=ray_max_retries,
            )
        )


from dnnbench.cli.results import register as _register_results  # noqa: E402 -- check, plot, export, report

_register_results(app)


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
    sys.exit(main())
