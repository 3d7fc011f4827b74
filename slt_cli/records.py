"""Moved to ``slt_cli.run.records``; this old path warns, and goes in slt 0.3."""

from slt_cli.common.moved import moved
from slt_cli.run import records as _new

moved(__name__, _new)
