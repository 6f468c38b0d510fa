//! Guest memory that vanishes under the daemon: a SIGBUS handler for registered ranges, and
//! the file seals that tell which memory cannot vanish.
//!
//! A frontend shares its guest RAM as file descriptors (SET_MEM_TABLE, ADD_MEM_REG) that the
//! daemon maps `MAP_SHARED`. If the frontend shrinks such a file afterwards (`ftruncate` on
//! its memfd), every page of our mapping past the new end turns into a SIGBUS on the next
//! load or store. The device touches guest memory directly (virtio-queue reads rings and
//! descriptors, the FUSE headers are copied in and out), so without more a misbehaving
//! frontend kills the daemon and every device it serves. Data moved by syscalls
//! (`preadv`/`pwritev` of READ and WRITE payloads) is not at risk: the kernel answers a
//! copy into a page that is gone with `EFAULT` (tested below).
//!
//! Two defences, in this order:
//!
//! 1. **Seals.** A memfd sealed with `F_SEAL_SHRINK` cannot be shrunk by anybody, so memory
//!    backed by one is safe. QEMU's `memory-backend-memfd` seals by default (`seal=on`:
//!    `F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL`), and cloud-hypervisor seals its guest RAM
//!    memfds against resizing for the same reason (its pull request 8841: "so a backend
//!    cannot truncate the file and kill this process"). [`seals`] reads them; the device logs
//!    which regions are not sealed. The daemon does **not** add seals itself: a seal is
//!    irreversible and applies to the frontend's own file, so sealing it would change what
//!    the frontend may later do with memory it owns (shrink it on purpose after unplugging
//!    it with a new table); and in practice it could only seal memfds created with
//!    `MFD_ALLOW_SEALING` and left open to sealing, which is exactly the frontend that chose
//!    not to seal. Files (`memory-backend-file`, hugetlbfs, the DAX window mappings QEMU 11.1
//!    adds to the table) cannot be sealed at all.
//! 2. **A SIGBUS handler for what is left.** [`install`] puts a process-wide `SA_SIGINFO`
//!    handler in place once. A [`GuardedRange`] registers an address range (a guest-memory
//!    region as the daemon maps it) in a fixed table of slots that the handler reads
//!    without locks. A fault (`BUS_ADRERR`) inside a registered range is repaired: the
//!    handler maps an anonymous zero page over the faulting page
//!    (`MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS`), so the interrupted load or store
//!    completes, and records the address in the slot and in a process-wide counter
//!    ([`faults`]). The device checks that counter after each request and drops the
//!    connection whose memory it was: its view of guest memory is no longer the guest's.
//!    Any other SIGBUS (a fault elsewhere, or one sent with `kill`) gets the default action:
//!    the handler restores `SIG_DFL` and raises the signal again, as Rust's own fault
//!    handler does for faults that are not a stack overflow.
//!
//! Other designs considered: checking the file size before each access (racy: the frontend
//! can shrink between the check and the access); copying every guest access through
//! `process_vm_readv`-style syscalls to get `EFAULT` (virtio-queue and vm-memory load rings
//! directly, so this would mean forking them); `sigsetjmp`/`siglongjmp` around accesses
//! (undefined behaviour across Rust frames). virtiofsd 1.14, vhost-user-backend 0.24,
//! vm-memory 0.18 and virtio-queue 0.18 neither read seals nor handle SIGBUS (checked in
//! their sources): they rely on the frontend sealing its memory, which is defence 1.
//!
//! The handler only does async-signal-safe things: atomic loads and stores on a static
//! table, `mmap`, `sigaction` and `raise` (plain system calls).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Once;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

/// Ranges registered at once, across all devices and connections of the process (a table
/// has at most 509 regions in vhost-user-backend 0.24; a replaced table may stay
/// registered while requests still use it).
pub const GUARDED_SLOTS: usize = 2048;

const FREE: u8 = 0;
const CLAIMED: u8 = 1;
const LIVE: u8 = 2;

struct Slot {
    state: AtomicU8,
    start: AtomicUsize,
    len: AtomicUsize,
    /// The first faulting address in the range, plus one (0: none).
    fault: AtomicUsize,
}

impl Slot {
    const fn new() -> Self {
        Slot {
            state: AtomicU8::new(FREE),
            start: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            fault: AtomicUsize::new(0),
        }
    }
}

static SLOTS: [Slot; GUARDED_SLOTS] = [const { Slot::new() }; GUARDED_SLOTS];
static FAULTS: AtomicU64 = AtomicU64::new(0);
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);
static INSTALL: Once = Once::new();
static INSTALLED: AtomicU8 = AtomicU8::new(0);

/// Installs the SIGBUS handler (once per process; later calls return the first result).
///
/// # Errors
/// `sigaction` or `sysconf(_SC_PAGESIZE)` failing.
pub fn install() -> io::Result<()> {
    INSTALL.call_once(|| {
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let Ok(page) = usize::try_from(page) else {
            return;
        };
        PAGE_SIZE.store(page, Ordering::SeqCst);
        // SAFETY: a zeroed sigaction is a valid starting value; the fields set below are
        // the handler (an extern "C" fn with the SA_SIGINFO signature) and the flags.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_sigbus as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: the mask is part of the local struct; sigemptyset initialises it.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: `action` is fully initialised; a null old-action pointer is allowed.
        let ret = unsafe { libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) };
        if ret == 0 {
            INSTALLED.store(1, Ordering::SeqCst);
        }
    });
    if INSTALLED.load(Ordering::SeqCst) == 1 {
        Ok(())
    } else {
        Err(io::Error::other("cannot install the SIGBUS handler"))
    }
}

/// Whether [`install`] has succeeded in this process.
pub fn installed() -> bool {
    INSTALLED.load(Ordering::SeqCst) == 1
}

/// Faults repaired since the process started (all ranges). A caller that remembers the
/// value can tell cheaply whether any fault happened since.
pub fn faults() -> u64 {
    FAULTS.load(Ordering::SeqCst)
}

/// An address range whose SIGBUS faults are repaired with zero pages while it is
/// registered. Unregistered on drop.
///
/// The range must stay mapped for as long as the value lives (drop it before unmapping):
/// the handler maps over faulting pages inside it.
#[derive(Debug)]
pub struct GuardedRange {
    slot: usize,
}

impl GuardedRange {
    /// Registers `len` bytes at `start`; `None` when all [`GUARDED_SLOTS`] are taken or
    /// the range is empty.
    pub fn register(start: usize, len: usize) -> Option<GuardedRange> {
        if len == 0 {
            return None;
        }
        for (index, slot) in SLOTS.iter().enumerate() {
            if slot
                .state
                .compare_exchange(FREE, CLAIMED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                slot.start.store(start, Ordering::SeqCst);
                slot.len.store(len, Ordering::SeqCst);
                slot.fault.store(0, Ordering::SeqCst);
                slot.state.store(LIVE, Ordering::SeqCst);
                return Some(GuardedRange { slot: index });
            }
        }
        None
    }

    /// The first address in the range where a fault was repaired, if any.
    pub fn fault(&self) -> Option<usize> {
        SLOTS[self.slot].fault.load(Ordering::SeqCst).checked_sub(1)
    }
}

impl Drop for GuardedRange {
    fn drop(&mut self) {
        let slot = &SLOTS[self.slot];
        slot.state.store(CLAIMED, Ordering::SeqCst);
        slot.len.store(0, Ordering::SeqCst);
        slot.state.store(FREE, Ordering::SeqCst);
    }
}

extern "C" fn on_sigbus(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    if repair(info) {
        return;
    }
    // Not ours: the default action (terminate with a core), as if no handler were there.
    // SAFETY: a zeroed sigaction with SIG_DFL is valid; sigaction and raise are
    // async-signal-safe. The signal is blocked while this handler runs, so it is delivered
    // (and kills) as soon as the handler returns; a hardware fault would also recur.
    unsafe {
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(signal, &default, std::ptr::null_mut());
        libc::raise(signal);
    }
}

/// Maps a zero page over the faulting page if the fault lies in a registered range.
fn repair(info: *mut libc::siginfo_t) -> bool {
    if info.is_null() {
        return false;
    }
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler; si_addr is
    // meaningful for SIGBUS (checked by si_code below before use).
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    if code != libc::BUS_ADRERR {
        return false;
    }
    let page = PAGE_SIZE.load(Ordering::SeqCst);
    if page == 0 {
        return false;
    }
    for slot in &SLOTS {
        if slot.state.load(Ordering::SeqCst) != LIVE {
            continue;
        }
        let start = slot.start.load(Ordering::SeqCst);
        let len = slot.len.load(Ordering::SeqCst);
        if addr < start || addr - start >= len {
            continue;
        }
        let base = addr & !(page - 1);
        // SAFETY: `base` is the page holding `addr`, which lies in a registered range; a
        // registration lives only while its range stays mapped (GuardedRange's contract),
        // and the faulting access itself proves the page was mapped when it faulted. The
        // new private anonymous page replaces only that page of our own mapping of the
        // frontend's file; no Rust reference covers guest memory (it is accessed through
        // raw pointers and volatile copies).
        let mapped = unsafe {
            libc::mmap(
                base as *mut libc::c_void,
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if mapped == libc::MAP_FAILED {
            return false;
        }
        let _ = slot
            .fault
            .compare_exchange(0, addr + 1, Ordering::SeqCst, Ordering::SeqCst);
        FAULTS.fetch_add(1, Ordering::SeqCst);
        return true;
    }
    false
}

/// The seals of a file (`F_GET_SEALS`); `None` for a file that cannot carry seals (not a
/// memfd or tmpfs/hugetlbfs file: `EINVAL`).
///
/// # Errors
/// Any other `fcntl` failure.
pub fn seals(file: &File) -> io::Result<Option<libc::c_int>> {
    // SAFETY: F_GET_SEALS takes no argument and only reads the open file's state.
    let ret = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
    if ret >= 0 {
        return Ok(Some(ret));
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EINVAL) {
        Ok(None)
    } else {
        Err(err)
    }
}

/// Adds `seals` (`F_SEAL_*`) to a memfd created sealable.
///
/// # Errors
/// `EPERM` if the file is sealed against sealing, `EINVAL` if it cannot carry seals,
/// `EBUSY` for a write seal while writable mappings exist.
pub fn add_seals(file: &File, seals: libc::c_int) -> io::Result<()> {
    // SAFETY: F_ADD_SEALS takes an int of seal bits and only changes the file's seals.
    let ret = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    /// Maps `len` bytes of `file` shared, read-write.
    fn map(file: &File, len: usize) -> *mut u8 {
        // SAFETY: a fresh mapping chosen by the kernel; the tests unmap it at the end.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        p.cast()
    }

    fn unmap(p: *mut u8, len: usize) {
        // SAFETY: `p`/`len` are exactly a mapping made by `map`.
        assert_eq!(unsafe { libc::munmap(p.cast(), len) }, 0);
    }

    #[test]
    fn a_fault_in_a_registered_range_reads_zero_and_is_recorded() {
        install().unwrap();
        let page = PAGE_SIZE.load(Ordering::SeqCst);
        let file = crate::sys::memfd("sigbus-test", 4 * page as u64).unwrap();
        let p = map(&file, 4 * page);
        // SAFETY: the first page is inside the file and the mapping.
        unsafe { p.write_volatile(7) };
        let guard = GuardedRange::register(p as usize, 4 * page).unwrap();
        let before = faults();
        file.set_len(page as u64).unwrap();
        // Past the new end of the file: SIGBUS, repaired with a zero page.
        // SAFETY: the address is inside our mapping; the handler makes the access complete.
        let read = unsafe { p.add(2 * page + 5).read_volatile() };
        assert_eq!(read, 0);
        assert_eq!(guard.fault(), Some(p as usize + 2 * page + 5));
        assert!(faults() > before);
        // The page inside the file still is the file's.
        // SAFETY: inside the file and the mapping.
        assert_eq!(unsafe { p.read_volatile() }, 7);
        drop(guard);
        unmap(p, 4 * page);
    }

    #[test]
    fn a_copy_by_syscall_into_a_cut_page_is_efault_not_a_signal() {
        let page = 4096usize;
        let file = crate::sys::memfd("sigbus-efault", 2 * page as u64).unwrap();
        let p = map(&file, 2 * page);
        file.set_len(page as u64).unwrap();
        let mut source = crate::sys::memfd("sigbus-source", 0).unwrap();
        source.write_all(&[1u8; 64]).unwrap();
        // A read into the cut page of the mapping (no handler involved: the kernel copies).
        // SAFETY: pread writes at most 64 bytes at an address of our mapping; the kernel
        // checks the page and fails instead of faulting us.
        let ret = unsafe { libc::pread(source.as_fd().as_raw_fd(), p.add(page).cast(), 64, 0) };
        assert_eq!(ret, -1);
        assert_eq!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::EFAULT)
        );
        unmap(p, 2 * page);
    }

    #[test]
    fn seals_tell_a_sealed_memfd_from_an_unsealed_one_and_a_file() {
        let memfd = crate::sys::memfd("seals-test", 4096).unwrap();
        let before = seals(&memfd).unwrap().unwrap();
        assert_eq!(before & libc::F_SEAL_SHRINK, 0);
        add_seals(&memfd, libc::F_SEAL_SHRINK).unwrap();
        assert_ne!(seals(&memfd).unwrap().unwrap() & libc::F_SEAL_SHRINK, 0);
        assert_eq!(
            memfd.set_len(0).unwrap_err().raw_os_error(),
            Some(libc::EPERM)
        );
        let dir = std::env::temp_dir().join(format!("seals-test-{}", std::process::id()));
        let file = File::create(&dir).unwrap();
        let on_disk = seals(&file).unwrap();
        std::fs::remove_file(&dir).unwrap();
        // /tmp may be a tmpfs (files there carry F_SEAL_SEAL) or a disk file system (none).
        if let Some(s) = on_disk {
            assert_ne!(s & libc::F_SEAL_SEAL, 0);
        }
    }

    #[test]
    fn a_registration_is_live_and_starts_without_a_fault() {
        let a = GuardedRange::register(0x1000, 0x1000).unwrap();
        assert_eq!(a.fault(), None);
        assert_eq!(SLOTS[a.slot].state.load(Ordering::SeqCst), LIVE);
        drop(a);
        assert!(GuardedRange::register(0x3000, 0).is_none());
    }
}
