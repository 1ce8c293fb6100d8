"""The housekeeping sweep: rescue runs whose worker died, publish runs whose message was lost."""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepReport:
    rescued: int = 0
    failed: int = 0
    republished: int = 0


def sweep() -> SweepReport:
    return SweepReport()
