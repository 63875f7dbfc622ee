"""The networks that are up on a host, read back from their state files (``/run/bridgenet/NAME.json``).

A state file records where its network came from (``Network.source``, see
``ledger.py``): the lesson, or a network file, which is read again.
``bridgenet graph NAME`` and ``bridgenet show`` start here.
"""

from __future__ import annotations


from .errors import ValidationError
from .ledger import LEDGER_DIR, Ledger
from .state_store import StateStore
from .network import Network
from .rules import _NETWORK_NAME


def check_name(command: str, name: object) -> str:
    """``name`` if it is a network name (rules.py), else a ValidationError naming ``command``'s NAME."""
    if not isinstance(name, str) or not _NETWORK_NAME.match(name):
        raise ValidationError(command, "NAME", "a network name is 1-64 characters of A-Z a-z 0-9 _ . - and "
                              "starts with a letter or digit", name)
    return name


def recorded_source(name: str, fs_root: StateStore | str = "/", command: str = "graph") -> str | None:
    """The source of network ``name`` as its state file records it (None: built from Python).

    ``fs_root``: the host's local root, or its store (``state_store.store_for``).

    Raises:
        ValidationError: ``name`` is no network name, or no state file for it.
    """
    ledger = Ledger.open(fs_root, check_name(command, name))
    if not ledger.recorded:
        raise ValidationError(f"network {name}", "name", f"a network that is up on this host has a state file "
                              f"in /{LEDGER_DIR} (known: {', '.join(Ledger.names(fs_root)) or 'none'})", name)
    return (ledger.identity or {}).get("source")


def load_source(name: str, source: str | None, python_hint: str) -> Network:
    """The network ``name`` read again from ``source`` (the lesson, or a file).

    Raises:
        ValidationError: ``source`` is None (built from Python: ``python_hint``
            says what to do), or the file is gone, invalid or now names another network.
    """
    from .tutorial import LESSON_SOURCE, tutorial

    where = f"network {name}"
    if source == LESSON_SOURCE:
        return tutorial()
    if not source:
        raise ValidationError(where, "source", f"a network built from Python has no file to read it from: "
                              f"{python_hint}")
    from .config import load

    net = load(source)
    if net.name != name:
        raise ValidationError(where, "source", f"{source} now defines the network {net.name}, not {name}")
    return net


def network_named(name: str, fs_root: str = "/") -> Network:
    """The network ``name`` that is up on this host, from its state file.

    Raises:
        ValidationError: no state file for ``name``, or its network was
            defined in Python (nothing to read it back from: pass ``-f``), or
            the file it came from is gone or now names another network.
    """
    source = recorded_source(name, fs_root)
    return load_source(name, source, "use bridgenet.graph(network) or graph -f NET.toml")
