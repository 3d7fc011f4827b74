"""Moved to ``slt_cli.run.selection``; this old path warns, and goes in slt 0.3."""

from slt_cli.common.moved import moved
from slt_cli.run import selection as _new

moved(__name__, _new)
