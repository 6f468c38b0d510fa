//! The handle table: one entry per OPEN / OPENDIR / CREATE / TMPFILE.

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::fuse::{Errno, FsResult, Handle, NodeId};

/// An open file or directory.
#[derive(Debug)]
pub struct HandleData {
    /// Node it was opened on.
    pub nodeid: NodeId,
    /// The open descriptor (reads and writes use positioned I/O, no lock).
    pub file: File,
    /// Serialises seek + getdents on directory handles.
    pub dir_lock: Mutex<()>,
}

/// The handle table.
#[derive(Debug)]
pub struct HandleStore {
    map: RwLock<HashMap<u64, Arc<HandleData>>>,
    next: AtomicU64,
}

impl Default for HandleStore {
    fn default() -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }
}

impl HandleStore {
    /// Registers `file` opened on `nodeid`; returns its handle.
    pub fn insert(&self, nodeid: NodeId, file: File) -> Handle {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        let data = Arc::new(HandleData {
            nodeid,
            file,
            dir_lock: Mutex::new(()),
        });
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, data);
        Handle(fh)
    }

    /// The handle `fh`, which must have been opened on `nodeid` (else `EBADF`).
    pub fn get(&self, fh: Handle, nodeid: NodeId) -> FsResult<Arc<HandleData>> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        match map.get(&fh.0) {
            Some(h) if h.nodeid == nodeid => Ok(h.clone()),
            _ => Err(Errno::EBADF),
        }
    }

    /// Removes `fh` (opened on `nodeid`); the descriptor closes when the
    /// last in-flight user drops it.
    pub fn remove(&self, fh: Handle, nodeid: NodeId) -> FsResult<()> {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        match map.get(&fh.0) {
            Some(h) if h.nodeid == nodeid => {
                map.remove(&fh.0);
                Ok(())
            }
            _ => Err(Errno::EBADF),
        }
    }

    /// Number of open handles.
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True if no handle is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every handle (FUSE_DESTROY).
    pub fn clear(&self) {
        self.map.write().unwrap_or_else(|p| p.into_inner()).clear();
    }
}
