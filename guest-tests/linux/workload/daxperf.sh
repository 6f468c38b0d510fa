# Stage "daxperf": the same timed workloads through the DAX window (-o dax) and through
# FUSE requests and the guest's page cache (-o dax=never), in one boot. Informational:
# run.sh --dax-perf prints the figures as a table (TCG figures: compare the two columns
# of one run, not absolute numbers).
#
# Sourced by /init with the share mounted -o dax. The host prepared $MNT/perf
# (stages11.sh, daxperf_prepare): big (32 MiB, whole pages, so DAX under
# --dax-maps-within-file) and stat/f0 .. stat/f<N-1>. Every workload starts after
# dropping the guest's caches, so its accesses reach the device: under -o dax the window
# (a SETUPMAPPING per 2 MiB range first touched), under dax=never FUSE READs.
# Each result goes to the console as `PERF <mount> <workload> key=value ...`.
# shellcheck disable=SC2086

STAGE_DIR=/tmp/daxperf
PERF=$MNT/perf
PERF_STATS=${vd_perf_stats:-500}
PERF_READS=${vd_perf_reads:-1000}
begin_stage daxperf "$STAGE_DIR"

# perf_run MOUNT WORKLOAD PROBE-ARGS...: drop the caches, run the probe, report.
perf_run() {
	_mount=$1
	_work=$2
	shift 2
	drop_caches
	_out=$(probe "$@") || die "probe $*: $_out"
	echo "PERF $_mount $_work $_out" >/dev/console
}

# perf_pass MOUNT STATE: the mount is as asked, big is (not) DAX, then the four workloads.
perf_pass() {
	mounted_with "dax=$1"
	expect_eq "$(probe statx "$PERF/big")" "$2 33554432" "statx of perf/big under -o dax=$1"
	perf_run "$1" read4k perf-read4k "$PERF/big" "$PERF_READS" 12345
	perf_run "$1" seqread perf-seqread "$PERF/big"
	perf_run "$1" mmap perf-mmap-touch "$PERF/big"
	perf_run "$1" stat perf-stat "$PERF/stat" "$PERF_STATS"
}

# Passes in ABBA order (-o dax, dax=never, dax=never, -o dax), so a drift over the run
# (the host's caches, other load) weighs on both mounts alike; run.sh averages each
# mount's two passes.
REMOUNT_ERR=
t_always() { perf_pass always dax; }
t_never() { perf_pass never nodax; }
check dax-always-pass-1 t_always
stage_remount dax=never
check dax-never-pass-1 t_never
check dax-never-pass-2 t_never
stage_remount dax
check dax-always-pass-2 t_always
