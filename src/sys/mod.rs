//! Thin safe wrappers around the few syscalls the crate needs that `std` does not offer.
//!
//! Every `unsafe` block of the device and frontend code lives here, each with the reason
//! it holds. Callers get `io::Result` with the errno preserved.

pub mod caps;
pub mod fs;
pub mod namespace;
pub mod seccomp;
pub mod sigbus;
pub mod socket;
pub mod vectored;

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd};
use std::ptr::NonNull;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Creates an anonymous memory file (close-on-exec, open to seals) of `size` bytes.
pub fn memfd(name: &str, size: u64) -> io::Result<File> {
    let cname = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `cname` is a valid NUL-terminated string that outlives the call.
    let fd = check(unsafe {
        libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
    })?;
    // SAFETY: memfd_create returned a fresh descriptor that nothing else owns.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(size)?;
    Ok(file)
}

/// Makes the file's data durable: `fdatasync` for regular files, `fsync` for block devices
/// (some drivers only flush their write cache on a full fsync).
pub fn sync_file(fd: BorrowedFd<'_>, block_device: bool) -> io::Result<()> {
    // SAFETY: the descriptor is valid for the duration of the borrow.
    let ret = unsafe {
        if block_device {
            libc::fsync(fd.as_raw_fd())
        } else {
            libc::fdatasync(fd.as_raw_fd())
        }
    };
    check(ret).map(drop)
}

/// Size in bytes of a block device.
pub fn block_device_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // BLKGETSIZE64 = _IOR(0x12, 114, size_t)
    const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes exactly one u64 through the pointer, which points to a
    // live local of that type.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), BLKGETSIZE64, &mut size as *mut u64) })?;
    Ok(size)
}

/// An address range reserved with `PROT_NONE`: nothing is readable or writable until a
/// part of it is replaced by [`Reservation::map_file`]. Unmapped on drop.
#[derive(Debug)]
pub struct Reservation {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the reservation is a plain address range; the pointer is only used to compute
// addresses inside it and to call mmap/munmap, which are thread-safe.
unsafe impl Send for Reservation {}
// SAFETY: as above; no method hands out references into the range.
unsafe impl Sync for Reservation {}

impl Reservation {
    /// Reserves `len` bytes of address space with no access.
    pub fn new(len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing touches no
        // existing memory.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Reservation { base, len })
    }

    /// First address of the range.
    pub fn base(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Length of the range in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a reservation has at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// `[offset, offset+len)` as `(start, len)` in `usize`, if it is non-empty and inside
    /// the reservation; `EINVAL` otherwise.
    fn check_range(&self, offset: u64, len: u64) -> io::Result<(usize, usize)> {
        let einval = || io::Error::from_raw_os_error(libc::EINVAL);
        let start = usize::try_from(offset).map_err(|_| einval())?;
        let len = usize::try_from(len).map_err(|_| einval())?;
        match start.checked_add(len) {
            Some(end) if len > 0 && end <= self.len => Ok((start, len)),
            _ => Err(einval()),
        }
    }

    /// Replaces `[offset, offset+len)` of the reservation with a shared mapping of `file`
    /// from `file_offset`.
    pub fn map_file(
        &self,
        offset: u64,
        len: u64,
        file: BorrowedFd<'_>,
        file_offset: u64,
        writable: bool,
    ) -> io::Result<()> {
        let (start, len) = self.check_range(offset, len)?;
        let file_offset = libc::off_t::try_from(file_offset)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: check_range proved `[start, start+len)` lies inside our own reservation, so
        // MAP_FIXED only replaces pages this object owns; the descriptor is valid for the call.
        let ptr = unsafe {
            libc::mmap(
                self.base().add(start).cast(),
                len,
                prot,
                libc::MAP_SHARED | libc::MAP_FIXED,
                file.as_raw_fd(),
                file_offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Copies bytes of the range at `offset` into `buf` through the kernel
    /// (`process_vm_readv` on our own process), so that a page that cannot be read — still
    /// `PROT_NONE`, or a file page beyond the file's end — ends the copy with a short count
    /// or `EFAULT` instead of raising SIGSEGV or SIGBUS. Returns the bytes copied: fewer
    /// than asked when the copy stopped at such a page (at page granularity).
    pub fn copy_out(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let (start, _) = self.check_range(offset, buf.len() as u64)?;
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            // SAFETY: check_range proved `start + buf.len()` lies inside the reservation; the
            // pointer is only computed here, the kernel does the access.
            iov_base: unsafe { self.base().add(start) }.cast(),
            iov_len: buf.len(),
        };
        // SAFETY: both iovecs describe ranges of our own process: `local` is `buf`, which we
        // borrow mutably for the call; `remote` is inside the reservation, which the kernel
        // reads with its own fault handling (an unreadable page is an error, not a signal).
        // No reference into the reservation exists for the write into `buf` to alias.
        let ret = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        copied(ret)
    }

    /// Copies `data` into the range at `offset` through the kernel
    /// (`process_vm_writev` on our own process): a page that cannot be written — `PROT_NONE`,
    /// mapped read-only, or a file page beyond the file's end — ends the copy with a short
    /// count or `EFAULT` instead of a signal. Returns the bytes copied.
    pub fn copy_in(&self, offset: u64, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let (start, _) = self.check_range(offset, data.len() as u64)?;
        let local = libc::iovec {
            iov_base: data.as_ptr().cast_mut().cast(),
            iov_len: data.len(),
        };
        let remote = libc::iovec {
            // SAFETY: as in `copy_out`, the address is inside the reservation.
            iov_base: unsafe { self.base().add(start) }.cast(),
            iov_len: data.len(),
        };
        // SAFETY: `local` is `data`, which the kernel only reads; `remote` lies inside the
        // reservation, into which no method hands out references, so the kernel's stores
        // alias no Rust reference; pages it cannot write make the call fail, never signal.
        let ret = unsafe { libc::process_vm_writev(libc::getpid(), &local, 1, &remote, 1, 0) };
        copied(ret)
    }

    /// Returns `[offset, offset+len)` to `PROT_NONE` anonymous memory, dropping whatever
    /// file mapping was there.
    pub fn clear(&self, offset: u64, len: u64) -> io::Result<()> {
        let (start, len) = self.check_range(offset, len)?;
        // SAFETY: check_range proved the range lies inside our own reservation, so MAP_FIXED
        // only replaces pages this object owns.
        let ptr = unsafe {
            libc::mmap(
                self.base().add(start).cast(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The byte count of a `process_vm_readv`/`writev`: `EFAULT` (nothing could be copied)
/// is a count of zero, like a short copy.
fn copied(ret: isize) -> io::Result<usize> {
    match usize::try_from(ret) {
        Ok(n) => Ok(n),
        Err(_) => {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EFAULT) {
                Ok(0)
            } else {
                Err(err)
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // SAFETY: base/len describe exactly the mapping created in `new`, which nothing else
        // unmaps.
        let ret = unsafe { libc::munmap(self.base().cast(), self.len) };
        if ret != 0 {
            log::warn!(
                "munmap of window reservation failed: {}",
                io::Error::last_os_error()
            );
        }
    }
}

/// Blocks SIGINT and SIGTERM in the calling thread (and the threads it spawns later), so a
/// dedicated thread can take them with [`wait_for_termination`].
pub fn block_termination_signals() -> io::Result<()> {
    let set = termination_set();
    // SAFETY: `set` is an initialised sigset_t; a null old-set pointer is allowed.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(())
}

fn termination_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the zeroed set; sigaddset with valid signal numbers
    // cannot fail.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        // The terminal or the service manager going away: the same clean stop (socket
        // removed, data synced, mappings released) instead of dying with a stale socket.
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// Waits until SIGINT, SIGTERM or SIGHUP is delivered; returns the signal number. The signals must
/// be blocked in every thread (see [`block_termination_signals`]).
pub fn wait_for_termination() -> io::Result<i32> {
    let set = termination_set();
    let mut sig: libc::c_int = 0;
    loop {
        // SAFETY: both pointers point to live locals of the right types.
        let ret = unsafe { libc::sigwait(&set, &mut sig) };
        match ret {
            0 => return Ok(sig),
            libc::EINTR => continue,
            err => return Err(io::Error::from_raw_os_error(err)),
        }
    }
}

/// Waits up to `timeout_ms` for `fd` to become readable. Returns false on timeout.
pub fn poll_readable(fd: &impl AsRawFd, timeout_ms: i32) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd structure is passed with count 1.
        let ret = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        return Ok(ret > 0);
    }
}

/// Most open files the daemon asks for: one descriptor per inode the guest knows, as
/// virtiofsd (which raises its limit to the same bound by default).
pub const WANTED_OPEN_FILES: u64 = 1_000_000;

/// Raises the soft limit on open files towards [`WANTED_OPEN_FILES`], as far as the hard
/// limit allows (and never lowers it); returns the soft limit now in force.
pub fn raise_open_files_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let want = WANTED_OPEN_FILES.min(limit.rlim_max);
    if limit.rlim_cur >= want {
        return Ok(limit.rlim_cur);
    }
    limit.rlim_cur = want;
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(want)
}

/// Changes the root directory of the process to `dir` and moves into it.
pub fn chroot_into(dir: &std::path::Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
    check(unsafe { libc::chroot(path.as_ptr()) })?;
    std::env::set_current_dir("/")
}

/// The CPUs the calling thread may run on.
pub fn thread_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed; pid 0 is this thread.
    check(unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) })?;
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, within the set.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Restricts the calling thread (and the children it spawns afterwards) to `cpus`.
pub fn set_thread_cpus(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: `cpu` is below CPU_SETSIZE, within the set.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is this thread.
    check(unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) })?;
    Ok(())
}
