"""What every runner shares: :class:`Result`, the :class:`Runner` protocol, the sandbox guard's facts, :func:`run_all`."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Protocol

import attrs

from ..commands import Command

REQUIRE_SANDBOX_ENV = "BRIDGENET_REQUIRE_SANDBOX"
"""When this environment variable is set (to anything but ``""``/``"0"``), a
real runner refuses to run a command unless it is bound to a live sandbox.
The test suite sets it; so does the pytest plugin."""


@attrs.frozen
class Result:
    """What a command did: its argv, exit code, stdout and stderr (text)."""

    argv: tuple[str, ...]
    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Isolated(Protocol):
    """What :class:`ShRunner`'s guard needs of the sandbox it runs in (e.g. a
    :class:`bridgenet.sandbox.Sandbox`): whether its namespaces are still
    there and not this machine's own."""

    def is_isolated(self) -> bool: ...


class Runner(Protocol):
    """What every runner provides."""

    def run(self, command: Command) -> Result: ...

    def exec(self, argv: Sequence[str], *, input: str | None = None, check: bool = True,
             timeout: float | None = None) -> Result: ...


SANDBOX_MARK = "/run/bridgenet/.sandbox"
"""File a sandbox puts on its private ``/run`` tmpfs (source ``bridgenet-run``)."""


def inside_sandbox() -> bool:
    """True when this process runs inside a bridgenet sandbox's mount (and network) namespace.

    A sandbox mounts its own tmpfs, named ``bridgenet-run``, on ``/run`` and
    leaves ``/run/bridgenet/.sandbox`` there; processes enter the sandbox's
    network and mount namespaces together, so seeing that mount means the
    network namespace is the sandbox's too.
    """
    try:
        with open("/proc/self/mountinfo") as f:
            mounted = any(
                line.split()[4] == "/run" and line.split(" - ")[1].split()[1] == "bridgenet-run"
                for line in f
                if " - " in line
            )
    except (OSError, IndexError):
        return False
    return mounted and os.path.exists(SANDBOX_MARK)


def sandbox_required() -> bool:
    """True when the environment demands that real commands run only inside a sandbox."""
    return os.environ.get(REQUIRE_SANDBOX_ENV, "") not in ("", "0")


def run_all(runner: Runner, commands: Iterable[Command]) -> list[Result]:
    """Run ``commands`` in order with ``runner``; stop at the first failure (it raises)."""
    return [runner.run(c) for c in commands]
