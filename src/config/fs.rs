//! The virtio-fs device's settings.

use std::path::PathBuf;

use super::{ConfigError, Origin, get_bool, get_path, reject_unknown, validate_socket_path};
use crate::fs::CachePolicy;

/// Longest tag the config space holds.
pub const MAX_TAG_LEN: usize = 36;
/// Most request queues a device may have.
pub const MAX_REQUEST_QUEUES: usize = 16;

/// How the daemon confines itself before serving the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Sandbox {
    /// chroot into the shared directory (needs root).
    Chroot,
    /// A private mount namespace, then chroot (needs root).
    Namespace,
    /// No confinement: rely on fd-relative resolution only.
    None,
}

impl Sandbox {
    /// The default: chroot when running as root, none otherwise.
    pub fn default_for_uid(uid: u32) -> Self {
        if uid == 0 {
            Sandbox::Chroot
        } else {
            Sandbox::None
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "chroot" => Some(Sandbox::Chroot),
            "namespace" => Some(Sandbox::Namespace),
            "none" => Some(Sandbox::None),
            _ => None,
        }
    }
}

/// What the user asked for one fs device, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsRequest {
    /// vhost-user socket.
    pub socket: Option<PathBuf>,
    /// Directory to share.
    pub shared_dir: Option<PathBuf>,
    /// Mount tag.
    pub tag: Option<String>,
    /// Number of request queues.
    pub queues: Option<usize>,
    /// never | auto | always.
    pub cache: Option<String>,
    /// Refuse every modification.
    pub readonly: bool,
    /// Serve extended attributes.
    pub xattr: bool,
    /// Grant the writeback cache.
    pub writeback: bool,
    /// Allow the guest to create device nodes.
    pub allow_devices: bool,
    /// chroot | namespace | none.
    pub sandbox: Option<String>,
    /// Keep serving after a disconnect.
    pub reconnect: bool,
}

/// A validated fs device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsConfig {
    /// vhost-user socket.
    pub socket: PathBuf,
    /// Shared directory (exists, is a directory).
    pub shared_dir: PathBuf,
    /// Mount tag, 1 to 36 bytes.
    pub tag: String,
    /// Request queues (queue 0 is hiprio, then these).
    pub queues: usize,
    /// Guest caching policy.
    pub cache: CachePolicy,
    /// Read-only export.
    pub readonly: bool,
    /// Extended attributes on.
    pub xattr: bool,
    /// Writeback cache on.
    pub writeback: bool,
    /// Device nodes allowed.
    pub allow_devices: bool,
    /// Confinement.
    pub sandbox: Sandbox,
    /// Keep serving after a disconnect.
    pub reconnect: bool,
}

impl FsRequest {
    /// Checks every field; creates nothing.
    pub fn validate(&self, origin: Origin) -> Result<FsConfig, ConfigError> {
        let field = |name: &str| origin.field(name);
        let socket = self
            .socket
            .clone()
            .ok_or_else(|| ConfigError::new(field("socket"), "is required"))?;
        validate_socket_path(&socket).map_err(|r| ConfigError::new(field("socket"), r))?;
        let shared_dir = self
            .shared_dir
            .clone()
            .ok_or_else(|| ConfigError::new(field("shared_dir"), "is required"))?;
        if !shared_dir.is_dir() {
            return Err(ConfigError::new(
                field("shared_dir"),
                format!("{} is not an existing directory", shared_dir.display()),
            ));
        }
        let tag = self.tag.clone().unwrap_or_else(|| "vhost-dax".into());
        if tag.is_empty() || tag.len() > MAX_TAG_LEN || tag.contains('\0') {
            return Err(ConfigError::new(
                field("tag"),
                format!(
                    "must be 1 to {MAX_TAG_LEN} bytes without NUL (got {} bytes)",
                    tag.len()
                ),
            ));
        }
        let queues = self.queues.unwrap_or(1);
        if queues == 0 || queues > MAX_REQUEST_QUEUES {
            return Err(ConfigError::new(
                field("queues"),
                format!("must be between 1 and {MAX_REQUEST_QUEUES} (got {queues})"),
            ));
        }
        let cache = match self.cache.as_deref() {
            None | Some("auto") => CachePolicy::Auto,
            Some("never") => CachePolicy::Never,
            Some("always") => CachePolicy::Always,
            Some(other) => {
                return Err(ConfigError::new(
                    field("cache"),
                    format!("`{other}` is not one of never, auto, always"),
                ));
            }
        };
        let uid = crate::sys::effective_uid();
        let sandbox = match self.sandbox.as_deref() {
            None => Sandbox::default_for_uid(uid),
            Some(text) => Sandbox::parse(text).ok_or_else(|| {
                ConfigError::new(
                    field("sandbox"),
                    format!("`{text}` is not one of chroot, namespace, none"),
                )
            })?,
        };
        if sandbox != Sandbox::None && uid != 0 {
            return Err(ConfigError::new(
                field("sandbox"),
                "chroot and namespace need root (use none)",
            ));
        }
        Ok(FsConfig {
            socket,
            shared_dir,
            tag,
            queues,
            cache,
            readonly: self.readonly,
            xattr: self.xattr,
            writeback: self.writeback,
            allow_devices: self.allow_devices,
            sandbox,
            reconnect: self.reconnect,
        })
    }
}

pub(crate) const FS_KEYS: &[&str] = &[
    "socket",
    "shared_dir",
    "tag",
    "queues",
    "cache",
    "readonly",
    "xattr",
    "writeback",
    "allow_devices",
    "sandbox",
    "reconnect",
];

pub(crate) fn parse_fs(table: &toml::Table, origin: Origin) -> Result<FsRequest, ConfigError> {
    reject_unknown(table, FS_KEYS, |k| origin.field(k))?;
    let string = |key: &str| -> Result<Option<String>, ConfigError> {
        match table.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(|s| Some(s.to_owned()))
                .ok_or_else(|| ConfigError::new(origin.field(key), "must be a string")),
        }
    };
    let queues = match table.get("queues") {
        None => None,
        Some(v) => Some(
            v.as_integer()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    ConfigError::new(origin.field("queues"), "must be a positive integer")
                })?,
        ),
    };
    Ok(FsRequest {
        socket: get_path(table, "socket", origin)?,
        shared_dir: get_path(table, "shared_dir", origin)?,
        tag: string("tag")?,
        queues,
        cache: string("cache")?,
        readonly: get_bool(table, "readonly", origin)?,
        xattr: get_bool(table, "xattr", origin)?,
        writeback: get_bool(table, "writeback", origin)?,
        allow_devices: get_bool(table, "allow_devices", origin)?,
        sandbox: string("sandbox")?,
        reconnect: get_bool(table, "reconnect", origin)?,
    })
}
