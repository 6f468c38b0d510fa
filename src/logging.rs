//! Where the daemon's log goes: stderr (env_logger, the default) or the system log
//! (`--syslog`: RFC 3164 datagrams on `/dev/log`, facility daemon, as virtiofsd's
//! `--syslog` does; journald and rsyslog both listen there).

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// The system log socket.
pub const SYSLOG_SOCKET: &str = "/dev/log";
/// Test hook: another socket path for `--syslog` (a test cannot bind `/dev/log`).
pub const SYSLOG_SOCKET_ENV: &str = "VHOST_DAX_TEST_SYSLOG_SOCKET";

/// Whether the installed logger sends to the system log.
static TO_SYSLOG: AtomicBool = AtomicBool::new(false);

/// Whether [`init`] installed the system-log logger (which may reconnect to its socket
/// while the daemon serves).
pub fn to_syslog() -> bool {
    TO_SYSLOG.load(Ordering::Relaxed)
}

/// `LOG_DAEMON`.
const FACILITY_DAEMON: u8 = 3;

/// Sends each record as one datagram: `<PRI>IDENT[PID]: target: message`.
struct SyslogLogger {
    socket: Mutex<UnixDatagram>,
    path: PathBuf,
    ident: &'static str,
    level: log::LevelFilter,
}

/// Syslog severity of a log level.
fn severity(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// One record as a syslog line (without timestamp or host: the local daemon adds them).
pub fn syslog_line(
    ident: &str,
    pid: u32,
    level: log::Level,
    target: &str,
    message: &str,
) -> String {
    let pri = FACILITY_DAEMON * 8 + severity(level);
    // One datagram is one line: a message's own newlines would split it in the log.
    let message = message.replace('\n', " ");
    format!("<{pri}>{ident}[{pid}]: {target}: {message}")
}

impl log::Log for SyslogLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = syslog_line(
            self.ident,
            std::process::id(),
            record.level(),
            record.target(),
            &record.args().to_string(),
        );
        let mut socket = self.socket.lock().unwrap_or_else(|p| p.into_inner());
        if socket.send(line.as_bytes()).is_err() {
            // The log daemon restarted (the old socket is gone): once more on a new one.
            // Still failing (full, absent), the line is dropped: nowhere better to say so.
            if let Ok(fresh) = connect(&self.path) {
                *socket = fresh;
                let _ = socket.send(line.as_bytes());
            }
        }
    }

    fn flush(&self) {}
}

/// Installs the process's logger: `level` (RUST_LOG overrides it) to stderr, or to the
/// system log with `syslog` when its socket is there (else stderr, and a warning).
pub fn init(ident: &'static str, level: log::LevelFilter, syslog: bool) {
    if syslog {
        let path = std::env::var_os(SYSLOG_SOCKET_ENV)
            .map_or_else(|| PathBuf::from(SYSLOG_SOCKET), PathBuf::from);
        match connect(&path) {
            Ok(socket) => {
                let logger = SyslogLogger {
                    socket: Mutex::new(socket),
                    path,
                    ident,
                    level,
                };
                if log::set_boxed_logger(Box::new(logger)).is_ok() {
                    log::set_max_level(level);
                    TO_SYSLOG.store(true, Ordering::Relaxed);
                }
                return;
            }
            Err(e) => {
                init_stderr(level);
                log::warn!("--syslog: {}: {e}; logging to stderr", path.display());
                return;
            }
        }
    }
    init_stderr(level);
}

fn connect(path: &Path) -> std::io::Result<UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    // Fails at once if nothing listens there.
    socket.connect(path)?;
    Ok(socket)
}

fn init_stderr(level: log::LevelFilter) {
    env_logger::Builder::new()
        .filter_level(level)
        .parse_env("RUST_LOG")
        .format_timestamp_millis()
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_facility_severity_ident_and_pid() {
        let line = syslog_line(
            "vhost-dax",
            42,
            log::Level::Warn,
            "vhost_dax::daemon",
            "a\nb",
        );
        assert_eq!(line, "<28>vhost-dax[42]: vhost_dax::daemon: a b");
        assert!(syslog_line("x", 1, log::Level::Error, "t", "m").starts_with("<27>"));
        assert!(syslog_line("x", 1, log::Level::Debug, "t", "m").starts_with("<31>"));
    }
}
