"""Network files across hosts: a file with ``[[hosts]]``, read into :func:`bridgenet.stretch.stretch`.

Example (``examples/stretch.toml``)::

    name = "stretch"
    gateway = "10.40.0.1/24"     # on the gateway host's bridge (default: the first host)
    # gateway_host = "h1"        # the host with the gateway address, ip_forward and MASQUERADE
    # vni = 4240                 # default: zlib.crc32(name) % 2**24 (1 if 0), bridgenet.hosts.default_vni
    # underlay_mtu = 1500        # the underlay's MTU (a file cannot know it)
    # mtu = 1450                 # the overlay's; default underlay_mtu - 50 (IPv4 underlay; 70 over IPv6)
    # bridge = "br0", learning = true, forward = true, masquerade = true, default_routes = true,
    # tag = true, accept_forward, isolate, names = true, dns = [...]: as in other network files

    [[hosts]]
    name = "h1"
    ssh = "root@198.51.100.11"   # omit for this machine (then underlay is required)
    # underlay = "198.51.100.11" # default: the host part of ssh, which must then be an IP address
    # port = 22, identity = "~/.ssh/lab", ssh_config = "lab.ssh_config",
    # options = ["StrictHostKeyChecking=no"]   # ssh -p, -i, -F, -o

    [[containers]]
    netns = "a"
    host = "h1"
    address = "10.40.0.10"       # in the gateway's subnet; the prefix length is added
    # veth, peer, mtu, default_route, ports (gateway host only)

Every key is checked for its name and type before anything is built; an
error is a :class:`bridgenet.errors.ValidationError` naming the key's path,
e.g. ``network file stretch.toml containers[1]``.
"""

from __future__ import annotations

import os

from .errors import ValidationError
from .hosts import HostSpec
from .stretch import Member, Stretch, stretch
from .topology_file import _table

TOP: dict[str, type | tuple] = {
    "name": str, "hosts": list, "containers": list, "gateway": str, "gateway_host": str, "vni": int, "mtu": int,
    "underlay_mtu": int, "bridge": str, "learning": bool, "forward": bool, "masquerade": bool,
    "default_routes": bool, "tag": bool, "accept_forward": bool, "isolate": bool, "names": bool, "dns": list}
"""The top-level keys of a file with ``[[hosts]]`` and their types."""
HOST: dict[str, type | tuple] = {"name": str, "ssh": str, "underlay": str, "port": int, "identity": str,
                                 "ssh_config": str, "options": list}
CONTAINER: dict[str, type | tuple] = {"netns": str, "host": str, "address": str, "veth": str, "peer": str,
                                      "mtu": int, "default_route": (str, bool), "ports": list}
_PASSED = ("gateway_host", "vni", "mtu", "bridge", "learning", "forward", "masquerade", "default_routes", "tag",
           "accept_forward", "isolate", "names", "dns")


def _rewrap(here: str, e: ValidationError) -> ValidationError:
    return ValidationError(f"{here} ({e.obj})", e.field, e.rule, e.value)


def _beside(source: str | None, path: object) -> object:
    """A relative ``identity``/``ssh_config`` path is read beside the file (as Compose files do), not in the
    directory bridgenet runs from; an absolute or ``~`` path (ssh expands it) is kept as written."""
    if not isinstance(path, str) or source is None or not path or path.startswith(("/", "~")):
        return path
    return os.path.join(os.path.dirname(source), path)


def from_hosts_dict(data: dict, where: str = "network", *, source: str | None = None) -> Stretch:
    """Build a network across hosts from a parsed file with ``[[hosts]]`` (see the module docstring).

    Raises:
        ValidationError: an unknown key, a wrong type, a missing key or a
            broken rule (a container on an unknown host, two hosts of one
            name or underlay, a VNI outside 1..16777215, an address outside
            the gateway's subnet, ...), naming the key.
    """
    _table(where, data, TOP, ("name", "hosts", "gateway"))
    if not data["hosts"]:
        raise ValidationError(where, "hosts", "at least one [[hosts]] table")
    if not data.get("containers"):
        raise ValidationError(where, "containers", "at least one [[containers]] table (each with host = ...)")
    hosts = []
    for i, item in enumerate(data["hosts"]):
        here = f"{where} hosts[{i}]"
        t = _table(here, item, HOST, ("name",))
        try:
            hosts.append(HostSpec(t["name"], t.get("ssh"), t.get("underlay"), port=t.get("port"),
                                  identity=_beside(source, t.get("identity")),
                                  ssh_config=_beside(source, t.get("ssh_config")),
                                  options=t.get("options", ())))
        except ValidationError as e:
            raise _rewrap(here, e) from None
    members = []
    for i, item in enumerate(data["containers"]):
        here = f"{where} containers[{i}]"
        t = _table(here, item, CONTAINER, ("netns", "host", "address"))
        try:
            members.append(Member(t["host"], t["netns"], t["address"], veth=t.get("veth"), peer=t.get("peer"),
                                  mtu=t.get("mtu"), default_route=t.get("default_route"), ports=t.get("ports", ())))
        except ValidationError as e:
            raise _rewrap(here, e) from None
    options = {k: data[k] for k in _PASSED if k in data}
    if "underlay_mtu" in data:
        options["underlay_mtu"] = data["underlay_mtu"]
    try:
        return stretch(data["name"], hosts=hosts, gateway=data["gateway"], containers=members, source=source,
                       **options)
    except ValidationError as e:
        # stretch() names "stretch NAME" or "stretch NAME hosts[i] (...)": the file's name instead
        prefix = f"stretch {data['name']}"
        rest = e.obj[len(prefix):] if e.obj.startswith(prefix) else f": {e.obj}"
        raise ValidationError(where + rest, e.field, e.rule, e.value) from None
