//! Timed guest workloads for `run.sh --dax-perf`: the same reads, page touches and stats
//! under `-o dax` and `-o dax=never`. Each prints one line of `key=value` figures; the
//! caller drops the guest's caches first, so every access below reaches the device
//! (the window or a FUSE request), not the guest's page cache.

use std::time::Instant;

use super::{check, cstr, fail, file_size, map_file, mismatch, open, pread_into, Res};

/// The median of `samples` in µs (sorted in place), 0 when there are none.
fn p50_us(samples: &mut [f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2] * 1e6
}

/// `count` reads of 4 KiB at random page-aligned offsets (xorshift64 from `seed`), with
/// POSIX_FADV_RANDOM so that a page-cache miss reads that page alone, no readahead.
pub fn read4k(path: &str, count: u64, seed: u64) -> Res {
    let fd = open(path, libc::O_RDONLY)?;
    let pages = file_size(&fd, path)? / 4096;
    if pages == 0 {
        return Err(mismatch(format!("{path}: smaller than a page")));
    }
    // SAFETY: fd is open; the advice only changes the kernel's readahead for it.
    let advised = unsafe { libc::posix_fadvise(fd.0, 0, 0, libc::POSIX_FADV_RANDOM) };
    if advised != 0 {
        return Err(fail(format!("posix_fadvise {path}")));
    }
    let mut x = seed.max(1);
    let mut buf = vec![0u8; 4096];
    let mut samples = Vec::with_capacity(count as usize);
    let started = Instant::now();
    for _ in 0..count {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let off = x % pages * 4096;
        let t = Instant::now();
        let n = pread_into(&fd, path, off, &mut buf)?;
        samples.push(t.elapsed().as_secs_f64());
        if n != buf.len() {
            return Err(mismatch(format!("{path}: read {n} bytes at {off}")));
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "ops_per_s={:.0} p50_us={:.1}",
        count as f64 / secs,
        p50_us(&mut samples)
    );
    Ok(())
}

/// The whole file read in order, 1 MiB per read(2).
pub fn seqread(path: &str) -> Res {
    let fd = open(path, libc::O_RDONLY)?;
    let len = file_size(&fd, path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0;
    let mut samples = Vec::new();
    let started = Instant::now();
    while off < len {
        let t = Instant::now();
        let n = pread_into(&fd, path, off, &mut buf)?;
        samples.push(t.elapsed().as_secs_f64());
        if n == 0 {
            return Err(mismatch(format!("{path}: EOF at {off} of {len}")));
        }
        off += n as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "mb_per_s={:.1} p50_us={:.0}",
        len as f64 / secs / 1e6,
        p50_us(&mut samples)
    );
    Ok(())
}

/// A MAP_SHARED mapping of the whole file, one byte read from each 4 KiB page in order:
/// every touch a page fault (into the window under DAX, a page-cache fill otherwise).
pub fn mmap_touch(path: &str) -> Res {
    let fd = open(path, libc::O_RDONLY)?;
    let map = map_file(&fd, path, false)?;
    let pages = map.len / 4096;
    let mut sum = 0u64;
    let started = Instant::now();
    for page in 0..pages {
        // SAFETY: page * 4096 < map.len: inside the live mapping of the file, which nothing
        // truncates while this runs.
        sum += u64::from(unsafe { std::ptr::read_volatile(map.ptr.add(page * 4096)) });
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "pages_per_s={:.0} us_per_page={:.1} sum={sum}",
        pages as f64 / secs,
        secs * 1e6 / pages as f64
    );
    Ok(())
}

/// stat(2) of `dir/f0` .. `dir/f<count-1>`.
pub fn stat_many(dir: &str, count: u64) -> Res {
    let names: Vec<_> = (0..count).map(|i| cstr(&format!("{dir}/f{i}"))).collect();
    let mut samples = Vec::with_capacity(names.len());
    let started = Instant::now();
    for name in &names {
        // SAFETY: an all-zero stat is a valid value of this plain C struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let t = Instant::now();
        // SAFETY: name is NUL-terminated; st is a valid out-pointer.
        let r = unsafe { libc::stat(name.as_ptr(), &mut st) };
        samples.push(t.elapsed().as_secs_f64());
        check(r.into(), || format!("stat {}", name.to_string_lossy()))?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "ops_per_s={:.0} p50_us={:.1}",
        count as f64 / secs,
        p50_us(&mut samples)
    );
    Ok(())
}
