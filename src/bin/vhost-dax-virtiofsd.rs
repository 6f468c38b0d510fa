//! `vhost-dax-virtiofsd`: the vhost-dax virtio-fs daemon behind virtiofsd's command
//! line, for libvirt and other virtiofsd launchers (they exec a binary with options only).
//!
//! The parsing is `vhost_dax::config::virtiofsd`; this file prints, logs and exits.

use std::process::ExitCode;

use vhost_dax::config::virtiofsd::{self, VirtiofsdCommand, VirtiofsdOptions};
use vhost_dax::config::{ConfigError, DaemonConfig, Origin};
use vhost_dax::daemon;

const NAME: &str = "vhost-dax-virtiofsd";

fn usage_error(e: &ConfigError) -> ExitCode {
    eprintln!("{NAME}: error: {e}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let options = match virtiofsd::parse(std::env::args_os().skip(1)) {
        Ok(VirtiofsdCommand::Serve(options)) => options,
        Ok(VirtiofsdCommand::PrintCapabilities) => {
            println!("{}", virtiofsd::capabilities_json());
            return ExitCode::SUCCESS;
        }
        Ok(VirtiofsdCommand::Version) => {
            println!("{NAME} {} (vhost-dax)", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(VirtiofsdCommand::Help) => {
            print!("{}", virtiofsd::HELP);
            return ExitCode::SUCCESS;
        }
        Err(e) => return usage_error(&e),
    };
    let VirtiofsdOptions {
        request,
        log_level,
        rlimit_nofile,
        syslog,
        seccomp,
        notes,
    } = *options;
    let fs = match request.validate(Origin::Virtiofsd) {
        Ok(fs) => fs,
        Err(e) => return usage_error(&e),
    };
    init_logging(log_level.as_deref(), syslog);
    log::debug!("device: {fs:?}");
    for note in notes {
        log::warn!("{note}");
    }
    if let Err(e) = open_files_limit(rlimit_nofile) {
        return usage_error(&e);
    }
    // virtiofsd creates its socket owner-only (group-shared with --socket-group); the
    // daemon creates sockets with the process umask.
    let umask = vhost_dax::sys::fs::umask(0o077);
    vhost_dax::sys::fs::umask(umask | 0o077);
    let config = DaemonConfig {
        log_level: None,
        pmem: Vec::new(),
        fs: vec![fs],
        seccomp,
    };
    match daemon::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("{NAME}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The level was checked by the parser; `RUST_LOG` overrides it, as for `vhost-dax`.
fn init_logging(level: Option<&str>, syslog: bool) {
    let level = level
        .and_then(|l| l.parse::<log::LevelFilter>().ok())
        .unwrap_or(log::LevelFilter::Info);
    vhost_dax::logging::init(NAME, level, syslog);
}

/// `--rlimit-nofile N` sets the limit to N (0: unchanged); without it the soft limit is
/// raised to the hard one, as `vhost-dax` does (every inode the guest knows holds a
/// descriptor).
fn open_files_limit(rlimit_nofile: Option<u64>) -> Result<(), ConfigError> {
    match rlimit_nofile {
        Some(0) => Ok(()),
        Some(n) => vhost_dax::sys::socket::set_open_files_limit(n).map_err(|e| ConfigError {
            field: "--rlimit-nofile".into(),
            reason: format!("cannot set the open-files limit to {n}: {e}"),
        }),
        None => {
            match vhost_dax::sys::raise_open_files_limit() {
                Ok(n) if n < 65536 => log::warn!(
                    "open files limited to {n} (the hard limit): a guest that knows more \
                     inodes gets EMFILE; raise it with --rlimit-nofile or LimitNOFILE="
                ),
                Ok(n) => log::debug!("open files limit: {n}"),
                Err(e) => log::warn!("cannot raise the open files limit: {e}"),
            }
            Ok(())
        }
    }
}
