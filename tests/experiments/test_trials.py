"""Every experiment's trials come from one API: ``config.trial_list`` (a base, its variations, the seeds).

The pinned ids were those of the builders before they shared it (issue 23): same trials, same order.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from dnnbench import optim
from dnnbench.analysis import diagnosis
from dnnbench.config import DataConfig, ModelConfig, Regularization, TrainConfig, TrialSpec, Variation, trial_list
from dnnbench.experiments import regularizers, sensitivity, suite, tuning
from dnnbench.experiments.job import Job
from dnnbench.experiments.optimizers import optimizer_specs
from dnnbench.results.rows import trial_id

SUITES = Path(__file__).resolve().parents[2] / "benchmarks" / "suites"
JOB = Job(
    DataConfig(val_split=0.1),
    ModelConfig(hidden=(8, 8)),
    TrainConfig(epochs=3),
    Regularization(l2=1e-4),
    seeds=(3, 4),
    schedule=optim.Schedule(kind="warmup_cosine", warmup=0.1),
)


def _ids(specs) -> tuple[int, str]:
    """How many trials, and one digest of their ids in order."""
    ids = [trial_id(s, {"dataset": "digits"}) for s in specs]
    return len(ids), hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def test_variations_then_seeds_and_what_each_field_keeps():
    base = TrialSpec(hyperparams=(("b1", 0.5),), seed=9, tags=(("a", 1), ("b", 2)))
    specs = trial_list(
        base,
        [Variation(lr=0.2), Variation("sgd", 0.1), Variation(hyperparams={"b2": 0.99}, tags=(("b", 3), ("c", 4)))],
        [3, 4],
    )
    assert [(s.optimizer, s.learning_rate, s.seed) for s in specs] == [
        ("adam", 0.2, 3),
        ("adam", 0.2, 4),
        ("sgd", 0.1, 3),
        ("sgd", 0.1, 4),
        ("adam", 1e-3, 3),
        ("adam", 1e-3, 4),
    ]
    # lr alone keeps the base's values; a new optimizer starts from its defaults; hyperparams replace the base's
    assert dict(specs[0].hyperparams) == {"learning_rate": 0.2, "b1": 0.5, "b2": 0.999, "eps": 1e-7}
    assert specs[2].hyperparams == (("learning_rate", 0.1),)
    assert dict(specs[4].hyperparams) == {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.99, "eps": 1e-7}
    assert specs[0].tags == (("a", 1), ("b", 2)) and specs[4].tags == (("a", 1), ("b", 3), ("c", 4))
    assert trial_list(base, [Variation(model=ModelConfig(hidden=(4,)))]) == (
        TrialSpec(hyperparams=(("b1", 0.5),), seed=9, tags=base.tags, model=ModelConfig(hidden=(4,))),
    )


def test_each_trial_is_built_once_and_a_job_builds_its_base_once(monkeypatch):
    built = []
    post_init = TrialSpec.__post_init__
    monkeypatch.setattr(TrialSpec, "__post_init__", lambda self: (built.append(self), post_init(self))[1])
    job = Job(JOB.data, JOB.model, JOB.train, JOB.reg, seeds=(0, 1))
    assert len(optimizer_specs(job, ["sgd", "adam", "lion"], {})) == 6
    assert len(job.trials([Variation("sgd")], [0, 1, 2])) == 3
    assert len(built) == 1 + 6 + 3  # the base, then every trial once


def test_job_trial_is_one_variation_of_its_base():
    spec = JOB.trial("momentum", 0.3, {"momentum": 0.5}, seed=7, tags=(("x", 1),))
    assert spec == TrialSpec(
        optimizer="momentum",
        hyperparams=(("learning_rate", 0.3), ("momentum", 0.5)),
        seed=7,
        model=JOB.model,
        train=JOB.train,
        reg=JOB.reg,
        tags=(("x", 1),),
        schedule=JOB.schedule,
    )
    tagged = dataclasses.replace(JOB, tags=(("experiment", "e"),))  # a suite's experiment
    assert tagged.trial(tags=(("x", 1),)).tags == (("experiment", "e"), ("x", 1))
    assert tagged.describe() == JOB.describe()  # the run's config is what it was without job tags


def _fake(spec, acc):
    """A search row as selection reads it."""
    metrics = {"val_acc": acc, "val_loss": 1 - acc}
    return SimpleNamespace(spec=spec, optimizer=spec.optimizer, status="ok", tags=dict(spec.tags), metrics=metrics)


def _tune_finals():
    plan = tuning.plan(JOB, ["sgd", "adam"], budget=5, metric="val_acc", hyperparams={"adam": {"b2": 0.99}})
    search = [_fake(s, 0.1 * (i % 4)) for i, s in enumerate(plan.search)]
    return [*plan.search, *plan.finals(search), *plan.possible_finals(tags=(("experiment", "x"),))]


BUILDERS = {
    "optimizers": (
        lambda: optimizer_specs(
            JOB, ["sgd", "adam", "lookahead(adam)"], {"sgd": 0.1, "adam": None}, {"adam": {"b1": 0.95}}
        ),
        (6, "e9c04a5cfd06cf52"),
    ),
    "regularizers": (
        lambda: regularizers.comparison_specs(JOB, "l2,dropout", "sgd", None, strengths=regularizers.Strengths(l2=0.0))[
            2
        ],
        (4, "f00a86033085b4e2"),
    ),
    "lr-sensitivity": (
        lambda: sensitivity.sensitivity_specs(["sgd", "adam"], [1e-3, 0.1], JOB.trial(), [1, 2], {"adam": {"b1": 0.8}}),
        (8, "40d22f806b7394aa"),
    ),
    "tune": (_tune_finals, (42, "9efa83d2b675e5ec")),
    "suite": (
        lambda: (lambda s: [*s.specs, *s.possible_finals()])(suite.load(SUITES / "tuned-recipe-synthetic.toml")),
        (335, "b55545b1945896d9"),
    ),
    "remedies": (
        lambda: [
            r
            for label in ("diverged", "underfitting", "still improving", "overfitting", "good fit")
            for r in diagnosis.remedy_specs(
                label,
                TrialSpec(
                    optimizer="rmsprop",
                    model=ModelConfig(hidden=(8, 8, 8, 8), activation="sigmoid"),
                    train=TrainConfig(loss="mse", batch_size=64),
                ),
            )
        ],
        (16, "58dbe44ad15c0f99"),
    ),
}


@pytest.mark.parametrize("name", BUILDERS)
def test_each_builder_gives_the_trials_it_gave_before_the_shared_api(name):
    build, pinned = BUILDERS[name]
    assert _ids(build()) == pinned


def test_a_remedy_that_switches_optimizer_drops_the_old_ones_values_and_rates_are_rounded():
    spec = TrialSpec(optimizer="momentum", hyperparams=(("learning_rate", 0.0003), ("momentum", 0.5)))
    remedies = diagnosis.remedy_specs("underfitting", spec)
    lr_up, adam = remedies[1], next(r for r in remedies if r.optimizer == "adam")
    assert lr_up.hyperparams == (("learning_rate", 0.003), ("momentum", 0.5))  # 0.0003 * 10, to six digits
    assert adam.optimizer == "adam" and adam.hyperparams == TrialSpec().hyperparams
