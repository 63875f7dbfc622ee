"""Older name of :mod:`bridgenet.testing.factories`, bridgenet's fixture factories.

``from bridgenet import fixtures`` goes on working: every name this module
offered is here, from the module of :mod:`bridgenet.testing` it now lives in
(``factories``, ``settings``, ``janitor``, ``networks``, ``processes``).
"""

from __future__ import annotations

from .testing.factories import (
    POOL_FIXTURES,
    faults,
    netns_process,
    netns_run,
    network,
    network_factory,
    reach,
    sandbox,
    sandbox_pool,
)
from .testing.janitor import (
    KEPT_SECTION,
    Registry,
    SandboxInfo,
    SandboxPool,
    configure,
    keep_on_failure,
    kept_summary,
    kept_text,
    open_sandbox,
    outlives_test,
    registry,
    release_sandbox,
    require_sandbox,
    unconfigure,
)
from .testing.networks import FreshPlans, LiveNetwork, NetworkFactory, fresh_plans
from .testing.processes import (
    NetnsProcess,
    NetnsProcesses,
    NetnsRunner,
    PortNotReady,
    ProcessExitedError,
    listening,
)
from .testing.settings import (
    MARKER,
    MARKER_ARGS,
    MARKER_HELP,
    SCOPES,
    SandboxSettings,
    config_settings,
    marker_kwargs,
    no_skip,
    report_header,
    settings_for,
)

__all__ = [
    "KEPT_SECTION", "FreshPlans", "LiveNetwork", "MARKER", "MARKER_ARGS", "MARKER_HELP", "NetnsProcess",
    "NetnsProcesses", "NetnsRunner", "NetworkFactory", "POOL_FIXTURES", "PortNotReady", "ProcessExitedError",
    "Registry", "SCOPES", "SandboxInfo", "SandboxPool", "SandboxSettings", "config_settings", "configure",
    "faults", "fresh_plans", "keep_on_failure", "kept_summary", "kept_text", "listening", "marker_kwargs",
    "netns_process", "netns_run", "network", "network_factory", "no_skip", "open_sandbox", "outlives_test",
    "reach", "registry", "release_sandbox", "report_header", "require_sandbox", "sandbox", "sandbox_pool",
    "settings_for", "unconfigure",
]
