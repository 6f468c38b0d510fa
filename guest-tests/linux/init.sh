#!/bin/sh
# /init of the vhost-dax Linux test guest (busybox ash, PID 1).
#
# Loads the modules listed in /etc/modules.load (in order), mounts the virtio-fs
# share, runs the workload stages, prints `N passed, M failed` and powers off (or
# reboots, when a stage sets FINISH=reboot).
# Parameters come from the kernel command line (the kernel hands unknown
# key=value words to init as environment variables):
#   vd_tag=TAG            virtio-fs tag to mount (none: no share, e.g. the pmem stage)
#   vd_stages=fs[,..]     workload stages to run, files /workload/<stage>.sh
#   vd_mount_opts=OPTS    extra mount options, comma separated (e.g. dax=never)
#   vd_check_timeout=S    per-check timeout in seconds
#   vd_pmem_marker=TEXT   /dev/pmem0 and /dev/pmem1 start with TEXT: a reader started
#                         just before virtio_pmem is loaded times how long after the
#                         device appears its first 4 KiB show TEXT (/tmp/first-read.*)

export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
# Timestamps from touch -d/-t and date are interpreted in UTC, like on the host side.
export TZ=UTC0

MNT=/mnt
CHECK_TIMEOUT=${vd_check_timeout:-90}
# shellcheck source=workload/lib.sh
. /workload/lib.sh

echo "INFO guest kernel $(uname -r), $(nproc) cpu(s), $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo)"

FINISH=poweroff
finish() {
	echo "INFO guest workload took $(($(date +%s) - T0)) s"
	echo "$PASSED passed, $FAILED failed"
	sync
	if [ "$FINISH" = reboot ]; then
		echo "INFO rebooting"
		reboot -f
	else
		poweroff -f
	fi
	sleep 10
}

T0=$(date +%s)
mod_fail=0
loaded=
while read -r m; do
	[ -n "$m" ] || continue
	if [ "${m##*/}" = virtio_pmem.ko ] && [ -n "$vd_pmem_marker" ]; then
		# The readers wait for the device node and read it the moment it exists.
		for d in 0 1; do
			probe first-read /dev/pmem$d "$vd_pmem_marker" 20000 >/tmp/first-read.$d 2>&1 &
		done
	fi
	t_ins=$(cut -d' ' -f1 /proc/uptime)
	if out=$(insmod "/lib/modules/$m" 2>&1); then
		loaded="$loaded ${m##*/}"
		[ "${m##*/}" != virtio_pmem.ko ] || [ -z "$vd_pmem_marker" ] ||
			echo "INFO insmod virtio_pmem: uptime $t_ins -> $(cut -d' ' -f1 /proc/uptime) s"
	else
		echo "INFO insmod $m: $out"
		mod_fail=1
	fi
done </etc/modules.load
echo "INFO insmod (in order):${loaded:- none}"

# Checks of the guest itself, numbered on their own between the stages.
_guest_n=0
guest_check() {
	STAGE=guest
	STAGE_DIR=/
	_stage_n=$_guest_n
	check "$@"
	_guest_n=$_stage_n
}

t_modules() {
	[ "$mod_fail" = 0 ] || die "a module failed to load (see INFO lines)"
	[ "${vd_tag:-none}" = none ] || grep -qw virtiofs /proc/filesystems || die "no virtiofs in /proc/filesystems"
}
guest_check modules t_modules

t_mount() {
	[ -n "$vd_tag" ] || die "no vd_tag= on the kernel command line"
	mount -t virtiofs ${vd_mount_opts:+-o "$vd_mount_opts"} "$vd_tag" "$MNT"
	line=$(grep " $MNT virtiofs " /proc/mounts) || die "not in /proc/mounts: $(cat /proc/mounts)"
	echo "INFO $line" >/dev/console
}
if [ "${vd_tag:-none}" != none ]; then
	guest_check mount t_mount
	grep -q " $MNT virtiofs " /proc/mounts || finish
fi

for stage in $(echo "${vd_stages:-fs}" | tr ',' ' '); do
	if [ -f "/workload/$stage.sh" ]; then
		t_stage=$(date +%s)
		# shellcheck source=/dev/null
		. "/workload/$stage.sh"
		echo "INFO stage $stage took $(($(date +%s) - t_stage)) s"
	else
		guest_check "stage-$stage-exists" die "no workload file /workload/$stage.sh"
	fi
done

cd /
t_unmount() {
	umount_share
	! grep -q " $MNT " /proc/mounts || die "still mounted"
}
[ "${vd_tag:-none}" = none ] || guest_check unmount t_unmount

finish
