#!/usr/bin/env bash
# Prepares QEMU >= 11.1 (Debian trixie-backports) in a debootstrapped trixie tree and
# prints the path of a wrapper script that runs it through the tree's own loader.
#
#   guest-tests/linux/qemu11.sh [--no-install]    -> prints .../qemu-trixie/qemu-system-x86_64
#
# The host is bookworm; trixie's QEMU needs trixie's libraries, so it runs with the tree's
# ld.so and library path and its own firmware directories. The tree is cached under
# $VHOST_DAX_CACHE (default ~/.cache/vhost-dax) and built once (about 500 MB).
set -euo pipefail

CACHE=${VHOST_DAX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vhost-dax}
TREE=$CACHE/qemu-trixie/root
WRAPPER=$CACHE/qemu-trixie/qemu-system-x86_64
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
INSTALL=1
[ "${1:-}" = --no-install ] && INSTALL=0

log() { echo "qemu11.sh: $*" >&2; }
die() { log "error: $*"; exit 2; }

SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo

if [ ! -f "$CACHE/qemu-trixie/.ready" ]; then
	[ "$INSTALL" = 1 ] || die "no QEMU 11 tree in $CACHE/qemu-trixie (rerun without --no-install)"
	if ! command -v debootstrap >/dev/null && [ ! -x /usr/sbin/debootstrap ]; then
		log "apt-get install debootstrap"
		$SUDO apt-get update -q >/dev/null
		DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends debootstrap >/dev/null
	fi
	mkdir -p "$CACHE/qemu-trixie"
	exec 8>"$CACHE/qemu-trixie/.lock"
	flock 8
	if [ ! -f "$CACHE/qemu-trixie/.ready" ]; then
		$SUDO rm -rf "$TREE"
		log "debootstrap --variant=minbase trixie (about 20 s)"
		$SUDO env PATH="$PATH:/usr/sbin:/sbin" debootstrap --variant=minbase trixie "$TREE" "$MIRROR" \
			>"$CACHE/qemu-trixie/debootstrap.log" 2>&1 ||
			{ tail -n 20 "$CACHE/qemu-trixie/debootstrap.log" >&2; die "debootstrap failed"; }
		$SUDO tee "$TREE/etc/apt/sources.list.d/backports.sources" >/dev/null <<SRC
Types: deb
URIs: $MIRROR
Suites: trixie-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
		log "apt-get install -t trixie-backports qemu-system-x86 (in the tree)"
		$SUDO chroot "$TREE" apt-get update -q >"$CACHE/qemu-trixie/apt.log" 2>&1 ||
			{ tail -n 20 "$CACHE/qemu-trixie/apt.log" >&2; die "apt-get update in the trixie tree failed"; }
		$SUDO chroot "$TREE" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			--no-install-recommends -t trixie-backports qemu-system-x86 >>"$CACHE/qemu-trixie/apt.log" 2>&1 ||
			{ tail -n 20 "$CACHE/qemu-trixie/apt.log" >&2; die "installing qemu-system-x86 in the trixie tree failed"; }
		$SUDO chroot "$TREE" apt-get clean
		# A user that is not root must be able to read the tree it runs from.
		[ -z "$SUDO" ] || $SUDO chown -R "$(id -u):$(id -g)" "$CACHE/qemu-trixie"
		touch "$CACHE/qemu-trixie/.ready"
	fi
	flock -u 8
fi
# The wrapper is written every time (atomically), so a fix to it reaches an existing tree.
# QEMU_MODULE_DIR: QEMU otherwise loads its modules from the host's
# /usr/lib/x86_64-linux-gnu/qemu, where QEMU 10 (the fs stages) keeps its own, and aborts
# ("Only modules from the same build can be loaded").
cat >"$WRAPPER.tmp.$$" <<WRAP
#!/bin/sh
# QEMU from the trixie tree next to this script, through the tree's own loader and modules.
T=$TREE
export QEMU_MODULE_DIR="\$T/usr/lib/x86_64-linux-gnu/qemu"
exec "\$T/lib64/ld-linux-x86-64.so.2" --library-path "\$T/lib/x86_64-linux-gnu:\$T/usr/lib/x86_64-linux-gnu" \\
	"\$T/usr/bin/qemu-system-x86_64" -L "\$T/usr/share/qemu" -L "\$T/usr/share/seabios" "\$@"
WRAP
chmod 755 "$WRAPPER.tmp.$$"
mv "$WRAPPER.tmp.$$" "$WRAPPER"
"$WRAPPER" --version | head -n 1 | grep -qE 'version (1[1-9]|[2-9][0-9])\.' ||
	die "$WRAPPER is not QEMU >= 11: $("$WRAPPER" --version 2>&1 | head -n 1)"
echo "$WRAPPER"
