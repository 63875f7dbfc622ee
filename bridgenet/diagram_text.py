"""The text diagram of a network, for a terminal (``bridgenet graph``, the default format).

The layout is a ladder, the same for any network:

* boxes, one under the other on the left: the host first, then each
  namespace, with one line per interface (name, addresses) and notes
  (routes, sysctls, published ports);
* each bridge is a vertical rail on the right, headed with its name; an
  interface plugged into it is a line from the box's right edge to the
  rail, named with the bridge port that carries it (the veth's host end,
  ``─ brid4 ─┤``); the host's own address on a bridge (the gateway) is the
  host box's line to that rail; a line passing a rail it does not join is
  broken by the rail (``─│─``);
* a bare veth between two namespaces is a wire in the gutter on the left;
* MASQUERADE in the host is an arrow from the host box up to the upstream.

Every line is ≤ 100 columns for the lesson and examples/campus.toml, and
the same network gives the same text (it follows the network's order).
``ascii=True`` draws with ``+ - | ^`` only.
"""

from __future__ import annotations

from .diagram import HOST, UPSTREAM, Box, Picture

_ASCII = str.maketrans({"┌": "+", "┐": "+", "└": "+", "┘": "+", "─": "-", "│": "|", "├": "+", "┤": "+",
                        "┬": "+", "┴": "+", "┼": "+", "▲": "^"})


class _Canvas:
    """Rows of characters that grow as they are written to."""

    def __init__(self) -> None:
        self.rows: list[list[str]] = []

    def put(self, x: int, y: int, text: str) -> None:
        while len(self.rows) <= y:
            self.rows.append([])
        row = self.rows[y]
        if len(row) < x + len(text):
            row.extend(" " * (x + len(text) - len(row)))
        row[x:x + len(text)] = list(text)

    def get(self, x: int, y: int) -> str:
        row = self.rows[y] if y < len(self.rows) else []
        return row[x] if x < len(row) else " "

    def text(self) -> str:
        return "".join("".join(r).rstrip() + "\n" for r in self.rows)


def _iface_lines(pic: Picture, box: Box) -> list[tuple[str, int | None]]:
    """The box's content lines: ``(text, index of the interface it starts, or None)``."""
    lines: list[tuple[str, int | None]] = []
    for i, f in enumerate(box.ifaces):
        first = f.name + (f" {f.addresses[0]}" if f.addresses else "")
        if f.gateway:
            first += " (gateway)"
        if f.mtu is not None:
            first += f" MTU {f.mtu}"
        if f.link is not None:
            link = pic.links[f.link]
            other = link.b if link.a == (box.key, f.name) else link.a
            first += f" (veth to {'the host' if other[0] == HOST else other[0]})"
        lines.append((first, i))
        lines.extend((" " * (len(f.name) + 1) + a, None) for a in f.addresses[1:])
    lines.extend((n, None) for n in box.notes)
    if not lines:
        lines.append(("(no interface of this network)" if box.host else "(only lo)", None))
    return lines


def render_text(pic: Picture, *, ascii: bool = False) -> str:  # noqa: A002
    """Draw ``pic`` (see the module docstring); lines end in ``\\n``, trailing blanks are stripped."""
    rails = [b.name for b in pic.bridges]
    rail_of = {name: k for k, name in enumerate(rails)}
    contents = [_iface_lines(pic, b) for b in pic.boxes]
    # the gutter: one column per bare link, assigned once the rows are known
    n_links = len(pic.links)

    # --- rows ---------------------------------------------------------------------------------------
    y = 0
    head: list[tuple[int, str]] = [(y, f"network {pic.name}")]
    y += 2
    nat_top = None
    if pic.nat:
        nat_top = y
        y += 2  # "upstream ..." then the arrowhead
        y += len(pic.nat)
    label_row = y
    y += len(rails)
    box_rows: list[int] = []  # the top line of each box
    attach: list[tuple[int, int, str | None]] = []  # (row, rail, port)
    ends: dict[tuple[str, str], int] = {}  # (box key, ifname) -> row, for the bare links
    for box, lines in zip(pic.boxes, contents):
        box_rows.append(y)
        for j, (_, i) in enumerate(lines):
            row = y + 1 + j
            if i is None:
                continue
            f = box.ifaces[i]
            if f.bridge is not None and f.bridge in rail_of:
                attach.append((row, rail_of[f.bridge], f.port))
            if f.link is not None:
                ends[(box.key, f.name)] = row
        y += len(lines) + 2
    bottom = y

    # --- columns ------------------------------------------------------------------------------------
    wires = sorted((min(ends[link.a], ends[link.b]), max(ends[link.a], ends[link.b]))
                   for link in pic.links if link.a in ends and link.b in ends)
    columns: list[int] = []  # the last row used in each gutter column
    wire_col: list[int] = []
    for top, low in wires:
        for c, last in enumerate(columns):
            if last < top:
                columns[c] = low
                wire_col.append(c)
                break
        else:
            columns.append(low)
            wire_col.append(len(columns) - 1)
    gutter = 2 * len(columns) + 1 if columns else 0
    inner = max([len(t) for lines in contents for t, _ in lines] + [len(b.title) + 4 for b in pic.boxes])
    left, right = gutter, gutter + inner + 3  # the box edges
    gaps = [5] * len(rails)
    for _, k, port in attach:
        gaps[k] = max(gaps[k], len(port or "") + 5)
    rail_x: list[int] = []
    x = right
    for g in gaps:
        x += g + 1
        rail_x.append(x)

    canvas = _Canvas()
    for row, text in head:
        canvas.put(0, row, text)

    # --- the upstream and NAT -----------------------------------------------------------------------
    arrow = left + 2
    if nat_top is not None:
        canvas.put(arrow, nat_top, UPSTREAM)
        canvas.put(arrow, nat_top + 1, "▲")
        for j, line in enumerate(pic.nat):
            canvas.put(arrow, nat_top + 2 + j, f"│ {line}")
        for row in range(nat_top + 2 + len(pic.nat), box_rows[0]):
            canvas.put(arrow, row, "│")

    # --- boxes --------------------------------------------------------------------------------------
    for box, lines, top in zip(pic.boxes, contents, box_rows):
        title = f" {box.title} "
        canvas.put(left, top, "┌" + "─" * (right - left - 1) + "┐")
        canvas.put(left + 4, top, title)
        if box.host and nat_top is not None:
            canvas.put(arrow, top, "┴")
        for j, (text, _) in enumerate(lines):
            canvas.put(left, top + 1 + j, "│ " + text.ljust(inner + 1) + "│")
        canvas.put(left, top + 1 + len(lines), "└" + "─" * (right - left - 1) + "┘")

    # --- rails ----------------------------------------------------------------------------------------
    last = {k: max((row for row, kk, _ in attach if kk == k), default=None) for k in range(len(rails))}
    for k, bridge in enumerate(pic.bridges):
        canvas.put(rail_x[k], label_row + k, f"{bridge.label} (bridge)")
        if last[k] is None:
            continue
        for row in range(label_row + k + 1, last[k] + 1):
            canvas.put(rail_x[k], row, "│")
    crossed = False
    for row, k, port in sorted(attach):
        canvas.put(right, row, "├")
        for x in range(right + 1, rail_x[k]):
            if canvas.get(x, row) == "│":
                crossed = True
            else:
                canvas.put(x, row, "─")
        if port:
            canvas.put(rail_x[k] - len(port) - 3, row, f" {port} ─")
        canvas.put(rail_x[k], row, "┘" if row == last[k] else "┤")

    # --- bare links in the gutter -----------------------------------------------------------------------
    for (top, low), c in zip(wires, wire_col):
        x = gutter - 2 - 2 * c
        for row in range(top + 1, low):
            canvas.put(x, row, "│")
    for (top, low), c in zip(wires, wire_col):
        x = gutter - 2 - 2 * c
        for row, corner in ((top, "┌"), (low, "└")):
            canvas.put(x, row, corner)
            for xx in range(x + 1, left):
                if canvas.get(xx, row) != "│":
                    canvas.put(xx, row, "─")
            canvas.put(left, row, "┤")

    # --- what the signs mean, and the bridges' firewall notes ---------------------------------------------
    y = bottom + 1
    notes = []
    if attach:
        notes.append("─ PORT ─┤ PORT, the veth's host end, is a port of the bridge named atop the rail")
    if crossed:
        notes.append("─│─ a line passing a rail without joining it")
    if n_links:
        notes.append("the wire on the left: a bare veth between two namespaces (no bridge)")
    same: dict[tuple[str, ...], list[str]] = {}  # bridges with the same firewall notes share a line
    for b in pic.bridges:
        if b.notes:
            same.setdefault(b.notes, []).append(b.name)
    notes.extend(f"{', '.join(names)}: {', '.join(n)}" for n, names in same.items())
    for line in notes:
        canvas.put(0, y, line)
        y += 1
    text = canvas.text()
    return text.translate(_ASCII) if ascii else text
