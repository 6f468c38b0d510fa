# Stage "fs": POSIX file-system behaviour through virtio-fs (no DAX).
#
# Sourced by /init with the share mounted at $MNT; runs in $MNT/fs-work. Uses busybox
# and /bin/probe (guest-tests/linux/probe) for the syscalls busybox lacks.
# The host prepared $MNT/host-tree and $MNT/host-tree.sha256 (run.sh); files written to
# $MNT/host-view are verified again on the host after the guest powers off.
#
# Check functions run under `set -e` (a failed cd or test ends the check), and `ls`
# is used on purpose: listing directories is what is being tested.
# shellcheck disable=SC2010,SC2012,SC2015,SC2046,SC2164

STAGE_DIR=$MNT/fs-work
HOSTVIEW=$MNT/host-view
begin_stage fs "$STAGE_DIR"

# ---- files: create, read, write, append, truncate ----

t_create() {
	: >empty
	[ -f empty ] || die "empty not a regular file"
	expect_eq "$(size_of empty)" 0 "size"
	touch touched
	[ -e touched ] || die "touch did not create"
	expect_errno "File exists" sh -c 'set -C; : >empty'
}
check create t_create

t_write_read() {
	echo "hello virtio-fs" >f
	expect_eq "$(cat f)" "hello virtio-fs" "content"
	expect_eq "$(size_of f)" 16 "size"
	drop_caches
	expect_eq "$(cat f)" "hello virtio-fs" "content after drop_caches"
}
check write-read t_write_read

t_large_write_read() {
	# 3 MiB + 5 bytes: several max-size FUSE writes, an unaligned tail.
	probe pattern-write big 0 3145733 11
	expect_eq "$(size_of big)" 3145733 "size"
	probe pattern-check big 0 3145733 11
	drop_caches
	probe pattern-check big 0 3145733 11
}
check large-write-read t_large_write_read

t_overwrite_middle() {
	printf 'aaaaaaaaaa' >mid
	printf 'XYZ' | dd of=mid bs=1 seek=4 conv=notrunc 2>/dev/null
	probe pwrite mid 8 QQ
	drop_caches
	expect_eq "$(cat mid)" "aaaaXYZaQQ" "content"
}
check overwrite-middle t_overwrite_middle

t_append() {
	echo one >ap
	echo two >>ap
	probe append-fsync ap "three
"
	drop_caches
	expect_eq "$(cat ap)" "one
two
three" "content"
}
check append t_append

t_truncate_shrink() {
	probe pattern-write tr 0 200000 3
	truncate -s 1000 tr
	expect_eq "$(size_of tr)" 1000 "size"
	probe pattern-check tr 0 1000 3
	drop_caches
	expect_eq "$(size_of tr)" 1000 "size after drop_caches"
	probe pattern-check tr 0 1000 3
}
check truncate-shrink t_truncate_shrink

t_truncate_grow() {
	probe pattern-write tg 0 1000 4
	truncate -s 1048576 tg
	expect_eq "$(size_of tg)" 1048576 "size"
	probe pattern-check tg 0 1000 4
	drop_caches
	expect_eq "$(count_nonzero tg 1000 1047576)" 0 "non-zero bytes past the old end"
}
check truncate-grow t_truncate_grow

t_o_trunc() {
	probe pattern-write ot 0 100000 5
	echo short >ot
	expect_eq "$(size_of ot)" 6 "size after O_TRUNC"
	expect_eq "$(cat ot)" "short" "content"
}
check open-o-trunc t_o_trunc

t_unlink() {
	echo x >gone
	rm gone
	[ ! -e gone ] || die "still exists"
	expect_errno "No such file" cat gone
}
check unlink t_unlink

t_unlink_open() {
	echo "still readable" >uo
	exec 3<uo
	rm uo
	[ ! -e uo ] || die "still exists"
	expect_eq "$(cat <&3)" "still readable" "content through the open fd"
	exec 3<&-
}
check unlink-while-open t_unlink_open

t_create_mode() {
	(umask 077 && : >um1 && mkdir umd)
	expect_eq "$(mode_of um1)" 600 "file mode under umask 077"
	expect_eq "$(mode_of umd)" 700 "directory mode under umask 077"
	(umask 0 && : >um2)
	expect_eq "$(mode_of um2)" 666 "file mode under umask 0"
}
check create-mode-umask t_create_mode

t_large_offset() {
	# Offsets past 4 GiB (64-bit offsets on the wire), in a sparse file.
	probe pwrite lo 5368709120 far
	expect_eq "$(size_of lo)" 5368709123 "size"
	drop_caches
	expect_eq "$(probe pread lo 5368709120 3)" far "bytes at 5 GiB"
	expect_eq "$(probe seek lo data 0)" 5368709120 "SEEK_DATA finds the data at 5 GiB"
	truncate -s 4294967296 lo
	expect_eq "$(size_of lo)" 4294967296 "size after truncate to 4 GiB"
}
check large-offset t_large_offset

t_direct_io() {
	probe pattern-write dio 0 1048576 31 direct
	probe pattern-check dio 0 1048576 31 direct
	probe pattern-check dio 0 1048576 31
	probe pattern-write dio 4096 8192 32
	probe pattern-check dio 4096 8192 32 direct
	drop_caches
	probe pattern-check dio 0 4096 31 direct
	probe pattern-check dio 12288 1036288 31 direct
}
check direct-io t_direct_io

# ---- directories ----

t_mkdir_rmdir() {
	mkdir -p d1/d2/d3
	[ -d d1/d2/d3 ] || die "d1/d2/d3 missing"
	expect_eq "$(mode_of d1)" 755 "mode (umask 022)"
	rmdir d1/d2/d3
	[ ! -e d1/d2/d3 ] || die "d3 still exists"
	expect_errno "File exists" mkdir d1
	rmdir d1/d2 d1
	[ ! -e d1 ] || die "d1 still exists"
}
check mkdir-rmdir t_mkdir_rmdir

t_readdir_many() {
	mkdir many
	i=0
	while [ $i -lt 600 ]; do
		: >"many/entry-$i"
		i=$((i + 1))
	done
	expect_eq "$(ls many | wc -l)" 600 "entries listed"
	drop_caches
	# Every name exactly once, after the dentry cache is gone (READDIR(PLUS) again).
	expect_eq "$(ls many | sort | uniq | wc -l)" 600 "distinct entries after drop_caches"
	expect_eq "$(ls -la many | grep -c ' entry-')" 600 "entries with attributes"
	[ -e many/entry-599 ] || die "entry-599 missing"
	expect_eq "$(find many -type f | wc -l)" 600 "find"
	# Long names: few entries fit one READDIR(PLUS) reply, so the listing spans many.
	mkdir longnames
	pad=$(printf 'x%.0s' $(seq 200))
	i=0
	while [ $i -lt 150 ]; do
		: >"longnames/$i-$pad"
		i=$((i + 1))
	done
	drop_caches
	expect_eq "$(ls longnames | sed 's/-x*$//' | sort -n | uniq | tr '\n' ' ')" "$(seq 0 149 | tr '\n' ' ')" "long names listed"
}
check readdir-many t_readdir_many

t_rmdir_enotempty() {
	mkdir ne
	: >ne/file
	expect_errno "Directory not empty" rmdir ne
	expect_errno "Not a directory" rmdir ne/file
	rm ne/file
	rmdir ne
}
check rmdir-enotempty t_rmdir_enotempty

t_long_name() {
	n255=$(printf 'n%.0s' $(seq 255))
	echo ok >"$n255"
	expect_eq "$(cat "$n255")" ok "255-byte name"
	expect_errno "too long" sh -c ": >${n255}x"
}
check long-name t_long_name

# ---- rename ----

t_rename_overwrite() {
	echo new >ra
	echo old >rb
	ino=$(inode_of ra)
	mv ra rb
	[ ! -e ra ] || die "source still exists"
	expect_eq "$(cat rb)" new "target content"
	expect_eq "$(inode_of rb)" "$ino" "target inode"
	drop_caches
	expect_eq "$(cat rb)" new "target content after drop_caches"
}
check rename-overwrite t_rename_overwrite

t_rename_across_dirs() {
	mkdir -p src/sub dst
	echo payload >src/sub/file
	mv src/sub/file dst/moved
	[ ! -e src/sub/file ] || die "file left in source"
	expect_eq "$(cat dst/moved)" payload "moved file"
	mv src/sub dst/subdir
	[ -d dst/subdir ] && [ ! -e src/sub ] || die "directory not moved"
	echo deep >dst/subdir/deep
	drop_caches
	expect_eq "$(cat dst/subdir/deep)" deep "file in moved directory"
	expect_eq "$(links_of dst)" 3 "link count of dst (., .., subdir)"
}
check rename-across-dirs t_rename_across_dirs

t_rename_noreplace() {
	echo a >nr1
	echo b >nr2
	expect_errno EEXIST probe rename2 noreplace nr1 nr2
	expect_eq "$(cat nr2)" b "target untouched"
	probe rename2 noreplace nr1 nr3
	[ ! -e nr1 ] || die "source still exists"
	expect_eq "$(cat nr3)" a "renamed"
}
check rename-noreplace t_rename_noreplace

t_rename_exchange() {
	echo left >ex1
	mkdir ex2
	echo inside >ex2/f
	probe rename2 exchange ex1 ex2
	[ -d ex1 ] && [ -f ex2 ] || die "not exchanged"
	expect_eq "$(cat ex2)" left "file"
	expect_eq "$(cat ex1/f)" inside "directory"
}
check rename-exchange t_rename_exchange

t_rename_dirs() {
	mkdir -p rd1/x rd2 rd3/y
	echo in >rd1/x/f
	probe rename2 none rd1 rd2
	[ ! -e rd1 ] && [ -f rd2/x/f ] || die "directory not renamed over the empty one"
	expect_errno ENOTEMPTY probe rename2 none rd2 rd3
	: >rfile
	expect_errno EISDIR probe rename2 none rfile rd3
	expect_errno ENOTDIR probe rename2 none rd3 rfile
	expect_eq "$(cat rd2/x/f)" in "content"
}
check rename-dirs t_rename_dirs

# ---- links ----

t_hardlink() {
	echo shared >h1
	ln h1 h2
	expect_eq "$(links_of h1)" 2 "link count"
	expect_eq "$(inode_of h2)" "$(inode_of h1)" "inode"
	echo more >>h2
	expect_eq "$(cat h1)" "shared
more" "write through the other name"
	mkdir hd
	ln h1 hd/h3
	expect_eq "$(links_of h2)" 3 "link count with a third name"
	rm h1
	drop_caches
	expect_eq "$(links_of h2)" 2 "link count after unlink"
	expect_eq "$(cat hd/h3)" "shared
more" "content"
}
check hardlink t_hardlink

t_symlink() {
	echo target-data >st
	ln -s st sl
	ln -s ../fs-work/st sl2
	expect_eq "$(readlink sl)" st "readlink"
	expect_eq "$(cat sl)" target-data "read through"
	expect_eq "$(cat sl2)" target-data "read through relative path"
	[ -L sl ] || die "not a symlink"
	expect_eq "$(stat -c %s sl)" 2 "symlink size"
	drop_caches
	expect_eq "$(readlink sl2)" ../fs-work/st "readlink after drop_caches"
}
check symlink t_symlink

t_symlink_dangling() {
	ln -s does-not-exist dl
	[ -L dl ] || die "not a symlink"
	[ ! -e dl ] || die "dangling link resolves"
	expect_eq "$(readlink dl)" does-not-exist "readlink"
	expect_errno "No such file" cat dl
	echo now >does-not-exist
	expect_eq "$(cat dl)" now "resolves once the target exists"
}
check symlink-dangling t_symlink_dangling

# ---- attributes ----

t_chmod() {
	: >cm
	chmod 640 cm
	expect_eq "$(mode_of cm)" 640 "mode"
	chmod u+x,o+r cm
	expect_eq "$(mode_of cm)" 744 "symbolic mode"
	chmod 4755 cm
	expect_eq "$(mode_of cm)" 4755 "setuid"
	mkdir cmd
	chmod 1777 cmd
	expect_eq "$(mode_of cmd)" 1777 "sticky dir"
	drop_caches
	expect_eq "$(mode_of cm)" 4755 "mode after drop_caches"
}
check chmod t_chmod

t_chown() {
	: >co
	chown 1234:5678 co
	expect_eq "$(owner_of co)" 1234:5678 "owner"
	chown 4321 co
	expect_eq "$(owner_of co)" 4321:5678 "owner, group kept"
	drop_caches
	expect_eq "$(owner_of co)" 4321:5678 "owner after drop_caches"
}
check chown t_chown

t_utimes_touch_d() {
	: >ut
	touch -d "2001-02-03 04:05:06" ut
	expect_eq "$(mtime_of ut)" "$(date -d "2001-02-03 04:05:06" +%s)" "mtime"
	drop_caches
	expect_eq "$(mtime_of ut)" "$(date -d "2001-02-03 04:05:06" +%s)" "mtime after drop_caches"
}
check utimes-touch-d t_utimes_touch_d

t_utimes_touch_t() {
	: >ut2
	touch -t 199912312359.58 ut2
	expect_eq "$(mtime_of ut2)" "$(date -d "1999-12-31 23:59:58" +%s)" "mtime"
	stat -c %X ut2 | grep -qx "$(date -d "1999-12-31 23:59:58" +%s)" || die "atime: $(stat -c %X ut2)"
}
check utimes-touch-t t_utimes_touch_t

t_utimens_ns() {
	: >un
	probe utimens un 1000000000.111111111 1234567890.987654321
	expect_eq "$(probe mtime-ns un)" 1234567890.987654321 "mtime with nanoseconds"
	drop_caches
	expect_eq "$(probe mtime-ns un)" 1234567890.987654321 "after drop_caches"
}
check utimens-ns t_utimens_ns

t_mtime_on_write() {
	echo a >mw
	probe utimens mw 1000.0 1000.0
	echo b >>mw
	m=$(mtime_of mw)
	[ "$m" -gt 1000 ] || die "mtime not updated by write: $m"
}
check mtime-on-write t_mtime_on_write

t_nonroot() {
	# A user other than root: the daemon must create files with the caller's
	# credentials, and the guest kernel enforces permissions (default_permissions).
	mkdir pub
	chmod 1777 pub
	echo secret >ro
	probe as-user 1000 1000 sh -c 'echo mine >pub/userfile && mkdir pub/udir'
	expect_eq "$(owner_of pub/userfile)" 1000:1000 "owner of a file the user created"
	expect_eq "$(owner_of pub/udir)" 1000:1000 "owner of a directory the user created"
	expect_errno "Permission denied" probe as-user 1000 1000 sh -c 'echo y >>ro'
	expect_errno "Permission denied" probe as-user 1000 1000 sh -c ': >newfile'
	chmod 600 ro
	expect_errno "Permission denied" probe as-user 1000 1000 cat ro
	expect_errno "Operation not permitted" probe as-user 1001 1001 rm -f pub/userfile
	probe as-user 1000 1000 rm pub/userfile
	expect_eq "$(cat ro)" secret "content"
	# A write by another user clears setuid/setgid (killpriv), and chmod by a
	# non-owner is refused.
	: >suid
	chmod 6777 suid
	probe as-user 1000 1000 sh -c 'echo w >>suid'
	expect_eq "$(mode_of suid)" 777 "mode after a non-owner write to a setuid file"
	expect_errno "Operation not permitted" probe as-user 1000 1000 chmod 600 suid
}
check permissions-nonroot t_nonroot

# ---- xattrs ----

t_xattr_set_get() {
	: >xa
	probe xattr-set xa user.color blue
	expect_eq "$(probe xattr-get xa user.color)" blue "value"
	probe xattr-set xa user.color green
	expect_eq "$(probe xattr-get xa user.color)" green "replaced value"
	v=$(printf 'v%.0s' $(seq 3000))
	probe xattr-set xa user.big "$v"
	expect_eq "$(probe xattr-get xa user.big)" "$v" "3000-byte value"
	expect_errno ENODATA probe xattr-get xa user.absent
}
check xattr-set-get t_xattr_set_get

t_xattr_list() {
	: >xl
	probe xattr-set xl user.a 1
	probe xattr-set xl user.b 2
	probe xattr-set xl user.c 3
	expect_eq "$(probe xattr-list xl | grep '^user\.' | tr '\n' ' ')" "user.a user.b user.c " "list"
	mkdir xd
	probe xattr-set xd user.dir yes
	expect_eq "$(probe xattr-get xd user.dir)" yes "xattr on a directory"
}
check xattr-list t_xattr_list

t_xattr_remove() {
	: >xr
	probe xattr-set xr user.gone 1
	probe xattr-set xr user.kept 2
	probe xattr-remove xr user.gone
	expect_errno ENODATA probe xattr-get xr user.gone
	expect_errno ENODATA probe xattr-remove xr user.gone
	expect_eq "$(probe xattr-list xr | grep '^user\.' | tr '\n' ' ')" "user.kept " "list after remove"
}
check xattr-remove t_xattr_remove

# ---- sparse files, SEEK_DATA/SEEK_HOLE, fallocate ----

t_sparse() {
	probe pwrite sp 67108864 Z
	expect_eq "$(size_of sp)" 67108865 "size"
	b=$(blocks_of sp)
	[ "$b" -lt 1024 ] || die "sparse file uses $b blocks"
	expect_eq "$(count_nonzero sp 0 65536)" 0 "hole reads as zeros"
	expect_eq "$(probe pread sp 67108864 1)" Z "byte at 64 MiB"
}
check sparse-file t_sparse

t_seek_hole_data() {
	probe pattern-write sh 0 4096 1
	probe pattern-write sh 1048576 4096 2
	probe fsync sh
	expect_eq "$(probe seek sh data 0)" 0 "SEEK_DATA 0"
	expect_eq "$(probe seek sh hole 0)" 4096 "SEEK_HOLE 0"
	expect_eq "$(probe seek sh data 4096)" 1048576 "SEEK_DATA 4096"
	expect_eq "$(probe seek sh hole 1048576)" 1052672 "SEEK_HOLE 1 MiB (end of file)"
	expect_errno ENXIO probe seek sh data 1052672
	truncate -s 4M sh
	expect_eq "$(probe seek sh hole 1048576)" 1052672 "SEEK_HOLE after grow"
	expect_errno ENXIO probe seek sh data 1052672
}
check seek-hole-data t_seek_hole_data

t_fallocate_alloc() {
	probe fallocate fa alloc 0 1048576
	expect_eq "$(size_of fa)" 1048576 "size"
	b=$(blocks_of fa)
	[ "$b" -ge 2048 ] || die "only $b blocks allocated"
	expect_eq "$(count_nonzero fa 0 1048576)" 0 "allocated range reads zero"
}
check fallocate-alloc t_fallocate_alloc

t_fallocate_keep_size() {
	probe pattern-write fk 0 4096 6
	probe fallocate fk keep-size 0 1048576
	expect_eq "$(size_of fk)" 4096 "size kept"
	b=$(blocks_of fk)
	[ "$b" -ge 2048 ] || die "only $b blocks allocated"
	probe pattern-check fk 0 4096 6
}
check fallocate-keep-size t_fallocate_keep_size

t_fallocate_punch_hole() {
	probe pattern-write fp 0 1048576 7
	probe fallocate fp punch-hole 262144 262144
	expect_eq "$(size_of fp)" 1048576 "size kept"
	probe pattern-check fp 0 262144 7
	probe pattern-check fp 524288 524288 7
	expect_eq "$(count_nonzero fp 262144 262144)" 0 "punched range (cached)"
	drop_caches
	expect_eq "$(count_nonzero fp 262144 262144)" 0 "punched range after drop_caches"
	expect_eq "$(probe seek fp hole 0)" 262144 "SEEK_HOLE finds the punched range"
}
check fallocate-punch-hole t_fallocate_punch_hole

t_fallocate_zero_range() {
	probe pattern-write fz 0 65536 8
	probe fallocate fz zero-range 4096 8192
	probe pattern-check fz 0 4096 8
	expect_eq "$(count_nonzero fz 4096 8192)" 0 "zeroed range"
	probe pattern-check fz 12288 53248 8
	probe fallocate fz zero-range-keep 65536 65536
	expect_eq "$(size_of fz)" 65536 "size kept by ZERO_RANGE|KEEP_SIZE"
	probe fallocate fz zero-range 65536 65536
	expect_eq "$(size_of fz)" 131072 "size grown by ZERO_RANGE"
}
check fallocate-zero-range t_fallocate_zero_range

# ---- mmap (no DAX: through the page cache) ----

t_mmap_read() {
	probe pattern-write mr 0 200000 9
	probe mmap-read mr 100000 100 >mr.out
	probe pread mr 100000 100 >mr.ref
	cmp mr.out mr.ref
}
check mmap-read t_mmap_read

t_mmap_write() {
	probe pattern-write mwr 0 65536 10
	probe mmap-write mwr 5000 "written-through-mmap"
	expect_eq "$(probe pread mwr 5000 20)" written-through-mmap "read(2) sees the mmap write"
	drop_caches
	expect_eq "$(probe pread mwr 5000 20)" written-through-mmap "after drop_caches"
	probe pattern-check mwr 0 5000 10
	probe pattern-check mwr 5020 60516 10
}
check mmap-write t_mmap_write

# ---- durability ----

t_fsync() {
	echo data >fs1
	probe fsync fs1
	probe fsync fs1 data
	mkdir fsd
	probe append-fsync fsd/f "x"
	sync
	sync -f fsd/f 2>/dev/null || sync
	expect_eq "$(cat fsd/f)" x "content"
}
check fsync t_fsync

t_statfs() {
	set -- $(stat -f -c '%b %a %S' .)
	[ "$1" -gt 0 ] && [ "$3" -gt 0 ] || die "statfs blocks=$1 avail=$2 bsize=$3"
	df -k "$MNT" | tail -n 1 | grep -q "$MNT" || die "df does not list $MNT"
}
check statfs t_statfs

t_mknod_fifo() {
	mkfifo ff
	expect_eq "$(stat -c %F ff)" "fifo" "type"
	( echo through-fifo >ff ) &
	expect_eq "$(cat ff)" through-fifo "data through the fifo"
	wait
}
check mkfifo t_mknod_fifo

t_copy_file_range() {
	probe pattern-write cfr 0 300000 12
	probe copy-range cfr cfr2 300000
	cmp cfr cfr2
}
check copy-file-range t_copy_file_range

# ---- trees ----

t_tree_host() {
	cd "$MNT/host-tree"
	sha256sum -c -s ../host-tree.sha256 || { sha256sum -c ../host-tree.sha256 | grep -v ': OK$'; die "host tree differs from manifest"; }
	expect_eq "$(find . -type f | wc -l)" "$(wc -l <../host-tree.sha256)" "file count"
	expect_eq "$(readlink link-to-small)" small/0 "symlink in tree"
}
check tree-host-manifest t_tree_host

t_tree_copy_within() {
	cp -a "$MNT/host-tree" tree-copy
	cd tree-copy
	sha256sum -c -s "$MNT/host-tree.sha256" || die "copy differs from manifest"
	expect_eq "$(readlink link-to-small)" small/0 "symlink copied"
	drop_caches
	sha256sum -c -s "$MNT/host-tree.sha256" || die "copy differs after drop_caches"
	# The host checks this copy again (host-view).
	cd "$STAGE_DIR"
	mkdir -p "$HOSTVIEW"
	cp -a tree-copy "$HOSTVIEW/tree-copy"
}
check tree-copy-within t_tree_copy_within

t_tree_copy_in() {
	# The guest's own module tree (from the initramfs, in RAM) copied into the share.
	cp -a /lib/modules tree-in
	n=0
	for f in $(cd /lib/modules && find . -type f); do
		cmp "/lib/modules/$f" "tree-in/$f"
		n=$((n + 1))
	done
	[ $n -ge 5 ] || die "only $n files compared"
	drop_caches
	(cd /lib/modules && find . | sort) >t1
	(cd tree-in && find . | sort) >t2
	cmp t1 t2
	for f in $(cd /lib/modules && find . -type f); do
		cmp "/lib/modules/$f" "tree-in/$f"
	done
}
check tree-copy-in t_tree_copy_in

t_remove_tree() {
	cp -a "$MNT/host-tree" tree-rm
	rm -rf tree-rm tree-in
	[ ! -e tree-rm ] && [ ! -e tree-in ] || die "tree still there"
	drop_caches
	expect_eq "$(ls | grep -c '^tree-\(rm\|in\)$')" 0 "listing"
}
check remove-tree t_remove_tree

# ---- concurrency ----

t_two_writers_one_file() {
	: >tw
	probe pattern-write tw 0 2097152 21 &
	p1=$!
	probe pattern-write tw 2097152 2097152 22 &
	p2=$!
	wait $p1 || die "writer 1 failed"
	wait $p2 || die "writer 2 failed"
	expect_eq "$(size_of tw)" 4194304 "size"
	drop_caches
	probe pattern-check tw 0 2097152 21
	probe pattern-check tw 2097152 2097152 22
}
check two-writers-one-file t_two_writers_one_file

t_two_writers_two_files() {
	mkdir tw2
	(i=0; while [ $i -lt 200 ]; do echo "a $i" >>tw2/a; i=$((i + 1)); done) &
	p1=$!
	(i=0; while [ $i -lt 200 ]; do echo "b $i" >>tw2/b; : >"tw2/b-$i"; i=$((i + 1)); done) &
	p2=$!
	wait $p1 || die "writer a failed"
	wait $p2 || die "writer b failed"
	drop_caches
	expect_eq "$(wc -l <tw2/a)" 200 "lines in a"
	expect_eq "$(wc -l <tw2/b)" 200 "lines in b"
	expect_eq "$(tail -n 1 tw2/a)" "a 199" "last line of a"
	expect_eq "$(seq 0 199 | sed 's/^/b /' | cmp - tw2/b && echo same)" same "content of b"
	expect_eq "$(ls tw2 | wc -l)" 202 "entries"
}
check two-writers-two-files t_two_writers_two_files

# ---- files the host verifies after power-off (run.sh, host-view) ----

# Each step is tried even when an earlier one failed, so one unsupported operation
# (say mmap under a no-cache policy) does not hide the others from the host checks.
hv_step() {
	"$@" || _hv_failed="$_hv_failed; $*"
}

t_host_view() {
	_hv_failed=
	mkdir -p "$HOSTVIEW"
	cd "$HOSTVIEW"
	hv_step sh -c 'echo "written by the guest" >text'
	hv_step probe pattern-write pattern 0 1048576 42
	hv_step chmod 640 text
	hv_step chown 1234:5678 text
	hv_step ln text text-link
	hv_step ln -s text text-sym
	hv_step probe pwrite sparse 16777216 end
	hv_step probe pattern-write mm 0 8192 43
	hv_step probe mmap-write mm 100 "mmap-was-here"
	hv_step touch -d "2001-02-03 04:05:06" text
	hv_step mkdir -p dir/sub
	hv_step sh -c 'echo deep >dir/sub/file'
	hv_step chmod 1777 dir
	hv_step probe as-user 1000 1000 sh -c 'echo user >dir/userfile'
	hv_step probe fsync pattern
	hv_step probe xattr-set text user.from-guest yes
	sync
	[ -z "$_hv_failed" ] || die "failed steps: ${_hv_failed#; }"
}
check host-view-write t_host_view
