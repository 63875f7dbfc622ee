"""bridgenet's pytest side: the plugin, its fixture factories, and what they give a test.

Nothing in bridgenet's core imports this package (it needs pytest; the core
does not). Its modules, one idea each:

* :mod:`~bridgenet.testing.plugin`: the pytest plugin (entry point
  ``pytest11``): options, marker, hooks, the default fixtures;
* :mod:`~bridgenet.testing.factories`: the factories that make those
  fixtures and your own variants (``sandbox()``, ``network()``, ...);
* :mod:`~bridgenet.testing.settings`: marker > command line > ini file;
* :mod:`~bridgenet.testing.janitor`: the session's sandboxes: made, shared,
  kept for inspection, closed and reaped;
* :mod:`~bridgenet.testing.networks`: ``LiveNetwork``, ``NetworkFactory``,
  and the plans reused in brand-new sandboxes;
* :mod:`~bridgenet.testing.shared`: sandboxes shared beyond a test (wider
  fixtures on the default sandbox, pytest-xdist's ``--dist``);
* :mod:`~bridgenet.testing.processes`: ``netns_run`` and ``netns_process``;
* :mod:`~bridgenet.testing.sockets`: the sockets a process holds, from ``/proc``;
* :mod:`~bridgenet.testing.reach`: reachability assertions;
* :mod:`~bridgenet.testing.hosts`: several hosts in one sandbox on an underlay
  bridge, each optionally with a real ``sshd`` (``Hosts``, ``factories.hosts(n)``);
* :mod:`~bridgenet.testing.faults`: ``Faults`` (the ``bridgenet_faults`` fixture), with
  :mod:`~bridgenet.testing.faults_rules` (partitions, drops, loss as iptables rules),
  :mod:`~bridgenet.testing.netem` (tc netem), :mod:`~bridgenet.testing.faults_links`
  (links down, tc tbf) and :mod:`~bridgenet.testing.faults_shell` (one shell per fault).

``bridgenet.fixtures``, ``bridgenet.pytest_plugin``, ``bridgenet.reach`` and
``bridgenet.faults`` are the older names of the factories, of the plugin, of the
assertions and of the faults; they still work.
"""
