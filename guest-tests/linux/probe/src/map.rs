//! The probes of a file's mapping for the DAX and pmem stages: `statx` (is the file DAX?),
//! `mmap-sync` (MAP_SHARED_VALIDATE|MAP_SYNC) and `map`, scripted steps on one MAP_SHARED
//! mapping (patterns through it, SIGBUS expected in a child, size changes, O_DIRECT into
//! and out of it).

use super::*;

pub(super) fn statx(path: &str) -> Res {
    let c = cstr(path);
    // SAFETY: an all-zero statx is a valid value of this plain C struct.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: c is NUL-terminated; st is a valid out-pointer.
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            0,
            libc::STATX_BASIC_STATS,
            &mut st,
        )
    };
    check(r.into(), || format!("statx {path}"))?;
    let dax = libc::STATX_ATTR_DAX as u64;
    let state = if st.stx_attributes_mask & dax == 0 {
        "unknown"
    } else if st.stx_attributes & dax != 0 {
        "dax"
    } else {
        "nodax"
    };
    out(format!("{state} {}\n", st.stx_size).as_bytes())
}

pub(super) fn mmap_sync(path: &str) -> Res {
    let fd = open(path, libc::O_RDWR)?;
    let len = (file_size(&fd, path)? as usize).max(4096);
    // SAFETY: a fresh mapping chosen by the kernel (no MAP_FIXED) of an open fd.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED_VALIDATE | libc::MAP_SYNC,
            fd.0,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(fail(format!("mmap MAP_SYNC {path}")));
    }
    let _map = Map { ptr: p.cast(), len };
    out(b"mapped\n")
}

/// The step of `map` running now (1-based), for the SIGBUS handler.
static CURRENT_STEP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

extern "C" fn on_sigbus(_sig: libc::c_int) {
    // Only async-signal-safe calls: the step number formatted by hand, write(2), _exit(2).
    const PREFIX: &[u8] = b"probe: SIGBUS (bus error) during map step ";
    let mut msg = [0u8; 80];
    msg[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 20];
    let mut n = CURRENT_STEP.load(std::sync::atomic::Ordering::Relaxed);
    let mut d = 0;
    loop {
        digits[d] = b'0' + (n % 10) as u8;
        d += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut len = PREFIX.len();
    for i in (0..d).rev() {
        msg[len] = digits[i];
        len += 1;
    }
    msg[len] = b'\n';
    // SAFETY: msg holds len + 1 initialised bytes; _exit never returns.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), len + 1);
        libc::_exit(3);
    }
}

fn install_sigbus_handler() {
    // SAFETY: an all-zero sigaction is valid; the handler only uses signal-safe calls.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigbus as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
    }
}

pub(super) fn map_script(path: &str, len: u64, mode: &str, steps: &[&str]) -> Res {
    let writable = match mode {
        "ro" => false,
        "rw" => true,
        _ => usage(),
    };
    let fd = open(
        path,
        if writable {
            libc::O_RDWR
        } else {
            libc::O_RDONLY
        },
    )?;
    let prot = libc::PROT_READ | if writable { libc::PROT_WRITE } else { 0 };
    // SAFETY: a fresh mapping chosen by the kernel (no MAP_FIXED) of an open fd; a
    // length past EOF is allowed (touching whole pages past EOF raises SIGBUS).
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len as usize,
            prot,
            libc::MAP_SHARED,
            fd.0,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(fail(format!("mmap {path} {len}")));
    }
    let map = Map {
        ptr: p.cast(),
        len: len as usize,
    };
    install_sigbus_handler();
    for (i, step) in steps.iter().enumerate() {
        CURRENT_STEP.store(i + 1, std::sync::atomic::Ordering::Relaxed);
        let (tolerant, step) = match step.strip_prefix('?') {
            Some(s) => (true, s),
            None => (false, *step),
        };
        match map_step(&fd, &map, path, step) {
            Ok(()) if tolerant => out(format!("{step}: ok\n").as_bytes())?,
            Ok(()) => {}
            Err(e) if tolerant => {
                let what = e.err.raw_os_error().map_or("mismatch", errno_name);
                out(format!("{step}: {what}\n").as_bytes())?;
            }
            Err(e) => {
                return Err(Failure {
                    what: format!("map step {} ({step}): {}", i + 1, e.what),
                    err: e.err,
                });
            }
        }
    }
    Ok(())
}

/// One step of `map`. Offsets in the mapping are also file offsets (the map starts at 0).
///   check:OFF:LEN:SEED   pattern read through the mapping     fill:OFF:LEN:SEED  written
///   expect:OFF:STRING    bytes read through the mapping       write:OFF:STRING   written
///   zero:OFF:LEN         zeros through the mapping            msync              MS_SYNC
///   sigbus:OFF           a read there must raise SIGBUS (tried in a child process)
///   size:N               fstat size is N                      ftruncate:SIZE
///   fallocate:OFF:LEN    mode 0                                pwrite:OFF:STRING
///   pfill:OFF:LEN:SEED   pattern by pwrite(2)                  pcheck:OFF:LEN:SEED by pread(2)
///   touch:PATH  wait:PATH  sleep:MS  unlink:PATH  rename:OLD:NEW
///   dio-read:SRC:SRCOFF:OFF:LEN    O_DIRECT read of SRC into the mapping
///   dio-write:DST:DSTOFF:OFF:LEN   O_DIRECT write of the mapping into DST
fn map_step(fd: &Fd, map: &Map, path: &str, step: &str) -> Res {
    let parts: Vec<&str> = step.splitn(5, ':').collect();
    let text = |i: usize| -> &str { step.splitn(i + 1, ':').nth(i).unwrap_or("") };
    match parts.as_slice() {
        ["check", o, l, s] => {
            let at = in_map(map, path, num(o), num(l) as usize)?;
            let seed = num(s);
            // SAFETY: at..at+len lies inside the live mapping (checked by in_map).
            let bytes = unsafe { std::slice::from_raw_parts(map.ptr.add(at), num(l) as usize) };
            if let Some(i) =
                (0..bytes.len()).find(|&i| bytes[i] != pattern_byte(seed, (at + i) as u64))
            {
                let pos = (at + i) as u64;
                return Err(mismatch(format!(
                    "{path}: mapped byte at {pos} is {:#04x}, pattern {seed} wants {:#04x}",
                    bytes[i],
                    pattern_byte(seed, pos)
                )));
            }
            Ok(())
        }
        ["fill", o, l, s] => {
            let at = in_map(map, path, num(o), num(l) as usize)?;
            let seed = num(s);
            for i in 0..num(l) as usize {
                // SAFETY: at+i lies inside the live writable mapping (checked by in_map).
                unsafe { *map.ptr.add(at + i) = pattern_byte(seed, (at + i) as u64) };
            }
            Ok(())
        }
        ["expect", o, ..] => {
            let want = text(2).as_bytes();
            let at = in_map(map, path, num(o), want.len())?;
            // SAFETY: at..at+len lies inside the live mapping (checked by in_map).
            let got = unsafe { std::slice::from_raw_parts(map.ptr.add(at), want.len()) };
            if got != want {
                return Err(mismatch(format!(
                    "{path}: mapped bytes at {at} are {:?}, want {:?}",
                    String::from_utf8_lossy(got),
                    String::from_utf8_lossy(want)
                )));
            }
            Ok(())
        }
        ["write", o, ..] => {
            let data = text(2).as_bytes();
            let at = in_map(map, path, num(o), data.len())?;
            // SAFETY: at..at+len lies inside the live writable mapping (checked by in_map).
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), map.ptr.add(at), data.len()) };
            Ok(())
        }
        ["zero", o, l] => {
            let at = in_map(map, path, num(o), num(l) as usize)?;
            // SAFETY: at..at+len lies inside the live mapping (checked by in_map).
            let bytes = unsafe { std::slice::from_raw_parts(map.ptr.add(at), num(l) as usize) };
            if let Some(i) = bytes.iter().position(|&b| b != 0) {
                return Err(mismatch(format!(
                    "{path}: mapped byte at {} is {:#04x}, want 0",
                    at + i,
                    bytes[i]
                )));
            }
            Ok(())
        }
        ["msync"] => {
            // SAFETY: ptr/len are the live mapping.
            let r = unsafe { libc::msync(map.ptr.cast(), map.len, libc::MS_SYNC) };
            check(r.into(), || format!("msync {path}")).map(drop)
        }
        ["sigbus", o] => {
            let at = in_map(map, path, num(o), 1)?;
            // SAFETY: the child only reads one byte and exits; the parent waits for it.
            let pid = unsafe { libc::fork() };
            if pid < 0 {
                return Err(fail("fork"));
            }
            if pid == 0 {
                // SAFETY: default SIGBUS action in the child, then a read inside the mapping.
                unsafe {
                    libc::signal(libc::SIGBUS, libc::SIG_DFL);
                    let b = std::ptr::read_volatile(map.ptr.add(at));
                    libc::_exit(i32::from(b) + 100);
                }
            }
            let mut status = 0;
            // SAFETY: pid is our child; status is a valid out-pointer.
            check(unsafe { libc::waitpid(pid, &mut status, 0) }.into(), || {
                "waitpid".into()
            })?;
            if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGBUS {
                return Ok(());
            }
            let how = if libc::WIFEXITED(status) {
                format!("read byte {:#04x}", libc::WEXITSTATUS(status) - 100)
            } else {
                format!("ended with status {status:#x}")
            };
            Err(mismatch(format!(
                "{path}: mapped byte at {at}: no SIGBUS, {how}"
            )))
        }
        ["size", n] => {
            let size = file_size(fd, path)?;
            if size != num(n) {
                return Err(mismatch(format!("{path}: size {size}, want {}", num(n))));
            }
            Ok(())
        }
        ["ftruncate", n] => {
            // SAFETY: fd is open.
            let r = unsafe { libc::ftruncate(fd.0, num(n) as libc::off_t) };
            check(r.into(), || format!("ftruncate {path} {}", num(n))).map(drop)
        }
        ["fallocate", o, l] => {
            // SAFETY: fd is open.
            let r =
                unsafe { libc::fallocate(fd.0, 0, num(o) as libc::off_t, num(l) as libc::off_t) };
            check(r.into(), || {
                format!("fallocate {path} {} {}", num(o), num(l))
            })
            .map(drop)
        }
        ["pwrite", o, ..] => pwrite_all(fd, path, num(o), text(2).as_bytes()),
        ["pfill", o, l, s] => {
            let (off, len, seed) = (num(o), num(l), num(s));
            let data: Vec<u8> = (off..off + len).map(|p| pattern_byte(seed, p)).collect();
            pwrite_all(fd, path, off, &data)
        }
        ["pcheck", o, l, s] => {
            let (off, len, seed) = (num(o), num(l), num(s));
            let got = pread_full(fd, path, off, len as usize)?;
            if got.len() < len as usize {
                return Err(mismatch(format!(
                    "{path}: EOF at {}",
                    off + got.len() as u64
                )));
            }
            if let Some(i) = (0..got.len()).find(|&i| got[i] != pattern_byte(seed, off + i as u64))
            {
                return Err(mismatch(format!(
                    "{path}: byte at {} is {:#04x}, pattern {seed} wants {:#04x}",
                    off + i as u64,
                    got[i],
                    pattern_byte(seed, off + i as u64)
                )));
            }
            Ok(())
        }
        ["touch", ..] => open(text(1), libc::O_WRONLY | libc::O_CREAT).map(drop),
        ["wait", ..] => {
            let target = std::path::Path::new(text(1));
            let t0 = std::time::Instant::now();
            while !target.exists() {
                if t0.elapsed() > std::time::Duration::from_secs(60) {
                    return Err(mismatch(format!("{}: not there after 60 s", text(1))));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Ok(())
        }
        ["sleep", ms] => {
            std::thread::sleep(std::time::Duration::from_millis(num(ms)));
            Ok(())
        }
        ["unlink", ..] => {
            let c = cstr(text(1));
            // SAFETY: c is NUL-terminated.
            check(unsafe { libc::unlink(c.as_ptr()) }.into(), || {
                format!("unlink {}", text(1))
            })
            .map(drop)
        }
        ["rename", a, b] => {
            let (ca, cb) = (cstr(a), cstr(b));
            // SAFETY: ca and cb are NUL-terminated.
            check(
                unsafe { libc::rename(ca.as_ptr(), cb.as_ptr()) }.into(),
                || format!("rename {a} {b}"),
            )
            .map(drop)
        }
        ["dio-read", src, so, o, l] => {
            let (len, at) = (num(l) as usize, num(o));
            let at = in_map(map, path, at, len)?;
            let f = open(src, libc::O_RDONLY | libc::O_DIRECT)?;
            // SAFETY: f is open; at..at+len lies inside the live writable mapping.
            let n =
                unsafe { libc::pread(f.0, map.ptr.add(at).cast(), len, num(so) as libc::off_t) };
            let n = check(n as i64, || {
                format!("O_DIRECT pread {src} into the mapping of {path}")
            })?;
            if n as usize != len {
                return Err(mismatch(format!(
                    "O_DIRECT pread {src}: {n} of {len} bytes"
                )));
            }
            Ok(())
        }
        ["dio-write", dst, dof, o, l] => {
            let (len, at) = (num(l) as usize, num(o));
            let at = in_map(map, path, at, len)?;
            let f = open(dst, libc::O_WRONLY | libc::O_CREAT | libc::O_DIRECT)?;
            // SAFETY: f is open; at..at+len lies inside the live mapping.
            let n =
                unsafe { libc::pwrite(f.0, map.ptr.add(at).cast(), len, num(dof) as libc::off_t) };
            let n = check(n as i64, || {
                format!("O_DIRECT pwrite {dst} from the mapping of {path}")
            })?;
            if n as usize != len {
                return Err(mismatch(format!(
                    "O_DIRECT pwrite {dst}: {n} of {len} bytes"
                )));
            }
            Ok(())
        }
        _ => {
            eprintln!("probe: unknown map step {step}");
            exit(2)
        }
    }
}
