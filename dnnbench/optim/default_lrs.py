"""Default learning rates for optax optimizers whose factory has none, each with its source.

optax's factories mostly take ``learning_rate`` without a default. Run at one fallback rate
(``FALLBACK_LR``), an optimizer built for another scale (adadelta's 1, muon's 0.02) looks broken.
So each gets the rate its paper or its authors' code recommends, the source named in ``source``
(shown by ``dnnbench optimizers --list --all`` and recorded in every row's ``optimizer_origin``).
Where neither gives one, the entry says what it is taken from instead ("optax docstring example":
the rate optax's own documentation uses for it; "derived": computed from a documented rate and the
update rule). These are starting points, not tuned values: ``dnnbench tune`` and
``dnnbench lr-sensitivity`` find the rate for a task.
"""

from __future__ import annotations

from typing import NamedTuple


class DefaultLr(NamedTuple):
    """A documented default learning rate and where it comes from (paper, section, or code)."""

    value: float
    source: str


_SGD = "dnnbench's built-in sgd default (same rule; 0.1, tuned for the recipe's MLP)"

#: One row per optimizer: its name after ``optax.``, its default learning rate and that rate's source.
# fmt: off
_ROWS: tuple[tuple[str, float, str], ...] = (
    ("adabelief", 1e-3, "Zhuang et al. 2020 (NeurIPS); authors' adabelief-pytorch default lr=1e-3"),
    ("adadelta", 1.0, "Zeiler 2012, Algorithm 1: the update has no learning rate (= 1.0)"),
    ("adafactor", 1e-2, "Shazeer & Stern 2018: relative step min(1e-2, 1/sqrt(t)) x RMS(params) (optax scales by RMS(params))"),  # noqa: E501
    ("adagrad", 1e-2, "PyTorch torch.optim.Adagrad default lr=1e-2 (Duchi et al. 2011 give none)"),
    ("adam", 1e-3, "Kingma & Ba 2015, Algorithm 1: alpha = 0.001"),
    ("adamax", 2e-3, "Kingma & Ba 2015, Sec. 7.1, Algorithm 2 (AdaMax): alpha = 0.002"),
    ("adamaxw", 2e-3, "AdaMax's alpha = 0.002 (Kingma & Ba 2015, Algorithm 2), decoupled decay added"),
    ("adamw", 1e-3, "Loshchilov & Hutter 2019 keep Adam's alpha = 0.001; PyTorch AdamW default lr=1e-3"),
    ("adan", 1e-3, "Xie et al. 2022; authors' Adan (sail-sg/Adan) default lr=1e-3"),
    ("amsgrad", 1e-3, "Reddi et al. 2018, Adam's alpha = 0.001; PyTorch Adam(amsgrad=True) lr=1e-3"),
    ("fromage", 1e-2, "Bernstein et al. 2020; authors' README (jxbz/fromage): 0.01 'worked well'"),
    ("lamb", 1e-3, "You et al. 2020; TensorFlow Addons LAMB default learning_rate=0.001"),
    ("lars", 0.12, "SimCLR (Chen et al. 2020): LARS lr = 0.3 x batch/256 at trust coefficient 1e-3; 0.12 at batch 100"),
    ("lbfgs", 1.0, "optax: learning_rate=None scales the line search's step by 1"),
    ("lion", 3e-4, "Chen et al. 2023 (Lion): 3-10x smaller than AdamW's (1e-3); the 3x end"),
    ("nadam", 2e-3, "Dozat 2016; PyTorch NAdam default lr=2e-3"),
    ("nadamw", 2e-3, "PyTorch NAdam(decoupled_weight_decay=True) default lr=2e-3"),
    ("noisy_sgd", 0.1, "SGD's rate, " + _SGD + ", plus Neelakantan et al. 2015's annealed noise"),
    ("novograd", 3e-3, "optax docstring example (Ginsburg et al. 2019 give no default)"),
    ("optimistic_adam_v2", 1e-3, "Adam's alpha = 0.001 (Kingma & Ba 2015): Daskalakis et al. 2018 add an optimism term to Adam's step"),  # noqa: E501
    ("optimistic_gradient_descent", 0.1, "SGD's rate, " + _SGD + ": optimistic GD (Mokhtari et al. 2020) adds an optimism term to SGD's step"),  # noqa: E501
    ("radam", 1e-3, "Liu et al. 2020 (ICLR); authors' RAdam and PyTorch RAdam default lr=1e-3"),
    ("rmsprop", 1e-3, "Keras RMSprop default learning_rate=0.001 (Hinton's lecture 6e gives none)"),
    ("rprop", 0.1, "Riedmiller & Braun 1993: initial update-value delta_0 = 0.1 (FANN, OpenCV default)"),
    ("sgd", 0.1, _SGD),
    ("sign_sgd", 3e-3, "optax docstring example (Bernstein et al. 2018 tune it per task)"),
    ("signum", 3e-3, "optax.sign_sgd's docstring example (same step: the sign of the momentum)"),
    ("sm3", 0.1, "Anil et al. 2019; PyTorch-SM3 (port of the authors' TF code) default lr=0.1"),
    ("yogi", 1e-2, "Zaheer et al. 2018; TensorFlow Addons Yogi default 0.01 ('10x Adam's')"),
    ("contrib.acprop", 1e-3, "Zhuang et al. 2021; authors' runs (ACProp-Optimizer) use lr=1e-3"),
    ("contrib.ademamix", 1e-3, "Pagliardini et al. 2024; authors' AdEMAMix (apple/ml-ademamix) lr=1e-3"),
    ("contrib.adopt", 1e-3, "Taniguchi et al. 2024 (NeurIPS); authors' ADOPT default lr=1e-3"),
    ("contrib.galore", 1e-2, "optax docstring example (Zhao et al. 2024; AdamW as the base)"),
    ("contrib.madgrad", 1e-2, "Defazio & Jelassi 2021; authors' madgrad default lr=1e-2"),
    ("contrib.muon", 0.02, "Jordan et al. 2024, Muon reference code: lr=0.02, momentum 0.95"),
    ("contrib.sophia", 1e-3, "Liu et al. 2024 (ICLR); authors' SophiaH (Hutchinson estimator, as optax's) default lr=1e-3"),  # noqa: E501
    ("contrib.simplified_ademamix", 1e-5, "derived: Adam's 1e-3 x (1 - b1) -- its momentum sums gradients without Adam's (1 - b1) (Morwani et al. 2025, optax's rule), b1 = 0.99"),  # noqa: E501
)
# fmt: on
#: Keyed by the optimizer's qualified name (``optax.<name>``, ``optax.contrib.<name>``).
TABLE: dict[str, DefaultLr] = {f"optax.{name}": DefaultLr(value, source) for name, value, source in _ROWS}


def lookup(qualified: str) -> DefaultLr | None:
    """The documented default of ``optax.<name>`` / ``optax.contrib.<name>``, or None."""
    return TABLE.get(qualified)
