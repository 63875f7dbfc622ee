"""Runners execute command lists: for real (through ``sh``), as a dry-run, or recorded.

Every runner has the same two calls:

* ``run(command)`` runs one :class:`bridgenet.commands.Command`;
* ``exec(argv, input=None, check=True)`` runs any argv (used to read live
  state and to run checks such as ``ping``).

Both return a :class:`Result`; a real failure raises
:class:`bridgenet.errors.CommandError` carrying argv, exit code and stderr.

The runners live in modules of their own, all importable from here:

* :mod:`.base`: :class:`Result`, the :class:`Runner` protocol, the sandbox
  guard's facts (:data:`REQUIRE_SANDBOX_ENV`, :func:`inside_sandbox`), :func:`run_all`;
* :mod:`.sh`: :class:`ShRunner`, real commands through the ``sh`` package;
* :mod:`.dryrun`: :class:`DryRunRunner` (prints), :class:`RecordingRunner`
  (records), and the ``--explain`` comments (:func:`step_comment`, :func:`undo_steps`);
* :mod:`.ssh`: :class:`SshTarget`, :class:`SshRunner`, :func:`check_hosts`:
  commands on another machine through OpenSSH.
"""

from __future__ import annotations

from .base import (
    REQUIRE_SANDBOX_ENV,
    SANDBOX_MARK,
    Isolated,
    Result,
    Runner,
    inside_sandbox,
    run_all,
    sandbox_required,
)
from .dryrun import DryRunRunner, RecordingRunner, step_comment, undo_steps
from .sh import STOP_WAIT, ShRunner
from .ssh import SshRunner, SshTarget, check_hosts

__all__ = [
    "REQUIRE_SANDBOX_ENV", "SANDBOX_MARK", "STOP_WAIT", "DryRunRunner", "Isolated", "RecordingRunner", "Result",
    "Runner", "ShRunner", "SshRunner", "SshTarget", "check_hosts", "inside_sandbox", "run_all",
    "sandbox_required", "step_comment", "undo_steps",
]
