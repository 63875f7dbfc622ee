"""Putting a fault's iptables rules in place and taking them out again, from live state.

Making a fault costs two shells of the sandbox host
(:mod:`~bridgenet.testing.faults_shell`), however many namespaces it spans:
one reads every namespace it involves (``ip -json netns list``, ``ip -json
addr show`` of the host and of each namespace, ``iptables-save`` and
``ip6tables-save -t filter`` of each that drops), the other runs an
``iptables-restore --noflush`` per namespace and family and reads the result
back, to record the exact rules (as iptables prints them) that undo it.
Healing is a read (with counters) and a run again. The rules themselves are
made in :mod:`~bridgenet.testing.faults_rules`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import FaultError, ValidationError
from . import faults_rules as rules
from . import faults_shell as shell
from .faults_rules import TAG_PREFIX, Drop, Fault
from .faults_shell import FaultCommand, Outcome

if TYPE_CHECKING:  # pragma: no cover
    from ..sandbox import Sandbox

NETNS_LIST = FaultCommand(None, ("ip", "-json", "netns", "list"))


def check_present(obj: str, names: list[str], listing: Outcome, outs: list[Outcome]) -> None:
    """Raise for the first of ``names`` whose read found no namespace (``ValidationError``, field
    ``netns``, listing what the sandbox has, from ``listing``) or failed (``FaultError``)."""
    for n, o in zip(names, outs):
        if not o.present:
            have = sorted(x["name"] for x in shell.loads(listing.out))
            raise ValidationError(obj, "netns", f"no network namespace {n!r} in the sandbox "
                                  f"(it has: {', '.join(have) or 'none'}; a network in another sandbox "
                                  "fixture needs factories.faults(sandbox=THAT_FIXTURE))")
        if o.rc:
            raise FaultError(f"{obj}: reading {n} failed (exit {o.rc})")


def make_rules(sandbox: Sandbox, kind: str, drops: dict[str, Drop], description: str,
               count: Callable[[Fault], int] | None = None) -> Fault:
    """Put in place what each namespace of ``drops`` drops; the :class:`Fault` that records it
    (``count`` reads its counters; default :func:`count_rules` in ``sandbox``).

    Raises:
        ValidationError: a namespace the sandbox does not have (nothing changed).
        FaultError: no peer has an address, or ``iptables-restore`` failed
            (what it had changed is undone again).
    """
    fid = rules.new_id()
    tag = TAG_PREFIX + fid
    receivers = list(drops)
    names = list(dict.fromkeys([*receivers, *(p for d in drops.values() for p in d.peers or ())]))
    reads = [NETNS_LIST, FaultCommand(None, ("ip", "-json", "addr", "show")),
             *(FaultCommand(n, ("ip", "-json", "addr", "show")) for n in names),
             *(rules.save_command(r, v) for r in receivers for v in (4, 6))]
    outs = shell.read(sandbox, reads)
    check_present(f"faults.{kind}", names, outs[0], outs[2:2 + len(names)])
    host = shell.loads(outs[1].out)
    links = {n: shell.loads(o.out) for n, o in zip(names, outs[2:2 + len(names)])}
    addresses = {n: rules.addresses_of(js) for n, js in links.items()}
    macs = {n: rules.macs_of(js) for n, js in links.items()}
    saved = dict(zip([(r, v) for r in receivers for v in (4, 6)], outs[2 + len(names):]))
    for (r, v), o in saved.items():
        if o.rc:
            raise FaultError(f"faults.{kind}: reading {rules.FAMILIES[v][0]} in {r} failed (exit {o.rc})")

    commands = []
    for r, d in drops.items():
        for v in (4, 6):
            specs = rules.rule_specs(d, addresses, tag, v, macs=macs,
                                     masquerade=rules.masquerade_sources(host, links[r]))
            if specs:
                commands.append(rules.restore_command(r, v, rules.apply_script(specs, saved[(r, v)].out)))
    if not commands:
        peers = sorted({p for d in drops.values() for p in d.peers or ()})
        raise FaultError(f"faults.{kind}: nothing to drop: {', '.join(peers)} have no address")
    changed = sorted({(c.netns, rules.version_of(c)) for c in commands})
    outs = shell.run(sandbox, [*commands, *(rules.save_command(ns, v) for ns, v in changed)])
    grudge = tuple((r, d.peers or ()) for r, d in drops.items())
    bad = [(c, o) for c, o in zip(commands, outs) if not o.ok]
    if bad:
        heal_rules(sandbox, [Fault(kind, fid, tag, commands, (), grudge, description)])
        c, o = bad[0]
        raise FaultError(f"faults.{kind}: {c.shell()}\nfailed (exit {o.rc}): {o.out.strip()}\n"
                         "(what it had changed is undone)")
    undo = []
    for (ns, v), o in zip(changed, outs[len(commands):]):
        mine = rules.parse_saved(o.out).tagged([tag])
        if mine:
            lines = [rules.delete_line(x.spec) for x in mine]
            undo.append(rules.restore_command(ns, v, "\n".join(["*filter", *lines, "COMMIT"]) + "\n"))
    return Fault(kind, fid, tag, commands, undo, grudge, description, (),
                 count or functools.partial(count_rules, sandbox))


def count_rules(sandbox: Sandbox, fault: Fault) -> int:
    """The packets ``fault``'s rules dropped (``iptables-save -c`` of each namespace and family it changed)."""
    outs = shell.read(sandbox, [rules.save_command(ns, v, counters=True) for ns, v in _touched(fault)])
    return rules.counted((o.out for o in outs if o.ok), fault.tag)


def _touched(fault: Fault) -> list[tuple[str, int]]:
    """(namespace, IP version) of every table ``fault`` changed."""
    made = [(c.netns, rules.version_of(c)) for c in fault.commands if c.netns is not None]
    return list(dict.fromkeys(made)) or [(ns, v) for ns in fault.netns for v in (4, 6)]  # type: ignore[misc]


def heal_rules(sandbox: Sandbox, faults: list[Fault], final: dict[str, int] | None = None) -> list[str]:
    """Remove the rules of ``faults`` that live state still has (the chain with its last rule).

    A namespace that is gone is skipped: its rules went with it. ``final``,
    when given, gets each fault's packet count as its rules go (tag: packets).

    Returns:
        what failed, one line each (empty when all is undone).
    """
    tags: dict[tuple[str, int], set[str]] = {}
    for f in faults:
        for key in _touched(f):
            tags.setdefault(key, set()).add(f.tag)
    keys = list(tags)
    outs = shell.read(sandbox, [rules.save_command(ns, v, counters=True) for ns, v in keys])
    failed: list[str] = []
    commands = []
    for (ns, v), o in zip(keys, outs):
        if not o.present:
            continue
        if o.rc:
            failed.append(f"{ns}: {rules.FAMILIES[v][0]} failed (exit {o.rc})")
            continue
        saved = rules.parse_saved(o.out)
        if final is not None:
            for r in saved.tagged(tags[(ns, v)]):
                final[r.comment] = final.get(r.comment, 0) + r.packets  # type: ignore[index]
        text = rules.heal_script(saved, tags[(ns, v)])
        if text:
            commands.append(rules.restore_command(ns, v, text))
    for c, o in zip(commands, shell.run(sandbox, commands)):
        if o.present and o.rc:
            failed.append(f"{c.shell()}\nfailed (exit {o.rc}): {o.out.strip()}")
    return failed
