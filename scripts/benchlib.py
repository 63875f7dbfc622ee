"""Helpers of ``scripts/bench``: the network file, processes in a sandbox, state dumps, the children.

Nothing here changes a network by itself: every real command goes through
``Sandbox.popen`` (``nsenter`` into a throwaway sandbox, refused by
bridgenet's guard when the sandbox is not live and isolated).

Run as a script it is one of the bench's children::

    python benchlib.py pyroute2 N up|down   # inside a sandbox: the pyroute2 variant
    python benchlib.py dry-run N            # anywhere: N containers' batch script to stdout
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from ipaddress import IPv4Address

import attrs

SUBNET = "10.200.0.0/16"
GATEWAY = "10.200.0.1/16"
BASE = int(IPv4Address("10.200.0.0"))
NAT_RULE = ("-s", SUBNET, "!", "-o", "br0", "-j", "MASQUERADE")
"""The NAT rule of every variant (bridgenet's default: not for traffic staying on br0)."""
PER_BRIDGE = 1000
"""Containers per bridge in the dry-run network of more than that: a bridge takes at most 1023 ports."""


def address(i: int) -> str:
    """Container i's address: 10.200.0.0 + 1 + i (c1 is 10.200.0.2; the gateway is .1)."""
    return str(IPv4Address(BASE + 1 + i))


def network_toml(n: int) -> str:
    """The bench's network as a network file (README "Command line"): br0, c1..cN, h1..hN, eth0, untagged."""
    lines = ['name = "bench"', 'bridge = "br0"', f'gateway = "{GATEWAY}"', "tag = false", ""]
    for i in range(1, n + 1):
        lines += ["[[containers]]", f'netns = "c{i}"', f'address = "{address(i)}"', f'veth = "h{i}"',
                  'peer = "eth0"', ""]
    return "\n".join(lines)


# --- processes inside a sandbox ------------------------------------------------------------


@attrs.frozen
class Done:
    """A finished process: exit code, output (text) and wall time in seconds (spawn to exit)."""

    argv: tuple[str, ...]
    code: int
    out: str
    err: str
    seconds: float

    def check(self, what: str) -> Done:
        if self.code != 0:
            raise SystemExit(f"bench: {what} failed (exit {self.code}): {' '.join(self.argv)}\n"
                             f"{self.err.strip()[-2000:]}")
        return self


def run_in(sb, argv, *, env: dict | None = None, input: str | None = None) -> Done:  # noqa: ANN001
    """Run ``argv`` in the sandbox host (``nsenter``, ≈2 ms of it in the figure) and time it."""
    argv = tuple(str(a) for a in argv)
    t0 = time.perf_counter()
    p = sb.popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    out, err = p.communicate(input)
    return Done(argv, p.returncode, out, err, time.perf_counter() - t0)


# --- what a network is, for comparison -------------------------------------------------------

CARRIER_FLAGS = {"LOWER_UP", "NO-CARRIER", "DORMANT", "M-DOWN"}
"""Link flags the kernel derives from carrier (operstate-ish): not configuration."""
BRIDGE_KEYS = ("stp_state", "forward_delay", "ageing_time", "vlan_filtering", "mcast_snooping")
_MARK = "@@bench-dump"

DUMP_SCRIPT = f"""
d=/run/.bench-dump; rm -rf $d; mkdir -p $d; printf 'link show\\naddr show\\nroute show\\n' > $d/cmds
echo '{_MARK} host'; ip -d -json -batch $d/cmds
echo '{_MARK} netns'; ip -json netns list
echo '{_MARK} ip_forward'; cat /proc/sys/net/ipv4/ip_forward
echo '{_MARK} iptables'; iptables-save
ls /run/netns | xargs -r -n 50 -P "$(nproc)" sh -c \\
  'for ns; do echo "{_MARK} ns $ns"; nsenter --net=/run/netns/$ns ip -d -json -batch '$d'/cmds; done > '$d'/out.$$' sh
cat $d/out.* 2>/dev/null; rm -rf $d
"""
"""One shell: the host's links, addresses and routes, the namespace list, ip_forward, iptables-save, then
each namespace's, in parallel shells (``nsenter --net``: ≈2 ms each whatever N, where ``ip -n``
copies the mount table)."""


def _docs(text: str) -> list:
    dec, out, i = json.JSONDecoder(), [], 0
    while i < len(text):
        while i < len(text) and text[i].isspace():
            i += 1
        if i < len(text):
            doc, i = dec.raw_decode(text, i)
            out.append(doc)
    return out


def _link(item: dict) -> dict:
    info = item.get("linkinfo") or {}
    d = {
        "kind": info.get("info_kind"), "port_of": info.get("info_slave_kind"), "master": item.get("master"),
        "flags": sorted(set(item.get("flags", [])) - CARRIER_FLAGS), "mtu": item.get("mtu"),
        "group": item.get("group"), "alias": item.get("ifalias"), "addrgenmode": item.get("inet6_addr_gen_mode"),
        "inet": sorted(f"{a['local']}/{a['prefixlen']}" + (f" brd {a['broadcast']}" if a.get("broadcast") else "")
                       for a in item.get("addr_info", []) if a.get("family") == "inet"),
    }
    if info.get("info_kind") == "bridge":
        data = info.get("info_data") or {}
        d["bridge"] = {k: data.get(k) for k in BRIDGE_KEYS}
    return d


def _routes(doc: list[dict]) -> list[str]:
    out = []
    for r in doc:
        r = dict(r, flags=[f for f in r.get("flags", []) if f != "linkdown"])  # carrier, not configuration
        out.append(json.dumps(r, sort_keys=True))
    return sorted(out)


def _iptables(save: str, tables=("nat", "filter")) -> dict[str, list[str]]:
    """Rules, user chains and non-ACCEPT policies of ``tables``, without counters (an empty table = none)."""
    out: dict[str, list[str]] = {}
    table = ""
    for line in save.splitlines():
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            table = line[1:]
        elif table in tables:
            if line.startswith(":"):
                name, policy = line[1:].split()[:2]
                if policy != "ACCEPT":
                    out.setdefault(table, []).append(f":{name} {policy}")
            else:
                out.setdefault(table, []).append(line)
    return out


def dump(sb) -> dict:  # noqa: ANN001
    """The normalized network of the sandbox host and every namespace in it (see DUMP_SCRIPT).

    Returns ``{"host": SPACE, "netns": {NAME: SPACE}, "ip_forward": "1", "iptables": {TABLE: [LINE]}}``,
    SPACE = ``{"links": {IFNAME: {...}}, "routes": [...]}``; a link's ``peer`` is ``SPACE/IFNAME`` of
    its veth peer (``host`` for the sandbox host). Indexes, MACs, counters, operstate and carrier
    flags are left out (a bridge reads UNKNOWN for about a second after its last port comes up).
    """
    r = run_in(sb, ["sh", "-s"], input=DUMP_SCRIPT).check("reading the network")
    parts: dict[str, str] = {}
    key = None
    for line in r.out.splitlines(keepends=True):
        if line.startswith(_MARK + " "):
            key = line[len(_MARK) + 1:].strip()
            parts[key] = ""
        elif key is not None:
            parts[key] += line
    nsid = {d["id"]: d["name"] for doc in _docs(parts.get("netns", "")) for d in doc or [] if "id" in d}
    raw = {"host": _docs(parts.get("host", ""))}
    raw.update({k[3:]: _docs(v) for k, v in parts.items() if k.startswith("ns ")})
    index = {space: {it["ifindex"]: it["ifname"] for it in docs[0]} for space, docs in raw.items() if docs}
    host_links = {it["ifindex"]: it for it in (raw["host"] or [[]])[0]}
    spaces: dict[str, dict] = {}
    for space, docs in raw.items():
        links_doc, addr_doc, routes_doc = (docs + [[], [], []])[:3]
        addrs = {it.get("ifname"): it.get("addr_info", []) for it in addr_doc}
        links = {}
        for it in links_doc:
            link = _link(dict(it, addr_info=addrs.get(it["ifname"], [])))
            if it.get("link"):
                link["peer"] = f"{space}/{it['link']}"
            elif "link_netnsid" in it and space == "host":
                ns = nsid.get(it["link_netnsid"], f"nsid {it['link_netnsid']}")
                link["peer"] = f"{ns}/{index.get(ns, {}).get(it.get('link_index'), '?')}"
            elif "link_netnsid" in it:
                host = host_links.get(it.get("link_index"))
                ok = host is not None and nsid.get(host.get("link_netnsid")) == space
                link["peer"] = f"host/{host['ifname']}" if ok else "another namespace"
            links[it["ifname"]] = link
        spaces[space] = {"links": links, "routes": _routes(routes_doc)}
    return {"host": spaces.pop("host", {}), "netns": spaces, "ip_forward": parts.get("ip_forward", "").strip(),
            "iptables": _iptables(parts.get("iptables", ""))}


def differences(a: object, b: object, la: str, lb: str, path: str = "") -> list[tuple[str, str]]:
    """Where ``a`` (built by ``la``) and ``b`` (by ``lb``) differ: [(path, what)], a missing subtree once."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=lambda k: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", k)]):
            p = f"{path}/{k}"
            if k not in a or k not in b:
                there, side = (lb, b[k]) if k not in a else (la, a[k])
                out.append((p, f"only {there} has it: {json.dumps(side)[:160]}"))
            elif a[k] != b[k]:
                out += differences(a[k], b[k], la, lb, p)
        return out
    if isinstance(a, list) and isinstance(b, list):
        only_a, only_b = [x for x in a if x not in b], [x for x in b if x not in a]
        if not only_a and not only_b:
            return [(path, f"same items, other order: {la} {a}, {lb} {b}")]
        return [(path, f"only {la}: {only_a}; only {lb}: {only_b}")]
    return [(path, f"{la}: {json.dumps(a)}, {lb}: {json.dumps(b)}")]


def explain(a: dict, b: dict, la: str, lb: str, limit: int = 12) -> str:
    """``differences`` grouped: the same difference in c1..cN (h1..hN, addresses) is one line with a count."""
    groups: dict[str, list] = {}
    for p, what in differences(a, b, la, lb):
        key = re.sub(r"\d+", "#", p) + " " + re.sub(r"\d+", "#", what)
        groups.setdefault(key, [0, p, what])[0] += 1
    lines = [f"  {p}: {what}" + (f"   (and {k - 1} more like it)" if k > 1 else "")
             for k, p, what in list(groups.values())[:limit]]
    if len(groups) > limit:
        lines.append(f"  ... and {len(groups) - limit} more kinds of difference")
    return "\n".join(lines)


def names_left(sb) -> str | None:  # noqa: ANN001
    """Right after a teardown (no wait): None when /run/netns is empty and the host has only ``lo``."""
    r = run_in(sb, ["sh", "-c", "ls -A /run/netns; echo @@; ip -json link"]).check("reading links")
    ns_text, _, links = r.out.partition("@@\n")
    names = ns_text.split()
    ifnames = [d["ifname"] for d in json.loads(links or "[]")]
    if names or ifnames != ["lo"]:
        return f"namespaces {names[:10]}{' ...' if len(names) > 10 else ''} ({len(names)}), host links " \
               f"{ifnames[:10]}{' ...' if len(ifnames) > 10 else ''} ({len(ifnames)})"
    return None


# --- children ----------------------------------------------------------------------------------


def pyroute2_child(n: int, direction: str) -> None:
    """Build or take down the network with pyroute2 (timed after start-up and ``import pyroute2``)."""
    from pyroute2 import IPRoute, netns

    t0 = time.perf_counter()
    if direction == "up":
        with IPRoute() as ipr:
            ipr.link("add", ifname="br0", kind="bridge")
            br = ipr.link_lookup(ifname="br0")[0]
            ipr.link("set", index=br, state="up")
            for i in range(1, n + 1):
                netns.create(f"c{i}")
                ipr.link("add", ifname=f"h{i}", kind="veth", peer={"ifname": "eth0", "net_ns_fd": f"c{i}"})
                h = ipr.link_lookup(ifname=f"h{i}")[0]
                ipr.link("set", index=h, master=br)
                ipr.link("set", index=h, state="up")
            ipr.addr("add", index=br, address="10.200.0.1", prefixlen=16, broadcast="10.200.255.255")
        for i in range(1, n + 1):
            with IPRoute(netns=f"c{i}") as ns:
                eth = ns.link_lookup(ifname="eth0")[0]
                lo = ns.link_lookup(ifname="lo")[0]
                ns.addr("add", index=eth, address=address(i), prefixlen=16)
                ns.link("set", index=lo, state="up")
                ns.link("set", index=eth, state="up")
                ns.route("add", dst="0.0.0.0/0", gateway="10.200.0.1", proto=3)  # boot, as ip route add
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write("1\n")
        subprocess.run(["iptables", "-w", "-t", "nat", "-A", "POSTROUTING", *NAT_RULE], check=True)
    else:
        subprocess.run(["iptables", "-w", "-t", "nat", "-D", "POSTROUTING", *NAT_RULE], check=True)
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write("0\n")
        with IPRoute() as ipr:
            for i in range(n, 0, -1):
                ipr.link("del", index=ipr.link_lookup(ifname=f"h{i}")[0])
                netns.remove(f"c{i}")
            ipr.link("del", index=ipr.link_lookup(ifname="br0")[0])
    print(json.dumps({"seconds": time.perf_counter() - t0}))


def dry_run_network(n: int):
    """The bench's network; above PER_BRIDGE containers, on bridges of PER_BRIDGE (``br{k}``, 10.(200+k).0.1/16).

    Built from model objects in bridge_network's shape and order (what a network file of several
    bridges would give): bridge, namespaces and veths, gateway, default routes per bridge, one
    ``ip_forward``, a NAT rule per bridge; untagged, peers created in their namespace.
    """
    import bridgenet as b

    objs: list = []
    nat: list = []
    for k, first in enumerate(range(1, n + 1, PER_BRIDGE)):
        base, br = int(IPv4Address(f"10.{200 + k}.0.0")), f"br{k}" if n > PER_BRIDGE else "br0"
        gw = b.Address(br, f"{IPv4Address(base + 1)}/16")
        names = [f"c{i}" for i in range(first, min(n, first + PER_BRIDGE - 1) + 1)]
        objs.append(b.Bridge(br))
        for j, ns in enumerate(names):
            objs += [b.Namespace(ns), b.VethPair(f"h{ns[1:]}", "eth0", ns, br, f"{IPv4Address(base + 2 + j)}/16")]
        objs.append(gw)
        objs += [b.Route(ns, gw.address.ip) for ns in names]
        nat.append(b.NatRule(gw.address.network, not_out_interface=br))
    return b.Network("bench", [*objs, b.ip_forward(), *nat])


def dry_run_child(n: int) -> None:
    """What ``bridgenet up --dry-run --batch`` does for N containers, minus the file: the script to stdout."""
    from bridgenet.batch import BatchRunner

    net = dry_run_network(n)
    sys.stdout.write(BatchRunner(None).script(net.up_commands(fast=True)))  # type: ignore[arg-type]


LAUNCHER = """
import json, os, sys, time
t = time.perf_counter()
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ,
                     file_actions=[(os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0)])
_, status, ru = os.wait4(pid, 0)
print(json.dumps({"seconds": time.perf_counter() - t, "maxrss_kb": ru.ru_maxrss, "status": status}))
"""
"""Run argv with stdout to /dev/null; print its wall time (spawn to exit) and peak RSS (wait4 rusage).

A small launcher (``python -S``) rather than the bench itself: Linux carries the parent's peak RSS
into a child's ``ru_maxrss`` across fork/vfork and exec (``setmax_mm_hiwater_rss`` in exec_mmap)."""


def whole_process(python: str, argv: list[str], env: dict, runs: int = 3) -> dict:
    """Best (fastest) of ``runs`` of ``argv`` as a whole process: {"seconds", "maxrss_kb"}; no sandbox needed
    (a dry-run runs nothing)."""
    best: dict | None = None
    for _ in range(runs):
        p = subprocess.run([python, "-S", "-c", LAUNCHER, *argv], capture_output=True, text=True, env=env,
                           check=True, timeout=600)
        d = json.loads(p.stdout)
        if d["status"] != 0:
            raise SystemExit(f"bench: {' '.join(argv)} failed (status {d['status']})")
        if best is None or d["seconds"] < best["seconds"]:
            best = d
    assert best is not None
    return best


if __name__ == "__main__":
    if sys.argv[1] == "pyroute2":
        pyroute2_child(int(sys.argv[2]), sys.argv[3])
    elif sys.argv[1] == "dry-run":
        dry_run_child(int(sys.argv[2]))
    else:
        raise SystemExit("usage: benchlib.py pyroute2 N up|down | dry-run N")
