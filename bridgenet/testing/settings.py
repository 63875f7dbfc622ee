"""How a test's sandbox is made: the ``bridgenet`` marker, the command line, the ini file.

The marker wins over the command line, the command line over the ini file,
the ini file over the defaults (function scope, nothing kept, no upstream).
"""

from __future__ import annotations

import os

import attrs
import pytest

SCOPES = ("function", "class", "module", "package", "session")
"""pytest scopes a sandbox can live for, narrowest first."""

MARKER = "bridgenet"
MARKER_ARGS = ("scope", "keep", "upstream")
MARKER_HELP = (
    "bridgenet(scope=None, keep=None, upstream=None): how the test's bridgenet sandbox is made. "
    "scope: function (a new sandbox for the test, the default), class, module, package or session "
    "(one sandbox shared by the tests of that scope that ask for it). keep: keep the sandbox alive "
    "when the test fails, and print how to enter it and end it. upstream: also make the 'upstream' "
    "namespace (198.51.100.1/24, RFC 5737) behind the sandbox host, standing in for the internet."
)


@attrs.frozen
class SandboxSettings:
    """How a test's sandbox is made.

    Attributes:
        scope: one of :data:`SCOPES`.
        keep: keep the sandbox of a failed test alive for inspection.
        upstream: add the ``upstream`` namespace (see :class:`~bridgenet.sandbox.Sandbox`).
    """

    scope: str = "function"
    keep: bool = False
    upstream: bool = False


def _ini(config: pytest.Config, name: str, default: object) -> object:
    try:
        return config.getini(name)
    except (ValueError, KeyError):  # the plugin's ini keys are not registered
        return default


def check_scope(scope: object, where: str) -> str:
    if scope not in SCOPES:
        raise pytest.UsageError(f"{where}: the scope of a bridgenet sandbox is one of {', '.join(SCOPES)} "
                                f"(got {scope!r})")
    return str(scope)


def config_settings(config: pytest.Config) -> SandboxSettings:
    """Settings from the command line (``--bridgenet-scope``, ``--bridgenet-keep``), else the ini file."""
    scope = config.getoption("bridgenet_scope", None) or _ini(config, "bridgenet_scope", "") or "function"
    keep = bool(config.getoption("bridgenet_keep", False) or _ini(config, "bridgenet_keep", False))
    return SandboxSettings(check_scope(scope, "bridgenet_scope"), keep, False)


def marker_kwargs(node: pytest.Item) -> dict[str, object]:
    """The arguments of the ``bridgenet`` markers on ``node``, the closest marker winning per argument.

    Raises:
        pytest.UsageError: a positional or unknown argument.
    """
    merged: dict[str, object] = {}
    for m in node.iter_markers(MARKER):
        if m.args:
            raise pytest.UsageError(f"{node.nodeid}: @pytest.mark.bridgenet takes keyword arguments only "
                                    f"({', '.join(MARKER_ARGS)}), got {m.args!r}")
        for k, v in m.kwargs.items():
            if k not in MARKER_ARGS:
                raise pytest.UsageError(f"{node.nodeid}: @pytest.mark.bridgenet has no argument {k!r} "
                                        f"(it takes {', '.join(MARKER_ARGS)})")
            merged.setdefault(k, v)
    return merged


def settings_for(node: pytest.Item, *, scope: str | None = None, keep: bool | None = None,
                 upstream: bool | None = None) -> SandboxSettings:
    """The settings of ``node``'s sandbox: explicit arguments, else its marker, else options, else defaults."""
    base = config_settings(node.config)
    mk = marker_kwargs(node)
    chosen_scope = scope if scope is not None else mk.get("scope") or base.scope
    chosen_keep = keep if keep is not None else mk.get("keep", base.keep)
    chosen_up = upstream if upstream is not None else mk.get("upstream", False)
    return SandboxSettings(check_scope(chosen_scope, f"{node.nodeid}: bridgenet marker"),
                           bool(chosen_keep), bool(chosen_up))


def no_skip(config: pytest.Config) -> bool:
    """True when a sandbox that cannot be made fails the test instead of skipping it."""
    return bool(config.getoption("bridgenet_no_skip", False) or _ini(config, "bridgenet_no_skip", False))


def report_header(config: pytest.Config) -> str:
    """One header line: sandbox scope, rootless or not, keep-on-failure."""
    s = config_settings(config)
    root = "rootless (user namespace)" if os.geteuid() != 0 else "as root"
    return f"bridgenet: sandbox scope {s.scope}, {root}, keep failed sandboxes: {'yes' if s.keep else 'no'}"
