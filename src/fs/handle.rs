//! The handle table: one entry per OPEN / OPENDIR / CREATE / TMPFILE.

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// The handle table, holding at most a set number of open handles.
#[derive(Debug)]
pub struct HandleStore {
    map: RwLock<HashMap<u64, Arc<HandleData>>>,
    next: AtomicU64,
    max: usize,
    /// The cap was reached (logged once per time it is reached).
    full: AtomicBool,
}

impl Default for HandleStore {
    fn default() -> Self {
        Self::new(super::config::DEFAULT_MAX_OPEN_HANDLES)
    }
}

impl HandleStore {
    /// An empty table for at most `max` open handles.
    pub fn new(max: u64) -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
            next: AtomicU64::new(1),
            // More handles than memory can hold is no cap at all.
            max: usize::try_from(max).unwrap_or(usize::MAX),
            full: AtomicBool::new(false),
        }
    }

    /// `ENFILE` when the table holds its maximum of handles: checked before a file is
    /// created, so a CREATE the cap refuses leaves nothing behind.
    pub fn check_room(&self) -> FsResult<()> {
        let len = self.len();
        self.room(len)
    }

    fn room(&self, len: usize) -> FsResult<()> {
        if len < self.max {
            self.full.store(false, Ordering::Relaxed);
            return Ok(());
        }
        if !self.full.swap(true, Ordering::Relaxed) {
            log::warn!(
                "the guest holds {len} open handles, the most --max-open-handles allows: new opens get ENFILE until it releases some"
            );
        }
        Err(Errno::ENFILE)
    }

    /// Registers `file` opened on `nodeid`; returns its handle, or `ENFILE` (and `file`
    /// is closed) when the table is full.
    pub fn insert(&self, nodeid: NodeId, file: File) -> FsResult<Handle> {
        let data = Arc::new(HandleData {
            nodeid,
            file,
            dir_lock: Mutex::new(()),
        });
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        self.room(map.len())?;
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        map.insert(fh, data);
        Ok(Handle(fh))
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
