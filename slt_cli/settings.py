"""Moved to ``slt_cli.cfg.settings``; this old path warns, and goes in slt 0.3."""

from slt_cli.cfg import settings as _new
from slt_cli.common.moved import moved

moved(__name__, _new)
