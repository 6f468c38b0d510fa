//! The life of one device's window across connections, starts, stops, resets and
//! shutdown: the one place that decides whether a map may be made and whether a parked
//! request's reply may still be returned.
//!
//! A [`WindowSession`] owns the [`Ledger`] and the link to the frontend. The device layer
//! reports what the frontend did (attach, start, stop rings, reset, disconnect, shutdown);
//! the file system asks the session before it maps ([`WindowSession::check_map`]); parked
//! requests complete through [`WindowSession::complete_if_current`], which checks and acts
//! under one lock, so a ring stop either comes before the reply lands or the reply is
//! dropped — never the reply in a ring the frontend set up anew.

use std::sync::Arc;

use super::sync::{Mutex, MutexGuard};

use super::error::LedgerError;
use super::ledger::Ledger;

/// What the session needs of the frontend link besides mapping (which goes through the
/// ledger's mapper): the device layer's backend channel.
pub trait FrontendLink: Send + Sync {
    /// The frontend started the device: mappings made before may have been dropped by it.
    fn device_started(&self);
    /// The frontend dropped every mapping of the window itself (a device reset).
    fn frontend_dropped_all(&self);
    /// The frontend is gone, with its address space and every mapping in it.
    fn detach(&self);
}

/// Why a map is refused right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeldOff {
    /// A reset is releasing the window; the next session's maps wait for it.
    #[error("a device reset is releasing the window")]
    Resetting,
    /// A gone frontend's mappings are still pinned; their release is being retried.
    #[error("a disconnected frontend's pinned mappings are not released yet")]
    Disconnected,
    /// The device is shutting down.
    #[error("the device is shutting down")]
    ShuttingDown,
}

/// A parked request's place in time: its reply goes back only if no ring stop, reset or
/// disconnect happened since it was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyEpoch(u64);

#[derive(Debug, Default)]
struct State {
    running: bool,
    resets: usize,
    disconnected: bool,
    shutting_down: bool,
    epoch: u64,
}

impl State {
    fn held_off(&self) -> Option<HeldOff> {
        if self.shutting_down {
            Some(HeldOff::ShuttingDown)
        } else if self.resets > 0 {
            Some(HeldOff::Resetting)
        } else if self.disconnected {
            Some(HeldOff::Disconnected)
        } else {
            None
        }
    }
}

/// The window of one device and the rules of its life.
pub struct WindowSession {
    ledger: Arc<Ledger>,
    link: Arc<dyn FrontendLink>,
    state: Mutex<State>,
}

/// A release of the whole window that a reset handed to a thread of the device's own
/// (the frontend is waiting for the reset's reply, so nothing may be unmapped inline).
/// Maps stay held off until it has run (or is dropped).
#[must_use = "the window stays held off until the release runs"]
pub struct PendingRelease {
    session: Arc<WindowSession>,
    done: bool,
}

impl PendingRelease {
    /// Releases every mapping (pins waited out, bounded), then lets maps in again.
    pub fn run(mut self) -> Result<usize, LedgerError> {
        let result = self.session.ledger.reset();
        self.finish();
        result
    }

    fn finish(&mut self) {
        if !self.done {
            self.done = true;
            let mut state = self.session.lock();
            state.resets = state.resets.saturating_sub(1);
        }
    }
}

impl Drop for PendingRelease {
    fn drop(&mut self) {
        self.finish();
    }
}

impl std::fmt::Debug for WindowSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowSession")
            .field("state", &*self.lock())
            .finish_non_exhaustive()
    }
}

impl WindowSession {
    /// A session over `ledger`, whose frontend is reached through `link`.
    pub fn new(ledger: Arc<Ledger>, link: Arc<dyn FrontendLink>) -> Arc<Self> {
        Arc::new(WindowSession {
            ledger,
            link,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ledger.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// A new frontend connected (its backend channel is attached by the device layer).
    pub fn attach(&self) {
        // A gone frontend's pinned mappings still hold maps off until their release.
        self.lock().epoch += 1;
    }

    /// The frontend started the device (SET_FEATURES). Returns true on a real start (the
    /// device was not running), false for a SET_FEATURES while running.
    pub fn start(&self) -> bool {
        let mut state = self.lock();
        if state.running {
            return false;
        }
        state.running = true;
        self.link.device_started();
        true
    }

    /// Whether the frontend has started the device and not stopped or reset it since.
    pub fn is_running(&self) -> bool {
        self.lock().running
    }

    /// The frontend took a ring back (GET_VRING_BASE): parked replies taken before are
    /// dropped, and the next SET_FEATURES is a start.
    pub fn stop_rings(&self) {
        let mut state = self.lock();
        state.running = false;
        state.epoch += 1;
    }

    /// RESET_DEVICE: the frontend dropped its mappings. Maps are held off until the
    /// returned release has run on a thread of the device's own.
    pub fn reset(self: &Arc<Self>) -> PendingRelease {
        let mut state = self.lock();
        state.running = false;
        state.epoch += 1;
        state.resets += 1;
        self.link.frontend_dropped_all();
        drop(state);
        PendingRelease {
            session: self.clone(),
            done: false,
        }
    }

    /// The frontend disconnected. Its mappings went with it; their references are dropped
    /// once their pins drain. Returns true if everything was released; otherwise maps stay
    /// held off until [`WindowSession::retry_release`] succeeds.
    pub fn disconnect(&self) -> bool {
        {
            let mut state = self.lock();
            state.running = false;
            state.epoch += 1;
            state.disconnected = true;
        }
        self.link.detach();
        self.retry_release()
    }

    /// Tries again to release a gone frontend's mappings; true once all are released.
    pub fn retry_release(&self) -> bool {
        match self.ledger.reset() {
            Ok(n) => {
                if n > 0 {
                    log::info!("dax: released {n} mapping(s) of a disconnected frontend");
                }
                self.lock().disconnected = false;
                true
            }
            Err(e) => {
                log::warn!("dax: a disconnected frontend's mappings are not released yet: {e}");
                false
            }
        }
    }

    /// Shutdown: no map from now on; every mapping is released (the frontend is asked to
    /// unmap each).
    pub fn shutdown(&self) -> Result<usize, LedgerError> {
        {
            let mut state = self.lock();
            state.shutting_down = true;
            state.epoch += 1;
        }
        self.ledger.reset()
    }

    /// Whether a map may be made now.
    pub fn check_map(&self) -> Result<(), HeldOff> {
        match self.lock().held_off() {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    /// The epoch a parked request is taken in.
    pub fn reply_epoch(&self) -> ReplyEpoch {
        ReplyEpoch(self.lock().epoch)
    }

    /// Runs `complete` (returning a parked request's reply) only if nothing ended the
    /// epoch it was taken in; under the session's lock, so no ring stop can come between
    /// the check and the completion. Returns whether it ran.
    pub fn complete_if_current(&self, taken: ReplyEpoch, complete: impl FnOnce()) -> bool {
        let state = self.lock();
        if state.epoch != taken.0 {
            return false;
        }
        complete();
        drop(state);
        true
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
