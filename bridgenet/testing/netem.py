"""Delay, jitter, reordering, duplication, corruption and loss through ``tc netem`` (tc-netem(8)).

``tc qdisc add dev LINK root netem delay 100ms 10ms reorder 25% duplicate 1%
corrupt 0.1% loss random 1%`` on each link of a namespace but ``lo``: a qdisc
shapes what a link *sends*, so everything the namespace sends is delayed (a
round trip from it or to it takes the delay once more). Undone with ``tc
qdisc del dev LINK root``.

Many kernels have netem (the ``sch_netem`` module); the one bridgenet is
developed on does not (``Specified qdisc kind is unknown``, KERNEL-NOTES).
The commands are made and checked everywhere; where the kernel refuses,
:class:`~bridgenet.errors.NetemUnavailableError` says so, after what was
half made is undone. Loss without netem: :meth:`Faults.loss` (iptables).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

from ..errors import FaultError, NetemUnavailableError, ValidationError
from . import faults_rules as rules
from . import faults_shell as shell
from .faults_apply import NETNS_LIST, check_present
from .faults_links import _time
from .faults_rules import TAG_PREFIX, Fault
from .faults_shell import FaultCommand, Outcome

if TYPE_CHECKING:  # pragma: no cover
    from ..sandbox import Sandbox

PERCENT_FIELDS = ("reorder", "duplicate", "corrupt", "loss")


@attrs.frozen
class NetemArgs:
    """What netem does to the packets a namespace sends, checked (units of tc(8), tc-netem(8)).

    Attributes:
        delay: how long each packet waits, a tc time (``"100ms"``) or a number of seconds; None: none.
        jitter: how much the delay varies (needs ``delay``), same units.
        reorder: percent of packets sent at once, ahead of the delayed ones (needs ``delay``).
        duplicate, corrupt, loss: percent of packets sent twice, with a flipped bit, dropped.
    """

    delay: str | None = None
    jitter: str | None = None
    reorder: str | None = None
    duplicate: str | None = None
    corrupt: str | None = None
    loss: str | None = None

    def argv(self) -> list[str]:
        """The qdisc part: ``["netem", "delay", "100ms", "10ms", "reorder", "25%", ...]``."""
        out = ["netem"]
        if self.delay:
            out += ["delay", self.delay, *([self.jitter] if self.jitter else [])]
        if self.reorder:
            out += ["reorder", self.reorder]
        if self.duplicate:
            out += ["duplicate", self.duplicate]
        if self.corrupt:
            out += ["corrupt", self.corrupt]
        if self.loss:
            out += ["loss", "random", self.loss]
        return out

    def describe(self) -> str:
        return " ".join(self.argv()[1:])


def _percent(field: str, value: object) -> str | None:
    if value is None:
        return None
    number: object = value
    if isinstance(value, str) and value.endswith("%"):
        try:
            number = float(value[:-1])
        except ValueError:
            number = value
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not 0 <= number <= 100:
        raise ValidationError("faults.netem", field, "a percentage of packets, a number from 0 to 100 "
                              "(or a string such as '25%')", value)
    return f"{number:g}%"


def netem_args(*, delay: str | float | None = None, jitter: str | float | None = None,
               reorder: object = None, duplicate: object = None, corrupt: object = None,
               loss: object = None) -> NetemArgs:
    """Check netem's values; the first bad one raises, naming its field.

    Raises:
        ValidationError: a time not in tc's syntax or not positive, a
            percentage outside 0..100, ``jitter`` or ``reorder`` without
            ``delay`` (tc-netem(8): reordering needs a delay), or nothing asked for.
    """
    def time(field: str, value: object) -> str | None:
        if value is None:
            return None
        try:
            return _time(value, field)  # type: ignore[arg-type]
        except ValueError as e:
            raise ValidationError("faults.netem", field, str(e).split(": ", 1)[1]) from None

    args = NetemArgs(time("delay", delay), time("jitter", jitter), *(_percent(f, v) for f, v in
                     zip(PERCENT_FIELDS, (reorder, duplicate, corrupt, loss))))
    if args.jitter and not args.delay:
        raise ValidationError("faults.netem", "jitter", "a jitter varies a delay: give delay too", jitter)
    if args.reorder and not args.delay:
        raise ValidationError("faults.netem", "reorder", "reordering sends some packets ahead of delayed "
                              "ones: give delay too (tc-netem(8))", reorder)
    if args.argv() == ["netem"]:
        raise ValidationError("faults.netem", "delay", "give at least one of delay, reorder, duplicate, "
                              "corrupt, loss")
    return args


def add_command(netns: str, link: str, args: NetemArgs) -> FaultCommand:
    """``ip netns exec NETNS tc qdisc add dev LINK root netem ...``."""
    return FaultCommand(netns, ("tc", "qdisc", "add", "dev", link, "root", *args.argv()))


def del_command(netns: str, link: str) -> FaultCommand:
    """``ip netns exec NETNS tc qdisc del dev LINK root`` (back to the link's default qdisc)."""
    return FaultCommand(netns, ("tc", "qdisc", "del", "dev", link, "root"))


def probe_commands(netns: str, link: str) -> list[FaultCommand]:
    """A bare ``netem`` on ``link`` and its removal: a kernel that has netem accepts it (no parameter to
    refuse), so its failure on a link with its default root qdisc means netem is missing."""
    return [FaultCommand(netns, ("tc", "qdisc", "add", "dev", link, "root", "netem")), del_command(netns, link)]


def links_command(netns: str) -> FaultCommand:
    return FaultCommand(netns, ("ip", "-json", "link", "show"))


def qdiscs_command(netns: str, *, stats: bool = False) -> FaultCommand:
    return FaultCommand(netns, ("tc", *(("-s",) if stats else ()), "-json", "qdisc", "show"))


def own_links(link_json: Sequence[Mapping]) -> dict[str, int]:
    """``{ifname: ifindex}`` of a namespace's links but loopback (``ip -json link show``)."""
    return {link["ifname"]: link["ifindex"] for link in link_json if link.get("link_type") != "loopback"}


def root_qdiscs(qdisc_json: Sequence[Mapping]) -> dict[str, Mapping]:
    """``{dev: qdisc}`` of the root qdiscs in ``tc -json qdisc show`` output."""
    return {q["dev"]: q for q in qdisc_json if q.get("root")}


def is_default(qdisc: Mapping | None) -> bool:
    """A root qdisc the kernel gave the link (handle ``0:``), not one somebody added."""
    return qdisc is None or qdisc.get("handle") in ("0:", None)


# --- in the sandbox ------------------------------------------------------------------------------


def make_netem(sandbox: Sandbox, netns: str, args: NetemArgs,
               on_unavailable: Callable[[NetemUnavailableError], None] | None = None) -> Fault:
    """Put netem with ``args`` on every link of ``netns`` but ``lo``; the :class:`Fault` recording it.

    Raises:
        ValidationError: an unknown namespace (nothing changed).
        NetemUnavailableError: the kernel has no netem; ``on_unavailable`` is called with it first.
        FaultError: no link but ``lo``, a link with a root qdisc of its own, or tc failed otherwise.
    """
    rules.check_name("faults.netem", "netns", netns)
    outs = shell.read(sandbox, [NETNS_LIST, links_command(netns), qdiscs_command(netns)])
    check_present("faults.netem", [netns], outs[0], outs[1:2])
    links = own_links(shell.loads(outs[1].out))
    roots = root_qdiscs(shell.loads(outs[2].out))
    if not links:
        raise FaultError(f"faults.netem: {netns} has no link but lo: nothing to put netem on")
    for link in links:
        if not is_default(roots.get(link)):
            q = roots[link]
            raise FaultError(f"faults.netem: {link} in {netns} already has the root qdisc {q.get('kind')} "
                             f"(handle {q.get('handle')}): netem would replace it; remove it first "
                             "(e.g. clear_rate_limit)")
    commands = [add_command(netns, link, args) for link in links]
    bad = [(c, o) for c, o in zip(commands, shell.run(sandbox, commands)) if not o.ok]
    if bad:
        _failed(sandbox, netns, links, bad[0][0].argv[4], bad[0][1], on_unavailable)
    fid = rules.new_id()
    return Fault("netem", fid, TAG_PREFIX + fid, commands, [del_command(netns, link) for link in links],
                 ((netns, ()),), f"netem {args.describe()} on {netns}",
                 tuple((netns, link, i) for link, i in links.items()), functools.partial(count_netem, sandbox))


def _failed(sandbox: Sandbox, netns: str, links: dict[str, int], link: str, out: Outcome,
            on_unavailable: Callable[[NetemUnavailableError], None] | None) -> None:
    """Undo the netem qdiscs that were made, classify the failure from live state, raise."""
    state = shell.read(sandbox, [links_command(netns), qdiscs_command(netns)])
    now_links = own_links(shell.loads(state[0].out))
    roots = root_qdiscs(shell.loads(state[1].out))
    shell.run(sandbox, [del_command(netns, x) for x in links
                        if roots.get(x, {}).get("kind") == "netem" and not is_default(roots.get(x))])
    if now_links.get(link) == links[link] and is_default(roots.get(link)):
        add, _ = shell.run(sandbox, probe_commands(netns, link))
        if add.present and not add.ok:
            err = NetemUnavailableError(netns, link, out.out)
            if on_unavailable is not None:
                on_unavailable(err)
            raise err
    raise FaultError(f"faults.netem: tc qdisc add dev {link} root netem ... in {netns} failed "
                     f"(exit {out.rc}): {out.out.strip()} (what it had changed is undone)")


def _state(sandbox: Sandbox, fault: Fault, *, stats: bool = False) -> dict[str, tuple[dict[str, int], dict]]:
    spaces = sorted({ns for ns, _, _ in fault.links})
    outs = shell.read(sandbox, [c for ns in spaces for c in (links_command(ns), qdiscs_command(ns, stats=stats))])
    state = {}
    for i, ns in enumerate(spaces):
        lk, qd = outs[2 * i], outs[2 * i + 1]
        if lk.ok and qd.ok:
            state[ns] = (own_links(shell.loads(lk.out)), root_qdiscs(shell.loads(qd.out)))
    return state


def _mine(fault: Fault, state: dict[str, tuple[dict[str, int], dict]]) -> Iterator[tuple[str, str, Mapping]]:
    """The netem qdiscs of ``fault`` still in place (same link, same ifindex): (netns, link, qdisc)."""
    for ns, link, index in fault.links:
        if ns in state:
            links, roots = state[ns]
            q = roots.get(link)
            if links.get(link) == index and q and q.get("kind") == "netem" and not is_default(q):
                yield ns, link, q


def count_netem(sandbox: Sandbox, fault: Fault) -> int:
    """The ``drops`` of ``fault``'s netem qdiscs (``tc -s -json qdisc show``)."""
    return sum(int(q.get("drops", 0)) for _, _, q in _mine(fault, _state(sandbox, fault, stats=True)))


def heal_netem(sandbox: Sandbox, faults: list[Fault]) -> list[str]:
    """Remove the netem qdiscs of ``faults`` still in place; what failed, one line each."""
    commands = [del_command(ns, link) for f in faults for ns, link, _ in _mine(f, _state(sandbox, f))]
    return [f"{c.shell()}\nfailed (exit {o.rc}): {o.out.strip()}"
            for c, o in zip(commands, shell.run(sandbox, commands)) if o.present and o.rc]
