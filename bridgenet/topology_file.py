"""Network files beyond one bridge: the keys of ``config.py``'s module docstring, read into :func:`topology`.

Every key is checked for its type and known name before anything is built;
an error is a :class:`bridgenet.errors.ValidationError` naming the key's
path, e.g. ``network file campus.toml containers[1] interfaces[0]``.
"""

from __future__ import annotations

from .errors import ValidationError
from .network import Network
from .topology import BridgeSpec, End, Interface, LinkSpec, Node, RouteSpec, topology

_BRIDGE = {"name": str, "address": str, "mtu": int, "masquerade": bool, "address6": str, "masquerade6": bool}
_CONTAINER = {"netns": str, "address": str, "veth": str, "peer": str, "bridge": str, "mtu": int, "routes": list,
              "forward": bool, "default_route": (str, bool), "interfaces": list, "ports": list, "address6": str,
              "default_route6": (str, bool)}
_INTERFACE = {"bridge": str, "address": str, "peer": str, "veth": str, "mtu": int, "address6": str}
_ROUTE = {"to": str, "via": str}
_LINK = {"ends": list, "mtu": int}
_END = {"netns": str, "name": str, "address": str, "address6": str}
_TYPE_WORDS = {str: "text", int: "a whole number", bool: "true or false", list: "a list",
               (str, bool): "text or false"}


def _table(here: str, item: object, known: dict, required: tuple[str, ...] = ()) -> dict:
    """``item`` checked: a table with only ``known`` keys of the right types and every ``required`` one."""
    if not isinstance(item, dict):
        raise ValidationError(here, "table", "each entry is a table ({...} or [[...]])", item)
    for key in sorted(item):
        if key not in known:
            raise ValidationError(here, key, f"known keys are {', '.join(sorted(known))}")
        want = known[key]
        value = item[key]
        ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
        if want == (str, bool) and value is True:
            ok = False
        if not ok:
            raise ValidationError(here, key, f"{key} is {_TYPE_WORDS[want]}", value)
    for key in required:
        if key not in item:
            raise ValidationError(here, key, "this key is required")
    return item


def _routes(here: str, items: list) -> list[RouteSpec]:
    out = []
    for i, r in enumerate(items):
        t = _table(f"{here} routes[{i}]", r, _ROUTE, ("to", "via"))
        out.append(RouteSpec(t["to"], t["via"]))
    return out


def _rewrap(here: str, e: ValidationError) -> ValidationError:
    return ValidationError(f"{here} ({e.obj})", e.field, e.rule, e.value)


def from_topology_dict(data: dict, top: dict[str, type], where: str = "network", *,
                       source: str | None = None) -> Network:
    """Build a network from a parsed network file that uses the keys beyond one bridge.

    ``top``: the file's top-level keys and their types (``config.py``'s).

    Raises:
        ValidationError: an unknown key, a wrong type, a missing key or a
            broken rule, naming the key.
    """
    _table(where, data, top, ("name",))
    if data.get("lesson_form"):
        raise ValidationError(where, "lesson_form", "lesson_form is for the lesson's shape (one bridge, none of "
                              "the keys bridges, links, routes, interfaces, ...): leave it out", True)
    if "bridges" in data:
        for key in ("bridge", "gateway", "masquerade"):
            if key in data:
                raise ValidationError(where, key, f"with [[bridges]], give {key} in a [[bridges]] entry "
                                      "(the top-level key is the shorthand for one bridge)", data[key])
    if not data.get("containers") and not data.get("links"):
        raise ValidationError(where, "containers", "at least one [[containers]] or [[links]] table")
    try:
        bridges = _bridges(where, data)
        nodes = [_node(f"{where} containers[{i}]", c) for i, c in enumerate(data.get("containers", []))]
        links = [_link(f"{where} links[{i}]", link) for i, link in enumerate(data.get("links", []))]
        routes = _routes(where, data.get("routes", []))
    except ValidationError as e:
        if e.obj.startswith(where):
            raise
        raise _rewrap(where, e) from None
    options = {k: data[k] for k in ("forward", "default_routes", "tag", "accept_forward", "isolate", "names", "dns")
               if k in data}
    try:
        return topology(data["name"], bridges=bridges, containers=nodes, links=links, routes=routes,
                        source=source, **options)
    except ValidationError as e:
        raise ValidationError(f"{where}: {e.obj}", e.field, e.rule, e.value) from None


def _bridges(where: str, data: dict) -> list[BridgeSpec]:
    if "bridges" not in data:
        if not data.get("containers"):
            return []  # links only
        return [BridgeSpec(data.get("bridge", "br0"), data.get("gateway", "10.201.0.1/24"),
                           masquerade=data.get("masquerade"))]
    out = []
    for i, b in enumerate(data["bridges"]):
        here = f"{where} bridges[{i}]"
        t = _table(here, b, _BRIDGE, ("name",))
        try:
            out.append(BridgeSpec(t["name"], t.get("address"), t.get("mtu"), t.get("masquerade"),
                                  address6=t.get("address6"), masquerade6=t.get("masquerade6")))
        except ValidationError as e:
            raise _rewrap(here, e) from None
    return out


def _node(here: str, item: object) -> Node:
    t = _table(here, item, _CONTAINER, ("netns",))
    interfaces = []
    for k, itf in enumerate(t.get("interfaces", [])):
        there = f"{here} interfaces[{k}]"
        i = _table(there, itf, _INTERFACE)
        try:
            interfaces.append(Interface(i.get("bridge"), i.get("address"), i.get("peer"), i.get("veth"), i.get("mtu"),
                                        address6=i.get("address6")))
        except ValidationError as e:
            raise _rewrap(there, e) from None
    if interfaces:
        for key in ("address", "bridge", "veth", "peer", "mtu", "address6"):
            if key in t:
                raise ValidationError(here, key, "give a container either [[containers.interfaces]] or "
                                      "bridge/address/address6/veth/peer/mtu, not both", t[key])
    routes = _routes(here, t.get("routes", []))
    try:
        return Node(t["netns"], t.get("address"), t.get("bridge"), t.get("veth"), t.get("peer"), t.get("mtu"),
                    interfaces, routes, t.get("forward", False), t.get("default_route"), t.get("ports", ()),
                    address6=t.get("address6"), default_route6=t.get("default_route6"))
    except ValidationError as e:
        raise _rewrap(here, e) from None


def _link(here: str, item: object) -> LinkSpec:
    t = _table(here, item, _LINK, ("ends",))
    ends = t["ends"]
    if len(ends) != 2:
        raise ValidationError(here, "ends", "a link has exactly two ends", ends)
    out = []
    for k, end in enumerate(ends):
        there = f"{here} ends[{k}]"
        e = _table(there, end, _END, ("name",))
        try:
            out.append(End(e.get("netns"), e["name"], e.get("address"), address6=e.get("address6")))
        except ValidationError as err:
            raise _rewrap(there, err) from None
    if out[0].netns is None and out[1].netns is None:
        raise ValidationError(here, "ends", "at least one end of a link is in a namespace (netns = ...)", ends)
    try:
        return LinkSpec(tuple(out), t.get("mtu"))
    except ValidationError as e:
        raise _rewrap(here, e) from None
