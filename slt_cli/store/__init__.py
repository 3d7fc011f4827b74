"""The checkpoint folder: checkpoint names and files (``checkpoints``), the typed sidecar
beside each (``sidecar``), earlier runs' archive (``archive``), one run per folder
(``lock``) and the index behind ``slt list`` (``catalog``).

May import: ``errors``, ``common``, ``cfg``. Nothing here imports torch at import time,
so ``slt list`` answers at once.
"""
