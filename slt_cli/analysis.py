"""Moved to ``slt_cli.use.analysis``; this old path warns, and goes in slt 0.3."""

from slt_cli.common.moved import moved
from slt_cli.use import analysis as _new

moved(__name__, _new)
