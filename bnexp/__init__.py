"""bnexp: reproduce the figures of five papers on batch normalization in deep random networks.

Modules, each with one job:

* :mod:`bnexp.metrics`  pure functions on representations (ranks, r(H), V, φ, spectra)
* :mod:`bnexp.nn`       norm layers, activations, initialisations, MLPs
* :mod:`bnexp.chains`   streamed random-matrix chains, batched over seeds (``bnexp simulate``)
* :mod:`bnexp.engines`  the engines (train, simulate, inputs), chosen in one place
* :mod:`bnexp.training` the training loop: fit, measurements, precision, optimisers, pre-training, checkpoints
* :mod:`bnexp.results`  run directories, tidy CSVs, loading into DataFrames
* :mod:`bnexp.figures`  one module per paper: runs per scale, plot and claims of every figure
* :mod:`bnexp.cli`      the ``bnexp`` command

``bnexp.measure(model, batch, metrics=..., modules=...)`` runs the figures' probe on any ``nn.Module`` and returns a
tidy DataFrame, one row per (layer, metric) (:mod:`bnexp.measure`; torch and pandas load on its first call).
"""

from bnexp.measure import measure

__all__ = ["measure"]

__version__ = "0.1.0"
