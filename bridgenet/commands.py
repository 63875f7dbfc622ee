"""Commands as data: an argv plus the step it belongs to and what it makes true.

Objects of the model render into :class:`Step` values; a step holds the
commands that bring it up and those that take it down. Runners (see
``runners``) execute commands; nothing here runs anything.

A command that acts inside a named network namespace keeps that namespace in
``netns`` and renders as ``ip netns exec NETNS TOOL ARGS...``, the lesson's
form (ip-netns(8)); the batch runner instead groups such commands into one
``ip -n NETNS -batch -`` per namespace.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, ip_address, ip_interface

import attrs


# --- effects: what a command makes true, so that live state can be compared ---


@attrs.frozen
class NetnsPresent:
    """A named network namespace ``name`` exists (``/run/netns/NAME``)."""

    name: str


@attrs.frozen
class NetnsAbsent:
    """No named network namespace ``name``."""

    name: str


@attrs.frozen
class LinkPresent:
    """A link ``name`` of ``kind`` (``bridge``, ``veth``) exists in ``netns`` (None: the host).

    For a veth, ``peer`` names the other end and ``peer_netns`` where it lives.
    """

    name: str
    kind: str
    netns: str | None = None
    peer: str | None = None
    peer_netns: str | None = None


@attrs.frozen
class LinkAbsent:
    """No link ``name`` in ``netns``."""

    name: str
    netns: str | None = None


@attrs.frozen
class LinkInNetns:
    """Link ``name`` has been moved from the host into ``netns``."""

    name: str
    netns: str


@attrs.frozen
class LinkUp:
    """Link ``name`` in ``netns`` is administratively up (flag ``UP``)."""

    name: str
    netns: str | None = None


@attrs.frozen
class LinkDown:
    """Link ``name`` in ``netns`` is administratively down (the undo of ``set up``)."""

    name: str
    netns: str | None = None


@attrs.frozen
class LinkMaster:
    """Link ``name`` is a bridge port of ``master`` (None: of no bridge)."""

    name: str
    master: str | None
    netns: str | None = None


@attrs.frozen
class LinkMtu:
    """Link ``name`` in ``netns`` has the MTU ``mtu`` (bytes; ip-link(8) ``mtu``)."""

    name: str
    mtu: int
    netns: str | None = None


@attrs.frozen
class LinkHairpin:
    """Bridge port ``name`` has hairpin mode ``on`` (ip-link(8) ``type bridge_slave hairpin``)."""

    name: str
    on: bool
    netns: str | None = None


@attrs.frozen
class LinkAlias:
    """Link ``name`` carries the alias ``alias`` (ip-link(8) ``alias``)."""

    name: str
    alias: str | None
    netns: str | None = None


@attrs.frozen
class AddrPresent:
    """Address ``address`` (with prefix length, IPv4 or IPv6) is on link ``dev`` in ``netns``."""

    dev: str
    address: IPv4Interface | IPv6Interface
    netns: str | None = None
    broadcast: IPv4Address | None = None


@attrs.frozen
class AddrAbsent:
    """Address ``address`` is not on link ``dev`` in ``netns``."""

    dev: str
    address: IPv4Interface | IPv6Interface
    netns: str | None = None


@attrs.frozen
class RoutePresent:
    """A route to ``dst`` (``"default"`` or a CIDR) via ``via`` exists in ``netns``."""

    dst: str
    via: IPv4Address | IPv6Address
    netns: str | None = None


@attrs.frozen
class RouteAbsent:
    """No route to ``dst`` via ``via`` in ``netns``."""

    dst: str
    via: IPv4Address | IPv6Address
    netns: str | None = None


@attrs.frozen
class SysctlValue:
    """Sysctl ``key`` reads ``value`` in ``netns``."""

    key: str
    value: str
    netns: str | None = None


@attrs.frozen
class RulePresent:
    """The iptables rule ``rule`` (the argv after ``-A CHAIN``) is in ``table``/``chain``.

    ``family``: 4 for iptables, 6 for ip6tables (the rule is in the IPv6 tables).
    """

    table: str
    chain: str
    rule: tuple[str, ...]
    netns: str | None = None
    family: int = 4


@attrs.frozen
class RuleAbsent:
    """One instance of the iptables rule ``rule`` fewer (``-D`` removes the first match).

    ``family``: 4 for iptables, 6 for ip6tables (the rule is in the IPv6 tables).
    """

    table: str
    chain: str
    rule: tuple[str, ...]
    netns: str | None = None
    family: int = 4


@attrs.frozen
class ChainPresent:
    """The user-defined iptables chain ``chain`` exists in ``table`` (``iptables -N``).

    ``family``: 4 for iptables, 6 for ip6tables.
    """

    table: str
    chain: str
    netns: str | None = None
    family: int = 4


@attrs.frozen
class ChainAbsent:
    """No chain ``chain`` in ``table`` (``iptables -X``; it must be empty and unreferenced first).

    ``family``: 4 for iptables, 6 for ip6tables.
    """

    table: str
    chain: str
    netns: str | None = None
    family: int = 4


@attrs.frozen
class FilePresent:
    """The file ``path`` holds exactly ``content`` (text); ``owner``: the namespace whose
    ``/etc/netns/OWNER`` it is in (None: none; names.py)."""

    path: str
    content: str
    owner: str | None = None


@attrs.frozen
class FileAbsent:
    """No file ``path``."""

    path: str
    owner: str | None = None


@attrs.frozen
class DirPresent:
    """The directory ``path`` exists."""

    path: str
    owner: str | None = None


@attrs.frozen
class DirAbsent:
    """No directory ``path`` (``rmdir`` leaves a directory that is not empty: then it stays)."""

    path: str
    owner: str | None = None


@attrs.frozen
class FdbPresent:
    """The forwarding entry ``lladdr`` -> ``dst`` is in the FDB of link ``dev`` (bridge(8) ``fdb append``;
    for a VXLAN device, ``dst`` is a remote VTEP's underlay address)."""

    dev: str
    lladdr: str
    dst: str
    netns: str | None = None


@attrs.frozen
class FdbAbsent:
    """No forwarding entry ``lladdr`` -> ``dst`` on link ``dev`` (bridge(8) ``fdb del``)."""

    dev: str
    lladdr: str
    dst: str
    netns: str | None = None


Effect = (
    NetnsPresent | NetnsAbsent | LinkPresent | LinkAbsent | LinkInNetns | LinkUp | LinkDown | LinkMaster
    | LinkMtu | LinkAlias | LinkHairpin | AddrPresent | AddrAbsent | RoutePresent | RouteAbsent | SysctlValue
    | RulePresent | RuleAbsent | ChainPresent | ChainAbsent | FilePresent | FileAbsent | DirPresent | DirAbsent
    | FdbPresent | FdbAbsent
)


@attrs.frozen
class Command:
    """One command: ``tool`` with ``args``, run in the host or inside ``netns``.

    Attributes:
        tool: the program, ``"ip"``, ``"iptables"``, ``"ip6tables"``, ``"sysctl"`` or ``"bridge"`` (bridge(8))...
        args: its arguments, a tuple of strings (never a shell string).
        netns: None to run in the host; a namespace name to run inside it.
        step: key of the :class:`Step` it belongs to.
        effect: what is true once it has run (used to plan against live state).
        input: text the command reads on its standard input (a file's
            content for ``tee FILE``), or None; printed as a quoted
            here-document after the command line.
    """

    tool: str
    args: tuple[str, ...] = attrs.field(converter=tuple)
    netns: str | None = None
    step: str = ""
    effect: Effect | None = attrs.field(default=None, eq=False)
    input: str | None = attrs.field(default=None, kw_only=True)

    @property
    def argv(self) -> tuple[str, ...]:
        """The full argv, e.g. ``("ip", "netns", "exec", "container4", "ip", "link", ...)``."""
        if self.netns is None:
            return (self.tool, *self.args)
        return ("ip", "netns", "exec", self.netns, self.tool, *self.args)

    def shell(self, *, sudo: bool = False) -> str:
        """The command as one shell-quoted line (``shlex.join``), optionally behind ``sudo``.

        With ``input``, the line reads it from a quoted here-document (``<<'EOF'``,
        the text, ``EOF``: several lines); ``tee``'s copy on standard output goes to ``/dev/null``.
        """
        argv = ("sudo", *self.argv) if sudo else self.argv
        line = shell_join(argv)
        if self.input is None:
            return line
        return with_heredoc(line + quiet(self.argv), self.input)

    def __str__(self) -> str:
        return self.shell()


_SAFE_LINE = re.compile(r"[\w@%+=:,./ -]*", re.ASCII).fullmatch
"""A line of words that ``shlex.quote`` leaves as they are (its ``_find_unsafe``), and spaces."""


def shell_join(argv: Sequence[str]) -> str:
    """``shlex.join(argv)``: the words shell-quoted, joined by spaces (faster when none needs quotes)."""
    try:
        line = " ".join(argv)
    except TypeError:
        return shlex.join(argv)
    if _SAFE_LINE(line) is not None and line.count(" ") == len(argv) - 1 and "" not in argv:
        return line
    return shlex.join(argv)


def heredoc_word(text: str) -> str:
    """A here-document delimiter that is no line of ``text``: ``EOF``, else ``EOF1``, ``EOF2``, ..."""
    lines = set(text.splitlines()) if "EOF" in text else ()
    word, n = "EOF", 0
    while word in lines:
        n += 1
        word = f"EOF{n}"
    return word


def with_heredoc(line: str, text: str) -> str:
    """``line <<'WORD'``, then ``text`` (a newline added when it has none at its end), then ``WORD``."""
    word = heredoc_word(text)
    body = text if text.endswith("\n") or not text else text + "\n"
    return f"{line} <<'{word}'\n{body}{word}"


def quiet(argv: Sequence[str]) -> str:
    """`` >/dev/null`` for a ``tee`` (which copies its input to standard output too), else ``""``."""
    return " >/dev/null" if argv and argv[0] == "tee" else ""


@attrs.frozen
class Step:
    """One step of a network: the commands that make it and those that unmake it.

    Attributes:
        key: unique identity within a network, e.g. ``"link br0"``.
        title: one line saying what the step does.
        why: a few sentences saying why (printed by ``--explain``).
        up: commands that make the step, in order.
        down: commands that undo the step on its own.
        covered_by: key of another step whose ``down`` removes this one too
            (e.g. an address vanishes with its link); when both are taken
            down, this step's own ``down`` is skipped.
    """

    key: str
    title: str
    why: str
    up: tuple[Command, ...]
    down: tuple[Command, ...]
    covered_by: str | None = None


def ip(*args: str, netns: str | None = None, step: str = "", effect: Effect | None = None) -> Command:
    """Build an ``ip`` command (ip(8))."""
    return Command("ip", args, netns=netns, step=step, effect=effect)


IPTABLES_TOOLS = {4: "iptables", 6: "ip6tables"}
"""The tool of each IP family (iptables(8), ip6tables(8): the same options, the IPv6 tables)."""


def iptables(*args: str, netns: str | None = None, step: str = "", effect: Effect | None = None,
             family: int = 4) -> Command:
    """Build an ``iptables`` command (iptables(8)), or with ``family=6`` an ``ip6tables`` one."""
    return Command(IPTABLES_TOOLS[family], args, netns=netns, step=step, effect=effect)


def sysctl_w(key: str, value: str, *, netns: str | None = None, step: str = "") -> Command:
    """Build ``sysctl -w KEY=VALUE`` (sysctl(8))."""
    return Command(
        "sysctl", ("-w", f"{key}={value}"), netns=netns, step=step, effect=SysctlValue(key, value, netns)
    )


EFFECTS: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        NetnsPresent, NetnsAbsent, LinkPresent, LinkAbsent, LinkInNetns, LinkUp, LinkDown, LinkMaster,
        LinkMtu, LinkAlias, LinkHairpin, AddrPresent, AddrAbsent, RoutePresent, RouteAbsent, SysctlValue,
        RulePresent, RuleAbsent, ChainPresent, ChainAbsent, FilePresent, FileAbsent, DirPresent, DirAbsent,
        FdbPresent, FdbAbsent,
    )
}


def command_to_dict(command: Command) -> dict:
    """A JSON-ready dict of ``command`` (with its effect), for the state file."""
    d: dict = {"tool": command.tool, "args": list(command.args), "netns": command.netns, "step": command.step}
    if command.input is not None:
        d["input"] = command.input
    e = command.effect
    if e is not None:
        fields = {}
        for f in attrs.fields(type(e)):
            v = getattr(e, f.name)
            if isinstance(v, (IPv4Address, IPv4Interface, IPv6Address, IPv6Interface)):
                v = str(v)
            elif isinstance(v, tuple):
                v = list(v)
            fields[f.name] = v
        d["effect"] = {"type": type(e).__name__, **fields}
    return d


def command_from_dict(d: dict) -> Command:
    """The inverse of :func:`command_to_dict`."""
    effect = None
    if d.get("effect"):
        e = dict(d["effect"])
        cls = EFFECTS[e.pop("type")]
        for key in ("address",):
            if key in e and e[key] is not None:
                e[key] = ip_interface(e[key])
        for key in ("via", "broadcast"):
            if key in e and e[key] is not None:
                e[key] = ip_address(e[key])
        if "rule" in e:
            e["rule"] = tuple(e["rule"])
        effect = cls(**e)
    return Command(d["tool"], tuple(d["args"]), netns=d.get("netns"), step=d.get("step", ""), effect=effect,
                   input=d.get("input"))
