# Check runner for the guest workload (busybox ash). Sourced by /init.
#
# A stage file (workload/<stage>.sh) defines shell functions and calls
#   check NAME FUNCTION [ARGS...]
# for each. The function runs in a subshell with `set -e`, its output captured; it
# passes when it returns 0. The runner prints `PASS <stage>-<NN>-<name>` or
# `FAIL <stage>-<NN>-<name>: <last line of output>`, numbering checks per stage.
# A check that runs longer than CHECK_TIMEOUT seconds is killed and fails.

PASSED=0
FAILED=0
STAGE=none
_stage_n=0
CHECK_TIMEOUT=${CHECK_TIMEOUT:-90}

# begin_stage NAME DIR: numbering restarts; DIR becomes the fresh working directory.
begin_stage() {
	STAGE=$1
	_stage_n=0
	rm -rf "$2"
	mkdir -p "$2"
	cd "$2"
}

check() {
	_stage_n=$((_stage_n + 1))
	_name=$(printf '%s-%02d-%s' "$STAGE" "$_stage_n" "$1")
	shift
	_out=/tmp/check.out
	( set -e; "$@" ) >"$_out" 2>&1 </dev/null &
	_pid=$!
	# The watchdog leaves the share (cd /), or its sleep would keep /mnt busy.
	( cd / && sleep "$CHECK_TIMEOUT" && kill -9 "$_pid" 2>/dev/null && echo "timed out after ${CHECK_TIMEOUT}s" >>"$_out" ) &
	_wd=$!
	wait "$_pid"
	_rc=$?
	kill "$_wd" 2>/dev/null
	if [ "$_rc" -eq 0 ]; then
		PASSED=$((PASSED + 1))
		echo "PASS $_name"
	else
		FAILED=$((FAILED + 1))
		_detail=$(grep -v '^[[:space:]]*$' "$_out" | tail -n 1)
		echo "FAIL $_name: ${_detail:-exit status $_rc}"
		# The whole output helps when the last line is not enough.
		sed 's/^/    | /' "$_out" | tail -n 15
	fi
	# A check may cd; the next one starts in the stage directory again.
	cd "$STAGE_DIR" 2>/dev/null || true
}

# ---- assertion helpers (use inside check functions; they fail with a message) ----

die() {
	echo "$*"
	return 1
}

# expect_eq ACTUAL EXPECTED WHAT
expect_eq() {
	[ "$1" = "$2" ] || die "$3: got '$1', want '$2'"
}

# expect_errno ERRNO_TEXT CMD...: CMD must fail and mention ERRNO_TEXT (an errno name
# printed by probe, or the strerror text busybox prints).
expect_errno() {
	_want=$1
	shift
	if _msg=$("$@" 2>&1); then
		die "'$*' succeeded, expected failure with $_want"
		return 1
	fi
	case "$_msg" in
	*"$_want"*) return 0 ;;
	*) die "'$*' failed with '$_msg', expected $_want" ;;
	esac
}

# Fields of stat(1): size, links, inode, mode (octal), uid:gid, 512-byte blocks, mtime.
size_of() { stat -c %s "$1"; }
links_of() { stat -c %h "$1"; }
inode_of() { stat -c %i "$1"; }
mode_of() { stat -c %a "$1"; }
owner_of() { stat -c %u:%g "$1"; }
blocks_of() { stat -c %b "$1"; }
mtime_of() { stat -c %Y "$1"; }

# Drops the guest's page cache and dentries/inodes, so the next access goes to the daemon.
drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

# mnt_users DIR: the processes whose working directory, open files or mappings are
# under DIR (what keeps an unmount busy).
mnt_users() {
	for _p in /proc/[0-9]*; do
		if ls -l "$_p/cwd" "$_p/fd" 2>/dev/null | grep -q -- "-> $1" || grep -q " $1" "$_p/maps" 2>/dev/null; then
			echo "${_p#/proc/}:$(tr '\000' ' ' <"$_p/cmdline" 2>/dev/null)"
		fi
	done
}

# umount_share: unmounts $MNT, trying again for 5 s while it is busy (a helper process
# such as busybox timeout's watcher may linger a moment on the share).
umount_share() {
	_i=0
	until _err=$(umount "$MNT" 2>&1); do
		_i=$((_i + 1))
		if [ $_i -ge 50 ]; then
			echo "$_err; users: $(mnt_users "$MNT" | tr '\n' ' ')"
			return 1
		fi
		sleep 0.1
	done
}

# stage_remount OPTS: unmount the share and mount it again with OPTS. In the stage's own
# shell, between checks: its working directory is on the share, and a check's subshell
# cannot move it away. The check after it asserts the outcome.
stage_remount() {
	cd /
	REMOUNT_ERR=$({ umount_share && mount -t virtiofs -o "$1" "$vd_tag" "$MNT"; } 2>&1) &&
		REMOUNT_ERR= || REMOUNT_ERR="remount -o $1: ${REMOUNT_ERR:-failed}"
	cd "$STAGE_DIR" 2>/dev/null || true
}
mounted_with() { # mounted_with OPTION: the share's mount options include OPTION
	[ -z "$REMOUNT_ERR" ] || die "$REMOUNT_ERR"
	opts=$(awk -v m="$MNT" '$2 == m && $3 == "virtiofs" {print $4}' /proc/mounts)
	case ",$opts," in *",$1,"*) ;; *) die "mount options '$opts' lack $1" ;; esac
}

# count_nonzero FILE OFFSET LEN: how many bytes in the range are not zero (no output,
# and a failure, when the read fails).
count_nonzero() {
	probe pread "$1" "$2" "$3" >/tmp/count_nonzero.bytes || return 1
	tr -d '\000' </tmp/count_nonzero.bytes | wc -c
}
