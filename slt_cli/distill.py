"""Moved to ``slt_cli.use.distill``; this old path warns, and goes in slt 0.3."""

from slt_cli.common.moved import moved
from slt_cli.use import distill as _new

moved(__name__, _new)
