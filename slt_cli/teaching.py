"""Moved to ``slt_cli.run.teaching``; this old path warns, and goes in slt 0.3."""

from slt_cli.common.moved import moved
from slt_cli.run import teaching as _new

moved(__name__, _new)
