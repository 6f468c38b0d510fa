//! Device configuration: the `pmem` command line and `run --config FILE.toml` share one
//! validated form.
//!
//! Validation happens before anything is created on disk, and every error names the field
//! it is about (`--size` on the command line, `pmem[0].size` in a file) in one line.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::sys;

/// Alignment every pmem size must have (the guest's memory hot-plug granularity).
pub const PMEM_ALIGN: u64 = 2 << 20;

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
    File { kind: &'static str, index: usize },
}

impl Origin {
    /// The name of field `name` as the user would write it.
    pub fn field(self, name: &str) -> String {
        match self {
            Origin::Cli => format!("--{}", name.replace('_', "-")),
            Origin::File { kind, index } => format!("{kind}[{index}].{name}"),
        }
    }
}

/// Parses a size such as `4096`, `512K`, `64M`, `1G`, `1GiB` (binary units).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!("`{text}` is not a size (expected e.g. 512M or 1G)"));
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
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is too large"))?;
    value
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))
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

/// The kind of host object behind a pmem device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackingKind {
    /// A regular file (synced with fdatasync).
    Regular,
    /// A block device (synced with fsync).
    Block,
}

/// What the user asked for one pmem device, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PmemRequest {
    /// vhost-user socket path.
    pub socket: Option<PathBuf>,
    /// Backing file or block device.
    pub file: Option<PathBuf>,
    /// Device size as written (`1G`).
    pub size: Option<String>,
    /// Create the file (sparse) if it does not exist.
    pub create: bool,
    /// Map read-only and never sync.
    pub readonly: bool,
    /// Serve the next frontend after a disconnect instead of exiting.
    pub reconnect: bool,
    /// Also advertise protocol bit 21 as SHMEM (alioth before the renumbering).
    pub shmem_bit21: bool,
}

/// A validated pmem device: everything checked, nothing created yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmemConfig {
    /// vhost-user socket path (its directory exists, nothing live listens on it).
    pub socket: PathBuf,
    /// Backing file or block device.
    pub file: PathBuf,
    /// Device size in bytes, a non-zero multiple of [`PMEM_ALIGN`].
    pub size: u64,
    /// The file does not exist yet and will be created sparse at `size`.
    pub create_file: bool,
    /// Regular file or block device (for a file still to be created: regular).
    pub kind: BackingKind,
    /// Read-only device.
    pub readonly: bool,
    /// Keep serving after a disconnect.
    pub reconnect: bool,
    /// alioth compatibility switch (see README).
    pub shmem_bit21: bool,
}

impl PmemRequest {
    /// Checks every field; touches nothing on disk beyond stat/open-for-probe.
    pub fn validate(&self, origin: Origin) -> Result<PmemConfig, ConfigError> {
        let field = |name: &str| origin.field(name);
        let socket = self
            .socket
            .clone()
            .ok_or_else(|| ConfigError::new(field("socket"), "is required"))?;
        validate_socket_path(&socket)
            .map_err(|reason| ConfigError::new(field("socket"), reason))?;
        let file = self
            .file
            .clone()
            .ok_or_else(|| ConfigError::new(field("file"), "is required"))?;
        if self.create && self.readonly {
            return Err(ConfigError::new(
                field("create"),
                "cannot be combined with readonly (a new file would be empty)",
            ));
        }
        let size = match &self.size {
            None => None,
            Some(text) => {
                let size = parse_size(text).map_err(|r| ConfigError::new(field("size"), r))?;
                check_pmem_alignment(size).map_err(|r| ConfigError::new(field("size"), r))?;
                Some(size)
            }
        };

        let existing = match fs::metadata(&file) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(ConfigError::new(
                    field("file"),
                    format!("cannot stat {}: {e}", file.display()),
                ));
            }
        };
        let Some(meta) = existing else {
            if !self.create {
                return Err(ConfigError::new(
                    field("file"),
                    format!("{} does not exist (add create to make it)", file.display()),
                ));
            }
            let Some(size) = size else {
                return Err(ConfigError::new(
                    field("size"),
                    "is required when the file is to be created",
                ));
            };
            let parent = parent_dir(&file);
            if !parent.is_dir() {
                return Err(ConfigError::new(
                    field("file"),
                    format!("directory {} does not exist", parent.display()),
                ));
            }
            return Ok(PmemConfig {
                socket,
                file,
                size,
                create_file: true,
                kind: BackingKind::Regular,
                readonly: false,
                reconnect: self.reconnect,
                shmem_bit21: self.shmem_bit21,
            });
        };

        let file_type = meta.file_type();
        let kind = if file_type.is_file() {
            BackingKind::Regular
        } else if file_type.is_block_device() {
            BackingKind::Block
        } else {
            return Err(ConfigError::new(
                field("file"),
                format!("{} is not a regular file or block device", file.display()),
            ));
        };
        let probe = open_backing(&file, self.readonly).map_err(|e| {
            ConfigError::new(
                field("file"),
                format!("cannot open {}: {e}", file.display()),
            )
        })?;
        let file_size = match kind {
            BackingKind::Regular => meta.len(),
            BackingKind::Block => sys::block_device_size(probe.as_fd()).map_err(|e| {
                ConfigError::new(field("file"), format!("cannot read device size: {e}"))
            })?,
        };
        let size = match size {
            Some(size) if size > file_size => {
                return Err(ConfigError::new(
                    field("size"),
                    format!(
                        "{} is larger than {} ({}); grow the file or lower size",
                        format_size(size),
                        file.display(),
                        format_size(file_size)
                    ),
                ));
            }
            Some(size) => size,
            None => {
                check_pmem_alignment(file_size).map_err(|r| {
                    ConfigError::new(
                        field("file"),
                        format!("size of {}: {r}; pass size to use a prefix", file.display()),
                    )
                })?;
                file_size
            }
        };
        Ok(PmemConfig {
            socket,
            file,
            size,
            create_file: false,
            kind,
            readonly: self.readonly,
            reconnect: self.reconnect,
            shmem_bit21: self.shmem_bit21,
        })
    }
}

fn check_pmem_alignment(size: u64) -> Result<(), String> {
    if size == 0 {
        return Err("must not be zero".into());
    }
    if !size.is_multiple_of(PMEM_ALIGN) {
        return Err(format!("{} is not a multiple of 2 MiB", format_size(size)));
    }
    Ok(())
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Opens a pmem backing with the access the device needs.
pub fn open_backing(path: &Path, readonly: bool) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(!readonly).open(path)
}

/// The socket's directory must exist, and the path must be free or a stale socket.
fn validate_socket_path(socket: &Path) -> Result<(), String> {
    let parent = parent_dir(socket);
    if !parent.is_dir() {
        return Err(format!("directory {} does not exist", parent.display()));
    }
    match fs::symlink_metadata(socket) {
        Err(_) => Ok(()),
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(socket).is_ok() {
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

/// The `run --config` file: global settings plus one table per device.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DaemonConfig {
    /// `log_level` (error, warn, info, debug, trace).
    pub log_level: Option<String>,
    /// `[[pmem]]` devices.
    pub pmem: Vec<PmemConfig>,
}

const TOP_LEVEL_KEYS: &[&str] = &["log_level", "pmem"];
const PMEM_KEYS: &[&str] = &[
    "socket",
    "file",
    "size",
    "create",
    "readonly",
    "reconnect",
    "shmem_bit21",
];

impl DaemonConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<DaemonConfig, ConfigError> {
        let text = fs::read_to_string(path).map_err(|e| {
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
        let mut pmem = Vec::new();
        if let Some(value) = table.get("pmem") {
            let entries = value
                .as_array()
                .ok_or_else(|| ConfigError::new("pmem", "must be an array of tables ([[pmem]])"))?;
            for (index, entry) in entries.iter().enumerate() {
                let origin = Origin::File {
                    kind: "pmem",
                    index,
                };
                let entry = entry
                    .as_table()
                    .ok_or_else(|| ConfigError::new(format!("pmem[{index}]"), "must be a table"))?;
                pmem.push(parse_pmem(entry, origin)?.validate(origin)?);
            }
        }
        let config = DaemonConfig { log_level, pmem };
        config.check_unique_sockets()?;
        if config.pmem.is_empty() {
            return Err(ConfigError::new(
                "config",
                "defines no device (add a [[pmem]] table)",
            ));
        }
        Ok(config)
    }

    fn check_unique_sockets(&self) -> Result<(), ConfigError> {
        let mut seen = HashSet::new();
        for (index, dev) in self.pmem.iter().enumerate() {
            if !seen.insert(dev.socket.clone()) {
                return Err(ConfigError::new(
                    format!("pmem[{index}].socket"),
                    format!("{} is used by another device", dev.socket.display()),
                ));
            }
        }
        Ok(())
    }
}

fn reject_unknown(
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

fn get_string(value: &toml::Value, field: &str) -> Result<String, ConfigError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ConfigError::new(field, "must be a string"))
}

fn get_bool(table: &toml::Table, key: &str, origin: Origin) -> Result<bool, ConfigError> {
    match table.get(key) {
        None => Ok(false),
        Some(v) => v
            .as_bool()
            .ok_or_else(|| ConfigError::new(origin.field(key), "must be true or false")),
    }
}

fn get_path(
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
fn get_size(table: &toml::Table, key: &str, origin: Origin) -> Result<Option<String>, ConfigError> {
    match table.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(toml::Value::Integer(n)) if *n >= 0 => Ok(Some(n.to_string())),
        Some(_) => Err(ConfigError::new(
            origin.field(key),
            "must be a size such as \"512M\" or a number of bytes",
        )),
    }
}

fn parse_pmem(table: &toml::Table, origin: Origin) -> Result<PmemRequest, ConfigError> {
    reject_unknown(table, PMEM_KEYS, |k| origin.field(k))?;
    Ok(PmemRequest {
        socket: get_path(table, "socket", origin)?,
        file: get_path(table, "file", origin)?,
        size: get_size(table, "size", origin)?,
        create: get_bool(table, "create", origin)?,
        readonly: get_bool(table, "readonly", origin)?,
        reconnect: get_bool(table, "reconnect", origin)?,
        shmem_bit21: get_bool(table, "shmem_bit21", origin)?,
    })
}

impl fmt::Display for BackingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackingKind::Regular => "file",
            BackingKind::Block => "block device",
        })
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
