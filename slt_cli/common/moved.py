"""The module paths of slt 0.1 (``slt_cli.engine``, ``slt_cli.config``…), kept for one
release after the modules moved into packages.

Each old path is a small module that hands itself over to the new one: it puts the new
module in ``sys.modules`` under the old name too, so ``slt_cli.engine.Trainer`` is
``slt_cli.run.engine.Trainer`` and a patch made through either name is seen by both,
and warns once, naming the new path. slt itself imports only the new paths
(``tests/test_layout.py`` checks), so normal use warns about nothing.
"""

from __future__ import annotations

import sys
import warnings
from types import ModuleType

REMOVED_IN = "0.3"  # the release whose slt_cli no longer has the old paths


def moved(old: str, new: ModuleType) -> None:
    """Make the module named ``old`` (the caller) an alias of ``new``, with a
    ``DeprecationWarning`` pointed at the line that imported ``old``."""
    warnings.warn(f"{old} has moved to {new.__name__}; the old path goes in slt "
                  f"{REMOVED_IN}", DeprecationWarning, stacklevel=_importer_level())
    sys.modules[old] = new


def _importer_level() -> int:
    """The ``stacklevel`` of the first frame outside the old module and the import
    machinery: the user's ``import``, so the default filters show the warning there."""
    frame, level = sys._getframe(2), 3  # 1 = moved(), 2 = the old module
    while frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
        frame, level = frame.f_back, level + 1
    return level
