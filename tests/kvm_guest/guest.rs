//! A tiny x86 guest under KVM: one vCPU in 32-bit protected mode (flat segments, no
//! paging), guest RAM and one shared-memory region of our frontend as its memory slots
//! (registered by `frontend::KvmSlot`, as a VMM would), and three programs of a few
//! hand-assembled bytes that load, store and copy through the region with the guest CPU's
//! own instructions — so every byte goes through KVM's page tables over the daemon's
//! SHMEM mappings, with no emulation on the way while the page is backed.

use std::io::Write;
use std::sync::Arc;

use kvm_bindings::{kvm_regs, kvm_segment};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use vhost_dax::frontend::{Frontend, KvmSlot, KvmSlotError};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Guest-physical address of the region's slot: above guest RAM (64 MiB at 0), below
/// 4 GiB so that 32-bit addresses reach it, clear of the TSS KVM keeps at `TSS_ADDRESS`.
pub const WINDOW_GPA: u64 = 0x8000_0000;
/// Three pages KVM needs for its real-mode TSS on Intel hosts without unrestricted
/// guests; outside every slot.
const TSS_ADDRESS: usize = 0xfffb_d000;
/// Guest RAM the copy program moves data through.
const BUFFER_LEN: u64 = 1 << 20;
/// MMIO exits one program may take before we call it stuck.
const MAX_EXITS: usize = 1 << 16;

/// `mov eax, [esi]; hlt` — a 4-byte load from the address in esi, result in eax.
const LOAD: [u8; 3] = [
    0x8b, 0x06, // mov eax, [esi]   (opcode 8B /r, ModRM 00 000 110: eax <- [esi])
    0xf4, //       hlt              (stop: KVM_EXIT_HLT)
];
/// `mov [esi], eax; hlt` — a 4-byte store of eax to the address in esi.
const STORE: [u8; 3] = [
    0x89, 0x06, // mov [esi], eax   (opcode 89 /r, ModRM 00 000 110: [esi] <- eax)
    0xf4, //       hlt
];
/// `rep movsb; hlt` — copies ecx bytes from [esi] to [edi], upwards (DF is clear).
const COPY: [u8; 3] = [
    0xf3, 0xa4, // rep movsb        (F3 = rep prefix, A4 = movsb: [edi++] <- [esi++], ecx--)
    0xf4, //       hlt
];
/// Where each program sits in the code page.
const LOAD_AT: u64 = 0x00;
const STORE_AT: u64 = 0x10;
const COPY_AT: u64 = 0x20;

/// Errors of the test guest (the tests unwrap them: each is a broken set-up).
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// A KVM ioctl failed.
    #[error("KVM {what}: {source}")]
    Kvm {
        what: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    /// A memory slot could not be registered.
    #[error("{0}")]
    Slot(#[from] KvmSlotError),
    /// Guest RAM could not be allocated or accessed.
    #[error("guest RAM: {0}")]
    Ram(String),
    /// The vCPU stopped in a way none of our programs should.
    #[error("unexpected vCPU exit: {0}")]
    Unexpected(String),
    /// A program kept exiting without reaching its `hlt`.
    #[error("program took more than {MAX_EXITS} MMIO exits")]
    Stuck,
}

fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> GuestError {
    move |source| GuestError::Kvm { what, source }
}

/// An access KVM could not back with a host page and handed to the VMM instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mmio {
    /// A load of `len` bytes at `gpa` (we answer all-ones, as for unbacked MMIO).
    Read { gpa: u64, len: usize },
    /// A store of `data` at `gpa` (we drop it).
    Write { gpa: u64, data: Vec<u8> },
}

/// How one guest access ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access<T> {
    /// The program reached its `hlt` with every access served from the mapped pages.
    Done(T),
    /// An access left the guest as an MMIO exit (the first one, if several): the page was
    /// not backed. The program was completed (loads read all-ones) before returning.
    Mmio(Mmio),
    /// `KVM_RUN` failed with this errno (KVM's fault exit is `EFAULT`).
    RunFailed(i32),
}

/// Whether the test must be skipped for want of KVM; if so, says why on stderr, where the
/// test harness does not capture it. Only a missing `/dev/kvm` skips: any other failure to
/// use it fails the test, so a broken KVM is never passed over quietly.
pub fn skip_without_kvm(test: &str) -> bool {
    if std::path::Path::new("/dev/kvm").exists() {
        return false;
    }
    let _ = writeln!(
        std::io::stderr(),
        "kvm_guest::{test}: SKIPPED: /dev/kvm does not exist, so no guest CPU can run \
         (level 3 of DESIGN.md's proof needs KVM)"
    );
    true
}

/// One VM with one vCPU and our programs in guest RAM.
pub struct Guest {
    vcpu: VcpuFd,
    /// Deleted before `_vm` can close (each slot also holds the VM).
    _slots: Vec<KvmSlot>,
    _vm: Arc<VmFd>,
    _kvm: Kvm,
    ram: GuestMemoryMmap,
    code: u64,
    buffer: u64,
}

impl Guest {
    /// A VM over `frontend`'s guest RAM (slot 0 at 0) and its shared-memory region `shmid`
    /// (slot 1 at [`WINDOW_GPA`]), registered whether or not anything is mapped there yet.
    pub fn new(frontend: &Frontend, shmid: u8) -> Result<Guest, GuestError> {
        let kvm_fd = Kvm::new().map_err(kvm("open /dev/kvm"))?;
        let vm = Arc::new(kvm_fd.create_vm().map_err(kvm("create VM"))?);
        vm.set_tss_address(TSS_ADDRESS)
            .map_err(kvm("set TSS address"))?;
        let mut slots = KvmSlot::guest_ram(&vm, 0, frontend.ram())?;
        let next = u32::try_from(slots.len()).map_err(|_| GuestError::Ram("slots".into()))?;
        slots.push(KvmSlot::shmem(
            &vm,
            next,
            WINDOW_GPA,
            frontend.windows(),
            shmid,
        )?);

        let ram = frontend.ram();
        let alloc = |len, align| {
            ram.alloc(len, align)
                .map_err(|e| GuestError::Ram(e.to_string()))
        };
        let code = alloc(4096, 4096)?.0;
        let buffer = alloc(BUFFER_LEN, 4096)?.0;
        let memory = ram.memory().clone();
        for (at, program) in [(LOAD_AT, &LOAD), (STORE_AT, &STORE), (COPY_AT, &COPY)] {
            memory
                .write_slice(program, GuestAddress(code + at))
                .map_err(|e| GuestError::Ram(e.to_string()))?;
        }

        let vcpu = vm.create_vcpu(0).map_err(kvm("create vCPU"))?;
        let mut sregs = vcpu.get_sregs().map_err(kvm("get sregs"))?;
        // Flat 4 GiB segments: code (execute/read, 32-bit) and data (read/write) from 0.
        let flat = |selector, type_| kvm_segment {
            base: 0,
            limit: 0xffff_ffff,
            selector,
            type_,
            present: 1,
            dpl: 0,
            db: 1,
            s: 1,
            l: 0,
            g: 1,
            avl: 0,
            unusable: 0,
            padding: 0,
        };
        sregs.cs = flat(0x08, 0xb);
        for segment in [
            &mut sregs.ds,
            &mut sregs.es,
            &mut sregs.ss,
            &mut sregs.fs,
            &mut sregs.gs,
        ] {
            *segment = flat(0x10, 0x3);
        }
        sregs.cr0 |= 1; // PE: protected mode; PG stays clear, so addresses are physical.
        vcpu.set_sregs(&sregs).map_err(kvm("set sregs"))?;
        Ok(Guest {
            vcpu,
            _slots: slots,
            _vm: vm,
            _kvm: kvm_fd,
            ram: memory,
            code,
            buffer,
        })
    }

    /// The guest loads 4 bytes at `gpa` (`mov eax, [esi]`).
    pub fn load(&mut self, gpa: u64) -> Result<Access<u32>, GuestError> {
        let regs = self.regs(LOAD_AT, gpa, 0, 0, 0);
        // eax is the low half of rax.
        Ok(self.run(regs)?.map(|rax| (rax & 0xffff_ffff) as u32))
    }

    /// The guest stores `value` at `gpa` (`mov [esi], eax`).
    pub fn store(&mut self, gpa: u64, value: u32) -> Result<Access<()>, GuestError> {
        let regs = self.regs(STORE_AT, gpa, 0, 0, u64::from(value));
        Ok(self.run(regs)?.map(drop))
    }

    /// The guest copies `len` bytes at `gpa` into its RAM (`rep movsb`), where we read them.
    pub fn read(&mut self, gpa: u64, len: usize) -> Result<Access<Vec<u8>>, GuestError> {
        let len64 = self.fits(len)?;
        let regs = self.regs(COPY_AT, gpa, self.buffer, len64, 0);
        match self.run(regs)? {
            Access::Done(_) => {
                let mut buf = vec![0u8; len];
                self.ram
                    .read_slice(&mut buf, GuestAddress(self.buffer))
                    .map_err(|e| GuestError::Ram(e.to_string()))?;
                Ok(Access::Done(buf))
            }
            Access::Mmio(m) => Ok(Access::Mmio(m)),
            Access::RunFailed(errno) => Ok(Access::RunFailed(errno)),
        }
    }

    /// The guest copies `data` (which we put in its RAM) to `gpa` (`rep movsb`).
    pub fn write(&mut self, gpa: u64, data: &[u8]) -> Result<Access<()>, GuestError> {
        let len = self.fits(data.len())?;
        self.ram
            .write_slice(data, GuestAddress(self.buffer))
            .map_err(|e| GuestError::Ram(e.to_string()))?;
        let regs = self.regs(COPY_AT, self.buffer, gpa, len, 0);
        Ok(self.run(regs)?.map(drop))
    }

    fn fits(&self, len: usize) -> Result<u64, GuestError> {
        u64::try_from(len)
            .ok()
            .filter(|&len| len <= BUFFER_LEN)
            .ok_or_else(|| GuestError::Ram(format!("{len} bytes exceed the guest's buffer")))
    }

    fn regs(&self, program: u64, esi: u64, edi: u64, ecx: u64, eax: u64) -> kvm_regs {
        kvm_regs {
            rip: self.code + program,
            rsi: esi,
            rdi: edi,
            rcx: ecx,
            rax: eax,
            rflags: 0x2, // bit 1 is always set; IF and DF clear.
            ..Default::default()
        }
    }

    /// Runs one program from `regs` to its `hlt`; returns eax then. MMIO exits are answered
    /// (loads with all-ones, stores dropped) so that the instruction completes and no
    /// half-done access is left for the next program.
    fn run(&mut self, regs: kvm_regs) -> Result<Access<u64>, GuestError> {
        self.vcpu.set_regs(&regs).map_err(kvm("set regs"))?;
        let mut first: Option<Mmio> = None;
        for _ in 0..MAX_EXITS {
            match self.vcpu.run() {
                Ok(VcpuExit::Hlt) => {
                    if let Some(mmio) = first {
                        return Ok(Access::Mmio(mmio));
                    }
                    let rax = self.vcpu.get_regs().map_err(kvm("get regs"))?.rax;
                    return Ok(Access::Done(rax));
                }
                Ok(VcpuExit::MmioRead(gpa, data)) => {
                    let len = data.len();
                    data.fill(0xff);
                    first.get_or_insert(Mmio::Read { gpa, len });
                }
                Ok(VcpuExit::MmioWrite(gpa, data)) => {
                    let data = data.to_vec();
                    first.get_or_insert(Mmio::Write { gpa, data });
                }
                Ok(other) => return Err(GuestError::Unexpected(format!("{other:?}"))),
                Err(e) => return Ok(Access::RunFailed(e.errno())),
            }
        }
        Err(GuestError::Stuck)
    }
}

impl<T> Access<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Access<U> {
        match self {
            Access::Done(v) => Access::Done(f(v)),
            Access::Mmio(m) => Access::Mmio(m),
            Access::RunFailed(errno) => Access::RunFailed(errno),
        }
    }
}
