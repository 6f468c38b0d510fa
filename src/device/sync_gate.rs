//! A test hook that makes pmem syncs observable and holdable from another process.
//!
//! When the daemon runs with `VHOST_DAX_TEST_SYNC_GATE=PATH`, it connects to the Unix
//! socket at PATH and, for every sync, writes `start SEQ REQUESTS`, waits for one byte
//! from the peer, runs the sync, then writes `done SEQ OK|ERRNO`. A test can thus prove
//! that no flush completes before its sync finished, and count syncs exactly, without
//! relying on timing. Not meant for production use.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Mutex;

use super::flush::SyncObserver;

/// Environment variable that enables the hook.
pub const SYNC_GATE_ENV: &str = "VHOST_DAX_TEST_SYNC_GATE";

/// The daemon's end of the gate.
pub struct SocketSyncGate {
    stream: Mutex<UnixStream>,
}

impl SocketSyncGate {
    /// Connects to the test's socket.
    pub fn connect(path: &Path) -> std::io::Result<Self> {
        Ok(SocketSyncGate {
            stream: Mutex::new(UnixStream::connect(path)?),
        })
    }
}

impl SyncObserver for SocketSyncGate {
    fn before_sync(&self, seq: u64, requests: usize) {
        let mut stream = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        let mut go = [0u8; 1];
        let result =
            writeln!(stream, "start {seq} {requests}").and_then(|()| stream.read_exact(&mut go));
        if let Err(e) = result {
            log::warn!("sync gate: {e}");
        }
    }

    fn after_sync(&self, seq: u64, result: &Result<(), i32>) {
        let mut stream = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        let outcome = match result {
            Ok(()) => "OK".to_string(),
            Err(errno) => errno.to_string(),
        };
        if let Err(e) = writeln!(stream, "done {seq} {outcome}") {
            log::warn!("sync gate: {e}");
        }
    }
}
