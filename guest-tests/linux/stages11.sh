# Host side of the stages that run on QEMU 11.1's generic vhost-user device:
#   --dax   virtio-fs with a DAX window (workload/dax.sh), Linux 6.12 or 6.1
#   --pmem  two virtio-pmem devices (workload/pmem.sh), Linux 6.12
# Sourced by run.sh (bash) once the options are parsed and QEMU 11.1 is found. Uses its
# variables (RUN, SHARED, SOCK, SOCKDIR, PROBE, DAEMON, QEMU_PID, TAG, ...) and helpers
# (log, die, start_daemon, host_check, want). Each stage has
#   <stage>_configure    checks and daemon command lines (before the downloads)
#   <stage>_prepare      the files the guest and the host checks use
#   stage_monitor        runs in the background while QEMU runs
#   <stage>_host_checks  after the run
# See README.md ("DAX stage", "pmem stage").

# The device line of QEMU 11.1's generic vhost-user device: virtio id, queues, config size.
vhost_user_device() { # vhost_user_device ID SOCKET VIRTIO_ID NUM_VQS CONFIG_SIZE
	STAGE_QEMU_ARGS+=(-chardev "socket,id=$1,path=$2"
		-device "vhost-user-test-device-pci,chardev=$1,virtio-id=$3,num_vqs=$4,config_size=$5")
}

# control_query SOCKET JSON: one request on the daemon's control socket, the answer line
# on stdout (src/control/protocol.rs; python3 rather than a vhost-dax client, so the
# check does not trust the daemon's own code).
control_query() {
	python3 - "$1" "$2" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
buf = b""
while not buf.endswith(b"\n"):
    d = s.recv(65536)
    if not d:
        break
    buf += d
sys.stdout.write(buf.decode())
PY
}

# json_get FILE KEY: a field of a control answer, {"stats":{...}} (empty when absent).
json_get() {
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); v=d.get("stats", d).get(sys.argv[2]); print("" if v is None else v)' "$1" "$2"
}

# map_refusals of a stats answer (maps the frontend refused or the daemon could not send
# as asked; the guest got EIO), or "none" if the daemon has no such counter.
refused_maps() {
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d.get("stats", d).get("map_refusals", "none"))' "$1"
}

# ================================================================ DAX

DAX_WINDOW=64M
# Sizes the guest reads and writes (bytes); 4096 and 2 MiB multiples are the DAX ones in
# within-file mode.
DAX_SIZES="0 1 4095 4096 4097 2097151 2097152 2097153"
# The working set: more 2 MiB files than the window has 2 MiB ranges.
DAX_WS_FILES=52

dax_configure() {
	[ "$BACKEND" = vhost-dax ] || die "--dax needs --backend vhost-dax (virtiofsd 1.14 has no DAX)"
	STAGES=dax
	MOUNT_OPTS=dax=inode
	CONTROL_SOCK=$SOCKDIR/control.sock
	DAEMON+=(--dax-window "$DAX_WINDOW" --control-socket "$CONTROL_SOCK")
	local help
	help=$("${DAEMON[0]}" fs --help 2>&1 || true)
	DAX_WITHIN_FILE=0
	if grep -q -- '--dax-maps-within-file' <<<"$help"; then
		DAEMON+=(--dax-maps-within-file)
		DAX_WITHIN_FILE=1
	fi
	vhost_user_device char0 "$SOCK" 26 $((REQUEST_QUEUES + 1)) 40
	log "dax stage: $DAX_WINDOW window, guest mount -o $MOUNT_OPTS then -o dax, QEMU $QEMU"
}

dax_prepare() {
	local dir=$SHARED/dax-host i s seed
	mkdir -p "$dir/sizes" "$dir/ws" "$SHARED/host-req"
	: >"$dir/manifest"
	i=0
	for s in $DAX_SIZES; do
		seed=$((100 + i))
		"$PROBE" pattern-write "$dir/sizes/s$s" 0 "$s" "$seed"
		echo "sizes/s$s $s $seed" >>"$dir/manifest"
		i=$((i + 1))
	done
	for ((i = 0; i < DAX_WS_FILES; i++)); do
		seed=$((200 + i))
		"$PROBE" pattern-write "$dir/ws/w$i" 0 2097152 "$seed"
		echo "ws/w$i 2097152 $seed" >>"$dir/manifest"
	done
	# Targets of host-side writes and truncates while the guest has them mapped.
	"$PROBE" pattern-write "$dir/hw" 0 2097152 300
	"$PROBE" pattern-write "$dir/ht" 0 8388608 301
	echo "hw 2097152 300" >>"$dir/manifest"
	echo "ht 8388608 301" >>"$dir/manifest"
	# What the guest must leave untouched (hw and ht are changed by the host on request).
	(cd "$dir" && find sizes ws -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) >"$SHARED/dax-host.sha256"
}

# One request of the guest, $SHARED/host-req/NAME.req (written to NAME.tmp and renamed):
#   write FILE OFFSET TEXT     pwrite TEXT into FILE (relative to the share)
#   truncate FILE SIZE         truncate(2) FILE
#   stats LABEL                the control socket's stats, kept as $RUN/stats-LABEL.json
# The answer goes to NAME.out, then NAME.done (or NAME.failed) is created.
dax_serve_request() {
	local req=$1 name op a b c out
	name=${req##*/}
	name=${name%.req}
	read -r op a b c <"$req" || true
	case "$a" in *..*) op=bad ;; esac
	case "$op" in
	write) out=$("$PROBE" pwrite "$SHARED/$a" "$b" "$c" 2>&1) ;;
	truncate) out=$(truncate -s "$b" "$SHARED/$a" 2>&1 && stat -c %s "$SHARED/$a") ;;
	stats)
		out=$(control_query "$CONTROL_SOCK" '{"op":"stats"}' 2>&1) &&
			printf '%s\n' "$out" >"$RUN/stats-$a.json" &&
			control_query "$CONTROL_SOCK" '{"op":"mappings"}' >"$RUN/mappings-$a.json" 2>&1
		;;
	*) out="unknown request: $op $a" && false ;;
	esac
	local rc=$?
	echo "$(date +%T) $name: $op $a $b $c -> rc $rc: $out" | cut -c1-400 >>"$RUN/host-requests.log"
	printf '%s\n' "$out" >"$SHARED/host-req/$name.out"
	mv "$req" "$SHARED/host-req/$name.taken"
	if [ "$rc" = 0 ]; then : >"$SHARED/host-req/$name.done"; else : >"$SHARED/host-req/$name.failed"; fi
}

stage_monitor() {
	trap - EXIT
	case "$MODE" in
	dax)
		local req
		while running "$QEMU_PID"; do
			for req in "$SHARED"/host-req/*.req; do
				[ -e "$req" ] && dax_serve_request "$req"
			done
			sleep 0.1
		done
		;;
	pmem)
		# A guest that keeps rebooting (its boot marker lost) is stopped at one boot too many.
		while running "$QEMU_PID"; do
			if [ "$(grep -c '^INFO guest kernel ' "$RUN/console.log" 2>/dev/null)" -gt "$EXPECTED_BOOTS" ]; then
				echo "the guest started boot $((EXPECTED_BOOTS + 1)); stopping QEMU" >>"$RUN/qemu.log"
				kill "$QEMU_PID" 2>/dev/null
				break
			fi
			sleep 0.5
		done
		;;
	esac
}

# The guest's own account of what it left in dax-work/ (dax-work/expect, one line each):
#   file NAME SIZE SEGMENT...   size, then each segment: p:OFF:LEN:SEED (seeded pattern),
#                               z:OFF:LEN (zeros), t:OFF:TEXT (those bytes)
#   gone NAME                   must not exist
dax_expect_line() {
	local kind=$1 f=$SHARED/dax-work/$2 seg off len rest
	shift 2
	case "$kind" in
	file)
		want "$(stat -c %s "$f")" "$1" "size of ${f#"$SHARED/"}"
		shift
		for seg in "$@"; do
			rest=${seg#*:}
			off=${rest%%:*}
			rest=${rest#*:}
			case "$seg" in
			p:*) "$PROBE" pattern-check "$f" "$off" "${rest%%:*}" "${rest#*:}" ;;
			z:*)
				len=$rest
				"$PROBE" pread "$f" "$off" "$len" >"$RUN/segment.bytes"
				want "$(stat -c %s "$RUN/segment.bytes") $(tr -d '\000' <"$RUN/segment.bytes" | wc -c)" "$len 0" \
					"bytes read, non-zero bytes in $off+$len of ${f#"$SHARED/"}"
				;;
			t:*) want "$("$PROBE" pread "$f" "$off" ${#rest})" "$rest" "bytes at $off of ${f#"$SHARED/"}" ;;
			*) echo "bad segment $seg"; return 1 ;;
			esac
		done
		;;
	gone) [ ! -e "$f" ] || { echo "${f#"$SHARED/"} still exists"; return 1; } ;;
	*) echo "unknown expectation $kind"; return 1 ;;
	esac
}

dax_files() {
	local expect=$SHARED/dax-work/expect line n=0 bad=0 listed
	[ -f "$expect" ] || { echo "the guest wrote no dax-work/expect"; return 1; }
	while read -r line; do
		# shellcheck disable=SC2086
		if ! out=$(dax_expect_line $line 2>&1); then
			echo "$line: $out"
			bad=$((bad + 1))
		fi
		n=$((n + 1))
	done <"$expect"
	# Every regular file the guest left is accounted for.
	listed=$(awk '$1 == "file" {print $2}' "$expect" | sort -u)
	local unlisted
	unlisted=$(cd "$SHARED/dax-work" && find . -type f ! -name expect | sed 's|^\./||' | sort | comm -23 - <(printf '%s\n' "$listed"))
	[ -z "$unlisted" ] || { echo "files not in dax-work/expect: $(echo $unlisted)"; bad=$((bad + 1)); }
	[ "$n" -ge 10 ] || { echo "only $n expectations"; bad=$((bad + 1)); }
	[ "$bad" = 0 ] || { echo "$bad of $n expectations failed (see above)"; return 1; }
}

dax_host_files() { cd "$SHARED/dax-host" && sha256sum -c --quiet "$SHARED/dax-host.sha256"; }

# hw: the guest's mapping saw the host's write; the file has it now.
dax_host_write() {
	local text
	text=$(awk '$1 == "hw" {print $2}' "$SHARED/dax-state/host-wrote" 2>/dev/null)
	[ -n "$text" ] || { echo "the guest did not record the host write (dax-state/host-wrote)"; return 1; }
	want "$("$PROBE" pread "$SHARED/dax-host/hw" 12345 ${#text})" "$text" "bytes at 12345 of dax-host/hw"
	"$PROBE" pattern-check "$SHARED/dax-host/hw" 0 12345 300
}

dax_host_truncate() {
	want "$(stat -c %s "$SHARED/dax-host/ht")" 4194304 "size of dax-host/ht"
	"$PROBE" pattern-check "$SHARED/dax-host/ht" 0 4194304 301
}

# stats_after LABEL: the stats the guest asked for after unmounting (live mappings gone).
dax_stats_common() {
	local f=$RUN/stats-$1.json
	[ -s "$f" ] || { echo "no stats were taken after the $1 pass (the guest's request did not arrive)"; return 1; }
	grep -q '"live_mappings"' "$f" || { echo "control socket answered: $(head -c 300 "$f")"; return 1; }
	want "$(json_get "$f" live_mappings)" 0 "live_mappings after unmount ($1)"
	want "$(json_get "$f" mapped_chunks)" 0 "mapped_chunks after unmount ($1)"
	want "$(json_get "$f" live_pins)" 0 "live_pins after unmount ($1)"
	[ "$(json_get "$f" maps)" -gt 0 ] || { echo "no map at all during the $1 pass: the guest never used the window"; return 1; }
}
dax_stats_inode() {
	local f=$RUN/stats-inode.json r
	dax_stats_common inode
	# The working set (more 2 MiB files than ranges) made the guest reclaim.
	[ "$(json_get "$f" unmaps)" -gt 0 ] || { echo "unmaps is 0: the guest never released a range (REMOVEMAPPING) during the inode pass"; return 1; }
	[ "$(json_get "$f" maps)" -gt "$(json_get "$f" chunks)" ] ||
		{ echo "maps $(json_get "$f" maps) <= chunks $(json_get "$f" chunks): the working set did not exceed the window"; return 1; }
	r=$(refused_maps "$f")
	[ "$r" != none ] || { echo "stats have no map_refusals counter ($(tr -d '\n' <"$f" | head -c 400))"; return 1; }
	want "$r" 0 "map_refusals in within-file mode with -o dax=inode"
}
dax_stats_always() {
	local f=$RUN/stats-always.json r
	dax_stats_common always
	r=$(refused_maps "$f")
	[ "$r" != none ] || { echo "stats have no map_refusals counter"; return 1; }
	# -o dax asks to map files with a partial last page: the daemon must have refused.
	[ "$r" -gt 0 ] || { echo "map_refusals is 0 after the -o dax pass read partial-page files"; return 1; }
}

dax_requests() {
	local n
	n=$(find "$SHARED/host-req" -name '*.taken' | wc -l)
	[ "$n" -ge 4 ] || { echo "only $n host requests were served"; return 1; }
	! ls "$SHARED"/host-req/*.failed >/dev/null 2>&1 || { echo "failed requests: $(cd "$SHARED/host-req" && ls ./*.failed)"; return 1; }
	! ls "$SHARED"/host-req/*.req >/dev/null 2>&1 || { echo "unserved requests: $(cd "$SHARED/host-req" && ls ./*.req)"; return 1; }
}

# QEMU powered off by itself: no crash, no kill by the timeout.
qemu_clean_exit() {
	want "$QEMU_RC" 0 "QEMU exit status"
	! grep -iE 'segmentation|aborted|core dumped|assert' "$RUN/qemu.log" || { echo "QEMU log: $(grep -iE 'segmentation|aborted|assert' "$RUN/qemu.log" | head -n 1)"; return 1; }
}

dax_flag() {
	[ "$DAX_WITHIN_FILE" = 1 ] || { echo "this vhost-dax has no --dax-maps-within-file (fs --help); the stage ran without it"; return 1; }
}

dax_host_checks() {
	host_check dax-within-file-flag dax_flag
	host_check dax-qemu-clean-exit qemu_clean_exit
	host_check dax-requests-served dax_requests
	host_check dax-host-files-intact dax_host_files
	host_check dax-guest-files dax_files
	host_check dax-host-write dax_host_write
	host_check dax-host-truncate dax_host_truncate
	host_check dax-stats-inode-pass dax_stats_inode
	host_check dax-stats-always-pass dax_stats_always
}

# ================================================================ DAX perf

# Sizes of the daxperf workload (workload/daxperf.sh): files stat'ed, random reads.
DAX_PERF_STATS=500
DAX_PERF_READS=1000

daxperf_configure() {
	[ "$BACKEND" = vhost-dax ] || die "--dax-perf needs --backend vhost-dax (virtiofsd 1.14 has no DAX)"
	STAGES=daxperf
	MOUNT_OPTS=dax
	DAEMON+=(--dax-window "$DAX_WINDOW" --dax-maps-within-file)
	STAGE_APPEND="vd_perf_stats=$DAX_PERF_STATS vd_perf_reads=$DAX_PERF_READS"
	# A pass of four workloads under TCG takes longer than one functional check.
	[ "$CHECK_TIMEOUT" -ge 240 ] || CHECK_TIMEOUT=240
	vhost_user_device char0 "$SOCK" 26 $((REQUEST_QUEUES + 1)) 40
	log "dax-perf stage: $DAX_WINDOW window, the same workloads under -o dax then -o dax=never, QEMU $QEMU"
}

daxperf_prepare() {
	local i
	mkdir -p "$SHARED/perf/stat"
	"$PROBE" pattern-write "$SHARED/perf/big" 0 33554432 7
	for ((i = 0; i < DAX_PERF_STATS; i++)); do : >"$SHARED/perf/stat/f$i"; done
}

# perf_value MOUNT WORKLOAD KEY: the mean of a figure over the guest's passes,
# `PERF MOUNT WORKLOAD k=v ...` lines (three significant digits).
perf_value() {
	awk -v m="$1" -v w="$2" -v k="$3" '$1 == "PERF" && $2 == m && $3 == w {
		for (i = 4; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) { t += kv[2]; n++ } } }
		END { if (n) { v = t / n; printf (v >= 100 ? "%.0f\n" : (v >= 10 ? "%.1f\n" : "%.2f\n")), v } }' <<<"$CONSOLE"
}

perf_complete() {
	local m w n
	for m in always never; do
		for w in read4k seqread mmap stat; do
			n=$(grep -c "^PERF $m $w " <<<"$CONSOLE" || true)
			want "$n" 2 "PERF lines for $w under -o dax=$m (two passes)"
		done
	done
}

# The table (markdown): each workload's figure under both mounts and dax / never.
perf_table() {
	local row w key second unit label a b sa sb
	echo "INFO DAX perf, the mean of two passes per mount (TCG figures: compare the columns, not the absolute numbers)"
	echo "| workload | -o dax | -o dax=never | dax / never |"
	echo "| --- | --- | --- | --- |"
	for row in "read4k ops_per_s p50_us ops/s" "seqread mb_per_s p50_us MB/s" \
		"mmap pages_per_s us_per_page pages/s" "stat ops_per_s p50_us stats/s"; do
		read -r w key second unit <<<"$row"
		case "$w" in
		read4k) label="4 KiB read(2) at random offsets, $DAX_PERF_READS of a 32 MiB file" ;;
		seqread) label="read(2) of a 32 MiB file in order, 1 MiB each" ;;
		mmap) label="mmap of a 32 MiB file, one load per 4 KiB page" ;;
		stat) label="stat(2) of $DAX_PERF_STATS files" ;;
		esac
		a=$(perf_value always "$w" "$key")
		b=$(perf_value never "$w" "$key")
		sa=$(perf_value always "$w" "$second")
		sb=$(perf_value never "$w" "$second")
		awk -v l="$label" -v u="$unit" -v a="$a" -v b="$b" -v sa="$sa" -v sb="$sb" -v s="$second" 'BEGIN {
			r = (b > 0) ? sprintf("%.2f", a / b) : "-"
			f = (s == "us_per_page") ? "%s µs/page" : "p50 %s µs"
			printf "| %s | %s %s (" f ") | %s %s (" f ") | %s |\n", l, a, u, sa, b, u, sb, r }'
	done
}

daxperf_host_checks() {
	host_check dax-perf-figures perf_complete
	host_check dax-perf-qemu-clean-exit qemu_clean_exit
	perf_table
}

# ================================================================ pmem

PMEM_RW_SIZE=$((64 << 20))
PMEM_RO_SIZE=$((32 << 20))

pmem_configure() {
	[ "$KERNEL_SUITE" = bookworm-backports ] ||
		die "--pmem needs Linux 6.12 (--kernel-suite bookworm-backports): 6.1's virtio_pmem has no VIRTIO_PMEM_F_SHMEM_REGION"
	STAGES=pmem
	GUEST_TAG=none
	EXPECTED_BOOTS=2
	PMEM_TOKEN=$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
	STAGE_APPEND="vd_pmem_marker=VDPMEM-$PMEM_TOKEN vd_pmem_token=$PMEM_TOKEN vd_pmem_rw_size=$PMEM_RW_SIZE vd_pmem_ro_size=$PMEM_RO_SIZE"
	if [ "$PMEM_REFERENCE" = 1 ]; then
		# QEMU's own virtio-pmem-pci over the same images (device lines in pmem_prepare):
		# what the workload sees from a frontend that maps the region itself.
		BACKEND=qemu-virtio-pmem
		MEM_OPTS=,slots=4,maxmem=4G
		log "pmem stage on QEMU's virtio-pmem-pci (reference, no daemon), QEMU $QEMU"
		return 0
	fi
	[ "$BACKEND" = vhost-dax ] || die "--pmem needs --backend vhost-dax"
	# QEMU 11.1.3 dies (SIGSEGV in its next vhost_dev_start) when it resets a device that
	# still has shared-memory mappings, and the pmem region is always mapped: the second
	# boot is a new QEMU on the same daemons instead of a reset (see README.md).
	BOOT_BY=restart
	# QEMU 11.1 cannot map a read-only descriptor (and, handed a writable one for a
	# read-only map, lets the guest write the file: measured), so the --readonly device
	# stays unmapped; the stage checks that the guest cannot change its image.
	STAGE_APPEND+=" vd_between_boots=poweroff vd_pmem_ro=refused"
	PMEM_BIN=${VHOST_DAX_BIN:-$REPO/target/release/vhost-dax}
	if [ "$BUILD" = 1 ] && [ -z "${VHOST_DAX_BIN:-}" ]; then
		log "cargo build --release (repository root)"
		(cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
	fi
	"$PMEM_BIN" pmem --help 2>&1 | grep -q -- '--readonly' || die "$PMEM_BIN has no pmem subcommand with --readonly"
	BACKEND_VERSION=$("$PMEM_BIN" --version 2>/dev/null | head -n 1 || true)
	vhost_user_device charP0 "$SOCKDIR/pmem-rw.sock" 27 1 16
	vhost_user_device charP1 "$SOCKDIR/pmem-ro.sock" 27 1 16
	log "pmem stage: a ${PMEM_RW_SIZE}-byte read-write and a ${PMEM_RO_SIZE}-byte read-only device, QEMU $QEMU"
}

mkfs_ext4() { # mkfs_ext4 IMAGE SIZE LABEL TREE: ext4 populated from TREE, 4 KiB blocks (DAX)
	local mkfs=mkfs.ext4
	command -v mkfs.ext4 >/dev/null || mkfs=/sbin/mkfs.ext4
	"$mkfs" -q -F -b 4096 -L "$3" -d "$4" "$1" "$(($2 >> 10))k" || die "mkfs.ext4 -d $4 $1 failed"
}

pmem_prepare() {
	local t=$RUN/pmem-trees
	mkdir -p "$t/rw" "$t/ro"
	echo "made on the host $PMEM_TOKEN" >"$t/rw/host-marker"
	"$PROBE" pattern-write "$t/rw/host-pattern" 0 1048576 500
	echo "read-only image $PMEM_TOKEN" >"$t/ro/ro-marker"
	"$PROBE" pattern-write "$t/ro/ro-pattern" 0 524288 501
	PMEM_RW=$RUN/pmem-rw.img
	PMEM_RO=$RUN/pmem-ro.img
	mkfs_ext4 "$PMEM_RW" "$PMEM_RW_SIZE" vdpmem-rw "$t/rw"
	mkfs_ext4 "$PMEM_RO" "$PMEM_RO_SIZE" vdpmem-ro "$t/ro"
	# The first 1024 bytes of ext4 are unused (boot block): the raw marker the guest's
	# first read looks for, and which device is which.
	printf 'VDPMEM-%s-RW' "$PMEM_TOKEN" | dd of="$PMEM_RW" conv=notrunc status=none
	printf 'VDPMEM-%s-RO' "$PMEM_TOKEN" | dd of="$PMEM_RO" conv=notrunc status=none
	PMEM_RO_SHA=$(sha256sum <"$PMEM_RO")
	if [ "$PMEM_REFERENCE" = 1 ]; then
		STAGE_QEMU_ARGS+=(
			-object "memory-backend-file,id=pm0,share=on,mem-path=$PMEM_RW,size=$PMEM_RW_SIZE"
			-device virtio-pmem-pci,memdev=pm0
			-object "memory-backend-file,id=pm1,share=on,readonly=on,mem-path=$PMEM_RO,size=$PMEM_RO_SIZE"
			-device virtio-pmem-pci,memdev=pm1)
	fi
}

pmem_start_daemons() {
	[ "$PMEM_REFERENCE" = 0 ] || return 0
	start_daemon backend-pmem-rw "$SOCKDIR/pmem-rw.sock" \
		"$PMEM_BIN" pmem --log-level info --reconnect --socket "$SOCKDIR/pmem-rw.sock" --file "$PMEM_RW"
	start_daemon backend-pmem-ro "$SOCKDIR/pmem-ro.sock" \
		"$PMEM_BIN" pmem --log-level info --reconnect --socket "$SOCKDIR/pmem-ro.sock" --file "$PMEM_RO" --readonly
}

debugfs_cat() { # debugfs_cat IMAGE PATH
	local dbg=debugfs
	command -v debugfs >/dev/null || dbg=/sbin/debugfs
	"$dbg" -R "cat $2" "$1" 2>/dev/null
}

pmem_fsck() {
	local fsck=e2fsck out
	command -v e2fsck >/dev/null || fsck=/sbin/e2fsck
	out=$("$fsck" -fn "$PMEM_RW" 2>&1) || { printf '%s\n' "$out" | tail -n 5; echo "e2fsck -fn of the read-write image found problems"; return 1; }
}
pmem_host_marker() {
	want "$(debugfs_cat "$PMEM_RW" /host-marker)" "made on the host $PMEM_TOKEN" "/host-marker"
	want "$(head -c 22 "$PMEM_RW")" "VDPMEM-$PMEM_TOKEN-RW" "raw marker at offset 0"
}
# Files the guest wrote and fsynced in its first boot and its second.
pmem_guest_files() {
	local tmp=$RUN/pmem-extract
	mkdir -p "$tmp"
	want "$(debugfs_cat "$PMEM_RW" /guest/boot1-text)" "boot 1 wrote this $PMEM_TOKEN" "/guest/boot1-text"
	debugfs_cat "$PMEM_RW" /guest/boot1-pattern >"$tmp/boot1-pattern"
	want "$(stat -c %s "$tmp/boot1-pattern")" 3145733 "size of /guest/boot1-pattern"
	"$PROBE" pattern-check "$tmp/boot1-pattern" 0 3145733 510
	debugfs_cat "$PMEM_RW" /guest/mmap-file >"$tmp/mmap-file"
	want "$("$PROBE" pread "$tmp/mmap-file" 8192 20)" "written through mmap" "bytes of /guest/mmap-file at 8192"
	want "$(debugfs_cat "$PMEM_RW" /guest/boot2-text)" "boot 2 wrote this $PMEM_TOKEN" "/guest/boot2-text"
	want "$(debugfs_cat "$PMEM_RW" /boot-marker)" "boot 1 done $PMEM_TOKEN" "/boot-marker"
}
pmem_ro_unchanged() { want "$(sha256sum <"$PMEM_RO")" "$PMEM_RO_SHA" "sha256 of the read-only image"; }
pmem_flushes() {
	local line n m f
	line=$(grep -o 'pmem: [0-9]* flush requests served with [0-9]* syncs ([0-9]* failed)' "$RUN/backend-pmem-rw.log" | tail -n 1)
	[ -n "$line" ] || { echo "backend-pmem-rw.log has no 'flush requests served' line"; return 1; }
	read -r _ n _ _ _ _ m _ f _ <<<"${line//(/}"
	[ "$n" -gt 0 ] || { echo "$line: the guest's fsyncs sent no FLUSH"; return 1; }
	[ "$m" -gt 0 ] || { echo "$line: no sync ran"; return 1; }
	want "$f" 0 "failed syncs"
	echo "$line"
}
pmem_boots() {
	want "$(grep -c '^INFO guest kernel ' "$RUN/console.log")" 2 "boots"
	grep -q '^INFO second boot' "$RUN/console.log" || { echo "the second boot did not recognise itself"; return 1; }
}

pmem_host_checks() {
	host_check pmem-qemu-clean-exit qemu_clean_exit
	host_check pmem-two-boots pmem_boots
	host_check pmem-fsck pmem_fsck
	host_check pmem-host-marker pmem_host_marker
	host_check pmem-guest-files pmem_guest_files
	host_check pmem-ro-image-unchanged pmem_ro_unchanged
	[ "$PMEM_REFERENCE" = 1 ] || host_check pmem-flush-counters pmem_flushes
	grep -h 'flush requests served' "$RUN"/backend-pmem-*.log | sed 's/^/INFO /' || true
}
