//! Level 3 of DESIGN.md's proof: a guest CPU under KVM reads and writes the DAX window and
//! the pmem region. The real daemon binary maps host files into our frontend's regions
//! (SHMEM_MAP); `frontend::KvmSlot` registers those regions as KVM memory slots; a vCPU
//! runs a few bytes of hand-assembled x86 code that load, store and copy through them.
//!
//! What KVM reports where it cannot back a guest access (a range unmapped by
//! REMOVEMAPPING, a page beyond the end of a file truncated under its mapping): on this
//! project's host (Linux 6.18, x86_64) the access leaves the guest as `KVM_EXIT_MMIO` at its
//! guest-physical address, which the VMM answers like unbacked MMIO. No signal reaches the
//! VMM: a SIGBUS in this test process would kill the test binary and fail the run, so
//! every test that gets to its end has also shown that.
//!
//! Without `/dev/kvm` each test says on stderr that it is skipped and why.

#[path = "../common/mod.rs"]
mod common;
#[allow(dead_code, unused_imports)]
#[path = "../dax_window/support.rs"]
mod dax;

#[cfg(target_arch = "x86_64")]
mod fs;
#[cfg(target_arch = "x86_64")]
mod guest;
#[cfg(target_arch = "x86_64")]
mod pmem;

/// The guest programs are x86 machine code: elsewhere, say so rather than pass quietly.
#[cfg(not(target_arch = "x86_64"))]
#[test]
fn guest_tests_need_an_x86_64_host() {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "kvm_guest: SKIPPED: the guest programs are x86 machine code; this host is {}",
        std::env::consts::ARCH
    );
}
