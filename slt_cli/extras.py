"""Moved to ``slt_cli.common.extras``; this old path warns, and goes in slt 0.3."""

from slt_cli.common import extras as _new
from slt_cli.common.moved import moved

moved(__name__, _new)
