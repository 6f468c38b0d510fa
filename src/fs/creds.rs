//! Per-request credentials: while a guest request creates a file, the
//! calling thread's fsuid/fsgid are the guest caller's, so the new file gets
//! the right owner and the host checks permissions as that user.
//!
//! Supplementary groups go with them: the daemon (run as root) drops its own at start,
//! so a switched thread has none, and a creation that carries the caller's supplementary
//! group (`FUSE_EXT_GROUPS`: the parent directory's group, which the caller is in) has
//! exactly that one while it runs. FUSE carries no other group of the caller.

use super::sys;
use crate::fuse::{Context, Errno, FsResult};

/// Restores fsuid/fsgid 0 (and the thread's supplementary groups) on drop. A no-op
/// guard when not switching.
#[derive(Debug)]
#[must_use]
pub struct CredsGuard {
    switched: bool,
    /// The thread's groups before a supplementary group was put in place.
    groups: Option<Vec<u32>>,
}

impl CredsGuard {
    /// Switches the calling thread to `ctx`'s uid/gid (and its supplementary group, if
    /// the request carried one) if `enabled` (the daemon runs as root) and the caller is
    /// not root already.
    pub fn new(ctx: Context, enabled: bool) -> FsResult<Self> {
        if !enabled || (ctx.uid == 0 && ctx.gid == 0) {
            return Ok(Self {
                switched: false,
                groups: None,
            });
        }
        let mut guard = Self {
            switched: false,
            groups: None,
        };
        if let Some(gid) = ctx.supp_gid {
            let before = sys::getgroups()?;
            sys::setgroups(&[gid]).inspect_err(|e| {
                log::error!("could not take supplementary group {gid}: {e}");
            })?;
            guard.groups = Some(before);
        }
        sys::setfsgid(ctx.gid);
        sys::setfsuid(ctx.uid);
        guard.switched = true;
        // setfsuid/setfsgid report no errors; query to confirm.
        let ok = sys::setfsuid(u32::MAX) == ctx.uid && sys::setfsgid(u32::MAX) == ctx.gid;
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
        if let Some(groups) = self.groups.take()
            && let Err(e) = sys::setgroups(&groups)
        {
            // The thread would keep the group for later requests: no way to serve safely.
            log::error!("could not restore supplementary groups {groups:?}: {e}");
            std::process::abort();
        }
    }
}
