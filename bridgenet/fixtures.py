"""Fixture factories: bridgenet's pytest fixtures, and the means to make your own variants.

Each factory returns a pytest fixture; assign it to a name in a
``conftest.py`` (or a test module) and that name becomes the fixture, the way
``pytest-postgresql``'s ``factories`` work::

    from bridgenet import Container, bridge_network, fixtures

    shop_sandbox = fixtures.sandbox(scope="module", upstream=True)
    shop = fixtures.network(
        lambda: bridge_network("shop", [Container("web", "10.88.0.10"), Container("db", "10.88.0.20")],
                               gateway="10.88.0.1/24"),
        sandbox="shop_sandbox", scope="module",
    )

The plugin (``bridgenet.pytest_plugin``) defines the default fixtures with
these same factories: ``bridgenet_sandbox = fixtures.sandbox()``,
``bridgenet_network = fixtures.network_factory()``, ``bridgenet_tutorial =
fixtures.network(tutorial)``, ``netns_run = fixtures.netns_run()``,
``netns_process = fixtures.netns_process()``, ``bridgenet_faults =
fixtures.faults()``, ``bridgenet_reach = fixtures.reach()``.

What a sandbox is: :class:`bridgenet.sandbox.Sandbox`, new network, mount
and PID namespaces (plus a user namespace when not root). Nothing a test does
in it reaches the machine's own network namespace or its ``/run``; when the
sandbox closes, the kernel ends every process in it and frees its namespaces.
"""

from __future__ import annotations

import contextlib
import functools
import io
import inspect
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import attrs
import pytest

from . import apply
from .errors import BridgenetError, CommandError, SandboxError
from .faults import Faults
from .model import Address, VethPair
from .network import Container, Network, bridge_network
from .plan import Plan
from .reach import Reach, netns_names
from .runners import REQUIRE_SANDBOX_ENV, Result
from .sandbox import Sandbox
from .tutorial import tutorial as _tutorial

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
KEPT_SECTION = "bridgenet: sandbox kept alive"
"""Title of the report section that says how to enter and end a kept sandbox."""

POOL_FIXTURES = {s: f"_bridgenet_pool_{s}" for s in SCOPES if s != "function"}
"""Fixture names of the shared sandboxes behind a wider scope (defined by the plugin)."""


class PortNotReady(BridgenetError, TimeoutError):
    """A background process did not listen on its TCP port in time."""


class ProcessExitedError(BridgenetError):
    """A background process ended while it was expected to run (e.g. before it listened)."""


# --- settings: marker > command line > ini > default ---------------------------------


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


def _check_scope(scope: object, where: str) -> str:
    if scope not in SCOPES:
        raise pytest.UsageError(f"{where}: the scope of a bridgenet sandbox is one of {', '.join(SCOPES)} "
                                f"(got {scope!r})")
    return str(scope)


def config_settings(config: pytest.Config) -> SandboxSettings:
    """Settings from the command line (``--bridgenet-scope``, ``--bridgenet-keep``), else the ini file."""
    scope = config.getoption("bridgenet_scope", None) or _ini(config, "bridgenet_scope", "") or "function"
    keep = bool(config.getoption("bridgenet_keep", False) or _ini(config, "bridgenet_keep", False))
    return SandboxSettings(_check_scope(scope, "bridgenet_scope"), keep, False)


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
    return SandboxSettings(_check_scope(chosen_scope, f"{node.nodeid}: bridgenet marker"),
                           bool(chosen_keep), bool(chosen_up))


def no_skip(config: pytest.Config) -> bool:
    """True when a sandbox that cannot be made fails the test instead of skipping it."""
    return bool(config.getoption("bridgenet_no_skip", False) or _ini(config, "bridgenet_no_skip", False))


# --- the sandboxes of a session --------------------------------------------------------


@attrs.define(eq=False)
class SandboxInfo:
    """What the plugin knows about a sandbox it made.

    Attributes:
        sandbox: the sandbox.
        fixture: the fixture that made it.
        scope: how long it lives (one of :data:`SCOPES`).
        keep: made keep-capable (``Sandbox(keep=True)``: its holder outlives
            this process unless ended), because keep-on-failure is on.
        static: made by a fixture of fixed scope (matched to tests by fixture
            name) rather than per test (matched by ``nodeid``).
        nodeid: the test using it now (per-test fixtures only).
        kept: a test failed and the sandbox is left alive for inspection.
    """

    sandbox: Sandbox
    fixture: str
    scope: str
    keep: bool
    static: bool
    nodeid: str | None = None
    kept: bool = False


class Registry:
    """The live sandboxes made under one pytest config (strong references until released)."""

    def __init__(self) -> None:
        self._infos: dict[int, SandboxInfo] = {}
        self._closing: list[Sandbox] = []

    def closing(self, sb: Sandbox) -> None:
        """``sb`` was closed without waiting; :meth:`reap` finishes it."""
        self._closing.append(sb)

    def reap(self, *, wait: bool = False) -> None:
        """Finish closing the sandboxes whose holders have exited (with ``wait``: all of them)."""
        left = []
        for sb in self._closing:
            if wait or sb.ended:
                sb.wait_closed()
            else:
                left.append(sb)
        self._closing = left

    def add(self, info: SandboxInfo) -> None:
        self._infos[id(info.sandbox)] = info

    def get(self, sb: Sandbox) -> SandboxInfo | None:
        info = self._infos.get(id(sb))
        return info if info is not None and info.sandbox is sb else None

    def pop(self, sb: Sandbox) -> SandboxInfo | None:
        info = self.get(sb)
        if info is not None:
            del self._infos[id(sb)]
        return info

    def __iter__(self) -> Iterator[SandboxInfo]:
        return iter(list(self._infos.values()))


_REGISTRY = pytest.StashKey[Registry]()
_PLANS = pytest.StashKey["FreshPlans"]()
_SAVED_ENV = pytest.StashKey["str | None"]()


def registry(config: pytest.Config) -> Registry:
    """The :class:`Registry` of ``config`` (made on first use)."""
    reg = config.stash.get(_REGISTRY, None)
    if reg is None:
        reg = config.stash[_REGISTRY] = Registry()
    return reg


def fresh_plans(config: pytest.Config) -> FreshPlans:
    """The :class:`FreshPlans` of ``config`` (made on first use)."""
    plans = config.stash.get(_PLANS, None)
    if plans is None:
        plans = config.stash[_PLANS] = FreshPlans()
    return plans


def require_sandbox(config: pytest.Config) -> None:
    """Set ``BRIDGENET_REQUIRE_SANDBOX=1`` for the session (saving the old value for :func:`unconfigure`)."""
    if _SAVED_ENV not in config.stash:
        config.stash[_SAVED_ENV] = os.environ.get(REQUIRE_SANDBOX_ENV)
    os.environ[REQUIRE_SANDBOX_ENV] = "1"


def configure(config: pytest.Config) -> None:
    """Session start: demand sandboxes for real commands; check the ini scope."""
    require_sandbox(config)
    registry(config)
    config_settings(config)


def unconfigure(config: pytest.Config) -> None:
    """Session end: end any sandbox still alive that is not kept; put the environment back."""
    for info in registry(config):
        if not info.kept:
            release_sandbox(config, info.sandbox)
    registry(config).reap(wait=True)
    if _SAVED_ENV in config.stash:
        old = config.stash[_SAVED_ENV]
        if old is None:
            os.environ.pop(REQUIRE_SANDBOX_ENV, None)
        else:
            os.environ[REQUIRE_SANDBOX_ENV] = old


def _end_holder(sb: Sandbox) -> None:
    # A keep-capable holder (`sleep infinity`, own session) ignores its stdin; end it by its PID.
    # is_isolated() checks that the PID still names a process in another network namespace.
    if sb.pid and sb.is_isolated():
        try:
            os.kill(sb.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def open_sandbox(config: pytest.Config, *, fixture: str, scope: str, upstream: bool = False,
                 keep: bool = False, static: bool = True, nodeid: str | None = None) -> Sandbox:
    """Start a sandbox and register it; skip the test (exact reason) when none can be made.

    Raises:
        pytest.skip.Exception: :class:`~bridgenet.errors.SandboxError` at
            creation (no ``unshare``, no user namespaces...), message unchanged.
        pytest.fail.Exception: the same, with ``--bridgenet-no-skip``.
    """
    registry(config).reap()
    sb = Sandbox(upstream=upstream, keep=keep)
    try:
        sb.start()
    except SandboxError as e:
        _end_holder(sb)
        if no_skip(config):
            pytest.fail(f"{e}\n(--bridgenet-no-skip: a sandbox that cannot be made is a failure)", pytrace=False)
        pytest.skip(str(e))
    except BaseException:
        _end_holder(sb)
        raise
    registry(config).add(SandboxInfo(sb, fixture, scope, keep, static, nodeid))
    return sb


def release_sandbox(config: pytest.Config, sb: Sandbox) -> None:
    """Close ``sb``, or, when a failed test kept it, leave it running (its holder prints how to enter it)."""
    info = registry(config).pop(sb)
    if info is not None and info.kept:
        with contextlib.redirect_stderr(io.StringIO()):  # the report already says how to enter and end it
            sb.close()  # made with keep=True: leaves it alive
        return
    if sb.keep:
        _end_holder(sb)
        sb.keep = False
    # Not waiting for the holder to exit: the kernel ends the sandbox meanwhile; the next
    # open_sandbox (or the end of the session) reaps it.
    sb.close(wait=False)
    registry(config).closing(sb)


def kept_text(sb: Sandbox) -> str:
    """How to enter and end a kept sandbox, for the test report."""
    user = " (as the same user: it is rootless)" if sb.userns else ""
    try:
        spaces = sorted(netns_names(sb))
    except BridgenetError:
        spaces = []
    inside = (f"; its namespaces: {', '.join(spaces)} (e.g. `ip netns exec {spaces[0]} sh`)" if spaces else "")
    return (
        f"The sandbox of this test is still running (holder PID {sb.pid}).\n"
        f"Enter it{user}; you get a shell in its host namespace{inside}:\n"
        f"  {sb.enter_command}\n"
        f"End it (its namespaces and processes go with it):\n"
        f"  {sb.kill_command}\n"
    )


def keep_on_failure(item: pytest.Item, report: pytest.TestReport) -> None:
    """Hook helper: a failed setup or call keeps the keep-capable sandboxes of ``item``.

    Adds a :data:`KEPT_SECTION` section to the failed report, so the failure
    shows how to enter and end the sandbox (under pytest-xdist too).
    """
    if report.when not in ("setup", "call") or not report.failed:
        return
    for info in registry(item.config):
        if not info.keep or info.kept or not info.sandbox.alive:
            continue
        mine = info.fixture in item.fixturenames if info.static else info.nodeid == item.nodeid
        if mine:
            info.kept = True
            report.sections.append((KEPT_SECTION, kept_text(info.sandbox)))


def kept_summary(reports: Sequence[object]) -> list[str]:
    """Lines for the terminal summary: each kept sandbox with its test."""
    lines = []
    for rep in reports:
        for name, content in getattr(rep, "sections", []):
            if name == KEPT_SECTION:
                lines.append(f"{rep.nodeid}:")  # type: ignore[attr-defined]
                lines += ["  " + line for line in content.rstrip("\n").splitlines()]
    return lines


def report_header(config: pytest.Config) -> str:
    """One header line: sandbox scope, rootless or not, keep-on-failure."""
    s = config_settings(config)
    root = "rootless (user namespace)" if os.geteuid() != 0 else "as root"
    return f"bridgenet: sandbox scope {s.scope}, {root}, keep failed sandboxes: {'yes' if s.keep else 'no'}"


# --- making fixtures --------------------------------------------------------------


def _make_fixture(name: str, scope: str, deps: Sequence[str], body: Callable[..., Iterator[object]],
                  doc: str) -> object:
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
    return pytest.fixture(scope=scope)(fixture_function)


def _outlives_test(config: pytest.Config, sb: Sandbox) -> bool:
    """Whether cleaning up inside ``sb`` matters: it is alive, shared beyond the test, and not kept."""
    if not sb.alive:
        return False
    info = registry(config).get(sb)
    if info is None:
        return True  # a sandbox made by someone else: leave it as we found it
    return not info.kept and info.scope != "function"


class SandboxPool:
    """The sandboxes shared by the tests of one scope instance (one per ``(upstream, keep)``)."""

    def __init__(self, config: pytest.Config, scope: str) -> None:
        self.config = config
        self.scope = scope
        self._sandboxes: dict[tuple[bool, bool], Sandbox] = {}

    def acquire(self, *, fixture: str, upstream: bool, keep: bool, nodeid: str) -> Sandbox:
        key = (upstream, keep)
        sb = self._sandboxes.get(key)
        if sb is None or not sb.alive:
            sb = open_sandbox(self.config, fixture=fixture, scope=self.scope, upstream=upstream, keep=keep,
                              static=False)
            self._sandboxes[key] = sb
        info = registry(self.config).get(sb)
        if info is not None:
            info.nodeid = nodeid
        return sb

    def done(self, sb: Sandbox) -> None:
        """The test using ``sb`` ended; a kept sandbox leaves the pool (the next test gets a new one)."""
        info = registry(self.config).get(sb)
        if info is None:
            return
        info.nodeid = None
        if info.kept:
            self._sandboxes = {k: v for k, v in self._sandboxes.items() if v is not sb}
            release_sandbox(self.config, sb)

    def close(self) -> None:
        for sb in self._sandboxes.values():
            release_sandbox(self.config, sb)
        self._sandboxes.clear()


def sandbox_pool(scope: str) -> object:
    """The fixture holding the shared sandboxes of ``scope`` (the plugin defines one per scope)."""
    _check_scope(scope, "sandbox_pool")

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
                             "--bridgenet-scope say otherwise.")

    _check_scope(scope, "fixtures.sandbox")

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


@attrs.define(eq=False)
class LiveNetwork:
    """A :class:`~bridgenet.network.Network` that is up inside a sandbox.

    Attributes:
        network: the model.
        sandbox: where it is up.
        report: what ``apply.up`` did.
    """

    network: Network
    sandbox: Sandbox
    report: apply.Report
    is_down: bool = False

    @property
    def name(self) -> str:
        return self.network.name

    def __repr__(self) -> str:
        state = "down" if self.is_down else "up"
        return f"<LiveNetwork {self.name} {state} in {self.sandbox!r}: {', '.join(self.namespaces) or 'no netns'}>"

    @property
    def namespaces(self) -> list[str]:
        """Names of the network's namespaces, in order, e.g. ``["container4", "container5"]``."""
        return [n.name for n in self.network.namespaces]

    def veth(self, netns: str) -> VethPair:
        """The (first) veth pair whose peer is in ``netns``.

        Raises:
            KeyError: no veth pair leads into ``netns``.
        """
        for v in self.network.veths:
            if v.netns == netns:
                return v
        raise KeyError(f"network {self.name} has no veth pair into {netns!r} (namespaces: {self.namespaces})")

    def address(self, netns: str) -> str:
        """The IPv4 address of ``netns`` in this network, without prefix, e.g. ``"10.201.0.5"``."""
        v = self.veth(netns)
        if v.address is not None:
            return str(v.address.ip)
        for a in self.network.of_type(Address):
            if a.netns == netns:
                return str(a.address.ip)
        raise KeyError(f"network {self.name} gives {netns!r} no address")

    def interface(self, netns: str) -> str:
        """The name of the link inside ``netns`` (the veth peer), e.g. ``"veth5"``."""
        return self.veth(netns).peer

    def bridge_port(self, netns: str) -> str:
        """The host end of the veth pair into ``netns`` (a bridge port when it has a master), e.g. ``"brid5"``."""
        return self.veth(netns).name

    @property
    def gateway(self) -> str | None:
        """The first address the network puts in the sandbox host (the bridge's), e.g. ``"10.201.0.1"``."""
        for a in self.network.of_type(Address):
            if a.netns is None:
                return str(a.address.ip)
        return None

    def down(self) -> apply.Report:
        """Take the network down (``apply.down``) inside the sandbox."""
        report = apply.down(self.network, self.sandbox.runner(), batch=True)
        self.is_down = True
        return report


_lesson = functools.cache(_tutorial)
"""The lesson's network, built once (a frozen value: every test can share it)."""


class FreshPlans:
    """Plans made in a brand-new sandbox, reused in the next brand-new sandbox of the same kind.

    Planning reads live state (two processes through ``nsenter``: links,
    addresses, routes, sysctls, iptables rules, host warnings). A sandbox
    that nothing has run in yet (:attr:`bridgenet.sandbox.Sandbox.pristine`)
    is in the same state as every other one made with the same arguments
    (``upstream``, user namespace), so the plan made in the first one is the
    plan for all of them: the same commands, the same undo (``ip_forward``
    back to 0, the kernel's default in a new network namespace). Any other
    sandbox is planned for as ``apply.up`` always plans.
    """

    def __init__(self) -> None:
        self._plans: dict[tuple[object, ...], Plan] = {}

    def __repr__(self) -> str:
        return f"<FreshPlans: {len(self._plans)} plan(s)>"

    def up(self, network: Network, sandbox: Sandbox) -> apply.Report:
        """``apply.up(network, sandbox.runner(), batch=True)``, with the stored plan when ``sandbox`` is pristine.

        Raises: as :func:`bridgenet.apply.up`.
        """
        fresh = sandbox.pristine
        runner = sandbox.runner()
        if not fresh:
            return apply.up(network, runner, batch=True)
        key = (network, network.source, sandbox.upstream, sandbox.userns)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = apply.plan(network, runner, batch=True)
        return apply.up(network, runner, batch=True, plan=plan)


class NetworkFactory:
    """Builds networks inside one sandbox (the ``bridgenet_network`` fixture).

    ``bridgenet_network(net)`` brings any :class:`~bridgenet.network.Network`
    up with ``bridgenet.apply.up(net, sandbox.runner(), batch=True)``;
    ``bridgenet_network.tutorial()`` the lesson's; ``bridgenet_network.bridge(
    name, containers, **kwargs)`` a :func:`~bridgenet.network.bridge_network`.

    Raises (from each call):
        RolledBackError: bringing the network up failed; what was done is undone.
        ValidationError: the network breaks a rule of the model.
    """

    def __init__(self, sandbox: Sandbox, *, plans: FreshPlans | None = None) -> None:
        self.sandbox = sandbox
        self.plans = plans
        self.built: list[LiveNetwork] = []

    def __repr__(self) -> str:
        return f"<NetworkFactory in {self.sandbox!r}: built {', '.join(n.name for n in self.built) or 'nothing'}>"

    def __call__(self, network: Network) -> LiveNetwork:
        if not isinstance(network, Network):
            raise TypeError(f"bridgenet_network() takes a bridgenet.Network, got {type(network).__name__}")
        if self.plans is not None:
            report = self.plans.up(network, self.sandbox)
        else:
            report = apply.up(network, self.sandbox.runner(), batch=True)
        live = LiveNetwork(network, self.sandbox, report)
        self.built.append(live)
        return live

    def tutorial(self) -> LiveNetwork:
        """The lesson's network: br0 10.201.0.1/24, container4 (10.201.0.4), container5 (10.201.0.5), NAT."""
        return self(_lesson())

    def bridge(self, name: str, containers: Sequence[Container], **kwargs: object) -> LiveNetwork:
        """``bridge_network(name, containers, **kwargs)``, brought up."""
        return self(bridge_network(name, containers, **kwargs))  # type: ignore[arg-type]

    def down_all(self) -> None:
        """Take down every network this factory built and that is still up, last first."""
        for live in reversed(self.built):
            if not live.is_down:
                live.down()


def network_factory(*, sandbox: str = "bridgenet_sandbox", scope: str = "function") -> object:
    """Make a fixture giving a :class:`NetworkFactory` bound to the sandbox fixture named ``sandbox``.

    Networks are taken down after the fixture's scope when the sandbox is
    shared beyond it (with a per-test sandbox they simply vanish with it).
    """
    _check_scope(scope, "fixtures.network_factory")

    def body(request: pytest.FixtureRequest, sb: Sandbox) -> Iterator[NetworkFactory]:
        factory = NetworkFactory(sb, plans=fresh_plans(request.config))
        yield factory
        if _outlives_test(request.config, sb):
            factory.down_all()

    return _make_fixture("bridgenet_network", scope, (sandbox,), body,
                         "Build bridgenet Networks in the test's sandbox: bridgenet_network(net), "
                         ".tutorial(), .bridge(name, containers, ...); returns a LiveNetwork.")


def network(make: Network | Callable[[], Network], *, sandbox: str = "bridgenet_sandbox",
            scope: str = "function") -> object:
    """Make a fixture giving the :class:`LiveNetwork` of ``make`` (a Network, or a callable returning one).

    ``bridgenet_tutorial = fixtures.network(bridgenet.tutorial)`` is the
    lesson's network, up. ``scope`` may not be wider than the sandbox's.
    """
    _check_scope(scope, "fixtures.network")

    build = _lesson if make is _tutorial else make

    def body(request: pytest.FixtureRequest, sb: Sandbox) -> Iterator[LiveNetwork]:
        net = build if isinstance(build, Network) else build()
        factory = NetworkFactory(sb, plans=fresh_plans(request.config))
        live = factory(net)
        yield live
        if _outlives_test(request.config, sb):
            factory.down_all()

    what = (make.__doc__ or "").strip().splitlines()[0] if callable(make) and make.__doc__ else f"{make!r}"
    return _make_fixture("bridgenet_live_network", scope, (sandbox,), body,
                         f"Up in the sandbox, as a LiveNetwork: {what}")


# --- running programs -------------------------------------------------------------------


def _argv(argv: Sequence[str] | str) -> list[str]:
    if isinstance(argv, str):
        return shlex.split(argv)
    return [os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in argv]


def _env(env: dict[str, str] | None) -> dict[str, str] | None:
    if env is None:
        return None
    return {**os.environ, **{k: str(v) for k, v in env.items()}}


class NetnsRunner:
    """Runs a program to completion inside a namespace of the sandbox (the ``netns_run`` fixture).

    ``netns_run("container4", ["ip", "route"])`` is ``ip netns exec container4
    ip route`` in the sandbox; ``netns_run(None, ...)`` runs in the sandbox host.
    """

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def __repr__(self) -> str:
        return f"<NetnsRunner in {self.sandbox!r}>"

    def __call__(self, netns: str | None, argv: Sequence[str] | str, *, input: str | None = None,
                 timeout: float = 30.0, check: bool = False, env: dict[str, str] | None = None,
                 cwd: str | os.PathLike | None = None) -> Result:
        """Run ``argv`` and wait for it.

        Args:
            netns: the namespace, None for the sandbox host.
            argv: the program and its arguments (a string is split like a shell would).
            input: text for its standard input (else it reads nothing).
            timeout: seconds; then the process is killed and the exit code is 124.
            check: raise when the exit code is not 0.
            env: variables added to (or replacing those of) this process's environment.
            cwd: working directory.

        Returns:
            :class:`bridgenet.runners.Result` with ``argv``, ``exit_code``,
            ``stdout``, ``stderr`` (text).

        Raises:
            CommandError: ``check`` and a non-zero exit code.
            SandboxError: the sandbox is not running.
        """
        args = _argv(argv)
        proc = self.sandbox.popen(args, netns=netns, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(env),
                                  cwd=cwd)
        try:
            out, err = proc.communicate(input, timeout=timeout)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            Sandbox.terminate(proc)
            try:
                out, err = proc.communicate(timeout=2)
            except subprocess.TimeoutExpired:  # a grandchild in another process group holds the pipes
                out, err = "", ""
            code = 124
            err = (err or "") + f"\nbridgenet: timed out after {timeout:g} s; the process was killed\n"
        result = Result(tuple(args), code, out or "", err or "")
        if check and code != 0:
            raise CommandError(args, code, result.stderr, result.stdout)
        return result


def listening(sandbox: Sandbox, port: int, *, netns: str | None = None, address: str | None = None) -> bool:
    """Whether a TCP socket listens on ``port`` in ``netns`` (on ``address``, or on any address).

    Asks the kernel with ``ss -H -l -t -n sport = :PORT`` (ss(8)): a socket
    in LISTEN state is one the kernel completes connections for.
    """
    # timeout=None: ss ends on its own (a timeout wraps the command in timeout(1), one process more).
    r = sandbox.run(["ss", "-H", "-l", "-t", "-n", "sport", "=", f":{int(port)}"], netns=netns, timeout=None)
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        host, _, p = parts[3].rpartition(":")
        if p != str(port):
            continue
        host = host.strip("[]").split("%")[0]
        if address is None or host in ("*", "0.0.0.0", "::") or host == str(address):
            return True
    return False


class NetnsProcess:
    """A program running in the background inside a namespace of the sandbox.

    Its standard output and error go to files (so a chatty server never
    blocks on a full pipe); :attr:`stdout` and :attr:`stderr` read them.
    """

    def __init__(self, sandbox: Sandbox, netns: str | None, argv: list[str], popen: subprocess.Popen,
                 stdout_path: Path, stderr_path: Path) -> None:
        self.sandbox = sandbox
        self.netns = netns
        self.argv = argv
        self.popen = popen
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path

    @property
    def pid(self) -> int:
        """PID (in this machine's PID namespace) of the ``nsenter`` leading the process group."""
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """Exit code, or None while running."""
        return self.popen.poll()

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to end; its exit code.

        Raises:
            subprocess.TimeoutExpired: still running after ``timeout`` seconds.
        """
        return self.popen.wait(timeout=timeout)

    def stop(self, timeout: float = 2.0) -> int:
        """End it: SIGTERM to its process group, SIGKILL after ``timeout`` s; its exit code (negative: signal)."""
        return Sandbox.terminate(self.popen, timeout=timeout)

    def _tail(self) -> str:
        def last(text: str) -> str:
            lines = text.rstrip("\n").splitlines()[-10:]
            return "\n".join("    " + line for line in lines) or "    (nothing)"

        return f"  stdout:\n{last(self.stdout)}\n  stderr:\n{last(self.stderr)}"

    def wait_for_port(self, port: int, *, address: str | None = None, timeout: float = 10.0,
                      interval: float = 0.05) -> NetnsProcess:
        """Wait until a TCP socket listens on ``port`` in this process's namespace.

        Args:
            port: TCP port.
            address: the address it must listen on (a wildcard listener counts); None: any.
            timeout: seconds.
            interval: seconds between two looks.

        Returns:
            self, so that ``server = netns_process(...).wait_for_port(7000)`` reads naturally.

        Raises:
            ProcessExitedError: the process ended first (the message shows its output).
            PortNotReady: nothing listens after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        where = self.netns or "the sandbox host"
        while True:
            code = self.popen.poll()
            if code is not None:
                raise ProcessExitedError(
                    f"{shlex.join(self.argv)} in {where} exited with code {code} before listening on "
                    f"TCP port {port}\n{self._tail()}")
            if listening(self.sandbox, port, netns=self.netns, address=address):
                return self
            if time.monotonic() >= deadline:
                raise PortNotReady(
                    f"nothing listens on TCP port {port}{f' at {address}' if address else ''} in {where} "
                    f"after {timeout:g} s ({shlex.join(self.argv)} is running)\n{self._tail()}")
            time.sleep(interval)

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited {self.returncode}"
        return f"<NetnsProcess {shlex.join(self.argv)!r} in {self.netns or 'sandbox host'} {state}>"


class NetnsProcesses:
    """Starts background programs inside namespaces (the ``netns_process`` fixture); ends them all at teardown.

    ``server = netns_process("container5", ["python3", "server.py"]).wait_for_port(7000)``.
    """

    def __init__(self, sandbox: Sandbox, directory: Path) -> None:
        self.sandbox = sandbox
        self.directory = directory
        self.started: list[NetnsProcess] = []

    def __repr__(self) -> str:
        return f"<NetnsProcesses in {self.sandbox!r}: {len(self.started)} started>"

    def __call__(self, netns: str | None, argv: Sequence[str] | str, *, env: dict[str, str] | None = None,
                 cwd: str | os.PathLike | None = None) -> NetnsProcess:
        """Start ``argv`` in ``netns`` (None: the sandbox host) and return at once.

        Args:
            env: variables added to (or replacing those of) this process's environment.
            cwd: working directory.

        Raises:
            SandboxError: the sandbox is not running.
        """
        args = _argv(argv)
        n = len(self.started)
        out_path = self.directory / f"{n}.stdout"
        err_path = self.directory / f"{n}.stderr"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            popen = self.sandbox.popen(args, netns=netns, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                       env=_env(env), cwd=cwd)
        proc = NetnsProcess(self.sandbox, netns, args, popen, out_path, err_path)
        self.started.append(proc)
        return proc

    def stop_all(self, timeout: float = 2.0) -> None:
        """End every process started here that still runs, last first."""
        for proc in reversed(self.started):
            proc.stop(timeout=timeout)


def netns_run(*, sandbox: str = "bridgenet_sandbox", scope: str = "function") -> object:
    """Make a fixture giving a :class:`NetnsRunner` for the sandbox fixture named ``sandbox``."""
    _check_scope(scope, "fixtures.netns_run")

    def body(request: pytest.FixtureRequest, sb: Sandbox) -> Iterator[NetnsRunner]:
        yield NetnsRunner(sb)

    return _make_fixture("netns_run", scope, (sandbox,), body,
                         "Run a program to completion in a namespace of the sandbox: "
                         "netns_run(netns, argv, input=, timeout=, check=) -> Result(exit_code, stdout, stderr).")


def netns_process(*, sandbox: str = "bridgenet_sandbox", scope: str = "function") -> object:
    """Make a fixture giving a :class:`NetnsProcesses`; every process it started is ended at teardown."""
    _check_scope(scope, "fixtures.netns_process")

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

    return _make_fixture("netns_process", scope, (sandbox,), body,
                         "Start a background program in a namespace of the sandbox: "
                         "netns_process(netns, argv) -> NetnsProcess (.wait_for_port(port), .stop()); "
                         "all are ended at teardown.")


# --- faults and reachability -------------------------------------------------------


def faults(*, sandbox: str = "bridgenet_sandbox", scope: str = "function") -> object:
    """Make a fixture giving a :class:`bridgenet.faults.Faults` for the sandbox fixture named ``sandbox``.

    Faults still in place are undone after the fixture's scope when the
    sandbox is shared beyond it (a per-test sandbox simply vanishes), and
    left in place when the sandbox is kept for inspection.
    """
    _check_scope(scope, "fixtures.faults")

    def body(request: pytest.FixtureRequest, sb: Sandbox) -> Iterator[Faults]:
        f = Faults(sb)
        yield f
        if _outlives_test(request.config, sb):
            left = f.restore()
            if left:
                warnings.warn(pytest.PytestWarning("bridgenet could not undo these faults in the shared sandbox: "
                                                   + "; ".join(left)), stacklevel=1)

    return _make_fixture("bridgenet_faults", scope, (sandbox,), body,
                         "Inject faults in the sandbox: partition(netns)/heal(netns), link_down/link_up, "
                         "rate_limit(netns, rate=, burst=, latency=) with tc tbf.")


def reach(*, sandbox: str = "bridgenet_sandbox", scope: str = "function") -> object:
    """Make a fixture giving a :class:`bridgenet.reach.Reach` for the sandbox fixture named ``sandbox``."""
    _check_scope(scope, "fixtures.reach")

    def body(request: pytest.FixtureRequest, sb: Sandbox) -> Iterator[Reach]:
        yield Reach(sb)

    return _make_fixture("bridgenet_reach", scope, (sandbox,), body,
                         "assert_reachable(a, b, port=None) / assert_unreachable(a, b) between namespaces "
                         "of the sandbox; a failure shows links, routes, neighbours and iptables counters.")


__all__ = [
    "KEPT_SECTION", "LiveNetwork", "NetnsProcess", "NetnsProcesses", "NetnsRunner", "NetworkFactory",
    "PortNotReady", "ProcessExitedError", "SCOPES", "SandboxSettings", "faults",
    "listening", "netns_process", "netns_run", "network", "network_factory", "reach", "sandbox",
    "sandbox_pool", "settings_for",
]
