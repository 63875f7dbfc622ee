"""bridgenet's pytest plugin (entry point ``pytest11``: ``bridgenet.testing.plugin``).

Thin on purpose: options, the ``bridgenet`` marker, the hooks, and the
default fixtures, each made by a factory of :mod:`bridgenet.testing.factories`
(which is where to look to make your own variants).

Fixtures (all function-scoped; the sandbox behind them lives as long as the
marker or options say):

* ``bridgenet_sandbox``: a :class:`bridgenet.sandbox.Sandbox`, a throwaway host;
* ``bridgenet_network``: build any Network in it (``bridgenet_network(net)``,
  ``.tutorial()``, ``.bridge(name, containers, ...)``) → ``LiveNetwork``;
* ``bridgenet_tutorial``: the lesson's network, up (a ``LiveNetwork``);
* ``netns_run``: ``netns_run(netns, argv) -> Result(exit_code, stdout, stderr)``;
* ``netns_process``: ``netns_process(netns, argv) -> NetnsProcess`` with
  ``.wait_for_port(port)``; all are ended at teardown;
* ``bridgenet_faults``: ``partition(netns)`` or ``partition([..], [..])``, ``drop``, ``grudge``,
  ``loss``, ``netem``/``delay``, ``heal``/``heal_all``, ``rate_limit(netns, rate=...)``;
* ``bridgenet_reach``: ``assert_reachable(a, b)`` / ``assert_unreachable(a, b)``.

Options: ``--bridgenet-scope``, ``--bridgenet-keep``, ``--bridgenet-no-skip``
(ini: ``bridgenet_scope``, ``bridgenet_keep``, ``bridgenet_no_skip``); marker
``@pytest.mark.bridgenet(scope=..., keep=..., upstream=...)``.

The plugin sets ``BRIDGENET_REQUIRE_SANDBOX=1`` for the session, so no real
command can run outside a sandbox.
"""

from __future__ import annotations

import pytest

from ..tutorial import tutorial
from . import factories, janitor, settings


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bridgenet", "bridgenet: throwaway network sandboxes")
    group.addoption(
        "--bridgenet-scope", dest="bridgenet_scope", default=None, choices=settings.SCOPES,
        help="how long a bridgenet sandbox lives when the test's marker does not say: "
             "function (default: one per test), class, module, package or session (shared).",
    )
    group.addoption(
        "--bridgenet-keep", dest="bridgenet_keep", action="store_true", default=False,
        help="keep the sandbox of a failed test alive for inspection; the report says how to enter and end it.",
    )
    group.addoption(
        "--bridgenet-no-skip", dest="bridgenet_no_skip", action="store_true", default=False,
        help="fail (instead of skip) a test whose sandbox cannot be made, e.g. in CI.",
    )
    parser.addini("bridgenet_scope", "default scope of bridgenet sandboxes (function, class, module, package, "
                  "session)", default="")
    parser.addini("bridgenet_keep", "keep the sandbox of a failed test alive", type="bool", default=False)
    parser.addini("bridgenet_no_skip", "fail instead of skip when no sandbox can be made", type="bool",
                  default=False)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    # As early as a plugin can: before conftest files are imported.
    janitor.require_sandbox(early_config)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", settings.MARKER_HELP)
    janitor.configure(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    janitor.unconfigure(config)


def pytest_report_header(config: pytest.Config) -> str:
    return settings.report_header(config)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    report = yield
    janitor.keep_on_failure(item, report)
    return report


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # noqa: ANN001
    reports = [r for key in ("failed", "error") for r in terminalreporter.stats.get(key, [])]
    lines = janitor.kept_summary(reports)
    if lines:
        terminalreporter.write_sep("=", "bridgenet: sandboxes kept alive for inspection")
        for line in lines:
            terminalreporter.write_line(line)


bridgenet_sandbox = factories.sandbox()
bridgenet_network = factories.network_factory()
bridgenet_tutorial = factories.network(tutorial)
netns_run = factories.netns_run()
netns_process = factories.netns_process()
bridgenet_faults = factories.faults()
bridgenet_reach = factories.reach()

_bridgenet_pool_class = factories.sandbox_pool("class")
_bridgenet_pool_module = factories.sandbox_pool("module")
_bridgenet_pool_package = factories.sandbox_pool("package")
_bridgenet_pool_session = factories.sandbox_pool("session")
