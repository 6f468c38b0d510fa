//! The daemon: one listener and serving thread per device, one frontend at a time per
//! device, and an orderly shutdown on SIGINT/SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use vhost::vhost_user::Listener;
use vhost_user_backend::VhostUserDaemon;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

use crate::config::{DaemonConfig, PmemConfig};
use crate::device::flush::SyncObserver;
use crate::device::pmem::{PmemBackend, PmemDevice};
use crate::device::sync_gate::{SYNC_GATE_ENV, SocketSyncGate};
use crate::sys;

/// How long a frontend may take to acknowledge a SHMEM_MAP/UNMAP.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Failures after configuration was accepted.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Setting up a device failed.
    #[error("{device}: {source}")]
    Device {
        /// Which device (its socket path).
        device: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The vhost-user machinery failed.
    #[error("{device}: vhost-user: {message}")]
    VhostUser {
        /// Which device.
        device: String,
        /// The vhost-user-backend error, rendered.
        message: String,
    },
    /// Signal handling could not be set up.
    #[error("signals: {0}")]
    Signals(std::io::Error),
}

/// A device the shutdown path must quiesce.
trait Service: Send + Sync {
    fn shutdown(&self);
    fn socket(&self) -> PathBuf;
}

impl Service for PmemDevice {
    fn shutdown(&self) {
        PmemDevice::shutdown(self);
    }
    fn socket(&self) -> PathBuf {
        self.config().socket.clone()
    }
}

/// Serves every device of `config` until each frontend is gone (or for ever with
/// `reconnect`), or until SIGINT/SIGTERM.
pub fn run(config: DaemonConfig) -> Result<(), DaemonError> {
    // Before any thread exists, so every thread inherits the mask and only the signal
    // thread takes the signals.
    sys::block_termination_signals().map_err(DaemonError::Signals)?;
    let observer = sync_observer()?;

    let mut services: Vec<Arc<dyn Service>> = Vec::new();
    let mut servers: Vec<JoinHandle<Result<(), DaemonError>>> = Vec::new();
    for pmem in config.pmem {
        let name = pmem.socket.display().to_string();
        let listener = Listener::new(&pmem.socket, true).map_err(|e| DaemonError::Device {
            device: name.clone(),
            source: std::io::Error::other(e),
        })?;
        let device =
            PmemDevice::new(pmem.clone(), ACK_TIMEOUT, observer.clone()).map_err(|source| {
                DaemonError::Device {
                    device: pmem.file.display().to_string(),
                    source,
                }
            })?;
        log::info!(
            "pmem: serving {} ({} bytes{}) on {}",
            pmem.file.display(),
            pmem.size,
            if pmem.readonly { ", read-only" } else { "" },
            name
        );
        services.push(device.clone());
        servers.push(spawn_pmem_server(device, pmem, listener)?);
    }
    spawn_signal_thread(services)?;

    let mut first_error = None;
    for server in servers {
        match server.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                log::error!("{e}");
                first_error.get_or_insert(e);
            }
            Err(_) => log::error!("a device thread panicked"),
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn sync_observer() -> Result<Option<Arc<dyn SyncObserver>>, DaemonError> {
    let Some(path) = std::env::var_os(SYNC_GATE_ENV) else {
        return Ok(None);
    };
    log::warn!("test hook {SYNC_GATE_ENV} is set: every pmem sync waits for the test");
    let gate = SocketSyncGate::connect(path.as_ref()).map_err(|source| DaemonError::Device {
        device: SYNC_GATE_ENV.into(),
        source,
    })?;
    Ok(Some(Arc::new(gate)))
}

fn spawn_pmem_server(
    device: Arc<PmemDevice>,
    config: PmemConfig,
    listener: Listener,
) -> Result<JoinHandle<Result<(), DaemonError>>, DaemonError> {
    let name = config.socket.display().to_string();
    std::thread::Builder::new()
        .name("pmem-listener".into())
        .spawn(move || serve_pmem(&device, &config, listener))
        .map_err(|source| DaemonError::Device {
            device: name,
            source,
        })
}

fn serve_pmem(
    device: &Arc<PmemDevice>,
    config: &PmemConfig,
    mut listener: Listener,
) -> Result<(), DaemonError> {
    let name = config.socket.display().to_string();
    let vhost_error = |e: vhost_user_backend::Error| DaemonError::VhostUser {
        device: name.clone(),
        message: e.to_string(),
    };
    loop {
        let backend = PmemBackend::new(device.clone());
        let memory = GuestMemoryAtomic::new(GuestMemoryMmap::new());
        let mut daemon =
            VhostUserDaemon::new("vhost-dax-pmem".into(), backend, memory).map_err(vhost_error)?;
        daemon.start(&mut listener).map_err(vhost_error)?;
        log::info!("pmem: frontend connected on {name}");
        match daemon.wait() {
            Ok(()) => log::info!("pmem: frontend disconnected from {name}"),
            Err(e) => log::warn!("pmem: connection on {name} ended: {e}"),
        }
        device.disconnected();
        drop(daemon);
        if !config.reconnect {
            // Dropping the listener removes the socket file.
            return Ok(());
        }
        log::info!("pmem: device reset; waiting for the next frontend on {name}");
    }
}

fn spawn_signal_thread(services: Vec<Arc<dyn Service>>) -> Result<(), DaemonError> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let signal = match sys::wait_for_termination() {
                Ok(signal) => signal,
                Err(e) => {
                    log::error!("waiting for signals failed: {e}");
                    return;
                }
            };
            log::info!("signal {signal}: shutting down");
            for service in &services {
                service.shutdown();
                let socket = service.socket();
                if let Err(e) = std::fs::remove_file(&socket)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    log::warn!("cannot remove {}: {e}", socket.display());
                }
            }
            log::info!("shutdown complete");
            std::process::exit(0);
        })
        .map_err(DaemonError::Signals)?;
    Ok(())
}
