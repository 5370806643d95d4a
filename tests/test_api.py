"""The Python API (``dnnbench/api.py``): bad inputs to ``predict`` and ``evaluate`` name the problem."""

from __future__ import annotations

import numpy as np
import pytest

# ---- the Python API names the problem


def test_api_predict_and_evaluate_name_bad_inputs():
    from dnnbench import api
    from dnnbench.errors import DnnbenchError

    model = api.Model.build(hidden=(4,))
    model.fit("synthetic:train=100,test=20,features=8,classes=3", epochs=1, batch_size=30)
    x, y = model.dataset.x_test, model.dataset.y_test
    assert model.predict(x[0]).shape == (1, 3)  # one 1-D sample is one row
    np.testing.assert_allclose(model.predict(x[0])[0], model.predict(x)[0], rtol=1e-6)
    with pytest.raises(DnnbenchError, match="5 features per sample .* the model takes 8"):
        model.predict(x[:, :5])
    with pytest.raises(DnnbenchError, match="20 samples but y has shape \\(19,\\)"):
        model.evaluate(x, y[:19])
    with pytest.raises(DnnbenchError, match="outside 0..2 .* e.g. 99"):
        model.evaluate(x, np.where(np.arange(len(y)) == 0, 99, y))
    assert 0.0 <= model.evaluate(x, y)["acc"] <= 1.0
