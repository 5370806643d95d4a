"""The commands that train: ``optimizers``, ``regularizers``, ``diagnose``, ``sweep``,
``lr-sensitivity``, ``tune``, ``run``; and ``datasets``, which lists what they train on.

Thin: each gets its shared options as a ``Job`` and an ``Output`` (``shared.shared_options``) and
calls ``commands`` or ``explore``. No postponed annotations here: Typer reads the options'
annotations as objects; ``Job`` and ``Output`` are named in quotes, imported only for type checking
(``Job`` loads JAX, which ``dnnbench --help`` never does).
"""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

import dnnbench.cli.streams as streams
from dnnbench.cli.shared import (
    BACKEND,
    MODEL,
    OUTPUT,
    REG,
    TRAIN,
    DataDir,
    Force,
    Json,
    Quiet,
    RayAddress,
    Resume,
    TableColumns,
    Threads,
    Wide,
    fail_on_errored,
    option,
    shared_options,
)
from dnnbench.errors import InputError

if TYPE_CHECKING:
    from dnnbench.cli.output import Output
    from dnnbench.experiments.job import Job

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)

# ``regularizers`` and ``diagnose``: one optimizer, at this rate
Lr = Annotated[float | None, option(TRAIN, "Learning rate (default: the optimizer's own).")]


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
    job: "Job",
    output: "Output",
    optimizers: Annotated[
        str,
        option(
            TRAIN,
            "Comma-separated optimizers to compare: built-in names, any optax optimizer (lion, "
            "optax.adam, optax.contrib.muon), path/to/file.py:factory, package.module:factory, or a "
            "plugin.",
            "--optimizers",
        ),
    ] = "sgd,momentum,adagrad,rmsprop,adam",
    lr: Annotated[
        str | None,
        option(
            TRAIN, "Learning rate for all (0.01) or per optimizer (adam=1e-3,sgd=0.1); default: each optimizer's own."
        ),
    ] = None,
    list_: Annotated[
        bool,
        option(
            None,
            "List the built-in and plugin optimizers (update rules, defaults), and those named by "
            "--optimizers if given; then exit.",
            "--list",
        ),
    ] = False,
    all_: Annotated[
        bool,
        option(
            None,
            "With --list: also every optax optimizer dnnbench can run, with its hyperparameters and defaults.",
            "--all",
        ),
    ] = False,
    tune: Annotated[
        bool,
        option(
            TRAIN,
            "Also tune each optimizer's learning rate (lr-sensitivity grid, chosen on validation) and "
            "show default and tuned side by side.",
            "--tune",
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
        return explore.run_tuned(job, _optimizers(optimizers), output=output)
    return commands.compare_optimizers(job, _optimizers(optimizers), lr, output=output)


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
    job: "Job",
    output: "Output",
    methods: Annotated[
        str | None,
        option(
            REG,
            "Comma-separated subset of none,l1,l2,dropout,early_stopping,augment,all (augment: shifts + "
            "noise on images, noise on feature vectors).",
        ),
    ] = None,
    optimizer: Annotated[str, option(TRAIN, "The optimizer every method uses.")] = "adam",
    lr: Lr = None,
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

    return commands.compare_regularizers(job, methods, _optimizer(optimizer), lr, output=output)


@app.command()
@shared_options(tables=False)
def diagnose(
    job: "Job",
    output: "Output",
    optimizer: Annotated[str, option(TRAIN, "The optimizer.")] = "adam",
    lr: Lr = None,
) -> object:
    """Train one configuration and say whether it underfits, overfits or fits, with the next commands to try."""
    import dnnbench.cli.commands as commands

    return commands.diagnose_one(job, _optimizer(optimizer), lr, output=output)


@app.command()
@shared_options
def sweep(
    job: "Job",
    output: "Output",
    vary: Annotated[
        list[str],
        option(
            TRAIN,
            "KEY=V1,V2,... (repeatable): lr, optimizer, batch_size, epochs, loss, activation, hidden "
            "(500x500), depth, residual, l1, l2, dropout, dropout_mode, early_stopping, patience, "
            "augment_shift, augment_noise, train_fraction.",
            "--vary",
        ),
    ],
    optimizer: Annotated[str, option(TRAIN, "The optimizer (unless swept).")] = "adam",
    lr: Annotated[
        float | None,
        option(TRAIN, "Learning rate (unless swept; default: the optimizer's own)."),
    ] = None,
    width: Annotated[
        int | None,
        option(MODEL, "Width of every hidden layer when depth is swept (default: the first of --hidden)."),
    ] = None,
    sort: Annotated[str, option(OUTPUT, "Metric to sort the trials by and to compute main effects on.")] = "test_acc",
    ctx: typer.Context = None,  # type: ignore[assignment]  # Typer passes it: which options were given
) -> object:
    """Vary any knob over the cartesian product of its values: trials table, gradient flow, main effects."""
    import dnnbench.cli.explore as explore

    given = [name for name in ctx.params if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"]
    return explore.run_sweep(
        job, vary, optimizer=_optimizer(optimizer), lr=lr, width=width, sort=sort, given=given, output=output
    )


@app.command("lr-sensitivity")
@shared_options(epochs=10)
def lr_sensitivity(
    job: "Job",
    output: "Output",
    optimizers: Annotated[
        str, option(TRAIN, "Comma-separated optimizers.", "--optimizers")
    ] = "sgd,momentum,adagrad,rmsprop,adam",
    lr_min: Annotated[float, option(TRAIN, "Smallest learning rate of the grid.")] = 1e-5,
    lr_max: Annotated[float, option(TRAIN, "Largest learning rate of the grid.")] = 10.0,
    points: Annotated[
        int,
        option(TRAIN, "Log-spaced grid points (13 over 1e-5 ... 10 = half-decade steps)."),
    ] = 13,
    metric: Annotated[str, option(OUTPUT, "val_acc | val_loss | best_val_acc | train_acc | train_loss.")] = "val_acc",
    tolerance: Annotated[
        float,
        option(OUTPUT, "A learning rate within this of the best metric counts as good."),
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
        output=output,
    )


@app.command()
@shared_options(seeds=3)
def tune(
    job: "Job",
    output: "Output",
    optimizers: Annotated[
        str,
        option(TRAIN, "Comma-separated optimizers to tune (any optimizer spec).", "--optimizers"),
    ] = "sgd,momentum,adagrad,rmsprop,adam",
    budget: Annotated[
        int,
        option(
            TRAIN,
            "Candidates per optimizer (quasi-random: Sobol for powers of 2, else Halton), trained as one program.",
        ),
    ] = 32,
    space: Annotated[
        list[str] | None,
        option(
            TRAIN,
            "Search range: NAME=LO..HI[:log|:linear|:log1m] or NAME=V1,V2 (choices); OPTIMIZER.NAME for "
            "one optimizer; repeatable. Default: lr over 2 decades either side of the default, "
            "1-b1/1-b2/1-momentum/1-decay, eps, weight_decay.",
            "--space",
        ),
    ] = None,
    metric: Annotated[str, option(TRAIN, "Selection metric on the validation set: val_acc | val_loss.")] = "val_acc",
) -> object:
    """Tune every optimizer under the same budget (quasi-random search, selected on validation), then compare default
    vs tuned on --seeds fresh seeds."""
    import dnnbench.cli.explore as explore

    return explore.run_tune(
        job, _optimizers(optimizers), budget=budget, space=space or [], metric=metric, output=output
    )


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
        option(OUTPUT, "Write results as JSON Lines to this file (default: results/<suite name>.jsonl)."),
    ] = None,
    json: Json = False,
    quiet: Quiet = False,
    resume: Resume = False,
    force: Force = False,
    wide: Wide = False,
    columns: TableColumns = None,
    backend: Annotated[
        str | None,
        option(
            BACKEND,
            "local | processes | threads | ray (default: the suite's [train] backend, else local).",
            "--backend",
        ),
    ] = None,
    ray_address: RayAddress = None,
    ray_max_retries: Annotated[
        int | None,
        option(BACKEND, "With --backend ray: retries of a program whose worker died (default: the suite's, else 2)."),
    ] = None,
    threads: Threads = None,
) -> None:
    """Run every experiment of a suite file (optimizer and regularizer comparisons) into one results file."""
    from dnnbench.train import threads as xla_threads

    xla_threads.use(threads)  # before anything starts JAX
    import dnnbench.cli.commands as commands
    from dnnbench.cli.output import Output
    from dnnbench.render.layout import TableLayout

    layout = TableLayout.from_options(wide, columns)
    output = Output(out=out, json=json, quiet=quiet, resume=resume, force=force, layout=layout)
    with streams.rows_only(json):  # user code's prints go to stderr, not into the rows
        fail_on_errored(
            commands.run_suite(suite, output, backend=backend, ray_address=ray_address, ray_max_retries=ray_max_retries)
        )
