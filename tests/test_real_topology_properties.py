"""Real tier: "the dry-run is the truth" for random small topologies beyond one bridge (issue 11).

Each example is a network file drawn valid by construction: 1-3 bridges
``tp0``.. (bridge ``i`` on 10.(30+i).0.0/24, the host's address .1 or none,
an optional MTU), 1-4 containers ``n0``.. (container ``j``'s address on
bridge ``i`` is 10.(30+i).0.(10+j); some on two bridges, some of those
routers with ``forward = true``; a default route via the bridge, via a
router, or none), at most one bare veth between two namespaces
(10.99.X.1/30 - .2/30), and static routes that are valid: only to a subnet
the namespace is not on, via a router's address on a subnet it is on.

The network goes up three ways, each in a brand-new sandbox: the printed
``up --dry-run`` commands run by ``sh -e``; ``bridgenet up``; ``bridgenet up
--batch``. All three must give the same state (``snap`` plus each
namespace's ``net.ipv4.ip_forward``, which ``snap`` does not read), and
then ``down`` (the printed ``down --dry-run`` for the first) must give back
the sandbox's snapshot from before, exactly.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from bridgenet import config
from bridgenet.sandbox import Sandbox
from bridgenet.topology import BridgeSpec, End, Interface, LinkSpec, Node, RouteSpec, topology
from helpers import bridgenet_cli, diff, snap

pytestmark = pytest.mark.real


def subnet(i: int) -> str:
    return f"10.{30 + i}.0.0/24"


def address(i: int, j: int) -> str:
    return f"10.{30 + i}.0.{10 + j}"


@st.composite
def topologies(draw: st.DrawFn) -> dict:
    """A network file's parsed data (keys of ``config.py``), valid by construction."""
    # Hypothesis tries the simplest draws first (the first of sampled_from, False, 0): these are
    # ordered so that the simplest example is already a campus (a router between an addressed
    # bridge and a plain switch, routes through it, a link), not one bare container.
    nb = draw(st.sampled_from([2, 3, 1]))
    addressed = [draw(st.booleans()) != (i == 0) for i in range(nb)]
    bridges = []
    for i in range(nb):
        b: dict = {"name": f"tp{i}"}
        if addressed[i]:
            b["address"] = f"10.{30 + i}.0.1/24"
        mtu = draw(st.sampled_from([None, 1400, 9000] if i == 0 else [1400, None, 9000]))
        if mtu is not None:
            b["mtu"] = mtu
        bridges.append(b)
    nc = draw(st.sampled_from([4, 3, 2, 1]))
    on: list[list[int]] = []  # the bridges of each container, in order
    forward: list[bool] = []
    for j in range(nc):
        two = nb >= 2 and draw(st.booleans()) != (j == 1)
        picked = draw(st.lists(st.integers(0, nb - 1), min_size=1 + two, max_size=1 + two, unique=True))
        on.append([(i + j) % nb for i in picked])
        forward.append(two and not draw(st.booleans()))
    routers = [j for j in range(nc) if forward[j]]
    containers = []
    for j in range(nc):
        c: dict = {"netns": f"n{j}"}
        itfs = []
        for i in on[j]:
            itf: dict = {"bridge": f"tp{i}"}
            # without the prefix length, the bridge's is taken (only when the bridge has an address)
            itf["address"] = address(i, j) if addressed[i] and draw(st.booleans()) else f"{address(i, j)}/24"
            if draw(st.integers(0, 4)) == 1:
                itf["mtu"] = 1300  # lower than any bridge's, on purpose
            itfs.append(itf)
        if len(itfs) == 1 and draw(st.booleans()):
            c.update(itfs[0])  # the one-interface shorthand
        else:
            c["interfaces"] = itfs
        if forward[j]:
            c["forward"] = True
        # a default route: via the host's address on one of its bridges (the default), via a router
        # on its first bridge, or none
        vias = [address(on[j][0], r) for r in routers if r != j and on[j][0] in on[r]]
        choices: list[object] = ([None] if any(addressed[i] for i in on[j]) else []) + [*vias, False]
        default = draw(st.sampled_from(choices))
        if default is not None:
            c["default_route"] = default
        # static routes: to a subnet it is not on, via a router's address on a subnet it is on
        routes, seen = [], set()
        for r in routers:
            if r == j:
                continue
            for k in on[r]:
                shared = [i for i in on[j] if i in on[r]]
                if k in on[j] or k in seen or not shared or draw(st.booleans()):
                    continue
                seen.add(k)
                routes.append({"to": subnet(k), "via": address(shared[0], r)})
        if routes:
            c["routes"] = routes
        containers.append(c)
    data: dict = {"name": "prop", "bridges": bridges, "containers": containers}
    if draw(st.booleans()):
        data["forward"] = False
    # the host's routes: to a bridge it has no address on, via a router on one it has
    host_routes = []
    for k in range(nb):
        if addressed[k]:
            continue
        vias = [address(i, r) for r in routers if k in on[r] for i in on[r] if addressed[i]]
        if vias and not draw(st.booleans()):
            host_routes.append({"to": subnet(k), "via": vias[0]})
    if host_routes:
        data["routes"] = host_routes
    if not draw(st.booleans()):
        names = [f"n{j}" for j in range(nc)] + ["lx"]  # lx: a namespace only on the link
        a, b = draw(st.lists(st.sampled_from(names), min_size=2, max_size=2, unique=True))
        x = draw(st.integers(0, 255))
        link: dict = {"ends": [{"netns": a, "name": "lk-a", "address": f"10.99.{x}.1/30"},
                               {"netns": b, "name": "lk-b", "address": f"10.99.{x}.2/30"}]}
        if draw(st.booleans()):
            link["mtu"] = 1400
        data["links"] = [link]
    return data


def toml(value: object, top: bool = True) -> str:
    """``value`` as TOML: the top table as ``key = value`` lines, everything below as inline values."""
    if top:
        return "".join(f"{k} = {toml(v, False)}\n" for k, v in value.items())  # type: ignore[union-attr]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, str)):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml(v, False) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml(v, False)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def in_python(data: dict):
    """The same network built with :func:`bridgenet.topology.topology`."""
    def node(c: dict) -> Node:
        c = dict(c)
        c["interfaces"] = [Interface(**i) for i in c.get("interfaces", [])]
        c["routes"] = [RouteSpec(**r) for r in c.get("routes", [])]
        return Node(**c)

    return topology(data["name"], bridges=[BridgeSpec(**b) for b in data["bridges"]],
                    containers=[node(c) for c in data["containers"]],
                    links=[LinkSpec(tuple(End(**e) for e in ln["ends"]), mtu=ln.get("mtu"))
                           for ln in data.get("links", [])],
                    routes=[RouteSpec(**r) for r in data.get("routes", [])], forward=data.get("forward", True))


def state(sb: Sandbox) -> dict:
    """``snap(sb)`` plus ``net.ipv4.ip_forward`` inside every namespace (a router's sysctl)."""
    s = snap(sb)
    s["ns_ip_forward"] = {
        ns: sb.run(["sysctl", "-n", "net.ipv4.ip_forward"], netns=ns, check=True).stdout.strip()
        for ns in s["netns"]}
    return s


def cli(sb: Sandbox, *argv: str) -> str:
    r = bridgenet_cli(sb, *argv)
    assert r.exit_code == 0, f"bridgenet {' '.join(argv)}: exit {r.exit_code}\n{r.stdout}{r.stderr}"
    return r.stdout


@settings(max_examples=4, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=topologies())
def test_the_dry_run_is_the_truth(data: dict) -> None:
    with tempfile.TemporaryDirectory(prefix="bridgenet-prop-") as tmp:
        path = Path(tmp) / "prop.toml"
        path.write_text(toml(data))
        note(path.read_text())
        assert config.load(path) == in_python(data)  # the file and the Python builder agree
        f = str(path)
        with Sandbox(upstream=True) as by_hand, Sandbox(upstream=True) as step, Sandbox(upstream=True) as batch:
            empty = state(by_hand)
            for other in (step, batch):
                assert state(other) == empty
            printed = cli(by_hand, "up", "--dry-run", "-f", f)
            note(printed)
            r = by_hand.run(["sh", "-e", "-c", printed], timeout=120)
            assert r.exit_code == 0, r.stderr
            want = state(by_hand)
            assert want != empty
            cli(step, "up", "-q", "-f", f)
            cli(batch, "up", "--batch", "-q", "-f", f)
            for sb in (step, batch):
                got = state(sb)
                assert got == want, diff(want, got)
            # what the printed commands built is the whole network: nothing left to plan
            plan = bridgenet_cli(by_hand, "plan", "--detailed-exitcode", "-f", f)
            assert plan.exit_code == 0, plan.stdout + plan.stderr
            r = by_hand.run(["sh", "-e", "-c", cli(by_hand, "down", "--dry-run", "-f", f)], timeout=120)
            assert r.exit_code == 0, r.stderr
            cli(step, "down", "-q", "-f", f)
            cli(batch, "down", "--batch", "-q", "-f", f)
            for sb in (by_hand, step, batch):
                after = state(sb)
                assert after == empty, diff(empty, after)
