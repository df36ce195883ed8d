#!/usr/bin/env bash
# Runs a command with Debian sid's newest CPythons (3.14, 3.15), which need a
# newer glibc than this host may have: they live in a Debian sid root of their
# own, made here on first use and then reused.
#
#   scripts/sid-python.sh CMD [ARGS...]   e.g. scripts/sid-python.sh python3.15 -VV
#   scripts/sid-python.sh                 an interactive shell inside
#
# Inside, this checkout is at the same path as outside and the command starts in
# the current directory when that is in the checkout (else at its top); the
# host's rustup and cargo homes are /root/.rustup and /root/.cargo, so maturin
# builds there. Cargo's target directory inside is /var/cache/ferroloop/target
# (the root's own): build scripts made against sid's glibc must never land in
# the checkout's target/, which the host uses.
#
# Every run: the root is made if missing (debootstrap, a few minutes), packages
# missing from it are installed, then the mounts (/proc, /sys, /dev, the rust
# homes, the checkout) are made in a mount namespace of this run only, so
# nothing stays mounted afterwards and concurrent runs do not interfere. Needs
# root; reads no stdin (works in CI).
#
# Environment (optional):
#   FERROLOOP_SID_ROOT     where the root lives (default /opt/ferroloop-sid)
#   FERROLOOP_SID_PYTHONS  CPython versions to install (default "3.14 3.15")
#   FERROLOOP_SID_MIRROR   Debian mirror (default http://deb.debian.org/debian)
#   FERROLOOP_SID_PASS     names of variables to pass inside, space separated
set -euo pipefail

ROOT="$(realpath -m "${FERROLOOP_SID_ROOT:-/opt/ferroloop-sid}")"
PYTHONS="${FERROLOOP_SID_PYTHONS:-3.14 3.15}"
MIRROR="${FERROLOOP_SID_MIRROR:-http://deb.debian.org/debian}"
CHECKOUT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
RUSTUP_SRC="${RUSTUP_HOME:-$HOME/.rustup}"
CARGO_SRC="${CARGO_HOME:-$HOME/.cargo}"

say() { echo "[sid-python] $*" >&2; }
die() { say "$*"; exit 1; }

[[ $EUID -eq 0 ]] || die "needs root (debootstrap, chroot, mounts)"
[[ "$ROOT" != / ]] || die "FERROLOOP_SID_ROOT must not be /"

packages() {
    local v
    echo gcc libc6-dev ca-certificates openssl netbase procps
    for v in $PYTHONS; do
        echo "python$v python$v-dev python$v-venv libpython$v-testsuite"
    done
}

# A command inside the root, with a clean environment plus the given VAR=value.
# SIGINT goes back to its default: a shell running us in the background ignores
# it, and asyncio's tests send it to themselves.
inside() {
    chroot "$ROOT" /usr/bin/env -i --default-signal=INT HOME=/root LANG=C.UTF-8 \
        TERM="${TERM:-dumb}" DEBIAN_FRONTEND=noninteractive \
        PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        "$@"
}

bind() {  # bind SRC PATH_INSIDE [mount options]; this namespace only
    local src="$1" dst="$ROOT$2"; shift 2
    mkdir -p "$dst"
    mount "$@" "$src" "$dst"
}

# Host settings, so that names resolve inside as outside (DNS, /etc/hosts: tests
# look up localhost names) and apt and pip reach the same mirrors (extra CA
# certificates, e.g. an egress proxy's; apt's local options).
copy_host_config() {
    local f changed=0
    cp -L /etc/resolv.conf /etc/hosts "$ROOT/etc/"
    for f in /usr/local/share/ca-certificates/*.crt; do
        [[ -f "$f" ]] || continue
        mkdir -p "$ROOT/usr/local/share/ca-certificates"
        cmp -s "$f" "$ROOT/usr/local/share/ca-certificates/${f##*/}" && continue
        cp "$f" "$ROOT/usr/local/share/ca-certificates/"
        changed=1
    done
    for f in /etc/apt/apt.conf.d/99*; do
        [[ -f "$f" ]] && cp "$f" "$ROOT/etc/apt/apt.conf.d/"
    done
    # apt inside must not try to start services.
    printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"
    chmod +x "$ROOT/usr/sbin/policy-rc.d"
    if (( changed )) && [[ -x "$ROOT/usr/sbin/update-ca-certificates" ]]; then
        inside update-ca-certificates >/dev/null
    fi
}

# Runs in the private mount namespace, holding the setup lock until the mounts
# are made.
setup_and_mount() {
    if [[ ! -x "$ROOT/usr/bin/env" ]]; then
        command -v debootstrap >/dev/null || {
            say "installing debootstrap on the host"
            apt-get update -q >&2 && apt-get install -y -q debootstrap >&2
        }
        # Made aside and renamed when complete, so a half-made root is never used.
        local partial="$ROOT.partial"
        rmdir "$ROOT" 2>/dev/null || true
        [[ ! -e "$ROOT" ]] || die "$ROOT is there but holds no Debian root: remove it"
        rm -rf --one-file-system "$partial"
        say "debootstrap sid into $ROOT (a few minutes)"
        debootstrap --variant=minbase sid "$partial" "$MIRROR" >&2
        mv "$partial" "$ROOT"
    fi

    bind proc /proc -t proc
    bind /sys /sys --rbind
    bind /dev /dev --rbind
    local home
    for home in "$RUSTUP_SRC:/root/.rustup" "$CARGO_SRC:/root/.cargo"; do
        if [[ -d "${home%%:*}" ]]; then
            bind "${home%%:*}" "${home#*:}" --bind
        else
            say "no ${home%%:*} on the host: no Rust builds inside"
        fi
    done
    bind "$CHECKOUT" "$CHECKOUT" --bind
    mkdir -p "$ROOT/var/cache/ferroloop/target"

    copy_host_config
    local p missing=()
    for p in $(packages); do
        inside dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' \
            || missing+=("$p")
    done
    if (( ${#missing[@]} )); then
        say "installing in the root: ${missing[*]}"
        inside apt-get update -q >&2
        inside apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
        inside update-ca-certificates >/dev/null
    fi
}

# In a function, read whole before it runs: editing this file meanwhile (say, a
# git checkout during a long test run) cannot change what a running copy does.
main() {
    if [[ "${_FERROLOOP_SID_NS:-}" != "$ROOT" ]]; then
        # Re-run in a mount namespace of our own: the mounts end with the command.
        export _FERROLOOP_SID_NS="$ROOT"
        exec unshare --mount --propagation private "$BASH" "${BASH_SOURCE[0]}" "$@"
    fi

    mkdir -p "$(dirname "$ROOT")"
    exec 9>"$ROOT.lock"
    flock 9
    setup_and_mount
    flock -u 9
    exec 9>&-

    local envs=(CARGO_TARGET_DIR=/var/cache/ferroloop/target RUSTUP_HOME=/root/.rustup
                CARGO_HOME=/root/.cargo)
    local v dir
    for v in ${FERROLOOP_SID_PASS:-}; do
        [[ -n "${!v+x}" ]] && envs+=("$v=${!v}")
    done
    dir="$CHECKOUT"
    case "$PWD/" in "$CHECKOUT"/*) dir="$PWD" ;; esac
    (( $# )) || set -- bash -l
    inside "${envs[@]}" /bin/sh -c 'cd "$0" && exec "$@"' "$dir" "$@"
}

main "$@"; exit
