"""Moved to ``slt_cli.run.scoring``; this old path warns, and goes in slt 0.3."""

from slt_cli.common.moved import moved
from slt_cli.run import scoring as _new

moved(__name__, _new)
