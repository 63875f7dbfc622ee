"""Sandboxes shared beyond a test: fixtures of a wider scope on the default sandbox, and pytest-xdist.

``factories.network(make, scope="module")`` (any factory given a scope wider
than ``"function"`` and the default ``sandbox="bridgenet_sandbox"``) cannot
depend on the default sandbox fixture, which is function-scoped. It takes the
sandbox shared per that scope instead (the plugin's pool fixture of that
scope, as ``@pytest.mark.bridgenet(scope=...)`` does), and registers itself
as a :class:`Follower`: a test that uses it and also asks for
``bridgenet_sandbox`` (or for a fixture built on it: ``netns_run``,
``bridgenet_reach``...) gets that same sandbox, so everything the test sees is
in one place.

Under pytest-xdist each worker has its own sandboxes: tests that share one
must run on the same worker, which ``--dist loadscope`` (by module, or class),
``--dist loadfile`` or ``--dist loadgroup`` (with ``xdist_group`` marks)
guarantee and ``--dist load`` / ``worksteal`` do not. :func:`warn_if_split`
says so once per session.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import attrs
import pytest

from ..sandbox import Sandbox
from .settings import SCOPES

DEFAULT_SANDBOX = "bridgenet_sandbox"
"""The name of the plugin's sandbox fixture (what the factories use unless given ``sandbox=``)."""

DEFAULT_MARK = "_bridgenet_default_sandbox"
"""Attribute of a fixture function made by ``factories.sandbox()`` without a scope: its (upstream, keep)."""

SPLITTING = ("load", "worksteal")
"""pytest-xdist distribution modes that may send tests of one module (or class) to different workers."""

_FOLLOWERS = pytest.StashKey[list["Follower"]]()
_WARNED = pytest.StashKey[bool]()


@attrs.define(eq=False)
class Follower:
    """A fixture of a wider scope holding a shared sandbox that the tests using it follow.

    Attributes:
        name: the fixture's name (as the test's ``request.fixturenames`` lists it).
        scope: its pytest scope (one of class, module, package, session).
        sandbox: the shared sandbox it took.
        upstream: the sandbox has the ``upstream`` namespace.
        keep: it is kept alive when a test using it fails.
    """

    name: str
    scope: str
    sandbox: Sandbox
    upstream: bool
    keep: bool


def followers(config: pytest.Config) -> list[Follower]:
    """The followers set up now (the list is ``config``'s own; made on first use)."""
    found = config.stash.get(_FOLLOWERS, None)
    if found is None:
        found = config.stash[_FOLLOWERS] = []
    return found


def followed_by(request: pytest.FixtureRequest) -> Follower | None:
    """The follower the test of ``request`` uses (its widest), or None.

    Raises:
        pytest.UsageError: it uses followers holding different sandboxes (e.g. one of module and one of
            session scope): no single sandbox can serve the test.
    """
    mine = sorted((f for f in followers(request.config) if f.name in request.fixturenames),
                  key=lambda f: -SCOPES.index(f.scope))  # widest first
    if len({id(f.sandbox) for f in mine}) > 1:
        names = ", ".join(f"{f.name} (scope {f.scope})" for f in reversed(mine))
        raise pytest.UsageError(
            f"{request.node.nodeid} uses {names}: each was made on the default sandbox with its own scope, so "
            f"each lives in another sandbox. Give them one sandbox fixture: "
            f"shared = factories.sandbox(scope=...), then factories.network(..., sandbox='shared', scope=...)")
    return mine[0] if mine else None


def default_is_plugins(request: pytest.FixtureRequest, name: str) -> tuple[bool, bool | None, bool | None]:
    """Whether the fixture ``name`` visible to ``request`` is a per-test one made by ``factories.sandbox()``.

    Returns:
        (yes or no, its ``upstream`` and ``keep`` arguments when yes).
    """
    manager = getattr(request, "_fixturemanager", None)  # (pytest's: no public way to see a definition)
    getdefs = getattr(manager, "getfixturedefs", None)
    if getdefs is None:
        return True, None, None
    try:
        defs = getdefs(name, request.node)
    except TypeError:  # an older signature (nodeid)
        return True, None, None
    if not defs:
        return True, None, None
    mark = getattr(defs[-1].func, DEFAULT_MARK, None)
    return (mark is not None, *(mark or (None, None)))


def narrower_sandbox(request: pytest.FixtureRequest, sandbox: str, scope: str) -> Callable[[], Sandbox]:
    """A way to get the sandbox fixture ``sandbox`` from a fixture of ``scope`` that failed to name it.

    Used when a user defined ``bridgenet_sandbox`` themselves: their fixture
    is taken (it may be as wide as ``scope``); if it is narrower, the failure
    names the user's fixture and says which factory to use.
    """

    def get() -> Sandbox:
        try:
            return request.getfixturevalue(sandbox)
        except pytest.fail.Exception as e:
            if "ScopeMismatch" not in str(e):
                raise
            pytest.fail(
                f"ScopeMismatch: the {scope}-scoped fixture {request.fixturename!r} is built on the sandbox "
                f"fixture {sandbox!r}, which is narrower. Make that sandbox as wide: "
                f"{sandbox} = factories.sandbox(scope={scope!r}), or build on a sandbox fixture of your own: "
                f"factories.network(..., sandbox='my_sandbox', scope={scope!r}) with "
                f"my_sandbox = factories.sandbox(scope={scope!r}).", pytrace=False)

    return get


DIST_KEY = "bridgenet_dist"
"""Key of a worker's ``workerinput`` holding the controller's ``--dist`` (set by :func:`configure_node`)."""


def configure_node(node: object) -> None:
    """pytest-xdist's ``pytest_configure_node`` hook (controller side): tell the worker its ``--dist``.

    A worker's own ``config.option.dist`` reads ``"no"``; the controller's
    choice is passed in ``workerinput``.
    """
    config = node.config  # type: ignore[attr-defined]
    node.workerinput[DIST_KEY] = str(config.getoption("dist", None) or "no")  # type: ignore[attr-defined]


def worker_dist(config: pytest.Config) -> str | None:
    """The pytest-xdist ``--dist`` mode when this process is an xdist worker, else None."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return None
    return str(workerinput.get(DIST_KEY) or "load")


def warn_if_split(config: pytest.Config, scope: str, fixture: str) -> None:
    """Warn (once per session, a PytestWarning) that tests sharing a ``scope`` sandbox may run on different workers.

    Only under pytest-xdist with ``--dist load`` or ``worksteal`` (``-n N``
    alone means ``load``): each worker then makes its own shared sandbox, and
    the tests of one module (or class) may each see another one.
    """
    dist = worker_dist(config)
    if scope == "function" or dist not in SPLITTING or config.stash.get(_WARNED, False):
        return
    config.stash[_WARNED] = True
    warnings.warn(pytest.PytestWarning(
        f"bridgenet: {fixture!r} shares a sandbox per {scope}, but pytest-xdist runs with --dist {dist}: tests "
        f"sharing it may land on different workers, each with a sandbox of its own (what one test built, "
        f"another does not see). Run with --dist loadscope (or loadfile, or loadgroup with xdist_group marks)."),
        stacklevel=2)
