"""Network files: a network in TOML, in the lesson's shape (one bridge, containers on it).

Example (``bridgenet up --file demo.toml``)::

    name = "demo"              # names the state file and the tag bridgenet:demo
    bridge = "br1"
    gateway = "10.88.0.1/24"   # the bridge's address; the subnet follows from it
    # default_routes = true, forward = true, masquerade = true, tag = true,
    # accept_forward = true (FORWARD ACCEPT rules for the bridge; default = tag),
    # isolate = true (drop traffic to and from other isolated networks; default = tag),
    # lesson_form = false (true: move peers into their namespace and MASQUERADE bridged
    # traffic too, as the lesson does; refused with forward = false, since the containers could
    # then not reach each other)
    # The name "tutorial" is reserved for the lesson; a bridge takes at most 1023 containers.

    [[containers]]
    netns = "web"
    address = "10.88.0.10"     # the gateway's prefix length is added
    veth = "v-web"             # host end (default "v-" + netns)
    peer = "eth0"              # container end (default "eth0")

Beyond one bridge (``topology.py``): ``[[bridges]]`` (name, address, mtu,
masquerade, address6, masquerade6), containers with ``bridge``, ``mtu``,
``routes``, ``forward``, ``default_route``, ``address6``,
``default_route6``, ``ports`` (published ports, ``ports.py``) or several
``[[containers.interfaces]]`` (bridge, address, address6, peer, veth, mtu),
bare veths in ``[[links]]`` (``ends = [{netns, name, address, address6},
{...}]``, mtu) and the host's own ``routes = [{to, via}]`` (IPv4 or IPv6;
``topology_v6.py`` for IPv6). A file
that uses none of these keys is read exactly as before (the lesson's shape,
:func:`bridgenet.shape.bridge_network`); one that does is built by
:func:`bridgenet.topology.topology`, with the top-level ``bridge`` and
``gateway`` as a shorthand for one ``[[bridges]]`` entry (both cannot be given).

Names (``names.py``): a network built by :func:`bridgenet.topology.topology`
writes each container's ``/etc/netns/NETNS/hosts`` and ``resolv.conf``;
``dns = ["198.51.100.1"]`` sets the name servers, ``names = false`` turns
names off. A lesson-shaped file that gives either key is built by
``topology()`` too (the lesson's shape alone writes nothing in ``/etc``).

Across hosts (``hosts_file.py``): a file with ``[[hosts]]`` is one network
stretched over several machines with VXLAN (:func:`bridgenet.stretch.stretch`);
:func:`load_any` reads it.

Parsed with ``tomllib`` (stdlib); every error is a
:class:`bridgenet.errors.ValidationError` naming the file and the key.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from typing import TYPE_CHECKING

from .errors import UnsupportedError, ValidationError
from .network import Network
from .shape import Container, bridge_network

if TYPE_CHECKING:
    from .stretch import Stretch

_TOP_TYPES: dict[str, type] = {
    "name": str, "bridge": str, "gateway": str, "default_routes": bool, "forward": bool, "masquerade": bool,
    "tag": bool, "accept_forward": bool, "isolate": bool, "lesson_form": bool, "containers": list,
    "bridges": list, "links": list, "routes": list, "names": bool, "dns": list}
"""The file's top-level keys and their types (the lesson's shape and ``topology_file.py`` alike)."""
_TOP = set(_TOP_TYPES)
_LESSON_CONTAINER = {"netns", "address", "veth", "peer"}
_TOPOLOGY_TOP = {"bridges", "links", "routes", "names", "dns"}
_BOOLS = ("default_routes", "forward", "masquerade", "tag", "accept_forward", "isolate", "lesson_form")


def load(path: str | Path) -> Network:
    """Read a network file.

    A file with ``[[hosts]]`` (``hosts_file.py``) gives its one host's
    network when it has one host and that is this machine (no ``ssh``).

    Raises:
        ValidationError: the file is missing, is not TOML, has an unknown or
            missing key, or describes an invalid network.
        UnsupportedError: the file's network spans other hosts (only
            ``up``/``down --dry-run`` print it, through :func:`load_any`).
    """
    return single(load_any(path))


def single(net: Network | Stretch) -> Network:
    """``net`` itself, or the network of a :class:`~bridgenet.stretch.Stretch` whose one host is this machine.

    Raises:
        UnsupportedError: a network across other hosts (``across.py`` runs those; the callers of
            this function, e.g. ``graph`` and ``diagnose``, take one host's network).
    """
    if isinstance(net, Network):
        return net
    if net.local_only:
        return net.networks[0]
    raise UnsupportedError(
        f"network {net.name} spans hosts ({', '.join(h.name for h in net.hosts)}): this command works on one "
        "host's network; bridgenet up, down, plan and show run it across hosts (see the README, \"Running across "
        "hosts\"), and up --dry-run prints each host's commands. Nothing was run.")


def load_any(path: str | Path) -> Network | Stretch:
    """Read a network file: a :class:`Network`, or a :class:`~bridgenet.stretch.Stretch` for one with
    ``[[hosts]]``. Raises ValidationError as :func:`load`."""
    path = Path(path)
    where = f"network file {path}"
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ValidationError(where, "path", "a network file must exist") from None
    except IsADirectoryError:
        raise ValidationError(where, "path", "a network file is a file, not a directory") from None
    except PermissionError:
        raise ValidationError(where, "path", "a network file must be readable by this user") from None
    except UnicodeDecodeError as e:
        raise ValidationError(where, "syntax", f"a network file is UTF-8 text ({e.reason} at byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise ValidationError(where, "syntax", f"a network file is TOML ({e})") from None
    except OSError as e:
        raise ValidationError(where, "path", f"a network file must be readable ({e.strerror})") from None
    return from_dict_any(data, where, source=str(path.resolve()))


def from_dict_any(data: dict, where: str = "network", *, source: str | None = None) -> Network | Stretch:
    """:func:`from_dict`, or for a file with ``[[hosts]]`` its :class:`~bridgenet.stretch.Stretch`."""
    if isinstance(data, dict) and "hosts" in data:
        from .hosts_file import from_hosts_dict

        return from_hosts_dict(data, where, source=source)
    return from_dict(data, where, source=source)


def from_dict(data: dict, where: str = "network", *, source: str | None = None) -> Network:
    """Build a network from a parsed network file (see the module docstring); ``source``: its path.

    A file with ``[[hosts]]``: as :func:`single` (its network when its one host is this machine).
    """
    if "hosts" in data:
        return single(from_dict_any(data, where, source=source))
    unknown = sorted(set(data) - _TOP)
    if unknown:
        raise ValidationError(where, unknown[0], f"known keys are {', '.join(sorted(_TOP))}")
    if _uses_topology(data):
        from .topology_file import from_topology_dict

        return from_topology_dict(data, _TOP_TYPES, where, source=source)
    for key in ("name", "containers"):
        if key not in data:
            raise ValidationError(where, key, "this key is required")
    for key in _BOOLS:
        if key in data and not isinstance(data[key], bool):
            raise ValidationError(where, key, "true or false", data[key])
    items = data["containers"]
    if not isinstance(items, list) or not items:
        raise ValidationError(where, "containers", "at least one [[containers]] table")
    containers = []
    for i, item in enumerate(items):
        here = f"{where} containers[{i}]"
        if not isinstance(item, dict):
            raise ValidationError(here, "containers", "each container is a table")
        for key in ("netns", "address"):
            if key not in item:
                raise ValidationError(here, key, "this key is required")
        try:
            containers.append(Container(item["netns"], item["address"], veth=item.get("veth"),
                                        peer=item.get("peer", "eth0")))
        except ValidationError as e:
            raise ValidationError(f"{here} ({e.obj})", e.field, e.rule, e.value) from None
    kwargs = {k: data[k] for k in ("bridge", "gateway", *_BOOLS) if k in data}
    try:
        return bridge_network(data["name"], containers, source=source, **kwargs)
    except ValidationError as e:
        raise ValidationError(f"{where}: {e.obj}", e.field, e.rule, e.value) from None


def _uses_topology(data: dict) -> bool:
    """Whether a parsed file uses a key beyond the lesson's shape (then ``topology_file`` reads it)."""
    if _TOPOLOGY_TOP & set(data):
        return True
    items = data.get("containers")
    return isinstance(items, list) and any(isinstance(i, dict) and set(i) - _LESSON_CONTAINER for i in items)
