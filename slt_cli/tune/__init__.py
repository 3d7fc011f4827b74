"""``slt tune``: the Optuna search over stage settings (``study``), one trial (``trial``),
its records (``results``), ``--auto``'s model search (``auto``) and the console
(``console``). The ``[tune]`` search spaces are read with the config, free of Optuna:
``cfg.tune_space`` (``space`` here is its old path, for a release).

May import: ``errors``, ``common``, ``cfg``, ``store``, ``run``, ``show``. Nothing is
imported here, so the old ``space`` path does not pull in Optuna.
"""
