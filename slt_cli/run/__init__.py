"""A training run: the staged engine behind ``train``, ``continue`` and ``smoke``
(``engine``, ``smoke``) and the notes it gives before it starts (``caveats``), one
stage's training (``training``, ``optimizer``, ``averaging``, ``regularisers``,
``selection``, ``teaching``, ``metrics``), where it runs (``devices``, ``distributed``),
scoring a split (``scoring``), what a checkpoint says about its network (``records``),
the run's plan, resume state, history and folder (``plan``, ``resume``, ``history``,
``runfolder``, ``trackers``), K-fold cross-validation (``folds``, ``foldsummary``) and
what the engine hands back (``results``).

May import: ``errors``, ``common``, ``data``, ``models``, ``cfg``, ``store``. The
engine never prints: progress goes through ``common.reporting.Reporter``.
"""
