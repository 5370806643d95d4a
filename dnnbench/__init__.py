"""dnnbench: optimizer and regularization benchmarking of deep networks, as a measuring instrument.

Importing the package is cheap (no JAX): the CLI answers ``--help`` without loading XLA.
The library lives in submodules: ``config`` (what a trial is), ``data``, ``models``, ``optim``
(the optimizer registry), ``engine`` (jit/vmap/scan), ``runner`` (orchestration), ``results``,
``diagnosis``, ``report`` (rich rendering), ``api`` (the build -> fit -> evaluate -> predict workflow).
"""

__version__ = "0.1.0"
