"""Names: every container resolves the others by name, as compose services do.

``ip netns exec NS CMD`` bind-mounts each file of ``/etc/netns/NS/`` over the
file of the same name in ``/etc`` for CMD (ip-netns(8): "for applications
that are unaware of network namespaces, the convention is to look for
global network configuration files first in /etc/netns/NAME/ then in
/etc/"). :class:`Names` writes two there for a namespace the network
creates:

* ``hosts`` (hosts(5)): the localhost lines, then one line per address of
  every container namespace of the network (IPv4 first), naming it by its
  namespace name and ``NETNS.NETWORK``;
* ``resolv.conf`` (resolv.conf(5)): the network's ``dns`` servers; without
  them ``nameserver 127.0.0.1`` with ``options timeout:1 attempts:1``: a
  query to port 53 of the namespace's own ``lo`` gets an ICMP port
  unreachable at once (nothing listens there), so an unknown name fails in
  milliseconds instead of waiting for a resolver that is routed nowhere
  (measured here: 3-4 ms for ``getent hosts nosuchname``).

:class:`EtcNetns` makes ``/etc/netns`` itself when it is missing: a step
shared by the networks that use it (its key starts with ``"etc "``, see
``apply.SHARED_PREFIXES``), removed by the last one going down, and only if
empty. A tagged network's files start with the comment ``# bridgenet:NAME``
(hosts(5) and resolv.conf(5) skip ``#`` lines), which is how ``clean``
recognises them without a state file (``leftovers.py``). Files are written by ``tee PATH`` reading the text on standard input
(a real argv, so that it runs the same way wherever commands run), removed
by ``rm -f`` and ``rmdir --ignore-fail-on-non-empty`` (what someone else put
in the directory keeps it). Nothing is written for a namespace the network
reuses (``plan._leave_alone``).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, ip_address

import attrs

from . import rules
from .commands import Command, DirAbsent, DirPresent, FileAbsent, FilePresent, Step
from .addressing import Address
from .errors import ValidationError
from .links import VethPair

ETC_NETNS = "/etc/netns"
"""Where ip-netns(8) looks for a namespace's own /etc files (``ETC_NETNS/NAME/FILE``)."""

LOCALHOST = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
"""The first lines of every ``hosts`` (as Debian's /etc/hosts has them)."""

FAIL_FAST = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
"""``resolv.conf`` without ``dns``: the namespace's own lo, where nothing listens (ICMP port unreachable)."""

MAX_DNS = 3
"""resolv.conf(5): the resolver uses at most MAXNS = 3 ``nameserver`` lines."""

ETC_STEP = "etc " + ETC_NETNS
"""Key of the shared step that makes ``/etc/netns``."""

READ = (("tar", "-C", "/etc", "-cf", "-", "netns"), None)
"""The read (``state.gather``) of the whole ``/etc/netns`` tree in one process: a tar archive on stdout."""


def _mkdir(path: str, key: str, owner: str | None) -> Command:
    return Command("mkdir", (path,), step=key, effect=DirPresent(path, owner))


def rmdir(path: str, key: str, owner: str | None = None) -> Command:
    """``rmdir --ignore-fail-on-non-empty PATH``: the directory goes when empty, else stays (no error)."""
    return Command("rmdir", ("--ignore-fail-on-non-empty", path), step=key, effect=DirAbsent(path, owner))


def write(path: str, content: str, key: str, owner: str | None = None) -> Command:
    """``tee PATH`` with ``content`` on standard input: the file holds exactly ``content``."""
    return Command("tee", (path,), step=key, effect=FilePresent(path, content, owner), input=content)


def remove(path: str, key: str, owner: str | None = None) -> Command:
    """``rm -f PATH``."""
    return Command("rm", ("-f", path), step=key, effect=FileAbsent(path, owner))


@attrs.frozen
class EtcNetns:
    """The directory ``/etc/netns`` (made when missing; shared by every network that uses it)."""

    @property
    def step_key(self) -> str:
        return ETC_STEP

    def steps(self, ctx: object = None) -> list[Step]:
        k = self.step_key
        return [Step(
            key=k, title=f"create {ETC_NETNS} (when missing)",
            why=(f"ip netns exec NS mounts the files of {ETC_NETNS}/NS over those of /etc (ip-netns(8)). "
                 "Shared by the networks that use it; the last one going down removes it when it is empty."),
            up=(_mkdir(ETC_NETNS, k, None),), down=(rmdir(ETC_NETNS, k),))]


@attrs.frozen
class Names:
    """``/etc/netns/NETNS/hosts`` and ``resolv.conf`` of one namespace (see the module docstring).

    Attributes:
        netns: the namespace (one the network creates).
        hosts: the ``hosts`` file's text (:func:`hosts_text`).
        resolv: the ``resolv.conf`` file's text (:func:`resolv_text`).
    """

    netns: str = attrs.field(validator=rules.netns_name)
    hosts: str = attrs.field(validator=attrs.validators.instance_of(str))
    resolv: str = attrs.field(validator=attrs.validators.instance_of(str))

    @property
    def step_key(self) -> str:
        return f"names {self.netns}"

    @property
    def directory(self) -> str:
        return f"{ETC_NETNS}/{self.netns}"

    def steps(self, ctx: object = None) -> list[Step]:
        k, d, ns = self.step_key, self.directory, self.netns
        tag = getattr(ctx, "tag", None)
        mark = f"# {tag}\n" if tag else ""  # what `clean` recognises as bridgenet's without a state file
        hosts, resolv = mark + self.hosts, mark + self.resolv
        return [Step(
            key=k, title=f"write {d}/hosts and {d}/resolv.conf",
            why=(f"Inside {ns}, ip netns exec mounts them over /etc/hosts and /etc/resolv.conf: the other "
                 "containers resolve by name, and a name nobody knows fails at once."),
            up=(_mkdir(d, k, ns), write(f"{d}/hosts", hosts, k, ns), write(f"{d}/resolv.conf", resolv, k, ns)),
            down=(remove(f"{d}/resolv.conf", k, ns), remove(f"{d}/hosts", k, ns), rmdir(d, k, ns)))]


DNS_RULE = ("each name server is text, a unicast IPv4 or IPv6 address (not unspecified, multicast, broadcast or "
            "link-local, no scope id), e.g. \"198.51.100.1\" or \"2001:db8::53\"")
"""What each entry of ``dns`` is (resolv.conf(5) ``nameserver``: an IPv4 or IPv6 address)."""


def _dns_problem(d: object) -> str | None:
    """Why ``d`` is no name server address of :data:`DNS_RULE`, or None."""
    if not isinstance(d, str):
        return DNS_RULE  # ip_address(53) is 0.0.0.53, ip_address(True) 0.0.0.1
    try:
        a = ip_address(d)
    except ValueError:
        return DNS_RULE
    if getattr(a, "scope_id", None) is not None:
        return "a name server has no scope id (the '%' part): link-local servers are not taken"
    if a.is_unspecified:
        return "a name server is not the unspecified address (0.0.0.0, ::)"
    if a.is_multicast:
        return "a name server is a unicast address, not a multicast one"
    if a == IPv4Address("255.255.255.255"):
        return "a name server is a unicast address, not the limited broadcast 255.255.255.255"
    if a.is_link_local:
        return ("a name server is not link-local (169.254.0.0/16, fe80::/10): a link-local address needs its "
                "link, which resolv.conf inside a namespace cannot name")
    return None


def check_dns(where: str, dns: object) -> tuple[str, ...]:
    """``dns`` as a tuple of address texts: 0 to :data:`MAX_DNS` addresses, each :data:`DNS_RULE`, each once.

    Raises:
        ValidationError: not a list, an entry that breaks :data:`DNS_RULE`
            (naming ``dns[i]``), one listed twice, or more than three.
    """
    if isinstance(dns, (str, bytes, dict)) or not isinstance(dns, Iterable):
        raise ValidationError(where, "dns", "dns is a list of name server addresses, e.g. ['198.51.100.1']", dns)
    dns = list(dns)
    out: list[str] = []
    for i, d in enumerate(dns):
        problem = _dns_problem(d)
        if problem is not None:
            raise ValidationError(where, f"dns[{i}]", problem, d)
        text = str(ip_address(d))
        if text in out:
            raise ValidationError(where, f"dns[{i}]", f"each name server is listed once: {text} is dns[{out.index(text)}] "
                                  "too", d)
        out.append(text)
    if len(out) > MAX_DNS:
        raise ValidationError(where, "dns", f"at most {MAX_DNS} name servers (resolv.conf(5), MAXNS)", dns)
    return tuple(out)


def resolv_text(dns: Sequence[str] = ()) -> str:
    """``resolv.conf``: a ``nameserver`` line per server of ``dns``; without any, :data:`FAIL_FAST`."""
    if not dns:
        return FAIL_FAST
    return "".join(f"nameserver {d}\n" for d in dns)


def _addresses(objects: Sequence[object]) -> dict[str, list]:
    """``{netns: [address, ...]}``: each namespace's addresses (interfaces' ``ip``), in object order."""
    out: dict[str, list] = {}
    for o in objects:
        ns = getattr(o, "netns", None)
        if ns is None:
            continue
        if isinstance(o, VethPair):
            found = [o.address, o.address6]
        elif isinstance(o, Address):
            found = [o.address]
        else:
            continue
        out.setdefault(ns, []).extend(a.ip for a in found if a is not None)
    return out


def hosts_text(network: str, namespaces: Sequence[str], objects: Sequence[object]) -> str:
    """``hosts``: :data:`LOCALHOST`, then ``ADDRESS<TAB>NETNS NETNS.NETWORK`` per address of each namespace.

    ``namespaces`` in order; each one's IPv4 addresses first, then IPv6
    (a VethPair's ``address`` and ``address6``, the Address objects in it).
    """
    found = _addresses(objects)
    lines = [LOCALHOST]
    for ns in namespaces:
        addrs = found.get(ns, [])
        for a in [a for a in addrs if a.version == 4] + [a for a in addrs if a.version == 6]:
            lines.append(f"{a}\t{ns} {ns}.{network}\n")
    return "".join(lines)


RESERVED_HOSTS = ("localhost", "ip6-localhost", "ip6-loopback")
"""Names :data:`LOCALHOST` gives the loopback addresses: no container is named so."""


def check_names(network: str, namespaces: Sequence[str]) -> None:
    """Each namespace's two host names (``NETNS``, ``NETNS.NETWORK``) are its own, ignoring case (glibc's
    hosts(5) lookup compares names with ``strcasecmp``, as DNS does: RFC 4343), and none is a
    :data:`RESERVED_HOSTS` name.

    Raises:
        ValidationError: naming the container and both namespaces (``Web`` and ``web``; ``web.t`` in
            network ``t`` next to ``web``; ``localhost``).
    """
    owner: dict[str, str] = {}
    for ns in namespaces:
        if ns.lower() in RESERVED_HOSTS:
            raise ValidationError(f"Container {ns}", "netns", f"with names on, a container is not named {ns!r}: "
                                  "hosts lists it for the loopback address (give it another name, or names = "
                                  "false)", ns)
        for name in (ns, f"{ns}.{network}"):
            other = owner.get(name.lower())
            if other is not None and other != ns:
                raise ValidationError(f"Container {ns}", "netns", f"with names on, each container's host names "
                                      f"({ns}, {ns}.{network}) are its own, ignoring case (a hosts lookup ignores case): "
                                      f"{name!r} is also a name of {other} (rename one, or names = false)", ns)
            owner[name.lower()] = ns


def names_objects(network: str, namespaces: Sequence[str], objects: Sequence[object],
                  dns: Sequence[str] = ()) -> list[object]:
    """:class:`EtcNetns` and one :class:`Names` per namespace of ``namespaces`` (each lists them all).

    Raises:
        ValidationError: two namespaces sharing a host name, or a reserved one (:func:`check_names`).
    """
    if not namespaces:
        return []
    check_names(network, namespaces)
    hosts, resolv = hosts_text(network, namespaces, objects), resolv_text(dns)
    return [EtcNetns(), *(Names(ns, hosts, resolv) for ns in namespaces)]


def parse_tree(code: int, data: str) -> tuple[dict[str, str], frozenset[str]]:
    """The result of :data:`READ`: ``({file path: text}, {directory path})`` under ``/etc/netns``.

    Empty when ``/etc/netns`` does not exist (tar fails, or writes an empty archive).
    """
    files: dict[str, str] = {}
    dirs: set[str] = set()
    raw = data.encode("utf-8", errors="surrogateescape")
    if not raw.strip(b"\0"):
        return files, frozenset()
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for m in tar:
                path = "/etc/" + m.name.rstrip("/")
                if m.isdir():
                    dirs.add(path)
                elif m.isfile():
                    f = tar.extractfile(m)
                    files[path] = f.read().decode("utf-8", errors="replace") if f is not None else ""
    except tarfile.TarError:
        if code == 0:
            raise
    return files, frozenset(dirs)


def tagged_file_commands(files: dict[str, str], dirs: frozenset[str], tag_prefix: str) -> list[Command]:
    """``clean``'s removal of name files left without a state file: each ``/etc/netns/NS/{hosts,resolv.conf}``
    whose first line is ``# bridgenet:...``, then ``/etc/netns/NS`` when nothing else is in it.

    ``/etc/netns`` itself stays (whether bridgenet made it is known only from a state file).
    """
    cmds: list[Command] = []
    for d in sorted(dirs):
        if d.count("/") != 3 or not d.startswith(ETC_NETNS + "/"):
            continue
        inside = {p: t for p, t in files.items() if p.startswith(d + "/")}
        ours = [p for p in (f"{d}/hosts", f"{d}/resolv.conf") if inside.get(p, "").startswith("# " + tag_prefix)]
        if not ours:
            continue
        cmds.extend(remove(p, "clean") for p in ours)
        if set(inside) <= set(ours) and not any(x.startswith(d + "/") for x in dirs):
            cmds.append(rmdir(d, "clean"))
    return cmds
