"""The recipe's workflow for one model, as the Keras example shows it: build -> fit -> evaluate -> predict.

    >>> from dnnbench.api import Model
    >>> model = Model.build(hidden=(500, 500), activation="relu")          # build + "compile"
    >>> model.fit("digits", optimizer="adam", batch_size=100, epochs=20)   # train (one compiled program)
    >>> model.evaluate()                                                   # {"loss": ..., "acc": ...} on the test set
    >>> model.predict(x)                                                   # class probabilities

Everything here is a thin layer over ``runner.execute``: the same engine, the same numbers as
``dnnbench diagnose`` with the same options.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dnnbench import data as datamod
from dnnbench.config import DataConfig, ModelConfig, Regularization, TrainConfig, TrialSpec
from dnnbench.errors import InputError
from dnnbench.results.rows import TrialResult
from dnnbench.run import runner
from dnnbench.train import engine


@dataclass
class Model:
    """One MLP configuration; ``fit`` trains it and keeps the trained weights and history."""

    model: ModelConfig = field(default_factory=ModelConfig)
    reg: Regularization = field(default_factory=Regularization)
    result: TrialResult | None = None
    dataset: datamod.Dataset | None = None

    @classmethod
    def build(
        cls,
        hidden: tuple[int, ...] = (500, 500),
        activation: str = "relu",
        *,
        residual: bool = False,
        regularization: Regularization | None = None,
    ) -> Model:
        return cls(
            ModelConfig(hidden=tuple(hidden), activation=activation, residual=residual),
            regularization or Regularization(),
        )

    def fit(
        self,
        data: str | datamod.Dataset = "digits",
        *,
        optimizer: str = "adam",
        learning_rate: float | None = None,
        batch_size: int = 100,
        epochs: int = 20,
        loss: str = "ce",
        seed: int = 0,
        val_split: float = 0.1,
        **hyperparams: float,
    ) -> dict[str, list]:
        """Train on ``data`` (a dataset name or a loaded ``Dataset``); returns the per-epoch history."""
        config = DataConfig(dataset=data if isinstance(data, str) else "digits", val_split=val_split)
        self.dataset = datamod.load(config) if isinstance(data, str) else data
        hyper = dict(hyperparams)
        if learning_rate is not None:
            hyper["learning_rate"] = learning_rate
        spec = TrialSpec(
            optimizer=optimizer,
            hyperparams=tuple(hyper.items()),
            seed=seed,
            model=self.model,
            train=TrainConfig(epochs=epochs, batch_size=batch_size, loss=loss),
            reg=self.reg,
        )
        engine.check_specs([spec], self.dataset)
        [self.result] = runner.execute(runner.Run(specs=(spec,), data=config), self.dataset)
        return self.result.history

    def _trained(self) -> TrialResult:
        if self.result is None or self.result.params is None:
            raise InputError("the model is not trained yet: call fit() first")
        return self.result

    def evaluate(self, x: np.ndarray | None = None, y: np.ndarray | None = None) -> dict[str, float]:
        """Loss and accuracy on (x, y); by default on the test set of the data it was fitted on."""
        result = self._trained()
        if x is None or y is None:
            assert self.dataset is not None
            x, y = self.dataset.x_test, self.dataset.y_test
        return engine.evaluate(
            result.graphdef,
            result.params,
            x,
            np.asarray(y),
            loss=result.spec.train.loss,
            dropout_rate=self.reg.dropout,
            dropout_mode=self.reg.dropout_mode,
        )

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (softmax output), one row per sample."""
        result = self._trained()
        return engine.predict_proba(
            result.graphdef,
            result.params,
            np.asarray(x),
            dropout_rate=self.reg.dropout,
            dropout_mode=self.reg.dropout_mode,
        )

    def summary(self) -> dict[str, Any]:
        result = self._trained()
        return {
            "status": result.status,
            "metrics": result.metrics,
            "diagnosis": result.diagnosis,
            "config": dataclasses.asdict(self.model),
        }
