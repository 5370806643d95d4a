"""Where and how many at once a run's programs train: the rules of ``run.schedule`` in numbers,
and the local backend following them without changing a row."""

from __future__ import annotations

import pytest

from dnnbench.config import ModelConfig, TrainConfig, TrialSpec
from dnnbench.data import sources, split
from dnnbench.run import backends, runner, schedule
from dnnbench.run.backends import local, processes


@pytest.fixture(scope="module")
def ds():
    return split(sources.load_synthetic(train=200, test=50, features=8, classes=3), 0.1)


def test_a_programs_cost_is_its_training_and_evaluation_flop(ds):
    spec = TrialSpec(optimizer="adam", model=ModelConfig(hidden=(16,)), train=TrainConfig(epochs=3, batch_size=20))
    weights = 8 * 16 + 16 + 16 * 3 + 3
    n_train, evaluated = len(ds.y_train), len(ds.y_train) + len(ds.y_val) + len(ds.y_test)
    assert schedule.program_cost([spec], ds) == 3 * (6 * weights * n_train + 2 * weights * evaluated)
    assert schedule.program_cost([spec, spec], ds) == 2 * schedule.program_cost([spec], ds)


def test_five_equal_programs_on_two_cores_take_two_and_a_half_rounds_with_a_third_worker():
    five = [1.0] * 5
    assert schedule.makespan(five, workers=2, slots=2) == pytest.approx(3.0)  # the fifth trains alone
    # three share two cores (at the oversubscribed loss) until they end together, then two have one each
    assert schedule.makespan(five, workers=3, slots=2) == pytest.approx(1.5 / (1 - schedule.OVERSUBSCRIBED_LOSS) + 1)
    assert schedule.balanced_workers(five, slots=2, most=8) == 3


@pytest.mark.parametrize(
    ("costs", "slots", "most", "workers"),
    [
        ([1.0] * 4, 2, 8, 2),  # two even rounds: nothing to gain
        ([1.0] * 3, 2, 8, 3),  # 1.5 rounds' time instead of 2
        ([1.0] * 16, 2, 8, 2),  # the last round is a small part of many
        ([1.0] * 5, 2, 2, 2),  # memory holds two
        ([1.0] * 2, 16, 16, 2),  # never more workers than programs
        ([4.0, 1.0, 1.0, 1.0, 1.0], 2, 8, 2),  # the long one alone on a core while the others share one
    ],
)
def test_an_extra_worker_is_taken_only_where_it_shortens_the_run(costs, slots, most, workers):
    assert schedule.balanced_workers(costs, slots, most) == workers


def test_much_training_or_many_programs_go_to_processes_little_of_either_to_threads():
    second = schedule.PROCESSES_FROM_SECONDS * schedule.CORE_FLOPS
    assert schedule.wants_processes([second / 5] * 5, workers=2)
    assert not schedule.wants_processes([second / 10] * 5, workers=2)
    assert schedule.wants_processes([1.0] * (2 * schedule.PROCESSES_FROM + 1), workers=2)
    assert not schedule.wants_processes([second] * 5, workers=1)  # one worker has nothing to share


def test_the_default_backend_trains_five_large_programs_three_at_a_time_on_two_cores(ds, monkeypatch):
    monkeypatch.setattr(schedule, "CORE_FLOPS", 1.0)  # every program counts as long
    specs = [
        [TrialSpec(optimizer=o, model=ModelConfig(hidden=(16,)), train=TrainConfig(epochs=1, batch_size=20))]
        for o in ("sgd", "momentum", "adagrad", "rmsprop", "adam")
    ]
    pooled = backends.start(backends.Settings(), specs, ds, workers=2, most_workers=3)
    given = backends.start(backends.Settings(), specs, ds, workers=2)  # --workers 2: as given
    try:
        assert type(pooled) is processes.ProcessExecution and pooled.workers == 3
        assert type(given) is processes.ProcessExecution and given.workers == 2
    finally:
        for execution in (pooled, given):
            execution.stop()
            execution.close()
    monkeypatch.setattr(schedule, "CORE_FLOPS", 1e30)  # little training: threads
    threads = backends.start(backends.Settings(), specs, ds, workers=2, most_workers=3)
    try:
        assert type(threads) is local.LocalExecution
    finally:
        threads.stop()
        threads.close()


def test_the_runner_offers_one_worker_more_only_where_workers_were_not_given(ds, monkeypatch):
    seen = []
    real = backends.start

    def spy(*args, **kwargs):
        seen.append((kwargs["workers"], kwargs["most_workers"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(backends, "start", spy)
    monkeypatch.setattr(runner, "available_memory", lambda: None)
    specs = tuple(
        TrialSpec(optimizer=o, model=ModelConfig(hidden=(16,)), train=TrainConfig(epochs=1, batch_size=20))
        for o in ("sgd", "adam", "adagrad")
    )
    monkeypatch.setattr(runner.engine, "concurrency", lambda: 2)
    runner.execute(runner.Run(specs), ds)
    runner.execute(runner.Run(specs, workers=2), ds)
    assert seen == [(2, 3), (2, None)]
