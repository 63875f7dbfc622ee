"""The sandboxes of a pytest session: made, shared, kept for inspection, closed and reaped.

Sandboxes for single tests are pipelined: when a test gets one, the next
one is launched (:meth:`~bridgenet.sandbox.Sandbox.launch`) and gets ready
while the test runs; a test whose settings differ (``upstream``) closes that
spare and gets its own. Once two tests in a row have brought the same
network up in their brand-new sandboxes, the next tests' sandboxes are
prepared with it (:meth:`Registry.prepare`): threads make them and bring the
network up in them, and a test's sandbox takes one over
(:meth:`~bridgenet.sandbox.Sandbox.take_over`) when the test asks for that
network first thing; a test that does anything else closes them.

What is left after a test is the janitor's: a per-test sandbox is closed
(without waiting: the kernel ends it while the next test starts; the next
sandbox made, or the end of the session, reaps it); a failed test's sandbox
is kept alive when asked, and the report says how to enter and end it; a
shared sandbox lives on, and :func:`outlives_test` tells the fixtures to
take down what the test built in it. At the session's end every sandbox not
kept is closed and waited for.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading
from collections.abc import Callable, Hashable, Iterator, Sequence

import attrs
import pytest

from ..errors import BridgenetError, SandboxError
from .reach import netns_names
from ..runners import REQUIRE_SANDBOX_ENV
from ..sandbox import Sandbox
from .settings import config_settings, no_skip
from .shared import followers, warn_if_split

KEPT_SECTION = "bridgenet: sandbox kept alive"
"""Title of the report section that says how to enter and end a kept sandbox."""


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
        first: what was done in it first, as its maker names it (a key of
            :meth:`Registry.prepare`), if anything.
    """

    sandbox: Sandbox
    fixture: str
    scope: str
    keep: bool
    static: bool
    nodeid: str | None = None
    kept: bool = False
    first: Hashable | None = None


@attrs.define(eq=False)
class Prepared:
    """A sandbox for the next test, being made and set up by a thread (see :meth:`Registry.prepare`).

    Attributes:
        key: what was done in it (the caller's key, e.g. network and settings).
        sandbox: the sandbox.
        thread: the thread making it and running the caller's ``build``.
        result: what ``build`` returned.
        error: what the thread raised instead, if anything.
    """

    key: Hashable
    sandbox: Sandbox
    thread: threading.Thread | None = None
    result: object = None
    error: BaseException | None = None

    def _work(self, build: Callable[[Sandbox], object]) -> None:
        try:
            self.sandbox.start()
            self.result = build(self.sandbox)
        except BaseException as e:  # noqa: BLE001 - taken up by the test that would use it
            self.error = e


PREPARED = 2
"""How many sandboxes are prepared ahead (each made and set up by a thread while the tests before run)."""


class Registry:
    """The live sandboxes made under one pytest config (strong references until released)."""

    def __init__(self) -> None:
        self._infos: dict[int, SandboxInfo] = {}
        self._closing: list[Sandbox] = []
        self._spare: Sandbox | None = None
        self._prepared: list[Prepared] = []
        self._last: Hashable | None = None  # what the last per-test sandbox closed had done first

    def per_test(self, sb: Sandbox) -> bool:
        """Whether ``sb`` is a sandbox of one test, closed after it (function scope, not keep-capable)."""
        info = self.get(sb)
        return info is not None and info.scope == "function" and not info.keep

    def prepare(self, key: Hashable, build: Callable[[Sandbox], object], *, after: Sandbox) -> None:
        """Have :data:`PREPARED` sandboxes like ``after`` made for the next tests, ``build(sandbox)`` run in each.

        ``after`` is the sandbox of a test that did just that (``key``)
        first thing. When the test before did the same, the next ones likely
        will too: each sandbox is launched now and started by a thread of its
        own, which then runs ``build``: outside the main thread, so no signal
        handlers (see :mod:`bridgenet.interrupts`) and nothing that logs or
        warns for a test. Sandboxes prepared for another key are closed.
        """
        info = self.get(after)
        if info is not None:
            info.first = key
        if any(p.key != key or p.sandbox.upstream != after.upstream for p in self._prepared):
            self.drop_prepared()
        if self._last != key:
            return  # the first test of its kind in a row: maybe the only one
        while len(self._prepared) < PREPARED:
            sb = Sandbox(upstream=after.upstream)
            try:
                sb.launch()
            except SandboxError:
                return
            prep = Prepared(key, sb)
            prep.thread = threading.Thread(target=prep._work, args=(build,), name="bridgenet-prepare", daemon=True)
            prep.thread.start()
            self._prepared.append(prep)

    def take_prepared(self, key: Hashable, sb: Sandbox) -> tuple[bool, object]:
        """``(True, what build returned)`` once ``sb`` has taken over the oldest sandbox prepared for ``key``.

        ``(False, None)``: nothing prepared for ``key``, its thread failed, or
        ``sb`` cannot take it over (not pristine, other settings); then all
        that was prepared is closed, ``sb`` is unchanged, and the caller does
        the work itself. The prepared sandbox's object keeps
        ``sb``'s old holder, pristine: it becomes the next test's spare.
        """
        if not self._prepared:
            return False, None
        prep = self._prepared.pop(0)
        assert prep.thread is not None
        prep.thread.join()
        ok = prep.key == key and prep.error is None and prep.sandbox.alive and sb.pristine
        if ok:
            try:
                sb.take_over(prep.sandbox)
            except SandboxError:
                ok = False
        if ok and self._spare is None:
            self._spare = prep.sandbox
        else:
            prep.sandbox.close(wait=False)
            self.closing(prep.sandbox)
        if not ok:
            self.drop_prepared()  # made the same way: likely no better
        return (True, prep.result) if ok else (False, None)

    def drop_prepared(self) -> None:
        """Close the sandboxes prepared for the next tests (waiting for their threads first)."""
        prepared, self._prepared = self._prepared, []
        for prep in prepared:
            assert prep.thread is not None
            prep.thread.join()
            prep.sandbox.close(wait=False)
            self.closing(prep.sandbox)

    def test_done(self, info: SandboxInfo) -> None:
        """The test of the per-test sandbox of ``info`` is over: what it did first is what the next will likely do.

        What was prepared for something else is closed, and a spare launched
        if there is none.
        """
        self._last = info.first
        if any(p.key != info.first for p in self._prepared):
            self.drop_prepared()
        self.launch_spare(upstream=info.sandbox.upstream)

    def prepared_like(self, *, upstream: bool) -> bool:
        """Whether sandboxes are being prepared with these settings (taking one over frees a spare)."""
        return any(p.sandbox.upstream == upstream for p in self._prepared)

    def take_spare(self, *, upstream: bool) -> Sandbox | None:
        """The sandbox launched for the next test, if it has these settings (else it is closed)."""
        sb, self._spare = self._spare, None
        if sb is not None and sb.upstream != upstream:
            sb.close(wait=False)
            self.closing(sb)
            return None
        return sb

    def launch_spare(self, *, upstream: bool) -> None:
        """Launch a per-test sandbox for the next test now (:meth:`Sandbox.launch`): it gets ready meanwhile."""
        if self._spare is not None:
            return
        sb = Sandbox(upstream=upstream)
        try:
            sb.launch()
        except SandboxError:
            return  # the next test's own start says why
        self._spare = sb

    def closing(self, sb: Sandbox) -> None:
        """``sb`` was closed without waiting; :meth:`reap` finishes it."""
        self._closing.append(sb)

    def reap(self, *, wait: bool = False) -> None:
        """Finish closing the sandboxes whose holders have exited (with ``wait``: all of them, and the spares)."""
        if wait:
            self.drop_prepared()
        if wait and self._spare is not None:
            self._spare.close(wait=False)
            self.closing(self._spare)
            self._spare = None
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
_SAVED_ENV = pytest.StashKey["str | None"]()


def registry(config: pytest.Config) -> Registry:
    """The :class:`Registry` of ``config`` (made on first use)."""
    reg = config.stash.get(_REGISTRY, None)
    if reg is None:
        reg = config.stash[_REGISTRY] = Registry()
    return reg


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
    reg = registry(config)
    reg.reap()
    warn_if_split(config, scope, fixture)
    spare = reg.take_spare(upstream=upstream) if scope == "function" and not keep else None
    sb = spare if spare is not None else Sandbox(upstream=upstream, keep=keep)
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
    reg.add(SandboxInfo(sb, fixture, scope, keep, static, nodeid))
    if scope == "function" and not keep and not reg.prepared_like(upstream=upstream):
        reg.launch_spare(upstream=upstream)  # the next test's, made while this one runs
    return sb


def release_sandbox(config: pytest.Config, sb: Sandbox) -> None:
    """Close ``sb``, or, when a failed test kept it, leave it running (its holder prints how to enter it)."""
    reg = registry(config)
    info = reg.pop(sb)
    if info is not None and info.scope == "function" and not info.keep:
        reg.test_done(info)
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
    reg.closing(sb)


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
        mine = mine or any(f.sandbox is info.sandbox and f.name in item.fixturenames
                           for f in followers(item.config))
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


def outlives_test(config: pytest.Config, sb: Sandbox) -> bool:
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
