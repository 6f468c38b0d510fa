# Stage "pmem": virtio-pmem through QEMU 11.1's generic vhost-user device (Linux 6.12).
#
# Sourced by /init (no share: vd_tag=none). Two devices, served by `vhost-dax pmem`:
# a 64 MiB read-write and a 32 MiB --readonly one, both ext4 images the host made with
# mkfs.ext4 -d, each starting with the raw marker VDPMEM-<token>-RW / -RO in the ext4
# boot block. Which /dev/pmemN is which is found from that marker. /init started a
# reader on each device just before loading virtio_pmem (/tmp/first-read.N).
#
# The first boot writes files (fsync, msync), leaves /boot-marker on the read-write file
# system and reboots (`reboot -f`, QEMU resets); the second boot finds the marker and
# checks that everything is still there. run.sh checks the images after power-off.
#
# vd_pmem_ro=refused (QEMU 11.1): QEMU cannot map the --readonly device's read-only
# descriptor (it maps every SHMEM_MAP writable on the host), so that device stays
# unmapped: the guest reads zeros from it, cannot mount it, and cannot change the image
# (what is checked instead of the mount).
# shellcheck disable=SC2015

STAGE_DIR=/tmp/pmem-work
begin_stage pmem "$STAGE_DIR"
PM=/pmem
PMRO=/pmem-ro
TOKEN=$vd_pmem_token
RW_SIZE=${vd_pmem_rw_size:-67108864}
RO_SIZE=${vd_pmem_ro_size:-33554432}
RO_REFUSED=0
[ "${vd_pmem_ro:-}" != refused ] || RO_REFUSED=1
mkdir -p "$PM" "$PMRO"

# The device whose first bytes are VDPMEM-<token>-<KIND> (RW or RO).
pmem_dev() {
	for _d in /dev/pmem0 /dev/pmem1; do
		[ "$(head -c 22 "$_d" 2>/dev/null)" = "VDPMEM-$TOKEN-$1" ] && { echo "$_d"; return 0; }
	done
	return 1
}

# ---- both boots ----

# The readers end when the marker shows, or after 20 s (a line with reads=, or probe's
# error when the device never appeared).
i=0
while [ $i -lt 250 ]; do
	n=$(cat /tmp/first-read.0 /tmp/first-read.1 2>/dev/null | grep -c -e reads= -e '^probe:')
	[ "$n" -lt 2 ] || break
	i=$((i + 1))
	sleep 0.1
done

t_first_read() {
	bad=
	seen=0
	for d in 0 1; do
		r=$(cat /tmp/first-read.$d 2>/dev/null)
		echo "INFO first read of /dev/pmem$d (reader started before virtio_pmem was loaded): $r" >/dev/console
		case "$r" in
		*"first=marker "*) seen=$((seen + 1)) ;;
		*) bad="$bad pmem$d: ${r:-no result}" ;;
		esac
	done
	if [ "$RO_REFUSED" = 1 ]; then
		expect_eq "$seen" 1 "devices whose first read saw a marker (the read-only one is unmapped)"
	else
		[ -z "$bad" ] || die "the first read did not see the host's marker:$bad"
	fi
}
check first-read-sees-marker t_first_read

t_marker_visible() {
	for d in 0 1; do
		r=$(cat /tmp/first-read.$d 2>/dev/null)
		case "$r" in
		*"marker_after_ms=never"*) [ "$RO_REFUSED" = 1 ] || die "pmem$d: the marker never showed: $r" ;;
		"") die "pmem$d: no result from the first-read reader" ;;
		*marker_after_ms=*) ;;
		*) die "pmem$d: $r" ;;
		esac
	done
}
check marker-visible t_marker_visible

t_devices() {
	rw=$(pmem_dev RW) || die "no device starts with VDPMEM-$TOKEN-RW ($(head -c 22 /dev/pmem0 2>&1 | od -c | head -n 2))"
	if [ "$RO_REFUSED" = 1 ]; then
		# The other device: unmapped, it reads as zeros.
		ro=/dev/pmem0
		[ "$rw" != /dev/pmem0 ] || ro=/dev/pmem1
		expect_eq "$(head -c 4096 "$ro" | od -An -v -tx1 | tr -d ' \n' | tr -d 0)" "" "the unmapped read-only device's first 4 KiB"
	else
		ro=$(pmem_dev RO) || die "no device starts with VDPMEM-$TOKEN-RO"
	fi
	[ -b "$rw" ] && [ -b "$ro" ] || die "not block devices: $rw $ro"
	expect_eq "$(($(cat /sys/block/${rw#/dev/}/size) * 512))" "$RW_SIZE" "size of the read-write device $rw"
	expect_eq "$(($(cat /sys/block/${ro#/dev/}/size) * 512))" "$RO_SIZE" "size of the read-only device $ro"
	expect_eq "$(cat /sys/block/${rw#/dev/}/queue/dax)" 1 "DAX support of $rw"
	echo "INFO read-write $rw, read-only $ro" >/dev/console
}
check devices t_devices
RW=$(pmem_dev RW)
RO=$(pmem_dev RO)
if [ "$RO_REFUSED" = 1 ]; then
	RO=/dev/pmem0
	[ "$RW" != /dev/pmem0 ] || RO=/dev/pmem1
fi

t_mount_dax() {
	[ -n "$RW" ] || die "no read-write device"
	mount -t ext4 -o dax "$RW" "$PM"
	opts=$(awk -v m="$PM" '$2 == m {print $4}' /proc/mounts)
	case ",$opts," in *,dax,* | *,dax=always,*) ;; *) die "mount options '$opts' lack dax" ;; esac
	expect_eq "$(probe statx "$PM/host-marker" | cut -d' ' -f1)" dax "statx of /host-marker"
}
check mount-ext4-dax t_mount_dax

t_host_files() {
	expect_eq "$(cat "$PM/host-marker")" "made on the host $TOKEN" "/host-marker"
	probe pattern-check "$PM/host-pattern" 0 1048576 500
}
check host-made-files t_host_files

t_map_sync() {
	# virtio-pmem is not a synchronous DAX device: MAP_SYNC is refused.
	expect_errno EOPNOTSUPP probe mmap-sync "$PM/host-pattern"
}
check map-sync-refused t_map_sync

t_ro_mount() {
	[ -n "$RO" ] || die "no read-only device"
	if [ "$RO_REFUSED" = 1 ]; then
		! mount -t ext4 -o ro,noload,dax "$RO" "$PMRO" 2>/dev/null ||
			die "the unmapped read-only device mounted"
		return 0
	fi
	mount -t ext4 -o ro,noload,dax "$RO" "$PMRO"
	expect_eq "$(cat "$PMRO/ro-marker")" "read-only image $TOKEN" "/ro-marker"
	probe pattern-check "$PMRO/ro-pattern" 0 524288 501
	expect_errno "Read-only file system" sh -c "echo x >$PMRO/new-file"
}
check readonly-mount t_ro_mount

# A raw write to the --readonly device, under the file system (at its last 4 KiB, which
# ext4 leaves free): it must fail, or leave the device's bytes as they were. run.sh
# compares the image with its checksum from before the boot.
t_ro_raw_write() {
	[ -n "$RO" ] || die "no read-only device"
	off=$((RO_SIZE - 4096))
	probe pread "$RO" "$off" 4096 >before.bin
	if out=$(probe pattern-write "$RO" "$off" 4096 520 direct 2>&1); then
		probe fsync "$RO" 2>/dev/null || true
		drop_caches
		probe pread "$RO" "$off" 4096 >after.bin
		if cmp -s before.bin after.bin; then
			echo "INFO raw write to the read-only device: accepted, the bytes did not change" >/dev/console
		else
			die "a raw O_DIRECT write to the read-only device changed what the guest reads"
		fi
	else
		echo "INFO raw write to the read-only device: refused: $out" >/dev/console
	fi
}
check readonly-raw-write t_ro_raw_write

# ---- the first boot: write, flush, leave the marker, reboot ----

if [ ! -e "$PM/boot-marker" ]; then
	echo "INFO first boot"

	t_write_fsync() {
		mkdir -p "$PM/guest"
		probe pattern-write "$PM/guest/boot1-pattern" 0 3145733 510
		probe fsync "$PM/guest/boot1-pattern"
		echo "boot 1 wrote this $TOKEN" >"$PM/guest/boot1-text"
		probe fsync "$PM/guest/boot1-text"
		drop_caches
		probe pattern-check "$PM/guest/boot1-pattern" 0 3145733 510
		expect_eq "$(cat "$PM/guest/boot1-text")" "boot 1 wrote this $TOKEN" "boot1-text"
	}
	check write-fsync t_write_fsync

	t_mmap_msync() {
		probe pattern-write "$PM/guest/mmap-file" 0 16384 511
		expect_eq "$(probe statx "$PM/guest/mmap-file" | cut -d' ' -f1)" dax "statx"
		probe map "$PM/guest/mmap-file" 16384 rw "write:8192:written through mmap" msync
		expect_eq "$(probe pread "$PM/guest/mmap-file" 8192 20)" "written through mmap" "read(2)"
		probe fsync "$PM/guest/mmap-file"
	}
	check mmap-write-msync t_mmap_msync

	t_boot_marker() {
		echo "boot 1 done $TOKEN" >"$PM/boot-marker"
		probe fsync "$PM/boot-marker"
		sync
		! grep -q " $PMRO " /proc/mounts || umount "$PMRO"
		umount "$PM"
		! grep -q " $PM " /proc/mounts || die "still mounted"
	}
	check boot-marker-and-unmount t_boot_marker
	# A reset (QEMU's own virtio-pmem-pci) or a new QEMU on the same daemons (QEMU 11.1).
	FINISH=${vd_between_boots:-reboot}
else
	# ---- the second boot: everything from the first is there ----
	echo "INFO second boot"

	t_second_boot() {
		expect_eq "$(cat "$PM/boot-marker")" "boot 1 done $TOKEN" "/boot-marker"
	}
	check second-boot-marker t_second_boot

	t_boot1_data() {
		probe pattern-check "$PM/guest/boot1-pattern" 0 3145733 510
		expect_eq "$(size_of "$PM/guest/boot1-pattern")" 3145733 "size of boot1-pattern"
		expect_eq "$(cat "$PM/guest/boot1-text")" "boot 1 wrote this $TOKEN" "boot1-text"
		expect_eq "$(probe pread "$PM/guest/mmap-file" 8192 20)" "written through mmap" "mmap-file at 8192"
		probe pattern-check "$PM/guest/mmap-file" 0 8192 511
		probe pattern-check "$PM/guest/mmap-file" 8212 8172 511
	}
	check first-boot-data-after-reboot t_boot1_data

	t_write_again() {
		echo "boot 2 wrote this $TOKEN" >"$PM/guest/boot2-text"
		probe fsync "$PM/guest/boot2-text"
		drop_caches
		expect_eq "$(cat "$PM/guest/boot2-text")" "boot 2 wrote this $TOKEN" "boot2-text"
	}
	check write-after-reboot t_write_again

	t_unmount_all() {
		! grep -q " $PMRO " /proc/mounts || umount "$PMRO"
		umount "$PM"
		! grep -q " $PM " /proc/mounts || die "still mounted"
	}
	check unmount t_unmount_all
fi
