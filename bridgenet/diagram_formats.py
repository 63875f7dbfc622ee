"""The diagram of a network for Graphviz (``dot``) and Mermaid (``flowchart``).

Both draw the same nodes and edges from a :class:`bridgenet.diagram.Picture`:

* a node per box (the host, each namespace), labelled with its title, its
  interfaces and addresses, and its notes (routes, published ports);
* a node per bridge;
* an edge from each box to each bridge it is plugged into, labelled with the
  two ends of the veth (``brid4 - veth4``; the host's edge to a bridge with
  its address is unlabelled: it is the bridge itself);
* an edge per bare veth between two boxes (``to-c - to-b``);
* when the host masquerades: an ``upstream`` node and an arrow to it,
  labelled with the MASQUERADE rules.

The output is deterministic (the network's order) and ASCII. Graphviz:
an undirected ``graph`` that ``dot -Tsvg`` renders without warnings
(checked in the tests when ``dot`` is installed). Mermaid: ``flowchart
TB``, node ids ``host``, ``upstream``, ``br_NAME`` and ``ns_NAME`` (``NAME``
with every character outside ``A-Za-z0-9_`` as ``_``, then a number if two
collide), labels quoted.
"""

from __future__ import annotations

import re

from .diagram import HOST, UPSTREAM, Box, Picture



def _box_lines(box: Box) -> list[str]:
    lines = [box.title]
    for f in box.ifaces:
        extra = (" (gateway)" if f.gateway else "") + (f" MTU {f.mtu}" if f.mtu is not None else "")
        if not f.addresses:
            lines.append(f.name + extra)
        for j, a in enumerate(f.addresses):
            lines.append(f"{f.name} {a}" + (extra if j == 0 else ""))
    lines.extend(box.notes)
    return lines


def _edges(pic: Picture) -> list[tuple[str, str, str, str]]:
    """``(kind, from, to, label)`` with kinds ``"port"`` (box key, bridge), ``"link"`` (box, box)."""
    out = []
    for box in pic.boxes:
        for f in box.ifaces:
            if f.bridge is not None:
                label = "" if f.port is None and box.host else f"{f.port or f.bridge} - {f.name}"
                out.append(("port", box.key, f.bridge, label))
    for link in pic.links:
        out.append(("link", link.a[0], link.b[0], f"{link.a[1]} - {link.b[1]}"))
    return out


# --- Graphviz ----------------------------------------------------------------------------------------


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_label(lines: list[str]) -> str:
    """A left-justified multi-line label (``\\l`` ends each line; the dot language)."""
    body = "".join(line.replace("\\", "\\\\").replace('"', '\\"') + "\\l" for line in lines)
    return f'"{body}"'


def render_dot(pic: Picture) -> str:
    """``pic`` as a Graphviz ``graph`` (render: ``dot -Tsvg``)."""
    ids = {box.key: _dot_quote("host" if box.host else f"netns {box.key}") for box in pic.boxes}
    bridge_ids = {b.name: _dot_quote(f"bridge {b.name}") for b in pic.bridges}
    out = [f"graph {_dot_quote(pic.name)} {{",
           f"  label={_dot_quote('network ' + pic.name)};",
           "  labelloc=t;",
           "  node [shape=box];"]
    if pic.nat:
        out.append(f'  "upstream" [label={_dot_quote(UPSTREAM)}, shape=ellipse];')
    for box in pic.boxes:
        style = ", style=bold" if box.host else (", peripheries=2" if box.router else "")
        out.append(f"  {ids[box.key]} [label={_dot_label(_box_lines(box))}{style}];")
    for b in pic.bridges:
        label = "\\n".join([f"{b.label}", "bridge", *b.notes]).replace('"', '\\"')
        out.append(f'  {bridge_ids[b.name]} [label="{label}", shape=box, style=rounded];')
    if pic.nat:
        label = "\\n".join(pic.nat).replace('"', '\\"')
        # upstream first, so that dot ranks it above the host; the arrow points to it (dir=back)
        out.append(f'  "upstream" -- {ids[HOST]} [label="{label}", dir=back];')
    for kind, a, b, label in _edges(pic):
        attrs = f" [label={_dot_quote(label)}]" if label else ""
        # the host, then the bridges, then their ports: dot ranks them top down in that order
        down = kind == "port" and a != HOST
        out.append(f"  {bridge_ids[b]} -- {ids[a]}{attrs};" if down else
                   f"  {ids[a]} -- {bridge_ids[b] if kind == 'port' else ids[b]}{attrs};")
    out.append("}")
    return "\n".join(out) + "\n"


# --- Mermaid ---------------------------------------------------------------------------------------


def _mermaid_text(text: str) -> str:
    """Text for a quoted Mermaid label: ``"``, ``<`` and ``>`` as entity codes (``#quot;``)."""
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def _mermaid_ids(pic: Picture) -> tuple[dict[str, str], dict[str, str]]:
    used = {"host", "upstream"}

    def make(prefix: str, name: str) -> str:
        base = prefix + re.sub(r"[^A-Za-z0-9_]", "_", name)
        ident, n = base, 1
        while ident in used:
            n += 1
            ident = f"{base}_{n}"
        used.add(ident)
        return ident

    boxes = {box.key: "host" if box.host else make("ns_", box.key) for box in pic.boxes}
    bridges = {b.name: make("br_", b.name) for b in pic.bridges}
    return boxes, bridges


def render_mermaid(pic: Picture) -> str:
    """``pic`` as a Mermaid ``flowchart`` (for a Markdown ```` ```mermaid ```` block)."""
    boxes, bridges = _mermaid_ids(pic)
    out = ["flowchart TB", f"  %% network {pic.name}"]
    if pic.nat:
        out.append(f'  upstream(["{_mermaid_text(UPSTREAM)}"])')
    for box in pic.boxes:
        label = "<br>".join(_mermaid_text(line) for line in _box_lines(box))
        out.append(f'  {boxes[box.key]}["{label}"]')
    for b in pic.bridges:
        label = "<br>".join(_mermaid_text(line) for line in [b.label, "bridge", *b.notes])
        out.append(f'  {bridges[b.name]}{{{{"{label}"}}}}')
    if pic.nat:
        label = "<br>".join(_mermaid_text(line) for line in pic.nat)
        out.append(f'  host -->|"{label}"| upstream')
    for kind, a, b, label in _edges(pic):
        one, two = (bridges[b], boxes[a]) if kind == "port" else (boxes[a], boxes[b])
        out.append(f'  {one} ---|"{_mermaid_text(label)}"| {two}' if label else f"  {one} --- {two}")
    return "\n".join(out) + "\n"
