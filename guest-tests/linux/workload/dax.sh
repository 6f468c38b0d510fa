# Stage "dax": virtio-fs through the DAX window of QEMU 11.1's generic vhost-user device.
#
# Sourced by /init with the share mounted at $MNT with -o dax=inode; the daemon runs with
# --dax-maps-within-file, so it marks DAX exactly the regular files whose size is a
# non-zero multiple of 4096 and the guest reads the others through FUSE. Then a smaller
# pass remounts with -o dax (always): files with a partial last page must fail with EIO
# (never hang, never show wrong bytes), whole-page files must work.
#
# The host prepared $MNT/dax-host (run.sh, stages11.sh): sizes/s<N> and the working set
# ws/w<i> with seeded patterns, listed in dax-host/manifest as "path size seed"; hw and ht
# are changed by the host while the guest has them mapped. Host requests go through
# $MNT/host-req (NAME.req -> NAME.done). Everything the guest leaves in dax-work is
# listed in dax-work/expect for the host to check after the run.
# shellcheck disable=SC2015,SC2086

STAGE_DIR=$MNT/dax-work
HOSTDIR=$MNT/dax-host
REQDIR=$MNT/host-req
EXPECT=/tmp/dax-expect
begin_stage dax "$STAGE_DIR"
: >"$EXPECT"
cp "$HOSTDIR/manifest" /tmp/dax-manifest 2>/tmp/dax-manifest.err || true

# expect_file NAME SIZE SEGMENT...: the host checks dax-work/NAME after the run.
# Segments: p:OFF:LEN:SEED (pattern), z:OFF:LEN (zeros), t:OFF:TEXT (bytes).
expect_file() { echo "file $*" >>"$EXPECT"; }
expect_gone() { echo "gone $1" >>"$EXPECT"; }

# seed_of PATH: the seed of a host file (dax-host/manifest).
seed_of() { awk -v p="$1" '$1 == p {print $3}' /tmp/dax-manifest; }

# The DAX state the within-file rule gives a file of SIZE bytes under -o dax=inode.
dax_rule() { [ "$1" -gt 0 ] && [ $(($1 % 4096)) = 0 ] && echo dax || echo nodax; }
dax_state() { probe statx "$1" | cut -d' ' -f1; }

token() { head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# host_request NAME OP ARGS...: the host's watcher performs OP; waits until it is done.
# Only the directory is listed (READDIR): no file of the share is read, which matters
# under -o dax where a file with a partial last page cannot be read.
host_request() {
	_name=$1
	shift
	echo "$*" >"$REQDIR/$_name.tmp"
	mv "$REQDIR/$_name.tmp" "$REQDIR/$_name.req"
	_i=0
	while :; do
		case " $(ls "$REQDIR" | tr '\n' ' ') " in
		*" $_name.done "*) return 0 ;;
		*" $_name.failed "*) die "host request $_name ($*) failed" ;;
		esac
		_i=$((_i + 1))
		[ $_i -lt 300 ] || die "host request $_name ($*) not served within 30 s"
		sleep 0.1
	done
}

# wait_file PATH: for a background probe's signal file in /tmp.
wait_file() {
	_i=0
	while [ ! -e "$1" ]; do
		_i=$((_i + 1))
		[ $_i -lt 600 ] || die "$1 did not appear within 60 s"
		sleep 0.1
	done
}

# ================================================================ -o dax=inode

REMOUNT_ERR=
t_mount_inode() { mounted_with dax=inode; }
check mount-dax-inode t_mount_inode

# The manifest (a FUSE file under the within-file rule) was read, and lists every file
# of dax-host/sizes and dax-host/ws: the checks below go through it.
t_manifest() {
	[ ! -s /tmp/dax-manifest.err ] || die "copying dax-host/manifest: $(cat /tmp/dax-manifest.err)"
	expect_eq "$(grep -c '^sizes/' /tmp/dax-manifest)" "$(ls "$HOSTDIR/sizes" | wc -l)" "sizes listed"
	expect_eq "$(grep -c '^ws/' /tmp/dax-manifest)" "$(ls "$HOSTDIR/ws" | wc -l)" "working-set files listed"
	[ "$(grep -c '^sizes/' /tmp/dax-manifest)" -ge 8 ] || die "fewer than 8 sizes"
}
check host-manifest-read t_manifest

# Which host files are DAX: exactly the non-empty whole-page ones.
t_host_sizes_statx() {
	bad=
	seen=
	while read -r path size seed; do
		case "$path" in sizes/*) ;; *) continue ;; esac
		got=$(probe statx "$HOSTDIR/$path")
		want="$(dax_rule "$size") $size"
		[ "$got" = "$want" ] || bad="$bad $path:'$got'(want '$want')"
		seen="$seen ${got% *}:$size"
	done </tmp/dax-manifest
	[ "$(echo $seen | wc -w)" -ge 8 ] || die "only $(echo $seen | wc -w) sizes checked"
	echo "INFO -o dax=inode, statx of the host files (state:size):$seen" >/dev/console
	[ -z "$bad" ] || die "statx:$bad"
}
check host-sizes-statx t_host_sizes_statx

# read(2) of every size, DAX or not, before and after dropping the caches.
t_host_sizes_read() {
	n=0
	for pass in 1 2; do
		while read -r path size seed; do
			case "$path" in sizes/*) ;; *) continue ;; esac
			probe pattern-check "$HOSTDIR/$path" 0 "$size" "$seed"
			expect_eq "$(wc -c <"$HOSTDIR/$path")" "$size" "bytes read from $path"
			n=$((n + 1))
		done </tmp/dax-manifest
		drop_caches
	done
	[ $n -ge 16 ] || die "only $n reads"
}
check host-sizes-read t_host_sizes_read

# mmap of every non-empty size: through the window for the DAX ones, the page cache for
# the others; the bytes past the end of the last page's data read as zero.
t_host_sizes_mmap() {
	n=0
	while read -r path size seed; do
		case "$path" in sizes/*) ;; *) continue ;; esac
		[ "$size" -gt 0 ] || continue
		end=$((((size + 4095) / 4096) * 4096))
		probe map "$HOSTDIR/$path" "$end" ro "check:0:$size:$seed" "zero:$size:$((end - size))"
		n=$((n + 1))
	done </tmp/dax-manifest
	[ $n -ge 7 ] || die "only $n files mapped"
}
check host-sizes-mmap t_host_sizes_mmap

# The guest writes each size with write(2) (an extending write goes through FUSE), then
# reads it back through whatever the file is after a fresh lookup.
t_write_sizes() {
	i=0
	for size in $DAX_SIZES; do
		seed=$((400 + i))
		probe pattern-write "w$size" 0 "$size" "$seed"
		[ -f "w$size" ] || : >"w$size"
		i=$((i + 1))
	done
	drop_caches
	i=0
	bad=
	for size in $DAX_SIZES; do
		seed=$((400 + i))
		expect_eq "$(size_of "w$size")" "$size" "size of w$size"
		probe pattern-check "w$size" 0 "$size" "$seed"
		[ "$size" = 0 ] || probe map "w$size" "$size" ro "check:0:$size:$seed"
		got=$(dax_state "w$size")
		[ "$got" = "$(dax_rule "$size")" ] || bad="$bad w$size:$got"
		expect_file "w$size" "$size" "p:0:$size:$seed"
		i=$((i + 1))
	done
	[ $i -ge 8 ] || die "only $i sizes written"
	[ -z "$bad" ] || die "DAX state after a fresh lookup:$bad"
}
DAX_SIZES=$(awk '$1 ~ /^sizes\// {print $2}' /tmp/dax-manifest | tr '\n' ' ')
check write-sizes t_write_sizes

# A write inside a DAX file goes through the window (not an extending write).
t_overwrite_dax() {
	probe pattern-write ow 0 2097152 410
	drop_caches
	expect_eq "$(dax_state ow)" dax "ow"
	probe pwrite ow 1000 overwritten-by-write
	probe pwrite ow 2097100 near-the-end
	expect_eq "$(probe pread ow 1000 20)" overwritten-by-write "bytes at 1000"
	drop_caches
	expect_eq "$(probe pread ow 2097100 12)" near-the-end "bytes at 2097100 after drop_caches"
	probe pattern-check ow 0 1000 410
	probe pattern-check ow 1020 2096080 410
	expect_file ow 2097152 p:0:1000:410 t:1000:overwritten-by-write p:1020:2096080:410 t:2097100:near-the-end p:2097112:40:410
}
check overwrite-dax t_overwrite_dax

t_mmap_write() {
	probe pattern-write mw 0 2097152 411
	drop_caches
	expect_eq "$(dax_state mw)" dax "mw"
	probe map mw 2097152 rw write:4096:through-the-window write:2097140:end-of-file msync expect:4096:through-the-window
	expect_eq "$(probe pread mw 4096 18)" through-the-window "read(2) of the mapped write"
	drop_caches
	expect_eq "$(probe pread mw 2097140 11)" end-of-file "read(2) after drop_caches"
	probe map mw 2097152 ro check:0:4096:411 expect:4096:through-the-window check:4114:2093026:411 expect:2097140:end-of-file
	expect_file mw 2097152 p:0:4096:411 t:4096:through-the-window p:4114:2093026:411 t:2097140:end-of-file p:2097151:1:411
}
check mmap-write t_mmap_write

# Two processes map one DAX file at once and see each other's stores at once.
t_two_processes() {
	probe pattern-write tp 0 4194304 412
	drop_caches
	rm -f /tmp/tp-a /tmp/tp-b
	probe map tp 4194304 rw write:100:from-A touch:/tmp/tp-a wait:/tmp/tp-b expect:3000000:from-B >/tmp/tp-a.out 2>&1 &
	pa=$!
	probe map tp 4194304 rw wait:/tmp/tp-a expect:100:from-A write:3000000:from-B touch:/tmp/tp-b >/tmp/tp-b.out 2>&1 &
	pb=$!
	wait $pa || { cat /tmp/tp-a.out; die "process A failed"; }
	wait $pb || { cat /tmp/tp-b.out; die "process B failed"; }
	expect_eq "$(probe pread tp 3000000 6)" from-B "read(2) of B's store"
	expect_file tp 4194304 p:0:100:412 t:100:from-A p:106:2999894:412 t:3000000:from-B p:3000006:1194298:412
}
check two-processes-one-mapping t_two_processes

t_map_sync() {
	expect_eq "$(dax_state tp)" dax "tp"
	expect_errno EOPNOTSUPP probe mmap-sync tp
}
check map-sync-refused t_map_sync

# Truncate a mapped file, then grow it again: the same mapping shows the kept bytes,
# SIGBUS past the end, and zeros once it has grown.
t_truncate_regrow() {
	probe pattern-write tr 0 4194304 413
	drop_caches
	probe map tr 4194304 rw check:0:4194304:413 ftruncate:1048576 size:1048576 check:0:1048576:413 \
		sigbus:1048576 sigbus:3145728 ftruncate:4194304 size:4194304 zero:1048576:3145728 \
		write:3000000:regrown msync check:0:1048576:413
	expect_eq "$(probe pread tr 3000000 7)" regrown "read(2) after the regrow"
	expect_eq "$(count_nonzero tr 1048576 1951424)" 0 "non-zero bytes in the regrown part"
	expect_file tr 4194304 p:0:1048576:413 z:1048576:1951424 t:3000000:regrown z:3000007:1194297
}
check truncate-mapped-regrow t_truncate_regrow

# A mapped DAX file cut to a size with a partial last page: refused with EIO (the daemon
# cannot map that page) or done right. Either way no wrong byte.
t_truncate_partial() {
	probe pattern-write tq 0 2097152 414
	drop_caches
	r=$(probe map tq 2097152 rw check:0:2097152:414 ?ftruncate:1048676 check:0:1048576:414)
	echo "INFO truncate-partial: $r" >/dev/console
	case "$r" in
	*": ok")
		expect_eq "$(size_of tq)" 1048676 "size after the cut"
		probe pattern-check tq 0 1048676 414
		probe map tq 1052672 ro check:0:1048676:414 zero:1048676:3996
		expect_file tq 1048676 p:0:1048676:414
		;;
	*": EIO")
		expect_eq "$(size_of tq)" 2097152 "size after a refused cut"
		probe pattern-check tq 0 2097152 414
		expect_file tq 2097152 p:0:2097152:414
		;;
	*) die "ftruncate to a partial page: $r" ;;
	esac
}
check truncate-mapped-partial-page t_truncate_partial

# A mapped file extended by write(2): the new whole page shows through the mapping that
# was made before; a partial-page extension is refused (EIO) or shows right.
t_extend_write() {
	probe pattern-write ew 0 1048576 415
	drop_caches
	r=$(probe map ew 4194304 rw check:0:1048576:415 sigbus:1048576 pfill:1048576:4096:416 \
		size:1052672 check:1048576:4096:416 write:1050000:via-map msync ?pwrite:1052672:partial-tail)
	echo "INFO extend-write: $r" >/dev/console
	expect_eq "$(probe pread ew 1050000 7)" via-map "read(2) of the store into the new page"
	case "$r" in
	*": ok")
		expect_eq "$(size_of ew)" 1052684 "size"
		expect_eq "$(probe pread ew 1052672 12)" partial-tail "read(2) of the partial page"
		expect_file ew 1052684 p:0:1048576:415 p:1048576:1424:416 t:1050000:via-map p:1050007:2665:416 t:1052672:partial-tail
		;;
	*": EIO")
		expect_eq "$(size_of ew)" 1052672 "size after a refused extension"
		expect_file ew 1052672 p:0:1048576:415 p:1048576:1424:416 t:1050000:via-map p:1050007:2665:416
		;;
	*) die "partial-page extension by write: $r" ;;
	esac
	probe pattern-check ew 0 1048576 415
}
check extend-mapped-by-write t_extend_write

t_extend_ftruncate() {
	probe pattern-write et 0 1048576 417
	drop_caches
	r=$(probe map et 4194304 rw check:0:1048576:417 ftruncate:3145728 size:3145728 zero:1048576:2097152 \
		write:3000000:after-ftruncate msync ?ftruncate:3145828)
	echo "INFO extend-ftruncate: $r" >/dev/console
	expect_eq "$(probe pread et 3000000 15)" after-ftruncate "read(2)"
	case "$r" in
	*": ok") size=3145828 ;;
	*": EIO") size=3145728 ;;
	*) die "partial-page extension by ftruncate: $r" ;;
	esac
	expect_eq "$(size_of et)" $size "size"
	expect_eq "$(count_nonzero et 1048576 1951424)" 0 "non-zero bytes in the extension"
	expect_eq "$(count_nonzero et 3000015 $((size - 3000015)))" 0 "non-zero bytes after the store"
	expect_file et $size p:0:1048576:417 z:1048576:1951424 t:3000000:after-ftruncate z:3000015:$((size - 3000015))
}
check extend-mapped-by-ftruncate t_extend_ftruncate

t_extend_fallocate() {
	probe pattern-write ef 0 1048576 418
	drop_caches
	r=$(probe map ef 4194304 rw check:0:1048576:418 fallocate:1048576:1048576 size:2097152 \
		zero:1048576:1048576 write:1500000:after-fallocate msync ?fallocate:2097152:100)
	echo "INFO extend-fallocate: $r" >/dev/console
	expect_eq "$(probe pread ef 1500000 15)" after-fallocate "read(2)"
	case "$r" in
	*": ok") size=2097252 ;;
	*": EIO") size=2097152 ;;
	*) die "partial-page extension by fallocate: $r" ;;
	esac
	expect_eq "$(size_of ef)" $size "size"
	expect_eq "$(count_nonzero ef 2097152 $((size - 2097152)))" 0 "non-zero bytes in the fallocated tail"
	expect_file ef $size p:0:1048576:418 z:1048576:451424 t:1500000:after-fallocate z:1500015:$((size - 1500015))
}
check extend-mapped-by-fallocate t_extend_fallocate

# More 2 MiB files than the 64 MiB window has ranges: the guest must reclaim ranges
# (REMOVEMAPPING) to go on; every byte still right, by read(2) and by mmap.
t_working_set() {
	n=0
	while read -r path size seed; do
		case "$path" in ws/*) ;; *) continue ;; esac
		probe pattern-check "$HOSTDIR/$path" 0 "$size" "$seed"
		n=$((n + 1))
	done </tmp/dax-manifest
	[ $n -ge 40 ] || die "only $n working-set files"
	expect_eq "$(dax_state "$HOSTDIR/ws/w0")" dax "ws/w0"
	# Backwards, through mappings: the first files' ranges were reclaimed meanwhile.
	for path in $(awk '$1 ~ /^ws\// {print $1}' /tmp/dax-manifest | sort -r); do
		probe map "$HOSTDIR/$path" 2097152 ro "check:0:2097152:$(seed_of "$path")"
	done
	host_request ws stats ws
	unmaps=$(sed -n 's/.*"unmaps":\([0-9]*\).*/\1/p' "$REQDIR/ws.out")
	maps=$(sed -n 's/.*"maps":\([0-9]*\).*/\1/p' "$REQDIR/ws.out")
	echo "INFO working set of $n x 2 MiB through a 64 MiB window: $maps maps, $unmaps unmaps" >/dev/console
	[ "${unmaps:-0}" -gt 0 ] || die "the daemon saw no REMOVEMAPPING (stats: $(cat "$REQDIR/ws.out"))"
}
check working-set-over-window t_working_set

t_unlink_mapped() {
	probe pattern-write ul 0 2097152 419
	drop_caches
	probe map ul 2097152 rw check:0:2097152:419 unlink:ul write:5000:after-unlink msync \
		expect:5000:after-unlink check:0:5000:419 check:5012:2092140:419
	[ ! -e ul ] || die "ul still exists"
	expect_gone ul
}
check unlink-while-mapped t_unlink_mapped

t_rename_mapped() {
	probe pattern-write rn 0 2097152 420
	drop_caches
	probe map rn 2097152 rw check:0:2097152:420 rename:rn:rn2 write:6000:after-rename msync expect:6000:after-rename
	[ ! -e rn ] || die "rn still exists"
	expect_eq "$(probe pread rn2 6000 12)" after-rename "read(2) through the new name"
	drop_caches
	expect_eq "$(probe pread rn2 6000 12)" after-rename "after drop_caches"
	expect_eq "$(dax_state rn2)" dax "rn2"
	expect_gone rn
	expect_file rn2 2097152 p:0:6000:420 t:6000:after-rename p:6012:2091140:420
}
check rename-while-mapped t_rename_mapped

# O_DIRECT from a FUSE (non-DAX) file into a buffer that is itself a DAX mapping, and
# back: the request's buffer lies in the window, which the daemon cannot reach. Either
# an errno or the right bytes, within the time limit; the outcome is reported.
t_odirect_dax_buffer() {
	probe pattern-write dsrc 0 65636 421
	probe pattern-write ddst 0 2097152 422
	drop_caches
	expect_eq "$(dax_state dsrc) $(dax_state ddst)" "nodax dax" "dsrc ddst"
	r=$(timeout 60 probe map ddst 2097152 rw ?dio-read:dsrc:8192:8192:53248 ?dio-write:dout:0:0:65536) ||
		die "probe ended with status $? (killed after 60 s?): $r"
	echo "INFO O_DIRECT with a DAX-mapped buffer: $(echo $r)" >/dev/console
	# The first 64 KiB of ddst, as dout must hold them if the write worked.
	case "$r" in
	*"dio-read:dsrc:8192:8192:53248: ok"*)
		probe map ddst 2097152 ro check:0:8192:422 check:8192:53248:421 check:61440:2035712:422
		expect_file ddst 2097152 p:0:8192:422 p:8192:53248:421 p:61440:2035712:422
		head64="p:0:8192:422 p:8192:53248:421 p:61440:4096:422"
		;;
	*"dio-read:dsrc:8192:8192:53248: E"*)
		probe map ddst 2097152 ro check:0:8192:422 check:61440:2035712:422
		expect_file ddst 2097152 p:0:8192:422 p:61440:2035712:422
		head64=
		;;
	*) die "O_DIRECT read into the mapping: $r" ;;
	esac
	case "$r" in
	*"dio-write:dout:0:0:65536: ok"*)
		[ -n "$head64" ] || die "the read failed but the write from the same buffer worked"
		for seg in $head64; do
			set -- $(echo "$seg" | tr ':' ' ')
			probe pattern-check dout "$2" "$3" "$4"
		done
		expect_file dout 65536 $head64
		;;
	*"dio-write:dout:0:0:65536: E"*) [ ! -e dout ] || expect_file dout "$(size_of dout)" ;;
	*) die "O_DIRECT write from the mapping: $r" ;;
	esac
	expect_file dsrc 65636 p:0:65636:421
}
check odirect-with-dax-buffer t_odirect_dax_buffer

# The host writes into a file the guest has mapped: the guest sees it through the same
# mapping at once (QEMU maps the host file's page cache).
t_host_write() {
	text=host-wrote-$(token)
	rm -f /tmp/hw-mapped /tmp/hw-written
	probe map "$HOSTDIR/hw" 2097152 ro check:0:2097152:300 touch:/tmp/hw-mapped wait:/tmp/hw-written \
		"expect:12345:$text" check:0:12345:300 >/tmp/hw.out 2>&1 &
	p=$!
	wait_file /tmp/hw-mapped
	host_request hw write dax-host/hw 12345 "$text"
	touch /tmp/hw-written
	wait $p || { cat /tmp/hw.out; die "the mapping did not show the host's write"; }
	expect_eq "$(probe pread "$HOSTDIR/hw" 12345 ${#text})" "$text" "read(2)"
	mkdir -p "$MNT/dax-state"
	echo "hw $text" >"$MNT/dax-state/host-wrote"
}
check host-write-seen-through-mapping t_host_write

# The host truncates a file the guest has mapped (whole pages): once the guest has the
# new size (attributes time out) it reads the kept part, the file ends there, and QEMU
# lives on. The guest never touches the cut part (that would be a fault in QEMU).
t_host_truncate() {
	rm -f /tmp/ht-mapped /tmp/ht-cut
	probe map "$HOSTDIR/ht" 8388608 ro check:0:8388608:301 touch:/tmp/ht-mapped wait:/tmp/ht-cut \
		check:0:4194304:301 >/tmp/ht.out 2>&1 &
	p=$!
	wait_file /tmp/ht-mapped
	host_request ht truncate dax-host/ht 4194304
	i=0
	while [ "$(size_of "$HOSTDIR/ht")" != 4194304 ]; do
		i=$((i + 1))
		[ $i -lt 100 ] || die "the guest still sees size $(size_of "$HOSTDIR/ht") after 10 s"
		sleep 0.1
	done
	touch /tmp/ht-cut
	wait $p || { cat /tmp/ht.out; die "the kept part through the mapping"; }
	probe pattern-check "$HOSTDIR/ht" 0 4194304 301
	expect_eq "$(probe pread "$HOSTDIR/ht" 4194304 100 | wc -c)" 0 "bytes read past the new end"
}
check host-truncate-of-mapped-file t_host_truncate

# Unmount (FUSE_DESTROY: the daemon drops every mapping), then a -o dax=never mount from
# which the host is asked for the daemon's stats (run.sh checks them).
stage_remount dax=never
t_inode_stats() {
	mounted_with dax=never
	host_request stats-inode stats inode
}
check inode-pass-unmount-stats t_inode_stats

# ================================================================ -o dax (always)

stage_remount dax
t_mount_always() { mounted_with dax=always; }
check mount-dax-always t_mount_always

t_always_statx() {
	n=0
	bad=
	while read -r path size seed; do
		case "$path" in sizes/*) ;; *) continue ;; esac
		got=$(dax_state "$HOSTDIR/$path")
		[ "$got" = dax ] || bad="$bad $path:$got"
		n=$((n + 1))
	done </tmp/dax-manifest
	[ $n -ge 8 ] || die "only $n files"
	[ -z "$bad" ] || die "not DAX under -o dax:$bad"
}
check always-every-file-dax t_always_statx

t_always_whole_pages() {
	for path in sizes/s4096 sizes/s2097152; do
		size=$(awk -v p="$path" '$1 == p {print $2}' /tmp/dax-manifest)
		probe pattern-check "$HOSTDIR/$path" 0 "$size" "$(seed_of $path)"
		probe map "$HOSTDIR/$path" "$size" ro "check:0:$size:$(seed_of $path)"
	done
	expect_eq "$(wc -c <"$HOSTDIR/sizes/s0")" 0 "bytes read from the empty file"
}
check always-whole-page-files-work t_always_whole_pages

# read(2) of a file with a partial last page: EIO at the range that holds that page,
# and every byte delivered before it right (probe pattern-check stops at the first
# error or wrong byte).
t_always_partial_eio() {
	for path in sizes/s1 sizes/s4095 sizes/s4097 sizes/s2097151 sizes/s2097153; do
		size=$(awk -v p="$path" '$1 == p {print $2}' /tmp/dax-manifest)
		expect_errno EIO timeout 30 probe pattern-check "$HOSTDIR/$path" 0 "$size" "$(seed_of $path)"
	done
	# s2097153: its first range is whole pages, so its first 2 MiB read fine.
	probe pattern-check "$HOSTDIR/sizes/s2097153" 0 2097152 "$(seed_of sizes/s2097153)"
}
check always-partial-page-files-eio t_always_partial_eio

t_always_partial_mmap() {
	probe map "$HOSTDIR/sizes/s4097" 4097 ro sigbus:0 sigbus:4096
	probe map "$HOSTDIR/sizes/s2097153" 2097153 ro "check:0:2097152:$(seed_of sizes/s2097153)" sigbus:2097152
}
check always-partial-page-mmap-sigbus t_always_partial_mmap

# A new file written by write(2) in whole pages works through the window; appending a
# partial page to it once it is mapped is refused with EIO or shows right.
t_always_write() {
	probe pattern-write aw 0 8192 430
	probe pattern-check aw 0 8192 430
	probe map aw 8192 rw write:100:stored-in-window msync
	expect_eq "$(probe pread aw 100 16)" stored-in-window "read(2)"
	if out=$(probe append-fsync aw "0123456789" 2>&1); then
		echo "INFO always-append: the partial-page append worked" >/dev/console
		expect_eq "$(size_of aw)" 8202 "size"
		got=$(timeout 30 probe pread aw 8192 10 2>&1) && expect_eq "$got" 0123456789 "appended bytes" ||
			case "$got" in *EIO*) ;; *) die "reading the appended bytes: $got" ;; esac
		expect_file aw 8202 p:0:100:430 t:100:stored-in-window p:116:8076:430 t:8192:0123456789
	else
		case "$out" in *EIO*) ;; *) die "partial-page append: $out" ;; esac
		echo "INFO always-append: refused with EIO" >/dev/console
		expect_eq "$(size_of aw)" 8192 "size after a refused append"
		expect_file aw 8192 p:0:100:430 t:100:stored-in-window p:116:8076:430
	fi
	probe pattern-check aw 0 100 430
}
check always-write-whole-pages t_always_write

stage_remount dax=never
t_always_stats() {
	mounted_with dax=never
	host_request stats-always stats always
}
check always-pass-unmount-stats t_always_stats

t_expect_list() {
	cp "$EXPECT" "$STAGE_DIR/expect"
	cmp "$EXPECT" "$STAGE_DIR/expect"
	[ "$(wc -l <"$EXPECT")" -ge 20 ] || die "only $(wc -l <"$EXPECT") expectations"
}
check expect-list-written t_expect_list
