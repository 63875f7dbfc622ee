"""Fast tier: every shortcut taken for speed gives what the long way gives (values, errors, order)."""

import gc
import random
import shlex
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bridgenet
from bridgenet import Address, Bridge, Container, Namespace, NatRule, Network, Route, VethPair, bridge_network
from bridgenet import batch, batchlines, batchplan, ordering, rules
from bridgenet import jobs as jobs_mod
from bridgenet.cli import main
from bridgenet.commands import Command, LinkInNetns, LinkMaster, LinkPresent, LinkUp, NetnsPresent, shell_join
from bridgenet.firewall import FilterChain, Isolation
from bridgenet.model import ForwardRule, Sysctl

words = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=" \t\r\n\v\f\0#'\"\\ab-_.=/:@%+,$é", max_size=6),
    st.from_regex(r"[A-Za-z0-9_.@%+=:,/-]{0,10}", fullmatch=True),
)


# --- rendering: up_commands without steps is the steps' up -------------------------------


def _with_effects(commands):
    return [(c, c.effect) for c in commands]


def _networks():
    cs = [Container(f"n{i}", f"10.7.0.{i + 2}") for i in range(4)] + [Container("q", "10.7.0.77", veth="vq", peer="pq")]
    for kw in ({}, {"tag": False}, {"lesson_form": True}, {"default_routes": False}, {"isolate": False}):
        yield bridge_network("demo", cs, bridge="brx", gateway="10.7.0.1/24", **kw)
    yield bridgenet.tutorial()
    objs = [Bridge("brA"), Namespace("x"), Namespace("y"), VethPair("va", "ea", "x", "brA", "10.1.0.2/24"),
            VethPair("vh", "vh2"), VethPair("vn", "en", "x"), VethPair("vy", "ey", "y", "brA", "10.1.0.3/24"),
            Address("brA", "10.1.0.1/24"), Address("en", "10.9.0.1/30", netns="x"),
            Route("x", "10.1.0.1"), Route("x", "10.9.0.2", dst="10.50.0.0/16"), Route("y", IPv4Address("10.1.0.1")),
            Sysctl("net.ipv4.ip_forward", 1), NatRule("10.1.0.0/24", not_out_interface="brA"), ForwardRule("brA")]
    for tag in (False, True):
        for move in (False, True):
            yield Network("hand", objs, tag=tag, move_peers=move)


@pytest.mark.parametrize("fast", [False, True])
def test_up_commands_are_the_steps_up_with_their_effects(fast):
    for net in _networks():
        assert _with_effects(net.up_commands(fast=fast)) == _with_effects(
            [c for s in net.steps(fast=fast) for c in s.up])


def test_a_subclass_that_renders_otherwise_is_rendered_by_its_steps():
    @attrs.frozen
    class LoudNamespace(Namespace):
        def steps(self, ctx):
            return [attrs.evolve(s, up=(*s.up, Command("echo", (self.name,)))) for s in super().steps(ctx)]

    net = Network("sub", [LoudNamespace("x")])
    assert [c.shell() for c in net.up_commands()] == ["ip netns add x", "echo x"]


# --- names and addresses ----------------------------------------------------------------


names = st.one_of(
    words,
    st.sampled_from([".", "..", "lo", "all", "default", "m", "mt", "mtu", "mtu1", "addr", "v", "-x", "x" * 15,
                     "x" * 16, "é" * 7, "é" * 8, "x" * 255, "x" * 256, "a%d"]),
    st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True),
)


@settings(max_examples=1000)
@given(name=names)
def test_name_rules_give_what_the_full_rules_give(name):
    assert rules.ifname_problem(name) == rules._ifname_rules(name)
    assert rules.netns_problem(name) == rules._netns_rules(name)


octet = st.sampled_from(["0", "00", "01", "1", "9", "10", "99", "100", "199", "255", "256", "999", "1000", "",
                         "+1", " 1", "١"])
prefix = st.sampled_from(["", "/", "/0", "/00", "/8", "/08", "/16", "/24", "/024", "/31", "/32", "/33", "/99",
                          "/255.255.0.0", "/0.0.255.255", "/24 ", "/2a"])


@settings(max_examples=1000)
@given(parts=st.lists(octet, min_size=3, max_size=5), tail=prefix)
def test_interface_text_reads_as_ipaddress_reads_it(parts, tail):
    text = ".".join(parts) + tail
    try:
        want = IPv4Interface(text)
    except ValueError:
        want = None
    got = rules.to_interface(text)
    if want is None or "/" not in text:
        assert got == text
        return
    assert type(got) is IPv4Interface and got == want and str(got) == str(want)
    assert got.network == want.network and got.network.broadcast_address == want.network.broadcast_address
    assert hash(got) == hash(want)


def test_address_ranges_are_those_of_ipaddress():
    for first in range(256):
        for rest in (0, 1, 0x123456, 0xFFFFFF):
            n = first << 24 | rest
            a = IPv4Address(n)
            if a.is_loopback:
                want = "loopback"
            elif a.is_multicast:
                want = "multicast"
            elif a.is_unspecified or a in IPv4Network("0.0.0.0/8"):
                want = "0.0.0.0/8"
            elif a.is_reserved:
                want = "reserved"
            else:
                want = None
            problem = rules._address_problem(a)
            assert (problem is None) == (want is None), a
            if want:
                assert want in problem
            assert rules._address_problem(IPv4Interface((n, 24))) == problem


# --- lines ------------------------------------------------------------------------------


@settings(max_examples=1000)
@given(argv=st.lists(words, max_size=6))
def test_shell_join_is_shlex_join(argv):
    assert shell_join(argv) == shlex.join(argv)


def _outcome(f, *args):
    try:
        return f(*args)
    except rules.ValidationError as e:
        return ("error", str(e))


@settings(max_examples=1000)
@given(args=st.lists(words, max_size=6))
def test_ip_batch_line_is_the_word_by_word_line(args):
    c = Command("ip", args)
    assert _outcome(batch.ip_batch_line, c) == _outcome(batchlines._quoted_line, c)


@settings(max_examples=1000)
@given(lines=st.lists(st.lists(words, max_size=4), min_size=1, max_size=4))
def test_a_batch_file_is_its_lines(lines):
    cmds = [Command("ip", args) for args in lines]
    assert _outcome(batchplan._batch_text, cmds) == _outcome(lambda: "".join(batch.ip_batch_line(c) + "\n" for c in cmds))
    # and in a plan (host and namespaces): each batch file is its commands' lines, or the first bad one is refused
    cmds += [Command("ip", args, netns=f"n{i % 2}") for i, args in enumerate(lines)]
    want = _outcome(lambda: [(("ip", "-batch", "-"), "".join(batch.ip_batch_line(c) + "\n" for c in cmds[:len(lines)]))]
                    + [(("ip", "-n", ns, "-batch", "-"), "".join(batch.ip_batch_line(c) + "\n" for c in cmds
                                                                  if c.netns == ns))
                       for ns in dict.fromkeys(c.netns for c in cmds[len(lines):])])
    assert _outcome(lambda: [(inv.argv, inv.input) for inv in batch.plan(cmds)]) == want


# --- parallel jobs ---------------------------------------------------------------------

_spaces = [f"n{i}" for i in range(10)]
_links = ["a", "b", "c", "d", "e"]
host_effects = st.one_of(
    st.builds(NetnsPresent, st.sampled_from(_spaces)),
    st.builds(LinkPresent, st.sampled_from(_links), st.just("veth"), st.one_of(st.none(), st.sampled_from(_spaces)),
              st.one_of(st.none(), st.sampled_from(_links)), st.one_of(st.none(), st.sampled_from(_spaces))),
    st.builds(LinkInNetns, st.sampled_from(_links), st.sampled_from(_spaces)),
    st.builds(LinkMaster, st.sampled_from(_links), st.sampled_from(["br0", None])),
    st.builds(LinkUp, st.sampled_from(_links + ["br0"])),
    st.builds(LinkUp, st.sampled_from(["lo"]), st.sampled_from(_spaces)),
    st.none(),
)
one_command = st.one_of(
    st.builds(lambda e: Command("ip", ("link", "set", "x"), None, "k", e), host_effects),
    st.builds(lambda ns: Command("ip", ("link", "set", "dev", "lo", "up"), ns, "k"), st.sampled_from(_spaces)),
    st.builds(lambda e: Command("sysctl", ("-w", "x=1"), None, "k", e), st.none()),
)


@settings(max_examples=1000)
@given(cmds=st.lists(one_command, max_size=40), jobs=st.integers(min_value=1, max_value=3))
def test_jobs_split_as_the_union_find_splits(cmds, jobs):
    want = jobs_mod._partition(cmds, jobs) if jobs >= 2 else None
    assert jobs_mod.partition(cmds, jobs) == want


def test_jobs_of_a_large_network_split_as_the_union_find_splits():
    for net in [_many(30), _many(30, lesson_form=True)]:
        cmds = net.up_commands(fast=True)
        assert jobs_mod._partition_apart(cmds, 2) == jobs_mod._partition(cmds, 2) is not None
    cmds = _many(30, lesson_form=True).up_commands()  # peers moved: the moves tie a link to a namespace
    assert jobs_mod.partition(cmds, 3) == jobs_mod._partition(cmds, 3)


def test_a_link_tied_to_a_namespace_by_a_later_command_follows_it_into_its_job():
    spaces = [Command("ip", ("link", "set", "dev", "lo", "up"), f"n{i}", "k") for i in range(9)]
    pair = Command("ip", ("link", "add", "a", "type", "veth", "peer", "name", "b"), None, "k",
                   LinkPresent("a", "veth", None, "b", None))  # both ends in the host, a namespace's later
    move = Command("ip", ("link", "set", "a", "netns", "n3"), None, "k", LinkInNetns("a", "n3"))
    up = Command("ip", ("link", "set", "dev", "b", "up"), None, "k", LinkUp("b"))
    job_of, host_job = jobs_mod.partition([*spaces, pair, move, up], 2)
    assert host_job[11] == job_of["n3"]
    assert (job_of, host_job) == jobs_mod._partition([*spaces, pair, move, up], 2)


def _many(n, **kw):
    return bridge_network("many", [Container(f"c{i}", f"10.201.0.{10 + i}") for i in range(n)], **kw)


# --- order ------------------------------------------------------------------------------


def _reference_order(objs):
    """The smallest-index-first topological sort, by the dependencies' definition (no shortcut)."""
    deps = []
    for i, o in enumerate(objs):
        d = set()
        for j, p in enumerate(objs):
            if isinstance(p, Namespace) and getattr(o, "netns", None) == p.name:
                d.add(j)
            if isinstance(p, Bridge) and p.name in (getattr(o, "master", None), getattr(o, "bridge", None)):
                d.add(j)
            if isinstance(o, Address) and ((isinstance(p, Bridge) and o.netns is None and p.name == o.dev) or (
                    isinstance(p, VethPair) and ((o.netns is None and p.name == o.dev) or
                                                 (o.netns == p.netns and p.peer == o.dev)))):
                d.add(j)
            if isinstance(o, Route) and isinstance(p, (VethPair, Address)) and p.address is not None \
                    and p.netns == o.netns and o.via in p.address.network:
                d.add(j)
            if isinstance(o, (ForwardRule, Isolation)) and isinstance(p, FilterChain) and p.netns == o.netns:
                d.add(j)
        d.discard(i)
        deps.append(d)
    done: list[int] = []
    while len(done) < len(objs):
        i = min(i for i in range(len(objs)) if i not in done and deps[i] <= set(done))
        done.append(i)
    return tuple(objs[i] for i in done)


@pytest.mark.parametrize("seed", range(12))
def test_objects_are_ordered_as_the_full_sort_orders_them(seed):
    objs = list(next(iter(_networks())).objects) + [Namespace("z"), VethPair("vz", "ez", "z", "brx", "10.7.0.90/24"),
                                                    Route("z", "10.7.0.1")]
    random.Random(seed).shuffle(objs)
    net = Network("order", objs)
    assert net.ordered == _reference_order(ordering.with_chains(tuple(objs)))


# --- the CLI ----------------------------------------------------------------------------


def test_a_dry_run_leaves_the_garbage_collector_as_it_found_it(capsys):
    assert gc.isenabled()
    assert main(["up", "--dry-run"]) == 0
    assert gc.isenabled()
    gc.disable()
    try:
        assert main(["up", "--dry-run", "--batch"]) == 0
        assert not gc.isenabled()
    finally:
        gc.enable()
