"""Learning curves: seed statistics per epoch, real image files, the text chart, ``dnnbench plot``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dnnbench.errors import DataError, InputError
from dnnbench.render import plots as plotting

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def trial_row(optimizer: str, seed: int, val_acc: list, *, lr: float = 0.01, tags: dict | None = None) -> dict:
    """A results row with a chosen val_acc history; the other curves follow from it."""
    tags = dict(tags or {})
    acc = [None if v is None else float(v) for v in val_acc]
    history = {
        "val_acc": acc,
        "train_acc": [None if v is None else min(1.0, v + 0.1) for v in acc],
        "val_loss": [None if v is None else 2.0 * (1 - v) for v in acc],
        "train_loss": [None if v is None else 1.5 * (1 - v) for v in acc],
        "grad_norm": [[1.0, 2.0] for _ in acc],
    }
    config = {"optimizer": optimizer, "hyperparams": {"learning_rate": lr}, "seed": seed, "tags": tags}
    return {
        "type": "trial",
        "id": f"{optimizer}-{lr:g}-{seed}",
        "optimizer": optimizer,
        "hyperparams": {"learning_rate": lr},
        "seed": seed,
        **tags,
        "config": config,
        "status": "ok",
        "metrics": {"val_acc": acc[-1]},
        "best_epoch": 1,
        "history": history,
    }


ROWS = [
    trial_row("sgd", 0, [0.2, 0.4, 0.6, 0.7]),
    trial_row("sgd", 1, [0.4, 0.6, 0.8, 0.9]),
    trial_row("adam", 0, [0.5, 0.7, 0.75]),  # stopped early: no epoch 4
    trial_row("adam", 1, [0.3, None, 0.85, 0.8]),  # a null at epoch 2
]
HEADER = {
    "type": "header",
    "schema": "dnnbench/1",
    "data": {"name": "digits"},
    "config": {"data": {"dataset": "digits"}},
}


def test_curves_mean_min_max_over_seeds_per_epoch():
    per = plotting.curves(ROWS, "val_acc")
    assert list(per) == ["sgd", "adam"]
    mean, low, high, n = per["sgd"]
    assert n == 2
    np.testing.assert_allclose(mean, [0.3, 0.5, 0.7, 0.8])
    np.testing.assert_allclose(low, [0.2, 0.4, 0.6, 0.7])
    np.testing.assert_allclose(high, [0.4, 0.6, 0.8, 0.9])
    mean, low, high, _ = plotting.curves(ROWS, "val_acc")["adam"]
    np.testing.assert_allclose(mean, [0.4, 0.7, 0.8, 0.8])  # epoch 2 and 4: the one seed that has it
    np.testing.assert_allclose(high - low, [0.2, 0.0, 0.1, 0.0], atol=1e-12)


def test_curves_split_a_learning_rate_sweep_and_tags():
    rows = [
        trial_row("sgd", 0, [0.1, 0.2], lr=0.1),
        trial_row("sgd", 0, [0.3, 0.4], lr=0.01),
        trial_row("adam", 0, [0.5, 0.6], tags={"regularizer": "l2"}),
    ]
    assert list(plotting.curves(rows, "val_acc")) == ["sgd lr=0.1", "sgd lr=0.01", "adam l2"]


def test_curves_reject_unknown_metrics_and_empty_input():
    with pytest.raises(InputError, match="grad_norm"):
        plotting.curves(ROWS, "grad_norm")
    with pytest.raises(DataError, match="no trials"):
        plotting.curves([], "val_acc")
    with pytest.raises(DataError, match="test_acc"):
        plotting.curves(ROWS, "test_acc")


def test_plot_curves_writes_a_non_blank_png_atomically(tmp_path):
    import matplotlib.image

    out = plotting.plot_curves(ROWS, tmp_path / "figs" / "curves.png", header=HEADER)
    assert out == tmp_path / "figs" / "curves.png"
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    pixels = matplotlib.image.imread(out)
    assert pixels.ndim == 3 and pixels.shape[0] > 300 and pixels.shape[1] > 600
    assert float(pixels[..., :3].var()) > 0.001
    assert sorted(p.name for p in out.parent.iterdir()) == ["curves.png"]  # no temporary file left


def test_plot_curves_svg_and_pdf_follow_the_suffix(tmp_path):
    svg = plotting.plot_curves(ROWS, tmp_path / "c.svg", metrics=("val_acc",))
    assert b"<svg" in svg.read_bytes()[:2000]
    assert plotting.plot_curves(ROWS, tmp_path / "c.pdf").read_bytes()[:5] == b"%PDF-"


def test_plot_curves_bad_paths_are_input_errors(tmp_path):
    with pytest.raises(InputError, match=r"\.png, \.svg, \.pdf"):
        plotting.plot_curves(ROWS, tmp_path / "curves.jpg")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InputError, match="cannot write"):
        plotting.plot_curves(ROWS, blocker / "curves.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        plotting.plot_curves(ROWS, tmp_path / "dir.png")


def test_terminal_chart_has_markers_axis_and_legend():
    text = plotting.terminal_curves(ROWS, "val_acc", width=40, height=10)
    lines = text.splitlines()
    assert lines[0] == "val_acc per epoch (mean over seeds)"
    plot_area = lines[1:11]
    assert plot_area[0].strip().startswith("0.8 ┤")  # the highest mean
    assert plot_area[-1].strip().startswith("0.3 ┤")  # the lowest mean
    assert "*" in "".join(plot_area) and "o" in "".join(plot_area)
    assert lines[-2:] == ["  * sgd (2 seeds)", "  o adam (2 seeds)"]
    assert "epoch 4" in lines[12]
    assert max(len(line) for line in plot_area) <= 11 + 40


def write(path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in [HEADER, *ROWS]))
    return path


def test_plot_command_writes_the_figure(cli, tmp_path):
    out = tmp_path / "out" / "c.png"
    result = cli("plot", write(tmp_path / "r.jsonl"), "--out", out, "--metric", "val_acc", "--metric", "val_loss")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote {out}"
    assert out.read_bytes()[:8] == PNG_SIGNATURE


def test_plot_command_terminal_and_errors(cli, tmp_path):
    results = write(tmp_path / "r.jsonl")
    result = cli("plot", results, "--terminal", "--metric", "train_loss")
    assert result.exit_code == 0
    assert "train_loss per epoch" in result.stdout and "  o adam (2 seeds)" in result.stdout
    assert "wrote" not in result.stdout  # --terminal draws text and writes no figure
    assert isinstance(cli("plot", results, "--out", tmp_path / "c.gif").exception, InputError)
    assert isinstance(cli("plot", tmp_path / "missing.jsonl").exception, DataError)
