"""``python -m bridgenet`` is the ``bridgenet`` command."""

from .cli import main

raise SystemExit(main())
