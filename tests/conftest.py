"""Test-suite wide settings.

Real commands may only run inside a throwaway sandbox: the guard in
``bridgenet.runners`` refuses any other real command while
``BRIDGENET_REQUIRE_SANDBOX`` is set, and we set it for the whole suite.
"""

import os

os.environ["BRIDGENET_REQUIRE_SANDBOX"] = "1"

# An example downstream project; tests/test_plugin.py runs it as a project of its own.
collect_ignore = ["example_project"]

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Processes started inside sandboxes (the CLI, servers) import this checkout.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)


@pytest.fixture
def sb():
    """A throwaway sandbox host with an upstream namespace (198.51.100.1), closed after the test."""
    from bridgenet.sandbox import Sandbox

    with Sandbox(upstream=True) as sandbox:
        yield sandbox

