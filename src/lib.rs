//! vhost-dax: a vhost-user backend that maps host memory straight into guests — a
//! virtio-fs device with a DAX window and a virtio-pmem device.
//!
//! Most users run the `vhost-dax` binary. This page is for a VMM author who wants a piece
//! of it in their own process. There are three ways in, from the whole daemon down to the
//! ledger alone.
//!
//! # The whole daemon
//!
//! [`config::DaemonConfig`] is what the binary builds from its command line or a TOML
//! file: validated before anything is created on disk. [`daemon::run`] serves every device
//! in it until SIGTERM or SIGINT, with the same sockets, sandbox and shutdown order as the
//! binary.
//!
//! # One device on a vhost-user socket
//!
//! [`device::fs::FsDevice`] (a [`fs::PassthroughFs`] behind a [`fuse::Server`], with an
//! optional DAX window) and [`device::pmem::PmemDevice`] are vhost-user devices;
//! [`device::fs::FsBackend`] and [`device::pmem::PmemBackend`] adapt them to
//! `vhost-user-backend`'s `VhostUserDaemon`, one per frontend connection. Their window
//! (fs) or region (pmem) is owned by a [`dax::WindowSession`]: start, ring stop, reset,
//! disconnect and shutdown are its transitions, and maps, unmaps and parked replies go
//! through it.
//!
//! # The FUSE server without vhost
//!
//! [`fuse::Server`] decodes a FUSE request from bytes and calls a [`fuse::Filesystem`];
//! [`fs::PassthroughFs`] is the host-directory implementation. Serve them over any
//! transport that hands you one request and takes one reply.
//!
//! # The ledger alone
//!
//! [`dax::Ledger`] is the one owner of every mapping's life in a window: it takes the
//! backing's reference at map time and drops it only after the frontend unmapped, waits
//! out pins before it unmaps or lets a file shrink, and knows nothing of FUSE or vhost. A
//! VMM that owns its window implements [`dax::Mapper`] (map this file range here, unmap
//! that range) and uses the ledger directly:
//!
//! ```
//! use std::sync::Arc;
//! use vhost_dax::dax::{
//!     Backing, FileBacking, FileOffset, Ledger, LedgerConfig, MapOutcome, MemoryMapper, PinWait,
//!     WindowOffset,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A 16 MiB window in 2 MiB chunks; MemoryMapper stands in for the frontend.
//! let mapper = Arc::new(MemoryMapper::with_window(16 << 20));
//! let ledger = Ledger::new(LedgerConfig::new(16 << 20), mapper.clone())?;
//!
//! let file = tempfile_of(4 << 20)?;
//! let backing = Arc::new(FileBacking::new(file, true)?);
//! let id = backing.id();
//! let outcome = ledger.map(WindowOffset(0), 2 << 20, backing, FileOffset(0), true)?;
//! assert_eq!(outcome, MapOutcome::Mapped { replaced: 0 });
//!
//! // A DMA into the window holds a pin; a truncate of the file waits for it, then
//! // leaves the guest's mapping in place.
//! let pin = ledger.pin(4096, 4096, "vmm dma", PinWait::Fail)?;
//! drop(pin);
//! let truncate = ledger.release_file_range(id, 1 << 20, None)?;
//! drop(truncate);
//! assert_eq!(mapper.live().len(), 1);
//!
//! // Unmapping waits out pins, unmaps through the mapper, then drops the reference.
//! ledger.unmap(0, 2 << 20)?;
//! assert!(mapper.live().is_empty());
//! # Ok(())
//! # }
//! # fn tempfile_of(len: u64) -> std::io::Result<std::fs::File> {
//! #     let path = std::env::temp_dir().join(format!("vhost-dax-doc-{}", std::process::id()));
//! #     let file = std::fs::OpenOptions::new().read(true).write(true).create(true).open(&path)?;
//! #     std::fs::remove_file(&path)?;
//! #     file.set_len(len)?;
//! #     Ok(file)
//! # }
//! ```
//!
//! # Layers
//!
//! `device` speaks vhost-user, `fuse` owns the FUSE wire format, `fs` the host filesystem,
//! `dax` the life of every window mapping, `config` turns command lines and config files
//! into validated device settings, `control` serves a device's control socket (statistics,
//! and pins a VMM holds on window ranges) and its client. `frontend` is our side of the
//! socket, a small vhost-user frontend for tests and benchmarks (the FUSE test client is
//! behind the `testing` feature, the fuzz targets' bodies behind `fuzzing`). The modules hidden from this page (`bench`, `logging`,
//! `sys`) serve this crate's binaries and are not API.

#[doc(hidden)]
pub mod bench;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dax;
pub mod device;
pub mod frontend;
pub mod fs;
pub mod fuse;
#[doc(hidden)]
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
#[doc(hidden)]
pub mod logging;
#[doc(hidden)]
pub mod sys;
