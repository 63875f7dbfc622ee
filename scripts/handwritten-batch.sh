#!/bin/sh
# The benchmark's yardstick: what a person would write by hand to build (or
# take down) N containers on one bridge with as few processes as possible.
#
#   handwritten-batch.sh N up|down|down-group
#
# Same network as scripts/bench builds with bridgenet: bridge br0 with
# 10.200.0.1/16; for i in 1..N, namespace c$i, veth h$i (host end, port of
# br0) with peer eth0 created directly inside c$i, address 10.200.0.0+1+i/16
# on eth0, lo up, default route via 10.200.0.1; ip_forward=1; MASQUERADE for
# 10.200.0.0/16 except what stays on br0 (! -o br0). Processes: one `ip -batch -` for the host side, one
# `ip -n c$i -batch -` per namespace (ip(8) takes no per-line -n in a batch
# file), one sysctl, one iptables-restore.
#
# down deletes each host end in a request of its own (the kernel waits once
# per deleted veth, ≈31 ms). down-group is the fastest teardown found by hand
# (issue 10): ONE `ip -batch -` puts every host end and the bridge into the
# link group $GROUP (default 4242, which must hold no other link), deletes the
# whole group in one request (one wait for all), then deletes the namespaces;
# the names are free as soon as it returns.
#
# It changes the network namespace it runs in: run it ONLY inside a sandbox
# (scripts/bench does: bridgenet.sandbox.Sandbox().run(["sh", THIS, N, "up"])).
set -e

n=${1:?usage: handwritten-batch.sh N up|down|down-group}
dir=${2:-up}
case $n in *[!0-9]*|'') echo "N must be a number" >&2; exit 2;; esac

if [ "$dir" = up ]; then
    {
        echo "link add br0 type bridge"
        echo "link set br0 up"
        i=1
        while [ "$i" -le "$n" ]; do
            echo "netns add c$i"
            echo "link add h$i type veth peer name eth0 netns c$i"
            echo "link set h$i master br0"
            echo "link set dev h$i up"
            i=$((i + 1))
        done
        echo "addr add 10.200.0.1/16 brd 10.200.255.255 dev br0"
    } | ip -batch -
    i=1
    while [ "$i" -le "$n" ]; do
        a=$((i + 1))
        ip -n "c$i" -batch - <<EOF
addr add 10.200.$((a / 256)).$((a % 256))/16 dev eth0
link set dev lo up
link set dev eth0 up
route add default via 10.200.0.1
EOF
        i=$((i + 1))
    done
    sysctl -w net.ipv4.ip_forward=1
    iptables-restore --noflush -w <<'EOF'
*nat
-A POSTROUTING -s 10.200.0.0/16 ! -o br0 -j MASQUERADE
COMMIT
EOF
elif [ "$dir" = down ] || [ "$dir" = down-group ]; then
    iptables-restore --noflush -w <<'EOF'
*nat
-D POSTROUTING -s 10.200.0.0/16 ! -o br0 -j MASQUERADE
COMMIT
EOF
    sysctl -w net.ipv4.ip_forward=0
    if [ "$dir" = down-group ]; then
        group=${GROUP:-4242}
        {
            i=1
            while [ "$i" -le "$n" ]; do
                echo "link set dev h$i group $group"
                i=$((i + 1))
            done
            echo "link set dev br0 group $group"
            echo "link del group $group"
            i=1
            while [ "$i" -le "$n" ]; do
                echo "netns del c$i"
                i=$((i + 1))
            done
        } | ip -batch -
        exit 0
    fi
    {
        i=$n
        while [ "$i" -ge 1 ]; do
            echo "link del h$i"
            echo "netns del c$i"
            i=$((i - 1))
        done
        echo "link del br0"
    } | ip -batch -
else
    echo "usage: handwritten-batch.sh N up|down|down-group" >&2
    exit 2
fi
