//! Per-request credentials: while a guest request creates a file, the
//! calling thread's fsuid/fsgid are the guest caller's, so the new file gets
//! the right owner and the host checks permissions as that user.

use super::sys;
use crate::fuse::{Context, Errno, FsResult};

/// Restores fsuid/fsgid 0 on drop. A no-op guard when not switching.
#[derive(Debug)]
#[must_use]
pub struct CredsGuard {
    switched: bool,
}

impl CredsGuard {
    /// Switches the calling thread to `ctx`'s uid/gid if `enabled` (the daemon
    /// runs as root) and the caller is not root already.
    pub fn new(ctx: Context, enabled: bool) -> FsResult<Self> {
        if !enabled || (ctx.uid == 0 && ctx.gid == 0) {
            return Ok(Self { switched: false });
        }
        sys::setfsgid(ctx.gid);
        sys::setfsuid(ctx.uid);
        // setfsuid/setfsgid report no errors; query to confirm.
        let ok = sys::setfsuid(u32::MAX) == ctx.uid && sys::setfsgid(u32::MAX) == ctx.gid;
        let guard = Self { switched: true };
        if ok {
            Ok(guard)
        } else {
            log::error!("could not switch to fsuid {} fsgid {}", ctx.uid, ctx.gid);
            drop(guard);
            Err(Errno::EPERM)
        }
    }
}

impl Drop for CredsGuard {
    fn drop(&mut self) {
        if self.switched {
            sys::setfsuid(0);
            sys::setfsgid(0);
        }
    }
}
