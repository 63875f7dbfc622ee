"""Older name of bridgenet's pytest plugin, which is now :mod:`bridgenet.testing.plugin`.

``-p bridgenet.pytest_plugin`` (or an entry point of that name, as installed
by older versions) loads the plugin through ``pytest_plugins``: pytest
registers it once, under its own name, however it is asked for. Its names
(the hooks, the default fixtures) can still be imported from here; they are
looked up lazily (PEP 562), so that pytest does not see them twice.
"""

from __future__ import annotations

pytest_plugins = ["bridgenet.testing.plugin"]


def __getattr__(name: str) -> object:
    from .testing import plugin

    try:
        return getattr(plugin, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
