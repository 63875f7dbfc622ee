"""Fixture factories: bridgenet's pytest fixtures, and the means to make your own variants.

Each factory returns a pytest fixture; assign it to a name in a
``conftest.py`` (or a test module) and that name becomes the fixture, the way
``pytest-postgresql``'s ``factories`` work::

    from bridgenet import Container, bridge_network
    from bridgenet.testing import factories

    shop_sandbox = factories.sandbox(scope="module", upstream=True)
    shop = factories.network(
        lambda: bridge_network("shop", [Container("web", "10.88.0.10"), Container("db", "10.88.0.20")],
                               gateway="10.88.0.1/24"),
        sandbox="shop_sandbox", scope="module",
    )

(``bridgenet.fixtures`` is the same module under its older name.) The plugin
(:mod:`bridgenet.testing.plugin`) defines the default fixtures with these
same factories: ``bridgenet_sandbox = sandbox()``, ``bridgenet_network =
network_factory()``, ``bridgenet_tutorial = network(tutorial)``,
``netns_run = netns_run()``, ``netns_process = netns_process()``,
``bridgenet_faults = faults()``, ``bridgenet_reach = reach()``.

What a sandbox is: :class:`bridgenet.sandbox.Sandbox`, new network, mount
and PID namespaces (plus a user namespace when not root). Nothing a test does
in it reaches the machine's own network namespace or its ``/run``; when the
sandbox closes, the kernel ends every process in it and frees its namespaces.
"""

from __future__ import annotations

import inspect
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from ..network import Network
from .reach import Reach
from ..sandbox import Sandbox
from ..tutorial import tutorial
from .faults import Faults
from .janitor import SandboxPool, open_sandbox, outlives_test, registry, release_sandbox
from .networks import LiveNetwork, NetworkFactory, fresh_plans, lesson
from .processes import NetnsProcesses, NetnsRunner
from .settings import SCOPES, check_scope, config_settings, no_skip, settings_for
from .shared import (
    DEFAULT_MARK,
    DEFAULT_SANDBOX,
    Follower,
    default_is_plugins,
    followed_by,
    followers,
    narrower_sandbox,
)

POOL_FIXTURES = {s: f"_bridgenet_pool_{s}" for s in SCOPES if s != "function"}
"""Fixture names of the shared sandboxes behind a wider scope (defined by the plugin)."""


def _make_fixture(name: str, scope: str, deps: Sequence[str], body: Callable[..., Iterator[object]],
                  doc: str, mark: object = None) -> object:
    """A pytest fixture of ``scope`` that depends on the fixtures named in ``deps``.

    The dependencies are declared in the fixture's signature (not fetched
    with ``getfixturevalue``), so pytest orders setup and teardown by them,
    checks scopes, and lists them in ``--setup-show``.
    """

    def fixture_function(**kwargs: object) -> Iterator[object]:
        yield from body(kwargs["request"], *(kwargs[d] for d in deps))

    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in ("request", *deps)]
    fixture_function.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    fixture_function.__name__ = fixture_function.__qualname__ = name
    fixture_function.__doc__ = doc
    if mark is not None:
        setattr(fixture_function, DEFAULT_MARK, mark)
    return pytest.fixture(scope=scope)(fixture_function)


def _on_sandbox(name: str, scope: str, sandbox: str, body: Callable[..., Iterator[object]], doc: str) -> object:
    """A fixture of ``scope`` whose ``body(request, sandbox)`` runs on the sandbox fixture named ``sandbox``.

    On the default sandbox (``bridgenet_sandbox``, per test) with a wider
    ``scope``, the fixture takes the sandbox shared per ``scope`` instead,
    and the tests using it follow it (:mod:`bridgenet.testing.shared`). A
    ``bridgenet_sandbox`` the user defined is used as it is (an error naming
    the fixture when it is narrower than ``scope``).
    """
    if sandbox != DEFAULT_SANDBOX or scope == "function":
        return _make_fixture(name, scope, (sandbox,), body, doc)

    def follow(request: pytest.FixtureRequest, pool: SandboxPool) -> Iterator[object]:
        plugins, upstream, keep = default_is_plugins(request, sandbox)
        if not plugins:
            yield from body(request, narrower_sandbox(request, sandbox, scope)())
            return
        s = settings_for(request.node, scope=scope, upstream=upstream, keep=keep)
        sb = pool.acquire(fixture=request.fixturename, upstream=s.upstream, keep=s.keep,
                          nodeid=request.node.nodeid)
        me = Follower(request.fixturename, scope, sb, s.upstream, s.keep)
        followers(request.config).append(me)
        try:
            yield from body(request, sb)
        finally:
            followers(request.config).remove(me)
            pool.done(sb)

    return _make_fixture(name, scope, (POOL_FIXTURES[scope],), follow,
                         doc + f" In the bridgenet sandbox shared per {scope}.")


def sandbox_pool(scope: str) -> object:
    """The fixture holding the shared sandboxes of ``scope`` (the plugin defines one per scope)."""
    check_scope(scope, "sandbox_pool")

    def body(request: pytest.FixtureRequest) -> Iterator[SandboxPool]:
        pool = SandboxPool(request.config, scope)
        try:
            yield pool
        finally:
            pool.close()

    return _make_fixture(POOL_FIXTURES[scope], scope, (), body, f"The bridgenet sandboxes shared per {scope}.")


def sandbox(*, scope: str | None = None, upstream: bool | None = None, keep: bool | None = None) -> object:
    """Make a fixture that gives a test a :class:`~bridgenet.sandbox.Sandbox`, a throwaway host.

    Args:
        scope: None (default): a function-scoped fixture whose sandbox lives
            as long as the test's ``@pytest.mark.bridgenet(scope=...)``, else
            ``--bridgenet-scope``, else the ``bridgenet_scope`` ini value,
            else ``"function"`` says; with a wider scope the tests share one
            sandbox and each test's networks, faults and processes are
            removed after it. A scope from :data:`SCOPES` makes a fixture of
            that fixed pytest scope (what a fixture of the same or narrower
            scope can depend on).
        upstream: also make the ``upstream`` namespace (198.51.100.1/24); None:
            as the marker says (default no).
        keep: keep the sandbox alive when a test using it fails; None: as
            the marker, ``--bridgenet-keep`` or the ``bridgenet_keep`` ini say.

    The fixture skips the test with the exact reason when no sandbox can be
    made (``--bridgenet-no-skip`` turns that into a failure).
    """
    doc = ("A throwaway host (bridgenet.sandbox.Sandbox): new network, mount and PID namespaces "
           "(plus a user namespace when not root).")
    if scope is None:
        def dynamic(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
            followed = followed_by(request)
            if followed is not None:  # the test uses a wider fixture made on this one: its sandbox
                info = registry(request.config).get(followed.sandbox)
                if info is not None:
                    info.nodeid = request.node.nodeid
                try:
                    yield followed.sandbox
                finally:
                    if info is not None:
                        info.nodeid = None
                return
            s = settings_for(request.node, upstream=upstream, keep=keep)
            if s.scope == "function":
                sb = open_sandbox(request.config, fixture=request.fixturename, scope="function",
                                  upstream=s.upstream, keep=s.keep, static=False, nodeid=request.node.nodeid)
                try:
                    yield sb
                finally:
                    release_sandbox(request.config, sb)
                return
            pool: SandboxPool = request.getfixturevalue(POOL_FIXTURES[s.scope])
            sb = pool.acquire(fixture=request.fixturename, upstream=s.upstream, keep=s.keep,
                              nodeid=request.node.nodeid)
            try:
                yield sb
            finally:
                pool.done(sb)

        return _make_fixture("bridgenet_sandbox", "function", (), dynamic,
                             doc + " Lives per test unless @pytest.mark.bridgenet(scope=...) or "
                             "--bridgenet-scope say otherwise, or the test uses a fixture of a wider scope "
                             "made on it (e.g. factories.network(..., scope='module')): then that one's.",
                             mark=(upstream, keep))

    check_scope(scope, "factories.sandbox")

    def static(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
        base = config_settings(request.config)
        sb = open_sandbox(request.config, fixture=request.fixturename, scope=scope, upstream=bool(upstream),
                          keep=base.keep if keep is None else keep, static=True)
        try:
            yield sb
        finally:
            release_sandbox(request.config, sb)

    return _make_fixture("bridgenet_sandbox", scope, (), static, doc + f" One per {scope}.")


# --- networks -----------------------------------------------------------------------


def network_factory(*, sandbox: str = "bridgenet_sandbox", scope: str = "function") -> object:
    """Make a fixture giving a :class:`NetworkFactory` bound to the sandbox fixture named ``sandbox``.

    Networks are taken down after the fixture's scope when the sandbox is
    shared beyond it (with a per-test sandbox they simply vanish with it).
    """
    check_scope(scope, "factories.network_factory")

    def body(request: pytest.FixtureRequest, sb: Sandbox) -> Iterator[NetworkFactory]:
        factory = NetworkFactory(sb, plans=fresh_plans(request.config))
        yield factory
        if outlives_test(request.config, sb):
            factory.down_all()

    return _on_sandbox("bridgenet_network", scope, sandbox, body,
                       "Build bridgenet Networks in the test's sandbox: bridgenet_network(net), "
                       ".tutorial(), .bridge(name, containers, ...); returns a LiveNetwork.")


def network(make: Network | Callable[[], Network], *, sandbox: str = "bridgenet_sandbox",
            scope: str = "function") -> object:
    """Make a fixture giving the :class:`LiveNetwork` of ``make`` (a Network, or a callable returning one).

    ``bridgenet_tutorial = factories.network(bridgenet.tutorial)`` is the
    lesson's network, up. ``scope`` may not be wider than the sandbox's.
    """
    check_scope(scope, "factories.network")

    build = lesson if make is tutorial else make

    def body(request: pytest.FixtureRequest, sb: Sandbox) -> Iterator[LiveNetwork]:
        net = build if isinstance(build, Network) else build()
        factory = NetworkFactory(sb, plans=fresh_plans(request.config))
        live = factory(net)
        yield live
        if outlives_test(request.config, sb):
            factory.down_all()

    return _on_sandbox("bridgenet_live_network", scope, sandbox, body,
                       describe(make, sandbox=sandbox, scope=scope))


def describe(make: Network | Callable[[], Network], *, sandbox: str, scope: str) -> str:
    """What ``pytest --fixtures`` shows for ``network(make)``: the network's name and size, where, how long.

    E.g. ``bridgenet network 'trio' (from trio()): 3 namespaces on bridge br-trio, in sandbox fixture
    bridgenet_sandbox, scope module``, then the first line of ``make``'s docstring if it has one. A
    callable is called once here to see its network; if that fails, its name is shown instead.
    """
    source = ""
    net: Network | None = make if isinstance(make, Network) else None
    if net is None:
        source = f" (from {getattr(make, '__qualname__', None) or getattr(make, '__name__', repr(make))}())"
        try:
            built = (lesson if make is tutorial else make)()
            net = built if isinstance(built, Network) else None
        except Exception:  # noqa: BLE001 (the fixture will raise it where a test can see it)
            net = None
    if net is None:
        text = f"bridgenet network{source}"
    else:
        spaces = len(net.namespaces)
        bridges = ", ".join(b.name for b in net.bridges)
        on = f" on bridge{'s' if len(net.bridges) > 1 else ''} {bridges}" if bridges else ""
        text = f"bridgenet network {net.name!r}{source}: {spaces} namespace{'' if spaces == 1 else 's'}{on}"
    text += f", in sandbox fixture {sandbox}, scope {scope}; up as a LiveNetwork."
    doc = (getattr(make, "__doc__", None) or "").strip() if callable(make) else ""
    return f"{text} {doc.splitlines()[0]}" if doc else text


# --- running programs -------------------------------------------------------------------


def netns_run(*, sandbox: str = "bridgenet_sandbox", scope: str = "function") -> object:
    """Make a fixture giving a :class:`NetnsRunner` for the sandbox fixture named ``sandbox``."""
    check_scope(scope, "factories.netns_run")

    def body(request: pytest.FixtureRequest, sb: Sandbox) -> Iterator[NetnsRunner]:
        yield NetnsRunner(sb)

    return _on_sandbox("netns_run", scope, sandbox, body,
                       "Run a program to completion in a namespace of the sandbox: "
                       "netns_run(netns, argv, input=, timeout=, check=) -> Result(exit_code, stdout, stderr).")


def netns_process(*, sandbox: str = "bridgenet_sandbox", scope: str = "function") -> object:
    """Make a fixture giving a :class:`NetnsProcesses`; every process it started is ended at teardown."""
    check_scope(scope, "factories.netns_process")

    def body(request: pytest.FixtureRequest, sb: Sandbox) -> Iterator[NetnsProcesses]:
        directory = Path(tempfile.mkdtemp(prefix="bridgenet-proc-"))
        procs = NetnsProcesses(sb, directory)
        try:
            yield procs
        finally:
            try:
                procs.stop_all()
            finally:
                shutil.rmtree(directory, ignore_errors=True)

    return _on_sandbox("netns_process", scope, sandbox, body,
                       "Start a background program in a namespace of the sandbox: "
                       "netns_process(netns, argv) -> NetnsProcess (.wait_for_port(port, udp=False), "
                       ".wait_for_output(pattern), .stop()); "
                       "all are ended at teardown.")


# --- faults and reachability -------------------------------------------------------


def faults(*, sandbox: str = "bridgenet_sandbox", scope: str = "function") -> object:
    """Make a fixture giving a :class:`bridgenet.testing.faults.Faults` for the sandbox fixture named ``sandbox``.

    Faults still in place are undone after the fixture's scope when the
    sandbox is shared beyond it (a per-test sandbox simply vanishes), and
    left in place when the sandbox is kept for inspection. What vanished
    meanwhile (a network taken down first) is skipped; only a real failure
    to undo warns. A netem fault on a kernel without netem skips the test
    with the reason, unless ``--bridgenet-no-skip``.
    """
    check_scope(scope, "factories.faults")

    def body(request: pytest.FixtureRequest, sb: Sandbox) -> Iterator[Faults]:
        def unavailable(err: Exception) -> None:
            if not no_skip(request.config):
                pytest.skip(str(err))

        f = Faults(sb, on_unavailable=unavailable)
        yield f
        if outlives_test(request.config, sb):
            left = f.restore()
            if left:
                warnings.warn(pytest.PytestWarning("bridgenet could not undo these faults in the shared sandbox: "
                                                   + "; ".join(left)), stacklevel=1)

    return _on_sandbox("bridgenet_faults", scope, sandbox, body,
                       "Inject faults in the sandbox: partition(netns) or partition([..], [..]), drop(a, b), "
                       "grudge({a: [b]}), loss(netns, percent, peers=), netem(netns, delay=, ...), "
                       "delay(netns, d), heal(f), heal_all(); f.dropped() counts; rate_limit(netns, rate=).")


def reach(*, sandbox: str = "bridgenet_sandbox", scope: str = "function") -> object:
    """Make a fixture giving a :class:`bridgenet.testing.reach.Reach` for the sandbox fixture named ``sandbox``."""
    check_scope(scope, "factories.reach")

    def body(request: pytest.FixtureRequest, sb: Sandbox) -> Iterator[Reach]:
        yield Reach(sb)

    return _on_sandbox("bridgenet_reach", scope, sandbox, body,
                       "assert_reachable(a, b, port=None) / assert_unreachable(a, b) between namespaces "
                       "of the sandbox; a failure shows links, routes, neighbours and iptables counters.")


# --- several hosts ------------------------------------------------------------------------


def hosts(n: int = 2, *, sshd: bool = False, scope: str = "function", subnet: str = "198.51.100.0/24") -> object:
    """Make a fixture giving :class:`~bridgenet.testing.hosts.Hosts`: ``n`` hosts in a sandbox of their own.

    The sandbox (no upstream: the underlay is 198.51.100.0/24) is the
    controller; ``hosts[0]`` is ``h1`` (198.51.100.11) and so on, each with
    ``.runner()``; with ``sshd=True`` each runs a real ``sshd`` and
    ``.ssh_runner()`` reaches it. The test is skipped, with the reason, when
    no sandbox can be made or (``sshd=True``) no ``sshd`` can serve there
    (:func:`~bridgenet.testing.hosts.sshd_unavailable_reason`: none found,
    no ``ssh`` client, or rootless).
    """
    check_scope(scope, "factories.hosts")
    from .hosts import Hosts, sshd_unavailable_reason

    def body(request: pytest.FixtureRequest) -> Iterator[Hosts]:
        sb = open_sandbox(request.config, fixture=request.fixturename, scope=scope, nodeid=request.node.nodeid)
        try:
            reason = sshd_unavailable_reason(sb) if sshd else None
            if reason:
                if no_skip(request.config):
                    pytest.fail(reason, pytrace=False)
                pytest.skip(reason)
            with Hosts(sb, n, sshd=sshd, subnet=subnet) as made:
                yield made
        finally:
            release_sandbox(request.config, sb)

    return _make_fixture(f"hosts{n}", scope, (), body,
                         f"{n} hosts (network and mount namespaces) on an underlay bridge in a sandbox"
                         + (", each with a real sshd." if sshd else "."))


def stretch(make: Callable[..., object], *, hosts: str = "bridgenet_hosts", scope: str = "function") -> object:
    """Make a fixture giving a :class:`~bridgenet.testing.stretches.LiveStretch`: ``make``'s network
    across hosts brought up (``across.up_all``) on the hosts fixture named ``hosts`` (a
    :func:`hosts` fixture: ``bridgenet_hosts = factories.hosts(2)``), taken down at teardown.

    ``make`` returns the :class:`~bridgenet.stretch.Stretch`; it takes no argument or the
    :class:`~bridgenet.testing.hosts.Hosts` (their names and underlay addresses for ``HostSpec``).
    """
    check_scope(scope, "factories.stretch")
    from .stretches import LiveStretch

    def body(request: pytest.FixtureRequest, made_hosts: object) -> Iterator[LiveStretch]:
        s = make(made_hosts) if inspect.signature(make).parameters else make()
        live = LiveStretch(s, made_hosts)  # type: ignore[arg-type]
        try:
            yield live
        finally:
            live.down()

    return _make_fixture(getattr(make, "__name__", "stretch"), scope, (hosts,), body,
                         "a network across hosts, up on the hosts of " + hosts)
