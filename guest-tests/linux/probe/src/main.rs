//! `probe`: a tiny static helper for the Linux test guest.
//!
//! busybox has no tools for xattrs, SEEK_HOLE/SEEK_DATA, fallocate modes, mmap,
//! renameat2 flags or positioned I/O; this program exposes those syscalls one per
//! subcommand so the shell workload can drive them. It also runs on the host (it is
//! statically linked), where run.sh uses it to read xattrs back without `attr`.
//!
//! On failure it prints `probe: <what>: <strerror> (<ERRNO_NAME>)` on stderr and exits 1;
//! on a usage error it exits 2. Workload checks grep the errno name.

use std::ffi::CString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::process::exit;

mod map;
mod perf;

const USAGE: &str = "usage: probe <command> [args]
  xattr-set PATH NAME VALUE        setxattr(2)
  xattr-get PATH NAME              print the value of NAME
  xattr-list PATH                  print the attribute names, one a line, sorted
  xattr-remove PATH NAME           removexattr(2)
  seek PATH data|hole OFFSET       lseek SEEK_DATA/SEEK_HOLE, print the result
  fallocate PATH MODE OFFSET LEN   MODE: alloc keep-size punch-hole zero-range zero-range-keep
  pwrite PATH OFFSET STRING        write STRING at OFFSET (create, no truncate)
  pread PATH OFFSET LEN            print LEN bytes from OFFSET (fewer at EOF)
  mmap-write PATH OFFSET STRING    write through a MAP_SHARED mapping, then msync(MS_SYNC)
  mmap-read PATH OFFSET LEN        print LEN bytes read through a MAP_SHARED mapping
  rename2 none|noreplace|exchange OLD NEW   renameat2(2) with that flag (none: 0)
  fsync PATH [data]                open O_RDWR and fsync (fdatasync with 'data')
  append-fsync PATH STRING         O_APPEND write then fsync
  pattern-write PATH OFFSET LEN SEED [direct]   write a seeded byte pattern (64 KiB
                                   pwrites; with 'direct': O_DIRECT, 4 KiB-aligned buffers)
  pattern-check PATH OFFSET LEN SEED [direct]   verify that pattern, report the first mismatch
  utimens PATH ATIME MTIME         set times, each SECONDS.NANOSECONDS
  mtime-ns PATH                    print mtime as SECONDS.NANOSECONDS
  copy-range SRC DST LEN           copy_file_range(2) LEN bytes from offset 0 to 0
  as-user UID GID PROG [ARGS]      drop supplementary groups, setgid, setuid, exec PROG
  statx PATH                       print `dax` or `nodax` (STATX_ATTR_DAX) and the size
  mmap-sync PATH                   mmap MAP_SHARED_VALIDATE|MAP_SYNC read-write; print `mapped`
  map PATH LEN ro|rw STEP...       map LEN bytes (may pass EOF) MAP_SHARED and run the steps
                                   in order (see map_step); a step starting with `?` may fail:
                                   it prints `<step>: ok` or `<step>: <ERRNO>` and goes on
  first-read DEV MARKER TIMEOUT_MS wait for DEV, then O_DIRECT-read its first 4 KiB until
                                   it starts with MARKER; print what the first read saw and
                                   how long until the marker showed
  perf-read4k PATH COUNT SEED      COUNT timed 4 KiB preads at random page offsets
                                   (POSIX_FADV_RANDOM); print ops_per_s and p50_us
  perf-seqread PATH                the whole file in 1 MiB reads; print mb_per_s and p50_us
  perf-mmap-touch PATH             mmap, read one byte of each 4 KiB page; print pages_per_s
  perf-stat DIR COUNT              stat DIR/f0..f<COUNT-1>; print ops_per_s and p50_us";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match argv.as_slice() {
        ["xattr-set", p, n, v] => xattr_set(p, n, v),
        ["xattr-get", p, n] => xattr_get(p, n),
        ["xattr-list", p] => xattr_list(p),
        ["xattr-remove", p, n] => xattr_remove(p, n),
        ["seek", p, w, o] => seek(p, w, num(o)),
        ["fallocate", p, m, o, l] => fallocate(p, m, num(o), num(l)),
        ["pwrite", p, o, s] => pwrite(p, num(o), s.as_bytes()),
        ["pread", p, o, l] => pread(p, num(o), num(l)),
        ["mmap-write", p, o, s] => mmap_write(p, num(o), s.as_bytes()),
        ["mmap-read", p, o, l] => mmap_read(p, num(o), num(l)),
        ["rename2", f, a, b] => rename2(f, a, b),
        ["fsync", p] => fsync(p, false),
        ["fsync", p, "data"] => fsync(p, true),
        ["append-fsync", p, s] => append_fsync(p, s.as_bytes()),
        ["pattern-write", p, o, l, s] => pattern_write(p, num(o), num(l), num(s), false),
        ["pattern-write", p, o, l, s, "direct"] => pattern_write(p, num(o), num(l), num(s), true),
        ["pattern-check", p, o, l, s] => pattern_check(p, num(o), num(l), num(s), false),
        ["pattern-check", p, o, l, s, "direct"] => pattern_check(p, num(o), num(l), num(s), true),
        ["utimens", p, a, m] => utimens(p, timespec(a), timespec(m)),
        ["mtime-ns", p] => mtime_ns(p),
        ["copy-range", a, b, l] => copy_range(a, b, num(l)),
        ["as-user", u, g, prog, rest @ ..] => as_user(num(u), num(g), prog, rest),
        ["statx", p] => map::statx(p),
        ["mmap-sync", p] => map::mmap_sync(p),
        ["map", p, l, m, steps @ ..] => map::map_script(p, num(l), m, steps),
        ["first-read", d, m, t] => first_read(d, m.as_bytes(), num(t)),
        ["perf-read4k", p, c, s] => perf::read4k(p, num(c), num(s)),
        ["perf-seqread", p] => perf::seqread(p),
        ["perf-mmap-touch", p] => perf::mmap_touch(p),
        ["perf-stat", d, c] => perf::stat_many(d, num(c)),
        _ => usage(),
    };
    if let Err(e) = result {
        let _ = io::stdout().flush();
        eprintln!("probe: {e}");
        exit(1);
    }
}

fn usage() -> ! {
    eprintln!("{USAGE}");
    exit(2)
}

/// A failed step: what was attempted and the OS error it ended in.
struct Failure {
    what: String,
    err: io::Error,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.err.raw_os_error() {
            Some(n) => write!(f, "{}: {} ({})", self.what, self.err, errno_name(n)),
            None => write!(f, "{}: {}", self.what, self.err),
        }
    }
}

type Res = Result<(), Failure>;

fn fail(what: impl Into<String>) -> Failure {
    Failure {
        what: what.into(),
        err: io::Error::last_os_error(),
    }
}

fn mismatch(what: impl Into<String>) -> Failure {
    Failure {
        what: what.into(),
        err: io::Error::new(io::ErrorKind::InvalidData, "mismatch"),
    }
}

/// Checks a libc return value (-1 = failure, errno set).
fn check(ret: i64, what: impl FnOnce() -> String) -> Result<i64, Failure> {
    if ret < 0 {
        Err(fail(what()))
    } else {
        Ok(ret)
    }
}

fn num(s: &str) -> u64 {
    let parsed = if let Some(hex) = s.strip_prefix("0x") {
        u64::from_str_radix(hex, 16).ok()
    } else if let Some(k) = s.strip_suffix('K') {
        k.parse::<u64>().ok().map(|v| v << 10)
    } else if let Some(m) = s.strip_suffix('M') {
        m.parse::<u64>().ok().map(|v| v << 20)
    } else {
        s.parse().ok()
    };
    parsed.unwrap_or_else(|| {
        eprintln!("probe: not a number: {s}");
        exit(2)
    })
}

fn timespec(s: &str) -> libc::timespec {
    let (sec, nsec) = s.split_once('.').unwrap_or((s, "0"));
    let (Ok(sec), Ok(nsec)) = (sec.parse::<i64>(), nsec.parse::<i64>()) else {
        eprintln!("probe: not SECONDS.NANOSECONDS: {s}");
        exit(2)
    };
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

fn cstr(s: &str) -> CString {
    CString::new(std::ffi::OsStr::new(s).as_bytes()).unwrap_or_else(|_| {
        eprintln!("probe: NUL in argument");
        exit(2)
    })
}

/// An open file descriptor, closed on drop.
struct Fd(i32);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: self.0 is an fd this process opened and has not closed.
        unsafe { libc::close(self.0) };
    }
}

fn open(path: &str, flags: i32) -> Result<Fd, Failure> {
    let c = cstr(path);
    // SAFETY: c is a valid NUL-terminated string; the mode is only read with O_CREAT.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
    check(fd.into(), || format!("open {path}"))?;
    Ok(Fd(fd))
}

fn file_size(fd: &Fd, path: &str) -> Result<u64, Failure> {
    // SAFETY: an all-zero stat is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open and st is a valid out-pointer.
    check(unsafe { libc::fstat(fd.0, &mut st) }.into(), || {
        format!("fstat {path}")
    })?;
    Ok(st.st_size as u64)
}

fn out(bytes: &[u8]) -> Res {
    io::stdout().write_all(bytes).map_err(|err| Failure {
        what: "write stdout".into(),
        err,
    })
}

fn xattr_set(path: &str, name: &str, value: &str) -> Res {
    let (p, n) = (cstr(path), cstr(name));
    // SAFETY: p and n are NUL-terminated; value points to value.len() readable bytes.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    check(r.into(), || format!("setxattr {path} {name}")).map(drop)
}

/// Runs a size-query-then-fill xattr call (getxattr/listxattr) and returns the bytes.
fn xattr_buf(
    what: &str,
    f: impl Fn(*mut libc::c_void, usize) -> isize,
) -> Result<Vec<u8>, Failure> {
    loop {
        let len = check(f(std::ptr::null_mut(), 0) as i64, || what.to_string())? as usize;
        let mut buf = vec![0u8; len.max(1)];
        let got = f(buf.as_mut_ptr().cast(), buf.len());
        if got < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ERANGE) {
            continue; // grew between the two calls
        }
        let got = check(got as i64, || what.to_string())? as usize;
        buf.truncate(got);
        return Ok(buf);
    }
}

fn xattr_get(path: &str, name: &str) -> Res {
    let (p, n) = (cstr(path), cstr(name));
    // SAFETY: p and n are NUL-terminated; buf/len describe a writable buffer (or null/0).
    let v = xattr_buf(&format!("getxattr {path} {name}"), |buf, len| unsafe {
        libc::getxattr(p.as_ptr(), n.as_ptr(), buf, len)
    })?;
    out(&v)?;
    out(b"\n")
}

fn xattr_list(path: &str) -> Res {
    let p = cstr(path);
    // SAFETY: p is NUL-terminated; buf/len describe a writable buffer (or null/0).
    let v = xattr_buf(&format!("listxattr {path}"), |buf, len| unsafe {
        libc::listxattr(p.as_ptr(), buf.cast(), len)
    })?;
    let mut names: Vec<&[u8]> = v.split(|&b| b == 0).filter(|s| !s.is_empty()).collect();
    names.sort();
    for n in names {
        out(n)?;
        out(b"\n")?;
    }
    Ok(())
}

fn xattr_remove(path: &str, name: &str) -> Res {
    let (p, n) = (cstr(path), cstr(name));
    // SAFETY: p and n are NUL-terminated.
    let r = unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) };
    check(r.into(), || format!("removexattr {path} {name}")).map(drop)
}

fn seek(path: &str, whence: &str, off: u64) -> Res {
    let w = match whence {
        "data" => libc::SEEK_DATA,
        "hole" => libc::SEEK_HOLE,
        _ => usage(),
    };
    let fd = open(path, libc::O_RDONLY)?;
    // SAFETY: fd is open.
    let r = unsafe { libc::lseek(fd.0, off as libc::off_t, w) };
    let r = check(r, || {
        format!("lseek {path} SEEK_{} {off}", whence.to_uppercase())
    })?;
    out(format!("{r}\n").as_bytes())
}

fn fallocate(path: &str, mode: &str, off: u64, len: u64) -> Res {
    let m = match mode {
        "alloc" => 0,
        "keep-size" => libc::FALLOC_FL_KEEP_SIZE,
        "punch-hole" => libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        "zero-range" => libc::FALLOC_FL_ZERO_RANGE,
        "zero-range-keep" => libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
        _ => usage(),
    };
    let fd = open(path, libc::O_RDWR | libc::O_CREAT)?;
    // SAFETY: fd is open.
    let r = unsafe { libc::fallocate(fd.0, m, off as libc::off_t, len as libc::off_t) };
    check(r.into(), || format!("fallocate {path} {mode} {off} {len}")).map(drop)
}

fn pwrite_all(fd: &Fd, path: &str, mut off: u64, mut data: &[u8]) -> Res {
    while !data.is_empty() {
        // SAFETY: fd is open; data points to data.len() readable bytes.
        let n = unsafe { libc::pwrite(fd.0, data.as_ptr().cast(), data.len(), off as libc::off_t) };
        let n = check(n as i64, || format!("pwrite {path} at {off}"))? as usize;
        if n == 0 {
            return Err(mismatch(format!("pwrite {path} at {off}: wrote 0 bytes")));
        }
        data = &data[n..];
        off += n as u64;
    }
    Ok(())
}

/// Reads into `buf` from `off` until it is full or EOF; returns the bytes read.
fn pread_into(fd: &Fd, path: &str, mut off: u64, buf: &mut [u8]) -> Result<usize, Failure> {
    let mut got = 0;
    while got < buf.len() {
        let rest = &mut buf[got..];
        // SAFETY: fd is open; rest is writable for rest.len() bytes.
        let n = unsafe {
            libc::pread(
                fd.0,
                rest.as_mut_ptr().cast(),
                rest.len(),
                off as libc::off_t,
            )
        };
        let n = check(n as i64, || format!("pread {path} at {off}"))? as usize;
        if n == 0 {
            break; // EOF
        }
        got += n;
        off += n as u64;
    }
    Ok(got)
}

fn pread_full(fd: &Fd, path: &str, off: u64, len: usize) -> Result<Vec<u8>, Failure> {
    let mut buf = vec![0u8; len];
    let got = pread_into(fd, path, off, &mut buf)?;
    buf.truncate(got);
    Ok(buf)
}

fn pwrite(path: &str, off: u64, data: &[u8]) -> Res {
    let fd = open(path, libc::O_WRONLY | libc::O_CREAT)?;
    pwrite_all(&fd, path, off, data)
}

fn pread(path: &str, off: u64, len: u64) -> Res {
    let fd = open(path, libc::O_RDONLY)?;
    out(&pread_full(&fd, path, off, len as usize)?)
}

/// A MAP_SHARED mapping of a whole file, unmapped on drop.
struct Map {
    ptr: *mut u8,
    len: usize,
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

fn map_file(fd: &Fd, path: &str, writable: bool) -> Result<Map, Failure> {
    let len = file_size(fd, path)? as usize;
    if len == 0 {
        return Err(mismatch(format!("mmap {path}: empty file")));
    }
    let prot = libc::PROT_READ | if writable { libc::PROT_WRITE } else { 0 };
    // SAFETY: a fresh mapping chosen by the kernel (no MAP_FIXED) of an open fd.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd.0, 0) };
    if p == libc::MAP_FAILED {
        return Err(fail(format!("mmap {path}")));
    }
    Ok(Map { ptr: p.cast(), len })
}

fn in_map(map: &Map, path: &str, off: u64, len: usize) -> Result<usize, Failure> {
    let off = off as usize;
    if off.checked_add(len).is_none_or(|end| end > map.len) {
        return Err(mismatch(format!(
            "{path}: range {off}+{len} beyond size {}",
            map.len
        )));
    }
    Ok(off)
}

fn mmap_write(path: &str, off: u64, data: &[u8]) -> Res {
    let fd = open(path, libc::O_RDWR)?;
    let map = map_file(&fd, path, true)?;
    let at = in_map(&map, path, off, data.len())?;
    // SAFETY: at..at+len lies inside the live writable mapping (checked by in_map).
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), map.ptr.add(at), data.len()) };
    // SAFETY: ptr/len are the live mapping.
    let r = unsafe { libc::msync(map.ptr.cast(), map.len, libc::MS_SYNC) };
    check(r.into(), || format!("msync {path}")).map(drop)
}

fn mmap_read(path: &str, off: u64, len: u64) -> Res {
    let fd = open(path, libc::O_RDONLY)?;
    let map = map_file(&fd, path, false)?;
    let at = in_map(&map, path, off, len as usize)?;
    // SAFETY: at..at+len lies inside the live mapping (checked by in_map).
    let bytes = unsafe { std::slice::from_raw_parts(map.ptr.add(at), len as usize) };
    out(bytes)
}

fn rename2(flag: &str, old: &str, new: &str) -> Res {
    let f = match flag {
        "none" => 0,
        "noreplace" => libc::RENAME_NOREPLACE,
        "exchange" => libc::RENAME_EXCHANGE,
        _ => usage(),
    };
    let (a, b) = (cstr(old), cstr(new));
    // SAFETY: a and b are NUL-terminated; AT_FDCWD resolves relative paths.
    let r = unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), f) };
    check(r.into(), || format!("renameat2 {flag} {old} {new}")).map(drop)
}

fn fsync(path: &str, data_only: bool) -> Res {
    let fd = open(path, libc::O_RDWR)?;
    // SAFETY: fd is open.
    let r = unsafe {
        if data_only {
            libc::fdatasync(fd.0)
        } else {
            libc::fsync(fd.0)
        }
    };
    check(r.into(), || format!("fsync {path}")).map(drop)
}

fn append_fsync(path: &str, data: &[u8]) -> Res {
    let fd = open(path, libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT)?;
    // SAFETY: fd is open; data points to data.len() readable bytes.
    let n = unsafe { libc::write(fd.0, data.as_ptr().cast(), data.len()) };
    if check(n as i64, || format!("write {path}"))? as usize != data.len() {
        return Err(mismatch(format!("write {path}: short write")));
    }
    // SAFETY: fd is open.
    check(unsafe { libc::fsync(fd.0) }.into(), || {
        format!("fsync {path}")
    })
    .map(drop)
}

/// Byte `i` of the pattern for `seed`: depends on the absolute file offset, so any
/// misplaced or torn block shows up.
fn pattern_byte(seed: u64, pos: u64) -> u8 {
    let x = (pos ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (x >> 56) as u8 ^ (pos >> 12) as u8
}

const CHUNK: u64 = 64 << 10;
const DIRECT_ALIGN: usize = 4096;

/// A CHUNK-sized buffer whose start is DIRECT_ALIGN-aligned (O_DIRECT needs that).
struct ChunkBuf {
    storage: Vec<u8>,
    start: usize,
}

impl ChunkBuf {
    fn new() -> Self {
        let storage = vec![0u8; CHUNK as usize + DIRECT_ALIGN];
        let start = storage.as_ptr().align_offset(DIRECT_ALIGN);
        ChunkBuf { storage, start }
    }

    fn get(&mut self, n: usize) -> &mut [u8] {
        &mut self.storage[self.start..self.start + n]
    }
}

fn pattern_open(path: &str, flags: i32, direct: bool, off: u64, len: u64) -> Result<Fd, Failure> {
    if direct && !(off | len).is_multiple_of(DIRECT_ALIGN as u64) {
        return Err(mismatch(format!(
            "{path}: direct I/O needs {DIRECT_ALIGN}-aligned offset and length"
        )));
    }
    open(path, flags | if direct { libc::O_DIRECT } else { 0 })
}

fn pattern_write(path: &str, off: u64, len: u64, seed: u64, direct: bool) -> Res {
    let fd = pattern_open(path, libc::O_WRONLY | libc::O_CREAT, direct, off, len)?;
    let mut buf = ChunkBuf::new();
    let mut pos = off;
    while pos < off + len {
        let n = CHUNK.min(off + len - pos);
        let chunk = buf.get(n as usize);
        for (i, b) in chunk.iter_mut().enumerate() {
            *b = pattern_byte(seed, pos + i as u64);
        }
        pwrite_all(&fd, path, pos, chunk)?;
        pos += n;
    }
    Ok(())
}

fn pattern_check(path: &str, off: u64, len: u64, seed: u64, direct: bool) -> Res {
    let fd = pattern_open(path, libc::O_RDONLY, direct, off, len)?;
    let mut buf = ChunkBuf::new();
    let mut pos = off;
    while pos < off + len {
        let n = CHUNK.min(off + len - pos) as usize;
        let chunk = buf.get(n);
        let got = pread_into(&fd, path, pos, chunk)?;
        if got < n {
            return Err(mismatch(format!(
                "{path}: EOF at {} inside pattern",
                pos + got as u64
            )));
        }
        if let Some(i) = (0..n).find(|&i| chunk[i] != pattern_byte(seed, pos + i as u64)) {
            let at = pos + i as u64;
            return Err(mismatch(format!(
                "{path}: byte at {at} is {:#04x}, pattern {seed} wants {:#04x}",
                chunk[i],
                pattern_byte(seed, at)
            )));
        }
        pos += n as u64;
    }
    Ok(())
}

fn utimens(path: &str, atime: libc::timespec, mtime: libc::timespec) -> Res {
    let c = cstr(path);
    let times = [atime, mtime];
    // SAFETY: c is NUL-terminated; times is an array of two timespecs.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) };
    check(r.into(), || format!("utimensat {path}")).map(drop)
}

fn mtime_ns(path: &str) -> Res {
    let c = cstr(path);
    // SAFETY: an all-zero stat is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: c is NUL-terminated; st is a valid out-pointer.
    check(unsafe { libc::stat(c.as_ptr(), &mut st) }.into(), || {
        format!("stat {path}")
    })?;
    out(format!("{}.{:09}\n", st.st_mtime, st.st_mtime_nsec).as_bytes())
}

fn copy_range(src: &str, dst: &str, len: u64) -> Res {
    let a = open(src, libc::O_RDONLY)?;
    let b = open(dst, libc::O_WRONLY | libc::O_CREAT)?;
    let (mut ia, mut ib): (libc::loff_t, libc::loff_t) = (0, 0);
    let mut left = len as usize;
    while left > 0 {
        // SAFETY: a and b are open; ia/ib are valid in/out offsets.
        let n = unsafe { libc::copy_file_range(a.0, &mut ia, b.0, &mut ib, left, 0) };
        let n = check(n as i64, || format!("copy_file_range {src} {dst}"))? as usize;
        if n == 0 {
            return Err(mismatch(format!(
                "copy_file_range {src}: EOF after {ia} bytes"
            )));
        }
        left -= n;
    }
    Ok(())
}

fn as_user(uid: u64, gid: u64, prog: &str, args: &[&str]) -> Res {
    let (Ok(uid), Ok(gid)) = (libc::uid_t::try_from(uid), libc::gid_t::try_from(gid)) else {
        usage()
    };
    // SAFETY: an empty group list (null pointer, length 0) is valid for setgroups.
    check(
        unsafe { libc::setgroups(0, std::ptr::null()) }.into(),
        || "setgroups".into(),
    )?;
    // SAFETY: plain syscalls on integer ids.
    check(unsafe { libc::setgid(gid) }.into(), || {
        format!("setgid {gid}")
    })?;
    // SAFETY: as above.
    check(unsafe { libc::setuid(uid) }.into(), || {
        format!("setuid {uid}")
    })?;
    let prog_c = cstr(prog);
    let argv_c: Vec<CString> = std::iter::once(prog)
        .chain(args.iter().copied())
        .map(cstr)
        .collect();
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: prog_c and every argv entry are NUL-terminated and outlive the call; argv
    // ends with a null pointer.
    unsafe { libc::execvp(prog_c.as_ptr(), argv.as_ptr()) };
    Err(fail(format!("exec {prog}")))
}

/// A 4 KiB-aligned heap buffer (O_DIRECT needs aligned memory).
fn aligned_buf(len: usize) -> (Vec<u8>, usize) {
    let storage = vec![0u8; len + DIRECT_ALIGN];
    let start = storage.as_ptr().align_offset(DIRECT_ALIGN);
    (storage, start)
}

fn first_read(dev: &str, marker: &[u8], timeout_ms: u64) -> Res {
    use std::time::{Duration, Instant};
    let timeout = Duration::from_millis(timeout_ms);
    let t0 = Instant::now();
    while !std::path::Path::new(dev).exists() {
        if t0.elapsed() > timeout {
            return Err(mismatch(format!(
                "{dev} did not appear within {timeout_ms} ms"
            )));
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let dev_wait = t0.elapsed();
    let fd = open(dev, libc::O_RDONLY | libc::O_DIRECT)?;
    let (mut storage, start) = aligned_buf(4096);
    let buf = &mut storage[start..start + 4096];
    let t1 = Instant::now();
    let mut first: Option<String> = None;
    let mut reads = 0u64;
    let ms = |d: Duration| format!("{:.3}", d.as_secs_f64() * 1000.0);
    loop {
        buf.fill(0xa5);
        // SAFETY: fd is open; buf is 4096 writable, 4 KiB-aligned bytes.
        let n = unsafe { libc::pread(fd.0, buf.as_mut_ptr().cast(), 4096, 0) };
        let err = io::Error::last_os_error();
        reads += 1;
        let seen = if n < 0 {
            format!("error:{}", err.raw_os_error().map_or("E?", errno_name))
        } else if buf.starts_with(marker) {
            "marker".to_string()
        } else if buf[..n as usize].iter().all(|&b| b == 0) {
            "zeros".to_string()
        } else {
            let head: String = buf[..16].iter().map(|b| format!("{b:02x}")).collect();
            format!("other:{head}")
        };
        let first_seen = first.get_or_insert_with(|| seen.clone()).clone();
        if seen == "marker" {
            return out(format!(
                "dev_wait_ms={} first={first_seen} marker_after_ms={} reads={reads}\n",
                ms(dev_wait),
                ms(t1.elapsed())
            )
            .as_bytes());
        }
        if t1.elapsed() > timeout {
            out(
                format!(
                    "dev_wait_ms={} first={first_seen} marker_after_ms=never last={seen} reads={reads}\n",
                    ms(dev_wait)
                )
                .as_bytes(),
            )?;
            return Err(mismatch(format!("{dev}: no marker after {timeout_ms} ms")));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn errno_name(n: i32) -> &'static str {
    const NAMES: &[(i32, &str)] = &[
        (libc::EPERM, "EPERM"),
        (libc::ENOENT, "ENOENT"),
        (libc::EIO, "EIO"),
        (libc::EBADF, "EBADF"),
        (libc::EAGAIN, "EAGAIN"),
        (libc::ENOMEM, "ENOMEM"),
        (libc::EACCES, "EACCES"),
        (libc::EBUSY, "EBUSY"),
        (libc::EEXIST, "EEXIST"),
        (libc::EXDEV, "EXDEV"),
        (libc::ENODEV, "ENODEV"),
        (libc::ENOTDIR, "ENOTDIR"),
        (libc::EISDIR, "EISDIR"),
        (libc::EINVAL, "EINVAL"),
        (libc::EFBIG, "EFBIG"),
        (libc::ENOSPC, "ENOSPC"),
        (libc::ESPIPE, "ESPIPE"),
        (libc::EROFS, "EROFS"),
        (libc::EMLINK, "EMLINK"),
        (libc::ERANGE, "ERANGE"),
        (libc::ENAMETOOLONG, "ENAMETOOLONG"),
        (libc::ENOSYS, "ENOSYS"),
        (libc::ENOTEMPTY, "ENOTEMPTY"),
        (libc::ELOOP, "ELOOP"),
        (libc::ENODATA, "ENODATA"),
        (libc::EOPNOTSUPP, "EOPNOTSUPP"),
        (libc::ENXIO, "ENXIO"),
        (libc::E2BIG, "E2BIG"),
        (libc::ETIMEDOUT, "ETIMEDOUT"),
        (libc::ENOTCONN, "ENOTCONN"),
        (libc::EFAULT, "EFAULT"),
        (libc::EINTR, "EINTR"),
        (libc::ETXTBSY, "ETXTBSY"),
    ];
    NAMES.iter().find(|(e, _)| *e == n).map_or("E?", |(_, s)| s)
}
