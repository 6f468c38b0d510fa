//! The virtio-fs DAX window end to end: the daemon binary on a real socket, our frontend
//! honouring SHMEM_MAP/UNMAP in a PROT_NONE window, FUSE requests on a real queue.

#[path = "../common/mod.rs"]
mod common;
mod support;

mod frontends;
mod mapping;
mod pins;
mod release;
mod within_file;
