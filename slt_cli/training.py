"""Moved to ``slt_cli.run.training``; this old path warns, and goes in slt 0.3."""

from slt_cli.common.moved import moved
from slt_cli.run import training as _new

moved(__name__, _new)
