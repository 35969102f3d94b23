"""Training a network (``bnexp train`` with ``optim.epochs > 0``), one module per idea:

* :mod:`~bnexp.training.fit` — every replicate × learning-rate grid point of a run, the grid choice, checkpoints
  and resume;
* :mod:`~bnexp.training.loop` — ``Trainer``: one model at one learning rate, its steps and log points;
* :mod:`~bnexp.training.measures` — what a log point measures: running means, set passes, the probe, each with
  its metric names and cadence;
* :mod:`~bnexp.training.precision` — the precision plan (bf16 autocast with float32 norms, channels_last);
* :mod:`~bnexp.training.rng` — the random streams of a run (seeding, forks, state for checkpoints);
* :mod:`~bnexp.training.optim` — optimisers, learning-rate schedules, minibatch sampling;
* :mod:`~bnexp.training.pretrain` — data-dependent preparation before step 0 (``pretrain=``): rank-maximising
  pre-training (rank paper, Algorithm 1) and, from :mod:`~bnexp.training.svd_init`, the ortho paper's iterative
  orthogonalization init;
* :mod:`~bnexp.training.stacked` — replicate-stacked SGD (runs of a sweep trained as one model,
  ``bnexp.engines.train_group``);
* :mod:`~bnexp.training.checkpoint` — ``checkpoint.pt``, written atomically.

The network engine (:mod:`bnexp.engines.train`) builds the models and calls :func:`bnexp.training.fit.train_all`.
"""
