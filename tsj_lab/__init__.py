"""tsj-lab: a workbench for moving a trading journal's tick store to TimescaleDB."""

from __future__ import annotations

import logging

__version__ = "0.1.0"

logging.getLogger("tsj_lab").addHandler(logging.NullHandler())
