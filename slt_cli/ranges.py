"""Moved to ``slt_cli.common.ranges``; this old path warns, and goes in slt 0.3."""

from slt_cli.common import ranges as _new
from slt_cli.common.moved import moved

moved(__name__, _new)
