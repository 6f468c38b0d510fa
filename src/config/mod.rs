//! Device configuration: the `pmem` command line and `run --config FILE.toml` share one
//! validated form.
//!
//! Validation happens before anything is created on disk, and every error names the field
//! it is about (`--size` on the command line, `pmem[0].size` in a file) in one line.

use std::collections::HashSet;

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

mod caps;
mod fs;
mod pmem;
pub mod virtiofsd;

pub use caps::{CapSet, ModCaps};
use fs::parse_fs;
pub use fs::{
    DaxConfig, FsConfig, FsRequest, MAX_REQUEST_QUEUES, MAX_TAG_LEN, Sandbox, parse_duration,
};

pub use crate::sys::seccomp::Seccomp;
use pmem::parse_pmem;
pub use pmem::{BackingKind, PMEM_ALIGN, PmemConfig, PmemRequest, open_backing};

/// A configuration problem, reported as `FIELD: REASON`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    /// The field as the user wrote it (`--size`, `pmem[1].file`).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Where a setting came from, so errors name it the way the user wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag (`--name`).
    Cli,
    /// Entry `index` of the `[[kind]]` array of a config file.
    File {
        /// The array's name (`pmem` or `fs`).
        kind: &'static str,
        /// Position in the array, from 0.
        index: usize,
    },
    /// virtiofsd's command line (`vhost-dax-virtiofsd`): fields carry virtiofsd's names.
    Virtiofsd,
}

impl Origin {
    /// The name of field `name` as the user would write it.
    pub fn field(self, name: &str) -> String {
        match self {
            Origin::Cli => format!("--{}", name.replace('_', "-")),
            Origin::File { kind, index } => format!("{kind}[{index}].{name}"),
            Origin::Virtiofsd => match name {
                "socket" => "--socket-path".into(),
                "socket_fd" => "--fd".into(),
                "no_readdirplus" => "--no-readdirplus".into(),
                other => Origin::Cli.field(other),
            },
        }
    }
}

/// Where a device's vhost-user socket comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketSpec {
    /// A socket file the daemon creates, and removes when it exits.
    Path(PathBuf),
    /// A listening socket the parent created and passed down as this descriptor
    /// (libvirt, systemd socket activation). The daemon neither creates nor removes a
    /// socket file for it.
    InheritedFd(i32),
}

impl std::fmt::Display for SocketSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SocketSpec::Path(path) => write!(f, "{}", path.display()),
            SocketSpec::InheritedFd(fd) => write!(f, "inherited fd {fd}"),
        }
    }
}

/// The group a created socket file is given to (virtiofsd's `--socket-group`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketGroup {
    /// The group's name as written.
    pub name: String,
    /// Its id, resolved at validation.
    pub gid: u32,
}

/// Resolves a group name; an unknown group is an error.
pub(crate) fn validate_socket_group(name: &str) -> Result<SocketGroup, String> {
    match crate::sys::socket::group_id(name) {
        Ok(Some(gid)) => Ok(SocketGroup {
            name: name.to_owned(),
            gid,
        }),
        Ok(None) => Err(format!("no group named `{name}`")),
        Err(e) => Err(format!("cannot look up group `{name}`: {e}")),
    }
}

/// Descriptor `fd`, inherited from the parent, must be an open, listening `AF_UNIX`
/// stream socket. It is only looked at here; the daemon takes it when it starts.
pub(crate) fn validate_inherited_fd(fd: i32) -> Result<(), String> {
    if fd < 0 {
        return Err(format!("{fd} is not a file descriptor"));
    }
    let kind =
        crate::sys::socket::inherited_socket_kind(fd).map_err(|e| match e.raw_os_error() {
            Some(libc::EBADF) => format!("file descriptor {fd} is not open"),
            Some(libc::ENOTSOCK) => format!("file descriptor {fd} is not a socket"),
            _ => format!("file descriptor {fd}: {e}"),
        })?;
    if kind.domain != libc::AF_UNIX || kind.kind != libc::SOCK_STREAM {
        return Err(format!(
            "file descriptor {fd} is not a Unix stream socket (domain {}, type {})",
            kind.domain, kind.kind
        ));
    }
    if !kind.listening {
        return Err(format!(
            "file descriptor {fd} is a Unix socket that is not listening (pass the socket listen(2) was called on)"
        ));
    }
    Ok(())
}

/// Parses a size such as `4096`, `512K`, `64M`, `1G`, `1GiB` (binary units).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let number_end = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || number.ends_with('.') || fraction.contains('.') {
        return Err(format!(
            "`{text}` is not a size (expected e.g. 512M, 1G or 1.5G)"
        ));
    }
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{text}` (use K, M, G or T)"
            ));
        }
    };
    let too_large = || format!("`{text}` is too large");
    let whole: u64 = whole.parse().map_err(|_| too_large())?;
    let mut bytes = whole.checked_mul(1u64 << shift).ok_or_else(too_large)?;
    if !fraction.is_empty() {
        // A decimal fraction of the unit (binary units, as the rest): 1.5G is 1.5 GiB.
        // It must come out as a whole number of bytes.
        let digits = u32::try_from(fraction.len()).map_err(|_| too_large())?;
        let denominator = 10u128.checked_pow(digits).ok_or_else(too_large)?;
        let numerator: u128 = fraction.parse().map_err(|_| too_large())?;
        let scaled = numerator * (1u128 << shift);
        if !scaled.is_multiple_of(denominator) {
            return Err(format!("`{text}` is not a whole number of bytes"));
        }
        let part = u64::try_from(scaled / denominator).map_err(|_| too_large())?;
        bytes = bytes.checked_add(part).ok_or_else(too_large)?;
    }
    Ok(bytes)
}

/// Formats a byte count for messages (`2 MiB`, `1.5 GiB`, `4097 bytes`).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u32); 4] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (name, shift) in UNITS {
        let unit = 1u64 << shift;
        if bytes >= unit {
            return if bytes.is_multiple_of(unit) {
                format!("{} {name}", bytes >> shift)
            } else {
                format!("{:.1} {name}", bytes as f64 / unit as f64)
            };
        }
    }
    format!("{bytes} bytes")
}

pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The socket's directory must exist, and the path must be free or a stale socket.
pub(crate) fn validate_socket_path(socket: &Path) -> Result<(), String> {
    let parent = parent_dir(socket);
    if !parent.is_dir() {
        return Err(format!("directory {} does not exist", parent.display()));
    }
    match std::fs::symlink_metadata(socket) {
        Err(_) => Ok(()),
        Ok(meta) if meta.file_type().is_socket() => {
            if is_listening(socket) {
                Err(format!(
                    "{} is in use by a running process",
                    socket.display()
                ))
            } else {
                Ok(())
            }
        }
        Ok(_) => Err(format!("{} exists and is not a socket", socket.display())),
    }
}

/// Whether some process listens on the Unix socket `path`, found in `/proc/net/unix`
/// without connecting: a daemon waiting for its VMM takes any connection for it (and one
/// that hangs up at once for a VMM that left).
fn is_listening(path: &Path) -> bool {
    /// `__SO_ACCEPTCON` in the table's flags: a listening socket.
    const ACCEPTING: u32 = 1 << 16;
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return false;
    };
    let wanted: Vec<PathBuf> = [Some(path.to_path_buf()), absolute_socket_path(path)]
        .into_iter()
        .flatten()
        .collect();
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(flags), Some(name)) = (fields.get(3), fields.get(7)) else {
            return false;
        };
        u32::from_str_radix(flags, 16).is_ok_and(|f| f & ACCEPTING != 0)
            && wanted
                .iter()
                .any(|w| w.as_os_str() == std::ffi::OsStr::new(name))
    })
}

/// `path` with its directory resolved (the table shows the path a socket was bound to).
fn absolute_socket_path(path: &Path) -> Option<PathBuf> {
    let dir = parent_dir(path).canonicalize().ok()?;
    Some(dir.join(path.file_name()?))
}

/// The `run --config` file: global settings plus one table per device.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DaemonConfig {
    /// `log_level` (error, warn, info, debug, trace).
    pub log_level: Option<String>,
    /// `[[pmem]]` devices.
    pub pmem: Vec<PmemConfig>,
    /// `[[fs]]` devices.
    pub fs: Vec<FsConfig>,
    /// `seccomp`: what the one filter of the process does to a system call off its
    /// allow-list (the union of what its devices need). A daemon-level setting: one
    /// process installs one filter, so a device table cannot choose its own.
    pub seccomp: Seccomp,
}

const TOP_LEVEL_KEYS: &[&str] = &["log_level", "seccomp", "pmem", "fs"];
impl DaemonConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<DaemonConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("config", format!("cannot read {}: {e}", path.display()))
        })?;
        Self::parse(&text)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<DaemonConfig, ConfigError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            let msg = e.message().trim().replace('\n', " ");
            match line {
                Some(line) => ConfigError::new("config", format!("line {line}: {msg}")),
                None => ConfigError::new("config", msg),
            }
        })?;
        reject_unknown(&table, TOP_LEVEL_KEYS, |k| k.to_string())?;
        let log_level = match table.get("log_level") {
            None => None,
            Some(v) => {
                let level = get_string(v, "log_level")?;
                if level.parse::<log::LevelFilter>().is_err() {
                    return Err(ConfigError::new(
                        "log_level",
                        format!("`{level}` is not one of off, error, warn, info, debug, trace"),
                    ));
                }
                Some(level)
            }
        };
        let seccomp = match table.get("seccomp") {
            None => Seccomp::DEFAULT,
            Some(v) => parse_seccomp(&get_string(v, "seccomp")?, "seccomp")?,
        };
        let pmem = parse_tables(&table, "pmem", |entry, origin| {
            parse_pmem(entry, origin)?.validate(origin)
        })?;
        let fs = parse_tables(&table, "fs", |entry, origin| {
            parse_fs(entry, origin)?.validate(origin)
        })?;
        let config = DaemonConfig {
            log_level,
            pmem,
            fs,
            seccomp,
        };
        config.check_unique_sockets()?;
        config.check_sandbox()?;
        if config.device_count() == 0 {
            return Err(ConfigError::new(
                "config",
                "defines no device (add a [[pmem]] or [[fs]] table)",
            ));
        }
        Ok(config)
    }

    /// Number of devices of every kind.
    pub fn device_count(&self) -> usize {
        self.pmem.len() + self.fs.len()
    }

    fn check_unique_sockets(&self) -> Result<(), ConfigError> {
        let mut seen = HashSet::new();
        let sockets = self
            .pmem
            .iter()
            .enumerate()
            .map(|(i, d)| (format!("pmem[{i}].socket"), &d.socket))
            .chain(
                self.fs
                    .iter()
                    .enumerate()
                    .filter_map(|(i, d)| match &d.socket {
                        SocketSpec::Path(path) => Some((format!("fs[{i}].socket"), path)),
                        SocketSpec::InheritedFd(_) => None,
                    }),
            )
            .chain(self.fs.iter().enumerate().filter_map(|(i, d)| {
                let control = d.control_socket.as_ref()?;
                Some((format!("fs[{i}].control_socket"), control))
            }))
            .chain(self.pmem.iter().enumerate().filter_map(|(i, d)| {
                let control = d.control_socket.as_ref()?;
                Some((format!("pmem[{i}].control_socket"), control))
            }));
        for (field, socket) in sockets {
            if !seen.insert(socket.clone()) {
                return Err(ConfigError::new(
                    field,
                    format!("{} is used by another device", socket.display()),
                ));
            }
        }
        Ok(())
    }

    /// A sandbox confines the whole process to one shared directory, so a sandboxed fs
    /// device must be the daemon's only device.
    fn check_sandbox(&self) -> Result<(), ConfigError> {
        for (index, fs) in self.fs.iter().enumerate() {
            if fs.sandbox != Sandbox::None && self.device_count() > 1 {
                return Err(ConfigError::new(
                    format!("fs[{index}].sandbox"),
                    "chroot and namespace confine the whole daemon; serve this device alone or use none",
                ));
            }
        }
        Ok(())
    }
}

/// Parses every entry of the `[[kind]]` array with `parse`.
fn parse_tables<T>(
    table: &toml::Table,
    kind: &'static str,
    parse: impl Fn(&toml::Table, Origin) -> Result<T, ConfigError>,
) -> Result<Vec<T>, ConfigError> {
    let Some(value) = table.get(kind) else {
        return Ok(Vec::new());
    };
    let entries = value.as_array().ok_or_else(|| {
        ConfigError::new(kind, format!("must be an array of tables ([[{kind}]])"))
    })?;
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let origin = Origin::File { kind, index };
            let entry = entry
                .as_table()
                .ok_or_else(|| ConfigError::new(format!("{kind}[{index}]"), "must be a table"))?;
            if entry.contains_key("seccomp") {
                return Err(ConfigError::new(
                    origin.field("seccomp"),
                    "is a daemon-level setting (one process installs one filter for all its \
                     devices): write `seccomp = \"...\"` at the top of the file",
                ));
            }
            parse(entry, origin)
        })
        .collect()
}

/// `kill`, `log`, `trap` or `none`, usable on this architecture; `field` names it.
pub fn parse_seccomp(text: &str, field: &str) -> Result<Seccomp, ConfigError> {
    let seccomp = Seccomp::parse(text).ok_or_else(|| {
        ConfigError::new(
            field,
            format!("`{text}` is not one of kill, log, trap, none"),
        )
    })?;
    seccomp
        .check_architecture()
        .map_err(|reason| ConfigError::new(field, reason))?;
    Ok(seccomp)
}

pub(crate) fn reject_unknown(
    table: &toml::Table,
    known: &[&str],
    name: impl Fn(&str) -> String,
) -> Result<(), ConfigError> {
    for key in table.keys() {
        if !known.contains(&key.as_str()) {
            return Err(ConfigError::new(
                name(key),
                format!("unknown field (known: {})", known.join(", ")),
            ));
        }
    }
    Ok(())
}

pub(crate) fn get_string(value: &toml::Value, field: &str) -> Result<String, ConfigError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ConfigError::new(field, "must be a string"))
}

pub(crate) fn get_bool(
    table: &toml::Table,
    key: &str,
    origin: Origin,
) -> Result<bool, ConfigError> {
    match table.get(key) {
        None => Ok(false),
        Some(v) => v
            .as_bool()
            .ok_or_else(|| ConfigError::new(origin.field(key), "must be true or false")),
    }
}

pub(crate) fn get_path(
    table: &toml::Table,
    key: &str,
    origin: Origin,
) -> Result<Option<PathBuf>, ConfigError> {
    table
        .get(key)
        .map(|v| get_string(v, &origin.field(key)).map(PathBuf::from))
        .transpose()
}

/// A size may be written as a string with a unit (`"1G"`) or a plain integer of bytes.
pub(crate) fn get_size(
    table: &toml::Table,
    key: &str,
    origin: Origin,
) -> Result<Option<String>, ConfigError> {
    get_quantity(
        table,
        key,
        origin,
        "must be a size such as \"512M\" or a number of bytes",
    )
}

/// A duration may be written as a string with a unit (`"500ms"`) or a plain integer of
/// seconds.
pub(crate) fn get_duration(
    table: &toml::Table,
    key: &str,
    origin: Origin,
) -> Result<Option<String>, ConfigError> {
    get_quantity(
        table,
        key,
        origin,
        "must be a duration such as \"500ms\" or \"10s\"",
    )
}

/// A string, or a non-negative integer as its text; anything else is `expected`.
fn get_quantity(
    table: &toml::Table,
    key: &str,
    origin: Origin,
    expected: &str,
) -> Result<Option<String>, ConfigError> {
    match table.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(toml::Value::Integer(n)) if *n >= 0 => Ok(Some(n.to_string())),
        Some(_) => Err(ConfigError::new(origin.field(key), expected)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2M"), Ok(2 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("3k"), Ok(3 << 10));
        assert!(parse_size("1X").unwrap_err().contains("unknown unit"));
        assert!(parse_size("").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(
            parse_size("17179869184G")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn sizes_take_a_decimal_fraction_of_their_unit() {
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("0.5M"), Ok(512 << 10));
        assert_eq!(parse_size("2.25K"), Ok(2304));
        assert_eq!(parse_size("1.0G"), Ok(1 << 30));
        assert!(
            parse_size("1.3K")
                .unwrap_err()
                .contains("whole number of bytes")
        );
        assert!(
            parse_size("1.5")
                .unwrap_err()
                .contains("whole number of bytes")
        );
        for bad in [".5G", "1.G", "1.2.3M", "."] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(
            parse_size("17179869184.5G")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn sizes_format_readably() {
        assert_eq!(format_size(2 << 20), "2 MiB");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
        assert_eq!(format_size(100), "100 bytes");
    }

    #[test]
    fn origin_names_fields_like_the_user_wrote_them() {
        assert_eq!(Origin::Cli.field("log_level"), "--log-level");
        let origin = Origin::File {
            kind: "pmem",
            index: 2,
        };
        assert_eq!(origin.field("size"), "pmem[2].size");
    }
}
