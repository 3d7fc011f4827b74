"""Moved to ``slt_cli.use.ensemble``; this old path warns, and goes in slt 0.3."""

from slt_cli.common.moved import moved
from slt_cli.use import ensemble as _new

moved(__name__, _new)
