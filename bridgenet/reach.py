"""Older name of :mod:`bridgenet.testing.reach`, the reachability assertions.

``from bridgenet.reach import assert_reachable`` goes on working: the names
are those of :mod:`bridgenet.testing.reach` (the same objects). Nothing in
bridgenet's core imports this module.
"""

from __future__ import annotations

from .testing import reach as _reach
from .testing.reach import (
    HOST,
    Reach,
    addresses,
    assert_reachable,
    assert_unreachable,
    diagnosis_lines,
    netns_names,
    owner,
    probe,
    resolve,
    state_report,
    tcp_connect,
)

__all__ = [
    "HOST", "Reach", "addresses", "assert_reachable", "assert_unreachable", "diagnosis_lines", "netns_names",
    "owner", "probe", "resolve", "state_report", "tcp_connect",
]


def __getattr__(name: str) -> object:
    try:
        return getattr(_reach, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
