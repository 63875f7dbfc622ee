# Shared by scripts/tutorial and scripts/test (sourced, POSIX sh).
# Installs what bridgenet needs on a Debian-like machine and sets $VENV and $PY.
#
#   Debian packages: iproute2 (ip, tc), iptables, iputils-ping, conntrack,
#   util-linux (unshare, nsenter, setpriv), procps (pgrep), python3-venv;
#   for scripts/test also $BRIDGENET_TEST_TOOLS (graphviz: dot; openssh-client:
#   ssh, ssh-keygen), installed as root, optional otherwise (the tests that use
#   them skip); and with BRIDGENET_TEST_SSHD=1 an sshd for the SSH tests,
#   UNPACKED from openssh-server (and libwrap0, which it links) into
#   $BRIDGENET_SSHD_ROOT (/opt/bridgenet/sshd) with `dpkg -x`: installing the
#   package would start a server on this machine; unpacked, nothing starts it
#   but the tests, inside sandboxes (bridgenet/testing/hosts.py).
#   Python: a virtual environment with bridgenet and its test extras.
#
# As root the venv lives in /opt/bridgenet/venv, made from the system's
# /usr/bin/python3 so that an unprivileged user can use it too; otherwise
# in ~/.cache/bridgenet/venv.

set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)

need_pkgs=""
for pair in ip:iproute2 tc:iproute2 iptables:iptables iptables-restore:iptables ping:iputils-ping \
            conntrack:conntrack unshare:util-linux nsenter:util-linux setpriv:util-linux pgrep:procps; do
    tool=${pair%%:*}; pkg=${pair#*:}
    command -v "$tool" >/dev/null 2>&1 || need_pkgs="$need_pkgs $pkg"
done
for pair in ${BRIDGENET_TEST_TOOLS:-}; do
    tool=${pair%%:*}; pkg=${pair#*:}
    command -v "$tool" >/dev/null 2>&1 && continue
    if [ "$(id -u)" = 0 ]; then
        need_pkgs="$need_pkgs $pkg"
    else
        echo "bridgenet: $tool not found; the tests that use it skip (Debian package $pkg)" >&2
    fi
done
if [ "$(id -u)" = 0 ]; then
    python3 -c 'import ensurepip' >/dev/null 2>&1 || need_pkgs="$need_pkgs python3-venv"
    [ -x /usr/bin/python3 ] && ! /usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1 && need_pkgs="$need_pkgs python3-venv"
    if [ -n "$need_pkgs" ]; then
        echo "bridgenet: installing Debian packages:$need_pkgs" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # shellcheck disable=SC2086
        apt-get install -y -qq --no-install-recommends $need_pkgs python3-venv >/dev/null
    fi
elif [ -n "$need_pkgs" ]; then
    echo "bridgenet: missing tools; ask an administrator to install:$need_pkgs" >&2
    exit 1
fi

# sshd for the SSH tests: unpacked, never installed as a service (idempotent)
SSHD_ROOT=${BRIDGENET_SSHD_ROOT:-/opt/bridgenet/sshd}
if [ "${BRIDGENET_TEST_SSHD:-0}" = 1 ] && [ ! -x /usr/sbin/sshd ] && [ ! -x "$SSHD_ROOT/usr/sbin/sshd" ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "bridgenet: unpacking openssh-server into $SSHD_ROOT (not installed: no service starts)" >&2
        debs=$(mktemp -d /tmp/bridgenet-sshd.XXXXXX)
        chmod 755 "$debs"
        (cd "$debs" && apt-get update -qq && apt-get download -qq openssh-server libwrap0) 2>&1 \
            | grep -v -e "^W: Download is performed unsandboxed" >&2 || true
        mkdir -p "$SSHD_ROOT"
        for deb in "$debs"/*.deb; do dpkg -x "$deb" "$SSHD_ROOT"; done
        rm -rf "$debs"
        [ -x "$SSHD_ROOT/usr/sbin/sshd" ] || echo "bridgenet: could not unpack sshd; the SSH tests skip" >&2
    else
        echo "bridgenet: no sshd; the SSH tests skip (as root this script unpacks openssh-server)" >&2
    fi
fi

if [ "$(id -u)" = 0 ]; then
    VENV=${BRIDGENET_VENV:-/opt/bridgenet/venv}
    BASE_PY=/usr/bin/python3
    [ -x "$BASE_PY" ] || BASE_PY=$(command -v python3)
else
    VENV=${BRIDGENET_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/bridgenet/venv}
    BASE_PY=$(command -v python3)
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "bridgenet: creating $VENV" >&2
    mkdir -p "$(dirname "$VENV")"
    "$BASE_PY" -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --disable-pip-version-check "$REPO[test]" 2>&1 | grep -v -i -e "^WARNING: Running pip as" -e "is ignored: it is neither" >&2 || true
"$PY" -c 'import bridgenet' || { echo "bridgenet: install into $VENV failed" >&2; exit 1; }
