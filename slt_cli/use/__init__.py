"""Using trained models: loading one and predicting (``inference``), exporting it
(``export``), ensembles (``ensemble``), distilling a student (``distill``) and the
stage-by-stage analysis behind ``slt analyze`` (``analysis``).

May import: ``errors``, ``common``, ``data``, ``models``, ``cfg``, ``store``, ``run``.
"""
