//! The pmem device's settings.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use super::{
    ConfigError, Origin, SocketGroup, format_size, get_bool, get_path, get_size, get_string,
    parent_dir, parse_size, reject_unknown, validate_socket_group, validate_socket_path,
};
use crate::sys;

/// Alignment every pmem size must have (the guest's memory hot-plug granularity).
pub const PMEM_ALIGN: u64 = 2 << 20;

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
    /// Group to give the socket file to (mode 0660).
    pub socket_group: Option<String>,
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
    /// Socket for the JSON control protocol (flush counters, DMA pins on the region).
    pub control_socket: Option<PathBuf>,
}

/// A validated pmem device: everything checked, nothing created yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmemConfig {
    /// vhost-user socket path (its directory exists, nothing live listens on it).
    pub socket: PathBuf,
    /// Group the socket file is given to (mode 0660).
    pub socket_group: Option<SocketGroup>,
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
    /// The JSON control socket, if any.
    pub control_socket: Option<PathBuf>,
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
        let socket_group = self
            .socket_group
            .as_deref()
            .map(validate_socket_group)
            .transpose()
            .map_err(|reason| ConfigError::new(field("socket_group"), reason))?;
        let file = self
            .file
            .clone()
            .ok_or_else(|| ConfigError::new(field("file"), "is required"))?;
        if let Some(control) = &self.control_socket {
            validate_socket_path(control)
                .map_err(|r| ConfigError::new(field("control_socket"), r))?;
            if *control == socket {
                return Err(ConfigError::new(
                    field("control_socket"),
                    "must differ from the vhost-user socket",
                ));
            }
        }
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
                socket_group,
                file,
                size,
                create_file: true,
                kind: BackingKind::Regular,
                readonly: false,
                reconnect: self.reconnect,
                shmem_bit21: self.shmem_bit21,
                control_socket: self.control_socket.clone(),
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
            socket_group,
            file,
            size,
            create_file: false,
            kind,
            readonly: self.readonly,
            reconnect: self.reconnect,
            shmem_bit21: self.shmem_bit21,
            control_socket: self.control_socket.clone(),
        })
    }
}

pub(crate) fn check_pmem_alignment(size: u64) -> Result<(), String> {
    if size == 0 {
        return Err("must not be zero".into());
    }
    if !size.is_multiple_of(PMEM_ALIGN) {
        return Err(format!("{} is not a multiple of 2 MiB", format_size(size)));
    }
    Ok(())
}

/// Opens a pmem backing with the access the device needs.
pub fn open_backing(path: &Path, readonly: bool) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(!readonly).open(path)
}

pub(crate) const PMEM_KEYS: &[&str] = &[
    "socket",
    "socket_group",
    "file",
    "size",
    "create",
    "readonly",
    "reconnect",
    "shmem_bit21",
    "control_socket",
];

pub(crate) fn parse_pmem(table: &toml::Table, origin: Origin) -> Result<PmemRequest, ConfigError> {
    reject_unknown(table, PMEM_KEYS, |k| origin.field(k))?;
    Ok(PmemRequest {
        socket: get_path(table, "socket", origin)?,
        socket_group: table
            .get("socket_group")
            .map(|v| get_string(v, &origin.field("socket_group")))
            .transpose()?,
        file: get_path(table, "file", origin)?,
        size: get_size(table, "size", origin)?,
        create: get_bool(table, "create", origin)?,
        readonly: get_bool(table, "readonly", origin)?,
        reconnect: get_bool(table, "reconnect", origin)?,
        shmem_bit21: get_bool(table, "shmem_bit21", origin)?,
        control_socket: get_path(table, "control_socket", origin)?,
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
