"""Older name of :mod:`bridgenet.testing.faults`, the faults a test injects in its sandbox.

``from bridgenet.faults import Faults`` goes on working: every name this
module offered is here, from the modules of :mod:`bridgenet.testing` it now
lives in (``faults``, ``faults_links``). Nothing in bridgenet's core imports
it.
"""

from __future__ import annotations

from .testing.faults import ActiveList, Fault, FaultCommand, Faults
from .testing.faults_links import (
    DIRECTIONS,
    VethEnds,
    add_rate_limit,
    del_rate_limit,
    link_down,
    link_state,
    link_up,
    qdisc_stats,
    tbf_args,
    veth_ends,
)

__all__ = [
    "DIRECTIONS", "ActiveList", "Fault", "FaultCommand", "Faults", "VethEnds", "add_rate_limit",
    "del_rate_limit", "link_down", "link_state", "link_up", "qdisc_stats", "tbf_args", "veth_ends",
]
