"""What publishing a run needs to know about it (no broker imports: the stores use it)."""

from __future__ import annotations

from typing import NamedTuple
from uuid import UUID


class Job(NamedTuple):
    """A run to publish: its id, its priority, and whether its claim goes through the gate."""

    id: UUID
    priority: str = "normal"
    gated: bool = False
