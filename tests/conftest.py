"""Test-suite wide settings.

Real commands may only run inside a throwaway sandbox: the guard in
``bridgenet.runners`` refuses any other real command while
``BRIDGENET_REQUIRE_SANDBOX`` is set, and we set it for the whole suite.
"""

import os

os.environ["BRIDGENET_REQUIRE_SANDBOX"] = "1"
