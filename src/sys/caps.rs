//! Capabilities of the calling thread: `capget`/`capset` and the `prctl`s around them.
//!
//! Capabilities belong to threads, not to the process: a change here reaches the calling
//! thread and the threads it starts afterwards, never a thread that already runs. The
//! daemon therefore calls [`restrict_to`] on its main thread before it starts any other.
//!
//! Raw syscalls rather than a crate: five calls, one struct layout, and every one of them
//! acts on the calling thread only, which is the point the caller must get right anyway.

use std::io;

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct Header {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// A thread's capability sets, bit N standing for capability number N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadCaps {
    /// What the thread may use now.
    pub effective: u64,
    /// What it may make effective.
    pub permitted: u64,
    /// What survives an execve into a program with inheritable file capabilities.
    pub inheritable: u64,
}

/// `CAP_SETPCAP`: needed to drop from the bounding set.
const CAP_SETPCAP: u64 = 1 << 8;

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn join(lo: u32, hi: u32) -> u64 {
    u64::from(hi) << 32 | u64::from(lo)
}

/// (low word, high word) of a set.
fn split(bits: u64) -> (u32, u32) {
    let [a, b, c, d, e, f, g, h] = bits.to_le_bytes();
    (
        u32::from_le_bytes([a, b, c, d]),
        u32::from_le_bytes([e, f, g, h]),
    )
}

/// The calling thread's sets.
pub fn current() -> io::Result<ThreadCaps> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: `header` and `data` are the kernel's layouts for version 3 (a header and two
    // data words), both writable and alive for the call; pid 0 is the calling thread.
    check(unsafe {
        libc::syscall(
            libc::SYS_capget,
            std::ptr::from_mut(&mut header),
            data.as_mut_ptr(),
        )
    })?;
    Ok(ThreadCaps {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

fn set(caps: ThreadCaps) -> io::Result<()> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let (e0, e1) = split(caps.effective);
    let (p0, p1) = split(caps.permitted);
    let (i0, i1) = split(caps.inheritable);
    let data = [
        Data {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        Data {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: as in `current`; capset only reads `data`, and acts on the calling thread.
    check(unsafe {
        libc::syscall(
            libc::SYS_capset,
            std::ptr::from_mut(&mut header),
            data.as_ptr(),
        )
    })
    .map(drop)
}

fn prctl(option: libc::c_int, arg: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: the options used here (PR_CAPBSET_READ/DROP, PR_CAP_AMBIENT,
    // PR_SET_NO_NEW_PRIVS) take integers only and touch no memory of ours.
    let ret = unsafe { libc::prctl(option, arg, 0 as libc::c_ulong, 0 as libc::c_ulong, 0) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The calling thread's bounding set (every capability the kernel knows, 1 kept).
pub fn bounding() -> io::Result<u64> {
    let mut bits = 0;
    for cap in 0..64u8 {
        match prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap)) {
            Ok(1) => bits |= 1 << cap,
            Ok(_) => {}
            // Past the last capability this kernel knows.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(bits)
}

/// What [`restrict_to`] left the calling thread with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restricted {
    /// Effective and permitted sets (the same).
    pub kept: u64,
    /// The bounding set; unchanged without `CAP_SETPCAP` (an unprivileged daemon).
    pub bounding: u64,
}

/// Leaves the calling thread (and the threads it starts from now on) with at most `keep`:
/// the bounding set loses everything else (when the thread may change it), the ambient
/// set is cleared, effective and permitted become `keep` ∩ permitted, inheritable empty,
/// and `PR_SET_NO_NEW_PRIVS` is set, so no execve can give anything back.
pub fn restrict_to(keep: u64) -> io::Result<Restricted> {
    let now = current()?;
    // The bounding set first: dropping from it needs CAP_SETPCAP, which goes below.
    let before = bounding()?;
    if now.effective & CAP_SETPCAP != 0 {
        for cap in 0..64u8 {
            let bit = 1u64 << cap;
            if before & bit != 0 && keep & bit == 0 {
                prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap))?;
            }
        }
    }
    let cleared = prctl(
        libc::PR_CAP_AMBIENT,
        libc::c_ulong::try_from(libc::PR_CAP_AMBIENT_CLEAR_ALL).unwrap_or_default(),
    );
    match cleared {
        // A kernel before 4.3 has no ambient set: nothing to clear.
        Err(e) if e.raw_os_error() != Some(libc::EINVAL) => return Err(e),
        _ => {}
    }
    let kept = keep & now.permitted;
    set(ThreadCaps {
        effective: kept,
        permitted: kept,
        inheritable: 0,
    })?;
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1)?;
    Ok(Restricted {
        kept,
        bounding: bounding()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_and_join() {
        assert_eq!(split(0x1_8800_00db), (0x8800_00db, 1));
        assert_eq!(join(0x8800_00db, 1), 0x1_8800_00db);
    }

    #[test]
    fn a_thread_restricts_itself_and_no_other() {
        let main_before = current().unwrap();
        let keep = 1u64 << 0 | 1 << 27; // chown, mknod
        let (restricted, after, child) = std::thread::spawn(move || {
            let restricted = restrict_to(keep).unwrap();
            let after = current().unwrap();
            // A thread started now inherits the reduced sets.
            let child = std::thread::spawn(|| (current().unwrap(), bounding().unwrap()))
                .join()
                .unwrap();
            (restricted, after, child)
        })
        .join()
        .unwrap();
        assert_eq!(after.effective, keep & main_before.permitted);
        assert_eq!(after.permitted, keep & main_before.permitted);
        assert_eq!(after.inheritable, 0);
        assert_eq!(child.0, after);
        if main_before.effective & CAP_SETPCAP != 0 {
            assert_eq!(restricted.bounding, keep);
            assert_eq!(child.1, keep);
        }
        // The test's own thread kept what it had.
        assert_eq!(current().unwrap(), main_before);
    }
}
