"""``slt tune``: the Optuna search over stage settings (``study``), its search spaces
(``space``, read with the config and so free of Optuna), one trial (``trial``), its
records (``results``), ``--auto``'s model search (``auto``) and the console (``console``).

Nothing is imported here: the config reads ``space`` without pulling in Optuna.
"""
