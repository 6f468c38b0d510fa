//! The exit events of a connection's worker threads, and the descriptors
//! `vhost-user-backend` leaves open behind them.
//!
//! For every worker thread the crate asks the backend for an exit event, turns the
//! consumer half into a raw descriptor for its epoll and never closes it (0.24,
//! `VringEpollHandler::new`): a VMM that reconnects again and again would cost the daemon
//! one eventfd per queue per connection until it runs out. The backend remembers those
//! descriptors and closes them once the connection's daemon, its epoll and its threads
//! are gone.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use vmm_sys_util::event::{
    EventConsumer, EventFlag, EventNotifier, new_event_consumer_and_notifier,
};

/// The exit events handed out for one connection.
#[derive(Debug, Clone, Default)]
pub struct ExitEvents(Arc<Mutex<Vec<RawFd>>>);

impl ExitEvents {
    /// A new exit event for a worker of `device`; its consumer's descriptor is
    /// remembered, to be closed by [`ExitEvents::close_after_connection`].
    pub fn create(&self, device: &str) -> Option<(EventConsumer, EventNotifier)> {
        match new_event_consumer_and_notifier(EventFlag::NONBLOCK | EventFlag::CLOEXEC) {
            Ok((consumer, notifier)) => {
                self.lock().push(consumer.as_raw_fd());
                Some((consumer, notifier))
            }
            Err(e) => {
                log::error!("{device}: cannot create a worker exit event: {e}");
                None
            }
        }
    }

    /// Closes the consumers handed out. Only once the connection's `VhostUserDaemon` has
    /// been dropped: that joins the worker threads and closes the epoll that watched them.
    pub fn close_after_connection(&self) {
        for fd in self.lock().drain(..) {
            // SAFETY: `fd` is the consumer half of an exit event this connection created;
            // vhost-user-backend took it as a raw descriptor and never closes it, and the
            // daemon that used it (threads and epoll) is gone, so nothing else refers to
            // this descriptor and closing it cannot hit another file.
            unsafe { libc::close(fd) };
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RawFd>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
