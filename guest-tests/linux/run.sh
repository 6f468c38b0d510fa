#!/usr/bin/env bash
# Linux-guest test of a virtio-fs vhost-user backend.
#
# Boots Debian's cloud kernel with a busybox initramfs under QEMU (TCG), the backend
# daemon behind vhost-user-fs-pci, mounts the share in the guest and runs the workload
# in workload/<stage>.sh. Prints the guest's PASS/FAIL lines, checks a few of the
# guest's files again on the host, and exits non-zero if a check failed, the guest did
# not finish, or the daemon crashed. --dax and --pmem run QEMU 11.1's generic
# vhost-user device instead (host side in stages11.sh). See README.md in this directory.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${VHOST_DAX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vhost-dax}/linux-guest

BACKEND=vhost-dax
BACKEND_CMD=
BACKEND_ARGS=
KERNEL_SUITE=bookworm-backports
STAGES=fs
TAG=vhostdax
TIMEOUT=300
CHECK_TIMEOUT=90
SMP=2
MEM=512M
REQUEST_QUEUES=1
MOUNT_OPTS=
INSTALL=1
BUILD=1
MODE=fs # fs (QEMU 10, vhost-user-fs-pci), dax, dax-perf or pmem (QEMU 11.1, stages11.sh)
PMEM_REFERENCE=0
MEM_OPTS=

usage() {
	cat <<EOF
usage: $0 [options]
  --backend vhost-dax|virtiofsd   daemon to test (default: vhost-dax)
  --backend-cmd CMD               run CMD (with bash) as the daemon instead; it gets
                                  \$VD_SOCKET, \$VD_SHARED_DIR and \$VD_TAG in its environment
  --backend-args ARGS             extra arguments appended to the daemon's command line
  --kernel-suite SUITE            bookworm (Linux 6.1) or bookworm-backports (6.12, default)
  --stages LIST                   workload stages, comma separated (default: fs)
  --mount-opts OPTS               extra guest mount options (e.g. dax=never)
  --tag TAG                       virtio-fs tag (default: $TAG)
  --timeout SECONDS               hard limit for the guest run (default: $TIMEOUT)
  --check-timeout SECONDS         limit for one guest check (default: $CHECK_TIMEOUT)
  --smp N / --mem SIZE            guest vCPUs (default $SMP) and memory (default $MEM)
  --request-queues N              virtio-fs request queues QEMU offers (default 1; the
                                  daemon must serve as many, e.g. --backend-args "--queues N")
  --no-install                    fail instead of installing missing host packages
  --no-build                      do not (re)build the vhost-dax daemon
  --dax                           DAX stage (workload/dax.sh) on QEMU 11.1: a 64M window,
                                  --dax-maps-within-file, the guest mounts -o dax=inode, then
                                  -o dax; host requests, control-socket and file checks
  --dax-perf                      informational: the same timed guest workloads (random and
                                  sequential reads, mmap page touches, stat) under -o dax
                                  and -o dax=never in one boot on QEMU 11.1; prints a table
  --pmem                          pmem stage (workload/pmem.sh) on QEMU 11.1, Linux 6.12: two
                                  virtio-pmem devices (ext4 images, one --readonly), fsdax,
                                  a reboot, host checks of the images
  --pmem-reference                the pmem stage on QEMU's own virtio-pmem-pci (no daemon):
                                  checks the workload itself, for comparison
Cache: $CACHE (override with VHOST_DAX_CACHE).
EOF
}

while [ $# -gt 0 ]; do
	case "$1" in
	--backend) BACKEND=$2; shift 2 ;;
	--backend-cmd) BACKEND=cmd; BACKEND_CMD=$2; shift 2 ;;
	--backend-args) BACKEND_ARGS=$2; shift 2 ;;
	--kernel-suite) KERNEL_SUITE=$2; shift 2 ;;
	--stages) STAGES=$2; shift 2 ;;
	--mount-opts) MOUNT_OPTS=$2; shift 2 ;;
	--tag) TAG=$2; shift 2 ;;
	--timeout) TIMEOUT=$2; shift 2 ;;
	--check-timeout) CHECK_TIMEOUT=$2; shift 2 ;;
	--smp) SMP=$2; shift 2 ;;
	--mem) MEM=$2; shift 2 ;;
	--request-queues) REQUEST_QUEUES=$2; shift 2 ;;
	--dax) MODE=dax; shift ;;
	--pmem) MODE=pmem; shift ;;
	--dax-perf) MODE=dax-perf; shift ;;
	--pmem-reference) MODE=pmem; PMEM_REFERENCE=1; shift ;;
	--no-install) INSTALL=0; shift ;;
	--no-build) BUILD=0; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
done
case "$BACKEND" in vhost-dax | virtiofsd | cmd) ;; *) echo "run.sh: unknown backend $BACKEND" >&2; exit 2 ;; esac
case "$KERNEL_SUITE" in bookworm | bookworm-backports) ;; *) echo "run.sh: unknown kernel suite $KERNEL_SUITE" >&2; exit 2 ;; esac

log() { echo "run.sh: $*" >&2; }
die() { log "error: $*"; exit 2; }
T_START=$(date +%s)

# ---------------------------------------------------------------- host packages

SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
APT_UPDATED=0
apt_update_once() {
	[ "$APT_UPDATED" = 1 ] && return 0
	log "apt-get update"
	$SUDO apt-get update -q >/dev/null
	APT_UPDATED=1
}
apt_install() {
	[ "$INSTALL" = 1 ] || die "missing host packages: $* (rerun without --no-install, or install them)"
	command -v apt-get >/dev/null || die "missing host packages: $* (and no apt-get here)"
	apt_update_once
	log "apt-get install $*"
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "$@" >/dev/null
}
ensure_backports() {
	if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
		[ "$INSTALL" = 1 ] || die "bookworm-backports is not in the apt sources"
		log "adding bookworm-backports to the apt sources"
		$SUDO tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null <<EOF
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
		APT_UPDATED=0
	fi
	# Lists may be missing on a fresh machine (or stale after adding the suite).
	if ! apt-cache -t bookworm-backports show --no-all-versions linux-image-cloud-amd64 >/dev/null 2>&1; then
		APT_UPDATED=0
		apt_update_once
	fi
}

qemu_major() {
	qemu-system-x86_64 --version 2>/dev/null | sed -n 's/^QEMU emulator version \([0-9]*\).*/\1/p'
}

ensure_host_tools() {
	command -v apt-get >/dev/null && ensure_backports
	local missing=()
	command -v cpio >/dev/null || missing+=(cpio)
	command -v depmod >/dev/null || [ -x /sbin/depmod ] || missing+=(kmod)
	command -v xz >/dev/null || missing+=(xz-utils)
	command -v zstd >/dev/null || missing+=(zstd)
	[ "$MODE" != pmem ] || command -v mkfs.ext4 >/dev/null || [ -x /sbin/mkfs.ext4 ] || missing+=(e2fsprogs)
	[ ${#missing[@]} = 0 ] || apt_install "${missing[@]}"
	if [ "$MODE" = fs ]; then
		if [ "$(qemu_major || true)" = "" ] || [ "$(qemu_major)" -lt 10 ]; then
			apt_install -t bookworm-backports qemu-system-x86
		fi
		qemu-system-x86_64 -device help 2>/dev/null | grep -q '"vhost-user-fs-pci"' ||
			die "qemu-system-x86_64 has no vhost-user-fs-pci"
		QEMU=qemu-system-x86_64
	else
		# QEMU 11.1 from a debootstrapped trixie tree (cached; about 40 s the first time).
		local opt=()
		[ "$INSTALL" = 1 ] || opt=(--no-install)
		QEMU=$("$HERE/qemu11.sh" "${opt[@]}") || die "qemu11.sh could not provide QEMU 11.1"
		# VD_QEMU11: another QEMU >= 11.1 (or a debugging wrapper of it).
		QEMU=${VD_QEMU11:-$QEMU}
		"$QEMU" -device help 2>/dev/null | grep -q '"vhost-user-test-device-pci"' ||
			die "$QEMU has no vhost-user-test-device-pci"
	fi
	command -v cargo >/dev/null || [ -x "$HOME/.cargo/bin/cargo" ] || die "cargo not found (install Rust)"
	command -v cargo >/dev/null || PATH=$HOME/.cargo/bin:$PATH
}

# ---------------------------------------------------------------- kernel, busybox

# candidate VERSION of PACKAGE in SUITE ("bookworm" = the default candidate, which
# includes bookworm-security; "bookworm-backports" = the backports one).
apt_field() { # apt_field SUITE PACKAGE FIELD
	local release=()
	[ "$1" = bookworm ] || release=(-t "$1")
	apt-cache "${release[@]}" show --no-all-versions "$2" 2>/dev/null | sed -n "s/^$3: //p" | head -n 1
}

# fetch_deb PACKAGE VERSION DIR: download and unpack into DIR/root, once per version.
fetch_deb() {
	local pkg=$1 ver=$2 dir=$3
	[ -f "$dir/.unpacked" ] && return 0
	log "downloading $pkg $ver"
	rm -rf "$dir"
	mkdir -p "$dir/root"
	local out
	if ! out=$(cd "$dir" && apt-get download -q "$pkg=$ver" 2>&1); then
		printf '%s\n' "$out" >&2
		return 1
	fi
	dpkg -x "$dir"/*.deb "$dir/root"
	rm -f "$dir"/*.deb
	touch "$dir/.unpacked"
}

# Sets KPKG/KVER_PKG (the kernel package linux-image-cloud-amd64 depends on in the
# suite) and BB_VER from apt's package lists.
resolve_packages() {
	local meta dep
	meta=$(apt_field "$KERNEL_SUITE" linux-image-cloud-amd64 Depends)
	[ -n "$meta" ] || die "apt knows no linux-image-cloud-amd64 in $KERNEL_SUITE (apt-get update?)"
	# "linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)"
	KPKG=${meta%% *}
	dep=${meta#*(= }
	KVER_PKG=${dep%)*}
	KDIR=$CACHE/kernel/${KPKG}_${KVER_PKG}
	BB_VER=$(apt_field bookworm busybox-static Version)
	[ -n "$BB_VER" ] || die "apt knows no busybox-static"
	BBDIR=$CACHE/busybox/${BB_VER//:/_}
}

setup_kernel() {
	resolve_packages
	if ! fetch_deb "$KPKG" "$KVER_PKG" "$KDIR" || ! fetch_deb busybox-static "$BB_VER" "$BBDIR"; then
		# Old package lists can name versions the mirror no longer has.
		log "download failed; refreshing the package lists"
		APT_UPDATED=0
		apt_update_once
		resolve_packages
		fetch_deb "$KPKG" "$KVER_PKG" "$KDIR" || die "apt-get download $KPKG=$KVER_PKG failed"
		fetch_deb busybox-static "$BB_VER" "$BBDIR" || die "apt-get download busybox-static=$BB_VER failed"
	fi
	KREL=$(ls "$KDIR/root/lib/modules")
	if [ ! -f "$KDIR/root/lib/modules/$KREL/modules.dep" ]; then
		local depmod=depmod
		command -v depmod >/dev/null || depmod=/sbin/depmod
		"$depmod" -b "$KDIR/root" "$KREL"
	fi
	VMLINUZ=$KDIR/root/boot/vmlinuz-$KREL
	[ -f "$VMLINUZ" ] || die "no $VMLINUZ in $KPKG"
}

# Modules the guest loads, in this order, with their dependencies first. Built-in ones
# (Linux 6.12's cloud kernel has virtio, fuse and virtiofs built in) are skipped.
# ext4 (and the crc32c it asks the crypto API for) is for the pmem stage's -o dax mount.
WANTED_MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
fuse virtiofs libnvdimm nd_btt nd_pmem nd_virtio virtio_pmem crc32c_generic ext4"

# Prints module paths (relative to lib/modules/KREL) in load order.
resolve_modules() {
	local mdir=$1 m
	declare -A deps=() byname=() seen=()
	local path rest name
	while IFS= read -r line; do
		path=${line%%:*}
		rest=${line#*:}
		name=${path##*/}
		name=${name%%.ko*}
		byname[${name//-/_}]=$path
		deps[$path]=$rest
	done <"$mdir/modules.dep"
	visit() {
		local p=$1 d
		[ -n "${seen[$p]:-}" ] && return 0
		seen[$p]=1
		for d in ${deps[$p]}; do visit "$d"; done
		echo "$p"
	}
	for m in $WANTED_MODULES; do
		if [ -n "${byname[$m]:-}" ]; then
			visit "${byname[$m]}"
		elif grep -q "/$m\.ko" "$mdir/modules.builtin"; then
			: # built in
		else
			die "module $m is neither in modules.dep nor built into $KREL"
		fi
	done
}

# The part of the initramfs that changes only with the kernel and busybox packages.
build_base_initramfs() {
	local mdir=$KDIR/root/lib/modules/$KREL mods key stage m dst
	mods=$(resolve_modules "$mdir")
	key=$(printf '%s\n' "base-v1" "$KPKG $KVER_PKG" "$BB_VER" "$mods" | sha256sum | cut -c1-12)
	BASE_CPIO=$CACHE/initramfs/base-$KREL-$key.cpio.gz
	[ -f "$BASE_CPIO" ] && return 0
	log "building the base initramfs for $KREL"
	stage=$(mktemp -d "$CACHE/initramfs/stage.XXXXXX")
	mkdir -p "$stage"/{bin,dev,proc,sys,tmp,mnt,etc,lib/modules/"$KREL"}
	ln -s bin "$stage/sbin"
	cp "$BBDIR/root/bin/busybox" "$stage/bin/busybox"
	for m in $("$stage/bin/busybox" --list); do
		[ "$m" = busybox ] || ln -s busybox "$stage/bin/$m"
	done
	[ "$(id -u)" = 0 ] && mknod -m 600 "$stage/dev/console" c 5 1
	: >"$stage/etc/modules.load"
	for m in $mods; do
		# busybox insmod cannot decompress: store the modules uncompressed.
		dst=$stage/lib/modules/$KREL/${m%.xz}
		dst=${dst%.zst}
		mkdir -p "$(dirname "$dst")"
		case "$m" in
		*.xz) xz -dc "$mdir/$m" >"$dst" ;;
		*.zst) zstd -qdc "$mdir/$m" >"$dst" ;;
		*) cp "$mdir/$m" "$dst" ;;
		esac
		echo "$KREL/${dst#"$stage/lib/modules/$KREL/"}" >>"$stage/etc/modules.load"
	done
	(cd "$stage" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -6 >"$BASE_CPIO.tmp"
	mv "$BASE_CPIO.tmp" "$BASE_CPIO"
	rm -rf "$stage"
}

# ---------------------------------------------------------------- probe, overlay

build_probe() {
	# Keyed by the probe's sources: work trees with different probes share the cache
	# without overwriting each other's binary (cargo would not notice and rebuild).
	local key target
	key=$(cat "$HERE/probe/Cargo.toml" "$HERE/probe/Cargo.lock" "$HERE"/probe/src/*.rs | sha256sum | cut -c1-12)
	target=$CACHE/probe-target/$key
	log "building the guest probe (cargo, cached in $target)"
	(cd "$HERE/probe" && RUSTFLAGS="-C target-feature=+crt-static" \
		cargo build --quiet --locked --release --target x86_64-unknown-linux-gnu --target-dir "$target") ||
		die "building guest-tests/linux/probe failed"
	PROBE=$target/x86_64-unknown-linux-gnu/release/guest-probe
}

# The per-run part: /init, the workload files and the probe (cheap to rebuild).
build_overlay() {
	local stage=$RUN/overlay
	rm -rf "$stage"
	mkdir -p "$stage/bin" "$stage/workload"
	cp "$HERE/init.sh" "$stage/init"
	chmod 755 "$stage/init"
	cp "$HERE"/workload/*.sh "$stage/workload/"
	cp "$PROBE" "$stage/bin/probe"
	(cd "$stage" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -1 >"$RUN/overlay.cpio.gz"
	cat "$BASE_CPIO" "$RUN/overlay.cpio.gz" >"$RUN/initrd.img"
}

# ---------------------------------------------------------------- shared directory

# A tree the guest checks against the manifest and copies (host-tree.sha256).
make_host_tree() {
	local tree=$SHARED/host-tree i
	mkdir -p "$tree/small" "$tree/a/b/c/d/e/f" "$tree/sizes" "$tree/dir with spaces"
	for i in $(seq 0 49); do head -c $((i * 37)) /dev/urandom >"$tree/small/$i"; done
	for i in 0 1 511 512 4095 4096 4097 65535 65536 131073 1048576; do
		head -c "$i" /dev/urandom >"$tree/sizes/s$i"
	done
	head -c 5242887 /dev/urandom >"$tree/big.bin"
	echo "deep" >"$tree/a/b/c/d/e/f/leaf"
	echo "spaced" >"$tree/dir with spaces/file name.txt"
	echo "unicode" >"$tree/ünïcødé-✓.txt"
	printf '#!/bin/sh\necho hi\n' >"$tree/script.sh"
	chmod 755 "$tree/script.sh"
	ln -s small/0 "$tree/link-to-small"
	(cd "$tree" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) >"$SHARED/host-tree.sha256"
}

# What the fs stage wrote into host-view/ (workload/fs.sh, t_host_view), seen on the
# host after the run.
fs_host_checks() {
	local c
	hv=$SHARED/host-view
	if [ ! -d "$hv" ]; then
		hv_missing() { echo "the guest did not create host-view/"; return 1; }
		host_check view-present hv_missing
		return 0
	fi
	for c in text mode-owner mtime hardlink symlink pattern sparse mmap dir user-owner tree-copy xattr; do
		host_check "view-$c" "hv_${c//-/_}"
	done
	host_check qemu-quiet qemu_quiet
}
# A normal start and power-off: QEMU has nothing to say about the backend (it warned
# about a config space it cannot use, and an end of file on a backend channel closed
# unused, before vhost-dax offered only what the device uses).
qemu_quiet() {
	local said
	said=$(grep -v 'terminating on signal' "$RUN/qemu.log" || true)
	[ -z "$said" ] || { echo "QEMU said: $(head -n 1 <<<"$said")"; return 1; }
}
hv_text() { want "$(cat "$hv/text")" "written by the guest" content; }
hv_mode_owner() { want "$(stat -c '%a %u:%g' "$hv/text")" "640 1234:5678" "mode owner"; }
hv_mtime() { want "$(stat -c %Y "$hv/text")" "$(TZ=UTC date -d "2001-02-03 04:05:06" +%s)" mtime; }
hv_hardlink() { want "$(stat -c '%h %i' "$hv/text-link")" "2 $(stat -c %i "$hv/text")" "links inode"; }
hv_symlink() { want "$(readlink "$hv/text-sym")" text readlink; }
hv_xattr() { want "$("$PROBE" xattr-get "$hv/text" user.from-guest)" yes user.from-guest; }
hv_pattern() { "$PROBE" pattern-check "$hv/pattern" 0 1048576 42; }
hv_sparse() {
	want "$(stat -c %s "$hv/sparse")" 16777219 size
	want "$(tail -c 3 "$hv/sparse")" end "last bytes"
	local blocks
	blocks=$(stat -c %b "$hv/sparse")
	[ "$blocks" -lt 1024 ] || { echo "$blocks blocks allocated"; return 1; }
}
hv_mmap() { want "$("$PROBE" pread "$hv/mm" 100 13 | tr -c '[:print:]' .)" mmap-was-here "mmap-written bytes"; }
hv_dir() { want "$(cat "$hv/dir/sub/file")" deep content; }
hv_user_owner() { want "$(stat -c %u:%g "$hv/dir/userfile") $(cat "$hv/dir/userfile")" "1000:1000 user" "owner content"; }
hv_tree_copy() { cd "$hv/tree-copy" && sha256sum -c --quiet "$SHARED/host-tree.sha256"; }

# ---------------------------------------------------------------- backend

backend_command() {
	case "$BACKEND" in
	vhost-dax)
		local bin=${VHOST_DAX_BIN:-$REPO/target/release/vhost-dax}
		if [ "$BUILD" = 1 ] && [ -z "${VHOST_DAX_BIN:-}" ]; then
			log "cargo build --release (repository root)"
			(cd "$REPO" && cargo build --release --quiet) ||
				die "cargo build --release failed; cannot test the vhost-dax backend"
		fi
		[ -x "$bin" ] || die "$bin does not exist"
		# The subcommand exists once `fs --help` succeeds and documents --shared-dir
		# (the crate skeleton's main ignores its arguments and exits 0).
		local help
		help=$("$bin" fs --help 2>&1 || true)
		if ! grep -q -- '--shared-dir' <<<"$help"; then
			die "'vhost-dax fs' is not available in this build ('$bin fs --help' does not describe --shared-dir): the fs daemon has not landed yet. Run the harness against the reference daemon with: $0 --backend virtiofsd"
		fi
		DAEMON=("$bin" fs --socket "$SOCK" --shared-dir "$SHARED")
		# vhost-user-fs-pci (QEMU 10) sets the tag itself; the generic device of the DAX
		# stage reads it from the daemon's config space.
		[ "$MODE" = fs ] || DAEMON+=(--tag "$TAG")
		# Like virtiofsd, xattrs are opt-in; the workload tests them.
		grep -q -- '--xattr' <<<"$help" && DAEMON+=(--xattr)
		BACKEND_VERSION=$("$bin" --version 2>/dev/null | head -n 1 || true)
		;;
	virtiofsd)
		local bin=${VIRTIOFSD:-}
		[ -n "$bin" ] || bin=$(command -v virtiofsd || true)
		local cargo_bin=${CARGO_HOME:-$HOME/.cargo}/bin
		[ -n "$bin" ] || { [ -x "$cargo_bin/virtiofsd" ] && bin=$cargo_bin/virtiofsd; } || true
		[ -n "$bin" ] || { [ -x /usr/libexec/virtiofsd ] && bin=/usr/libexec/virtiofsd; } || true
		if [ -z "$bin" ]; then
			[ "$INSTALL" = 1 ] || die "virtiofsd not found (\$VIRTIOFSD, PATH, $cargo_bin, /usr/libexec)"
			local need=()
			dpkg -s libseccomp-dev >/dev/null 2>&1 || need+=(libseccomp-dev)
			dpkg -s libcap-ng-dev >/dev/null 2>&1 || need+=(libcap-ng-dev)
			dpkg -s pkg-config >/dev/null 2>&1 || need+=(pkg-config)
			[ ${#need[@]} = 0 ] || apt_install "${need[@]}"
			log "cargo install virtiofsd --locked (takes about a minute)"
			cargo install virtiofsd --locked -j "${CARGO_BUILD_JOBS:-1}" --quiet || die "cargo install virtiofsd failed"
			bin=$cargo_bin/virtiofsd
		fi
		local help
		help=$("$bin" --help 2>&1 || true)
		DAEMON=("$bin")
		if grep -q -- '--socket-path' <<<"$help"; then DAEMON+=(--socket-path "$SOCK"); else DAEMON+=(--socket "$SOCK"); fi
		DAEMON+=(--shared-dir "$SHARED")
		[ "$MODE" = fs ] || { grep -q -- '--tag' <<<"$help" && DAEMON+=(--tag "$TAG"); }
		grep -q -- '--sandbox' <<<"$help" && DAEMON+=(--sandbox none)
		grep -q -- '--cache' <<<"$help" && DAEMON+=(--cache auto)
		# xattrs are off by default in virtiofsd; the workload tests them.
		grep -q -- '--xattr' <<<"$help" && DAEMON+=(--xattr)
		BACKEND_VERSION=$("$bin" --version 2>/dev/null | head -n 1 || true)
		;;
	cmd)
		DAEMON=(bash -c "exec $BACKEND_CMD")
		;;
	esac
	if [ -n "$BACKEND_ARGS" ]; then
		local extra
		read -r -a extra <<<"$BACKEND_ARGS"
		if [ "$BACKEND" = cmd ]; then DAEMON[2]+=" $BACKEND_ARGS"; else DAEMON+=("${extra[@]}"); fi
	fi
}

running() { # PID is alive and not a zombie waiting to be reaped
	local st
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) && [ "${st%% *}" != Z ]
}
# wait_gone PID TENTHS: waits up to TENTHS/10 s for PID to end; true if it did.
wait_gone() {
	local i
	for ((i = 0; i < $2; i++)); do
		running "$1" || return 0
		sleep 0.1
	done
	! running "$1"
}
QEMU_PID=
TAIL_PID=
MONITOR_PID=
STALL_PID=
# The daemons: pids and names (the fs daemon is "backend", its log backend.log).
DAEMON_PIDS=()
DAEMON_NAMES=()
cleanup() {
	local p
	for p in $MONITOR_PID $STALL_PID $TAIL_PID $QEMU_PID "${DAEMON_PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
}
trap 'cleanup; rm -rf "${SOCKDIR:-}"' EXIT
trap 'exit 130' INT TERM

# A guest kernel that reports an RCU stall has a vCPU that stopped running; under TCG
# on a busy host that has been a timer interrupt that never came (1 run in 44, before
# the workload started), and the guest then sits until the timeout. Stop it at the
# first report and say so: run.sh exits 3 for it, and .ci/run runs such a stage once
# more. A stall the backend caused would stall again.
stall_watch() {
	trap - EXIT
	while running "$QEMU_PID"; do
		if grep -q 'rcu: INFO: rcu_[a-z]* detected stalls' "$RUN/console.log"; then
			: >"$RUN/guest-stalled"
			sleep 3 # the rest of the report, for the console log
			kill "$QEMU_PID" 2>/dev/null || true
			return
		fi
		sleep 1
	done
}

# start_daemon NAME SOCKET CMD...: runs CMD with its output in $RUN/NAME.log and waits
# for it to create SOCKET.
start_daemon() {
	local name=$1 sock=$2 pid i
	shift 2
	log "$name: $*"
	"$@" >"$RUN/$name.log" 2>&1 </dev/null &
	pid=$!
	DAEMON_PIDS+=("$pid")
	DAEMON_NAMES+=("$name")
	for i in $(seq 1 300); do
		[ -S "$sock" ] && return 0
		if ! running "$pid"; then
			local rc=0
			wait "$pid" || rc=$?
			tail -n 20 "$RUN/$name.log" | sed 's/^/  backend| /' >&2
			die "the $name daemon exited (status $rc) before creating its socket $sock: $*"
		fi
		sleep 0.1
	done
	die "the $name daemon did not create $sock within 30 s"
}

start_backend() {
	export VD_SOCKET=$SOCK VD_SHARED_DIR=$SHARED VD_TAG=$TAG
	start_daemon backend "$SOCK" "${DAEMON[@]}"
}

# ---------------------------------------------------------------- run

ensure_host_tools
[ "$MODE" = fs ] || . "$HERE/stages11.sh"
# Several runs may share the cache (other users of the machine): each run gets its own
# directory, runs/latest points at the newest, and the cache is filled under a lock.
mkdir -p "$CACHE/runs" "$CACHE/initramfs"
RUN=$(mktemp -d "$CACHE/runs/$(date +%Y%m%d-%H%M%S).XXXX")
chmod 755 "$RUN"
SHARED=$RUN/shared
mkdir -p "$SHARED"
ln -sfn "$(basename "$RUN")" "$CACHE/runs/latest"
# Keep the 5 newest runs; older ones go once they are an hour old.
find "$CACHE/runs" -mindepth 1 -maxdepth 1 -type d -name '2*.*' -printf '%T@ %p\n' | sort -rn | tail -n +6 |
	while read -r _ old; do [ -n "$(find "$old" -maxdepth 0 -mmin +60)" ] && rm -rf "$old"; done || true
SOCKDIR=$(mktemp -d "${TMPDIR:-/tmp}/vhost-dax-guest.XXXXXX")
SOCK=$SOCKDIR/fs.sock
BACKEND_VERSION=
EXPECTED_BOOTS=1
BOOT_BY=reset
STAGE_APPEND=
STAGE_QEMU_ARGS=()
# First: a backend that cannot run ends the run before the downloads.
case "$MODE" in
fs) backend_command ;;
dax) backend_command; dax_configure ;;
dax-perf) backend_command; daxperf_configure ;;
pmem) pmem_configure ;;
esac
exec 9>"$CACHE/.setup.lock"
flock 9
setup_kernel
build_base_initramfs
build_probe
flock -u 9
build_overlay
case "$MODE" in
fs) make_host_tree ;;
dax) dax_prepare ;;
dax-perf) daxperf_prepare ;;
pmem) pmem_prepare ;;
esac
T_SETUP=$(($(date +%s) - T_START))
case "$MODE" in
fs | dax | dax-perf) start_backend ;;
pmem) pmem_start_daemons ;;
esac

log "kernel $KREL ($KPKG $KVER_PKG, $KERNEL_SUITE), QEMU $("$QEMU" --version | head -n 1 | awk '{print $4}'), TCG, $SMP vCPU(s), timeout ${TIMEOUT}s"
APPEND="console=ttyS0 quiet panic=-1 rdinit=/init vd_tag=${GUEST_TAG-$TAG} vd_stages=$STAGES vd_check_timeout=$CHECK_TIMEOUT"
[ -z "$MOUNT_OPTS" ] || APPEND+=" vd_mount_opts=$MOUNT_OPTS"
[ -z "$STAGE_APPEND" ] || APPEND+=" $STAGE_APPEND"
QEMU_ARGS=(
	-nodefaults -no-user-config -display none
	-machine q35 -accel tcg -cpu max -smp "$SMP" -m "$MEM$MEM_OPTS"
	-object memory-backend-memfd,id=mem,size="$MEM",share=on -numa node,memdev=mem
	-kernel "$VMLINUZ" -initrd "$RUN/initrd.img" -append "$APPEND"
	-chardev file,id=con,path="$RUN/console.log",append=on -serial chardev:con
)
# A guest that reboots on purpose (the pmem stage) needs QEMU to reset, not exit.
[ "$EXPECTED_BOOTS" -gt 1 ] && [ "$BOOT_BY" = reset ] || QEMU_ARGS+=(-no-reboot)
# VD_QEMU_ARGS: extra QEMU arguments for debugging (e.g. "-trace vhost_dev_start*").
[ -z "${VD_QEMU_ARGS:-}" ] || { read -r -a extra <<<"$VD_QEMU_ARGS"; QEMU_ARGS+=("${extra[@]}"); }
if [ "$MODE" = fs ]; then
	QEMU_ARGS+=(-chardev socket,id=char0,path="$SOCK"
		-device vhost-user-fs-pci,chardev=char0,tag="$TAG",num-request-queues="$REQUEST_QUEUES")
else
	QEMU_ARGS+=("${STAGE_QEMU_ARGS[@]}")
fi
: >"$RUN/console.log"
T_GUEST=$(date +%s)
# BOOT_BY=restart (the pmem stage on QEMU 11.1, which crashes when it resets a device
# that still has shared-memory mappings): each boot after the first is a new QEMU
# process on the same daemons (--reconnect), the guest powering off in between.
QEMU_RUNS=1
[ "$BOOT_BY" = restart ] && QEMU_RUNS=$EXPECTED_BOOTS
for ((QEMU_RUN = 1; QEMU_RUN <= QEMU_RUNS; QEMU_RUN++)); do
timeout -k 5 "$TIMEOUT" "$QEMU" "${QEMU_ARGS[@]}" >>"$RUN/qemu.log" 2>&1 </dev/null &
QEMU_PID=$!
tail -n +1 -f --pid="$QEMU_PID" "$RUN/console.log" | tr -d '\r' &
TAIL_PID=$!
stall_watch &
STALL_PID=$!
if [ "$MODE" != fs ]; then
	stage_monitor &
	MONITOR_PID=$!
fi

# Whichever ends first: the guest (normal) or a daemon. virtiofsd ends by itself
# when QEMU closes the socket at power-off, which can be noticed a moment before QEMU
# has exited; a daemon that ends while QEMU goes on running has crashed or given up.
status_text() { # exit status, and the signal if it was one
	if [ "$1" -gt 128 ]; then echo "status $1 (signal $(kill -l "$1" 2>/dev/null || echo $(($1 - 128))))"; else echo "status $1"; fi
}
DAEMON_NOTES=()
DAEMON_DONE=() # per daemon: 1 once reaped
FIRST=
wait -n -p FIRST "$QEMU_PID" "${DAEMON_PIDS[@]}" || true
for i in "${!DAEMON_PIDS[@]}"; do
	[ "$FIRST" = "${DAEMON_PIDS[$i]}" ] || continue
	rc=0
	wait "$FIRST" || rc=$?
	DAEMON_DONE[i]=1
	if ! wait_gone "$QEMU_PID" 100; then
		DAEMON_NOTES+=("${DAEMON_NAMES[$i]}: the daemon exited ($(status_text "$rc")) while the guest was still running")
		kill "$QEMU_PID" 2>/dev/null || true
	elif [ "$rc" != 0 ]; then
		DAEMON_NOTES+=("${DAEMON_NAMES[$i]}: the daemon exited with $(status_text "$rc")")
	fi
done
QEMU_RC=0
wait "$QEMU_PID" || QEMU_RC=$?
QEMU_PID=
wait "$TAIL_PID" 2>/dev/null || true
TAIL_PID=
kill "$STALL_PID" 2>/dev/null || true
wait "$STALL_PID" 2>/dev/null || true
STALL_PID=
if [ -n "$MONITOR_PID" ]; then
	kill "$MONITOR_PID" 2>/dev/null || true
	wait "$MONITOR_PID" 2>/dev/null || true
	MONITOR_PID=
fi
# A failed boot, or a daemon gone, ends the series.
[ "$QEMU_RC" = 0 ] && [ ${#DAEMON_NOTES[@]} = 0 ] || break
done
T_GUEST=$(($(date +%s) - T_GUEST))

# A daemon should end by itself once QEMU has gone (virtiofsd does); otherwise it gets
# SIGTERM, which must be enough.
for i in "${!DAEMON_PIDS[@]}"; do
	[ -z "${DAEMON_DONE[$i]:-}" ] || continue
	pid=${DAEMON_PIDS[$i]}
	name=${DAEMON_NAMES[$i]}
	rc=0
	if wait_gone "$pid" 50; then
		wait "$pid" || rc=$?
		[ "$rc" = 0 ] || DAEMON_NOTES+=("$name: the daemon exited with $(status_text "$rc")")
	else
		kill -TERM "$pid" 2>/dev/null || true
		if wait_gone "$pid" 100; then
			wait "$pid" || rc=$?
			case "$rc" in
			0 | 143) ;;
			*) DAEMON_NOTES+=("$name: the daemon, stopped with SIGTERM after the guest ended, exited with $(status_text "$rc")") ;;
			esac
		else
			kill -KILL "$pid" 2>/dev/null || true
			wait "$pid" || true
			DAEMON_NOTES+=("$name: the daemon did not stop within 10 s of SIGTERM")
		fi
	fi
	DAEMON_DONE[i]=1
done
DAEMON_PIDS=()

# ---------------------------------------------------------------- verdict

HOST_PASSED=0
HOST_FAILED=0
host_check() { # host_check NAME FUNCTION [ARGS]: FUNCTION runs in a subshell with set -e
	local name=host-$1 out rc
	shift
	# Not inside an `if`: bash ignores set -e in everything a condition runs.
	set +e
	out=$(set -e; "$@" 2>&1)
	rc=$?
	set -e
	if [ "$rc" = 0 ]; then
		HOST_PASSED=$((HOST_PASSED + 1))
		echo "PASS $name"
	else
		HOST_FAILED=$((HOST_FAILED + 1))
		echo "FAIL $name: $(printf '%s\n' "$out" | grep -v '^\s*$' | tail -n 1)"
	fi
}
want() { # want ACTUAL EXPECTED WHAT
	[ "$1" = "$2" ] || { echo "$3: got '$1', want '$2'"; return 1; }
}

# Every boot ends with its own `N passed, M failed` line (the pmem stage boots twice).
CONSOLE=$(tr -d '\r' <"$RUN/console.log")
SUMMARIES=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' <<<"$CONSOLE" || true)
N_SUMMARIES=$(grep -c . <<<"$SUMMARIES" || true)
LISTED_PASS=$(grep -c '^PASS ' <<<"$CONSOLE" || true)
LISTED_FAIL=$(grep -c '^FAIL ' <<<"$CONSOLE" || true)
GUEST_PASSED=$LISTED_PASS
GUEST_FAILED=$LISTED_FAIL
N_BOOTS=$(grep -c '^INFO guest kernel ' <<<"$CONSOLE" || true)
if [ "$N_SUMMARIES" -ge "$EXPECTED_BOOTS" ]; then
	GUEST_PASSED=$(awk '{p += $1} END {print p + 0}' <<<"$SUMMARIES")
	GUEST_FAILED=$(awk '{f += $3} END {print f + 0}' <<<"$SUMMARIES")
	[ "$LISTED_PASS $LISTED_FAIL" = "$GUEST_PASSED $GUEST_FAILED" ] ||
		{ echo "FAIL guest-summary: $LISTED_PASS PASS and $LISTED_FAIL FAIL lines, but the summaries add up to $GUEST_PASSED passed, $GUEST_FAILED failed"; HOST_FAILED=$((HOST_FAILED + 1)); }
	if [ "$N_BOOTS" != "$EXPECTED_BOOTS" ]; then
		echo "FAIL guest-boots: the guest booted $N_BOOTS times, want $EXPECTED_BOOTS"
		HOST_FAILED=$((HOST_FAILED + 1))
	fi
else
	HOST_FAILED=$((HOST_FAILED + 1))
	last=$(grep -E '^(PASS|FAIL) ' <<<"$CONSOLE" | tail -n 1 | awk '{print $2}' | tr -d :)
	if [ -e "$RUN/guest-stalled" ]; then
		why="the guest's kernel reported an RCU stall (a vCPU stopped running) and was stopped"
	elif [ "$QEMU_RC" = 124 ] || [ "$QEMU_RC" = 137 ]; then
		why="the guest was killed after the ${TIMEOUT}s timeout"
	else
		why="QEMU exited with status $QEMU_RC"
	fi
	boot=
	[ "$EXPECTED_BOOTS" = 1 ] || boot=" in boot $N_BOOTS of $EXPECTED_BOOTS"
	echo "FAIL guest-finished: no summary line$boot; $why; last check reported: ${last:-none} (the next one did not finish)"
	tail -n 5 "$RUN/qemu.log" | sed 's/^/  qemu| /'
fi

case "$MODE" in
fs) fs_host_checks ;;
dax) dax_host_checks ;;
dax-perf) daxperf_host_checks ;;
pmem) pmem_host_checks ;;
esac
for note in "${DAEMON_NOTES[@]}"; do
	HOST_FAILED=$((HOST_FAILED + 1))
	name=${note%%:*}
	echo "FAIL $name: ${note#*: }"
	tail -n 20 "$RUN/$name.log" | sed 's/^/  backend| /'
done

echo "INFO backend $BACKEND${BACKEND_VERSION:+ ($BACKEND_VERSION)}, kernel $KREL, QEMU $("$QEMU" --version | head -n 1 | awk '{print $4}'), stage $MODE, setup ${T_SETUP}s, guest run ${T_GUEST}s, total $(($(date +%s) - T_START))s; logs in $RUN"
PASSED=$((GUEST_PASSED + HOST_PASSED))
FAILED=$((GUEST_FAILED + HOST_FAILED))
echo "total: $PASSED passed, $FAILED failed"
if [ "$FAILED" != 0 ] && [ -e "$RUN/guest-stalled" ]; then
	echo "INFO the guest stalled (RCU stall report on its console): exit status 3"
	exit 3
fi
[ "$FAILED" = 0 ]
