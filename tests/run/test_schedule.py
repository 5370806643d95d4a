"""Where a run's programs train: the rules of ``run.schedule`` in numbers, and the local backend
following them (that it changes no row is test_processes' and test_backends')."""

from __future__ import annotations

import pytest

from dnnbench.config import ModelConfig, TrainConfig, TrialSpec
from dnnbench.data import sources, split
from dnnbench.run import backends, schedule


@pytest.fixture(scope="module")
def ds():
    return split(sources.load_synthetic(train=200, test=50, features=8, classes=3), 0.1)


def test_a_programs_cost_is_its_training_and_evaluation_flop(ds):
    spec = TrialSpec(optimizer="adam", model=ModelConfig(hidden=(16,)), train=TrainConfig(epochs=3, batch_size=20))
    weights = 8 * 16 + 16 + 16 * 3 + 3
    n_train, evaluated = len(ds.y_train), len(ds.y_train) + len(ds.y_val) + len(ds.y_test)
    assert schedule.program_cost([spec], ds) == 3 * (6 * weights * n_train + 2 * weights * evaluated)
    assert schedule.program_cost([spec, spec], ds) == 2 * schedule.program_cost([spec], ds)


def test_much_training_or_many_programs_go_to_processes_little_of_either_to_threads():
    second = schedule.PROCESSES_FROM_SECONDS * schedule.CORE_FLOPS
    assert schedule.wants_processes([second / 5] * 5, workers=2)
    assert not schedule.wants_processes([second / 10] * 5, workers=2)
    assert schedule.wants_processes([1.0] * (2 * schedule.PROCESSES_FROM + 1), workers=2)
    assert not schedule.wants_processes([second] * 5, workers=1)  # one worker has nothing to share


def test_the_default_backend_trains_much_training_in_processes_little_in_threads(ds, monkeypatch):
    specs = [
        [TrialSpec(optimizer=o, model=ModelConfig(hidden=(16,)), train=TrainConfig(epochs=1, batch_size=20))]
        for o in ("sgd", "momentum", "adagrad", "rmsprop", "adam")
    ]
    local, pool, threads = backends.Settings(), backends.Settings("processes"), backends.Settings("threads")
    monkeypatch.setattr(schedule, "CORE_FLOPS", 1.0)  # every program counts as long
    assert backends.trains_in(local, specs, ds, workers=2) == "processes"
    assert backends.trains_in(local, specs, ds, workers=1) == "threads"  # one worker: nothing to share
    assert backends.trains_in(threads, specs, ds, workers=2) == "threads"
    monkeypatch.setattr(schedule, "CORE_FLOPS", 1e30)  # little training
    assert backends.trains_in(local, specs, ds, workers=2) == "threads"
    assert backends.trains_in(pool, specs, ds, workers=2) == "processes"  # as asked
    assert backends.trains_in(pool, specs[:1], ds, workers=2) == "threads"  # one program: no pool


EPOCH = 1e12  # FLOP of one epoch: handing a program over (``RESUME_FLOP``) is small beside it


@pytest.mark.parametrize(
    ("programs", "workers", "split", "without", "with_split"),
    [
        (5, 2, 1, 9, 7.5),  # two, two, then one alone: half of its steps go first instead
        (3, 2, 1, 6, 4.5),
        (4, 2, 0, 6, 6),  # every worker busy to the end already
        (2, 2, 0, 3, 3),  # no more programs than workers
        (64, 2, 0, 96, 96),
        (4, 3, 2, 6, 4),  # two split, at staggered points (McNaughton's)
        (12, 8, 4, 6, 5),  # four split at once, where no single split helps (McNaughton's bound: 4.5)
        (14, 8, 0, 6, 6),  # none found (McNaughton's bound is 5.25: the search splits the last to start)
    ],
)
def test_a_program_is_split_between_two_workers_only_where_a_worker_would_idle(
    programs, workers, split, without, with_split
):
    """Programs of 3 epochs of 10 steps: a split may fall inside an epoch (5 on 2 workers: 7.5
    epochs' time; at epoch boundaries 8)."""
    costs, steps = [3 * EPOCH] * programs, [30] * programs
    first = schedule.first_steps(costs, [3] * programs, [10] * programs, workers)
    assert len(first) == split
    assert all(0 < k < 30 for k in first.values())
    assert schedule.finish_time(costs, steps, workers, {}) == without * EPOCH
    # (handing over adds its cost where it is on the way: not here, the other worker ends later)
    finish = schedule.finish_time(costs, steps, workers, first)
    assert with_split * EPOCH <= finish <= with_split * EPOCH + split * schedule.RESUME_FLOP
    order = schedule.order(costs, first)
    assert sorted(order) == list(range(programs)) and set(order[: len(first)]) == set(first)


def test_a_split_inside_an_epoch_where_epoch_boundaries_cannot_balance():
    """Five programs of one epoch on two workers: no split at an epoch boundary exists, one in the
    middle of the last program's epoch ends both workers together."""
    costs = [EPOCH] * 5
    first = schedule.first_steps(costs, [1] * 5, [600] * 5, 2)
    (split,) = first.values()
    assert 300 <= split < 600  # about half (the second half also pays for handing over)
    assert schedule.finish_time(costs, [600] * 5, 2, {}) == 3 * EPOCH
    assert schedule.finish_time(costs, [600] * 5, 2, first) <= 2.5 * EPOCH + schedule.RESUME_FLOP


def test_a_driver_that_starts_first_takes_up_the_slack_a_split_would():
    """The driver trains from the start, a worker process a program's time later: three programs of
    three epochs end at six epochs' time without a split (three with equal starts need one)."""
    costs, epochs = [3 * EPOCH] * 3, [3] * 3
    starts = [0.0, 3 * EPOCH]
    assert schedule.finish_time(costs, epochs, 2, {}, starts) == 6 * EPOCH
    assert schedule.first_steps(costs, epochs, [1] * 3, 2, starts) == {}
    assert len(schedule.first_steps(costs, epochs, [1] * 3, 2)) == 1
    later = schedule.WORKER_START_SECONDS * schedule.CORE_FLOPS
    assert schedule.worker_starts(3, driver_trains=True) == [0.0, later, later]
    assert schedule.worker_starts(2, driver_trains=False) == [later, later]
    # spawned early (before the driver imported JAX): started by the time the plan is made
    assert schedule.worker_starts(2, driver_trains=True, spawned_ago=schedule.WORKER_START_SECONDS) == [0.0, 0.0]


def test_programs_too_small_to_hand_over_are_not_split():
    costs = [schedule.RESUME_FLOP] * 5  # an epoch costs a third of handing over
    assert schedule.first_steps(costs, [3] * 5, [10] * 5, 2) == {}
