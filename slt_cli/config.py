"""Moved to ``slt_cli.cfg.config``; this old path warns, and goes in slt 0.3."""

from slt_cli.cfg import config as _new
from slt_cli.common.moved import moved

moved(__name__, _new)
