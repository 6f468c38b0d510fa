//! A backend daemon run as a child process, with its log captured.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::FrontendError;

/// A running backend daemon.
pub struct DaemonProcess {
    child: Child,
    socket: PathBuf,
    log: Arc<Mutex<String>>,
    log_thread: Option<JoinHandle<()>>,
}

impl DaemonProcess {
    /// Starts `program args…` and waits (bounded) until it listens on `socket`.
    pub fn spawn<I, S>(
        program: &Path,
        args: I,
        socket: &Path,
        timeout: Duration,
    ) -> Result<Self, FrontendError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(program);
        command.args(args);
        Self::spawn_command(command, socket, timeout)
    }

    /// Starts a prepared command (environment, extra settings) and waits for its socket.
    pub fn spawn_command(
        mut command: Command,
        socket: &Path,
        timeout: Duration,
    ) -> Result<Self, FrontendError> {
        command.stdin(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn()?;
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take();
        let sink = log.clone();
        let log_thread = stderr.map(|stderr| {
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    log::info!(target: "daemon", "{line}");
                    let mut log = sink.lock().unwrap_or_else(|p| p.into_inner());
                    log.push_str(&line);
                    log.push('\n');
                }
            })
        });
        let mut daemon = DaemonProcess {
            child,
            socket: socket.to_path_buf(),
            log,
            log_thread,
        };
        let deadline = Instant::now() + timeout;
        loop {
            if is_socket(socket) {
                return Ok(daemon);
            }
            if let Some(status) = daemon.child.try_wait()? {
                daemon.join_log();
                return Err(FrontendError::Setup(format!(
                    "daemon exited with {status} before listening; log:\n{}",
                    daemon.log()
                )));
            }
            if Instant::now() > deadline {
                return Err(FrontendError::Timeout(format!(
                    "daemon did not create {} within {timeout:?}",
                    socket.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The socket the daemon listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sends a signal (e.g. `libc::SIGTERM`).
    pub fn signal(&self, signal: i32) -> Result<(), FrontendError> {
        let pid = libc::pid_t::try_from(self.child.id())
            .map_err(|_| FrontendError::Setup("pid out of range".into()))?;
        // SAFETY: kill has no memory-safety preconditions; the pid is our own child, which
        // we have not reaped yet, so it cannot have been reused.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(())
    }

    /// Waits (bounded) for the daemon to exit; its log is complete afterwards.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus, FrontendError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.join_log();
                return Ok(status);
            }
            if Instant::now() > deadline {
                return Err(FrontendError::Timeout(format!(
                    "daemon still running after {timeout:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn join_log(&mut self) {
        if let Some(thread) = self.log_thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}
