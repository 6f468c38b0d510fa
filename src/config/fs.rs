//! The virtio-fs device's settings.

use std::path::PathBuf;

use std::time::Duration;

use super::{
    ConfigError, Origin, SocketGroup, SocketSpec, format_size, get_bool, get_duration, get_path,
    get_size, parse_size, reject_unknown, validate_inherited_fd, validate_socket_group,
    validate_socket_path,
};
use crate::dax::{DEFAULT_CHUNK_SIZE, DEFAULT_WAIT_BUDGET, MAX_CHUNKS, MapExtent};
use crate::fs::config::{DEFAULT_MAX_INODES, DEFAULT_MAX_OPEN_HANDLES};
use crate::fs::{CachePolicy, DaxPolicy, InodeFileHandles};

/// Longest tag the config space holds.
pub const MAX_TAG_LEN: usize = 36;
/// Most request queues a device may have.
pub const MAX_REQUEST_QUEUES: usize = 16;
/// Most request pool workers of one device (`--thread-pool-size`); as many as a queue
/// can hold requests.
pub const MAX_THREAD_POOL_SIZE: usize = 1024;

/// How the daemon confines itself before serving the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Sandbox {
    /// chroot into the shared directory (needs root).
    Chroot,
    /// New pid, mount and network namespaces, then `pivot_root` into the share (needs root).
    Namespace,
    /// No confinement: rely on fd-relative resolution only.
    None,
}

impl std::fmt::Display for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sandbox::Chroot => "chroot",
            Sandbox::Namespace => "namespace",
            Sandbox::None => "none",
        })
    }
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
    /// A listening vhost-user socket inherited from the parent, instead of `socket`.
    pub socket_fd: Option<i32>,
    /// Group to give the created socket file to (mode 0660).
    pub socket_group: Option<String>,
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
    /// DAX window size as written (`"1G"`); absent or 0: no window.
    pub dax_window: Option<String>,
    /// always | inode | never.
    pub dax: Option<String>,
    /// How long a release waits for pins, as written (`"10s"`, `"500ms"`).
    pub pin_wait_budget: Option<String>,
    /// Socket for the JSON control protocol (pins, stats, mappings).
    pub control_socket: Option<PathBuf>,
    /// Also offer protocol bit 21 as SHMEM (alioth before its renumbering).
    pub shmem_bit21: bool,
    /// The frontend maps only whole pages inside a file (QEMU 11.1).
    pub dax_maps_within_file: bool,
    /// Grant `FUSE_HANDLE_KILLPRIV_V2`.
    pub killpriv_v2: bool,
    /// Do not grant READDIRPLUS.
    pub no_readdirplus: bool,
    /// `--thread-pool-size` (see [`FsConfig::thread_pool_size`]); absent: 0.
    pub thread_pool_size: Option<usize>,
    /// never | prefer | mandatory; absent: never.
    pub inode_file_handles: Option<String>,
    /// Most nodes a session may hold; absent: [`DEFAULT_MAX_INODES`].
    pub max_inodes: Option<u64>,
    /// Most handles a session may hold open; absent: [`DEFAULT_MAX_OPEN_HANDLES`].
    pub max_open_handles: Option<u64>,
}

/// The DAX window of a validated fs device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaxConfig {
    /// Window size in bytes, a non-zero multiple of 2 MiB.
    pub window_size: u64,
    /// Which files the guest accesses through the window.
    pub policy: DaxPolicy,
    /// Budget of every wait for pins to drain.
    pub pin_wait_budget: Duration,
    /// How far the frontend maps into a file.
    pub map_extent: MapExtent,
}

/// A validated fs device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsConfig {
    /// vhost-user socket.
    pub socket: SocketSpec,
    /// Group the created socket file is given to (mode 0660); never with an inherited one.
    pub socket_group: Option<SocketGroup>,
    /// Shared directory (exists, is a directory).
    pub shared_dir: PathBuf,
    /// Mount tag, 1 to 36 bytes, served in the device's config space. None: the frontend
    /// supplies the tag itself (QEMU's vhost-user-fs-pci, cloud-hypervisor), and the
    /// device offers no config space.
    pub tag: Option<String>,
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
    /// The DAX window, if the device has one.
    pub dax: Option<DaxConfig>,
    /// The JSON control socket (FUSE counters; pins, mappings and the ledger's counters
    /// with a window), if any.
    pub control_socket: Option<PathBuf>,
    /// Offer SHMEM as protocol bit 21 too (needs a window).
    pub shmem_bit21: bool,
    /// Grant `FUSE_HANDLE_KILLPRIV_V2` (the daemon clears suid/sgid when the guest asks).
    pub killpriv_v2: bool,
    /// Grant READDIRPLUS.
    pub readdirplus: bool,
    /// Worker threads of the device's request pool (`--thread-pool-size`, virtiofsd's
    /// name and meaning): the request queues hand the requests they pop to them, so a
    /// slow request holds up no other. 0 (the default, as virtiofsd's): every request is
    /// served on its queue's thread.
    pub thread_pool_size: usize,
    /// How inodes are held (virtiofsd's `--inode-file-handles`).
    pub inode_file_handles: InodeFileHandles,
    /// Most nodes (root included) a session may hold: past it, ENFILE.
    pub max_inodes: u64,
    /// Most handles a session may hold open: past it, ENFILE.
    pub max_open_handles: u64,
}

impl FsRequest {
    /// Checks every field; creates nothing.
    pub fn validate(&self, origin: Origin) -> Result<FsConfig, ConfigError> {
        let field = |name: &str| origin.field(name);
        let socket = match (&self.socket, self.socket_fd) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    field("socket_fd"),
                    format!("cannot be combined with {}", field("socket")),
                ));
            }
            (None, None) => return Err(ConfigError::new(field("socket"), "is required")),
            (Some(path), None) => {
                validate_socket_path(path).map_err(|r| ConfigError::new(field("socket"), r))?;
                SocketSpec::Path(path.clone())
            }
            (None, Some(fd)) => {
                validate_inherited_fd(fd).map_err(|r| ConfigError::new(field("socket_fd"), r))?;
                SocketSpec::InheritedFd(fd)
            }
        };
        let socket_group = match &self.socket_group {
            None => None,
            Some(_) if self.socket_fd.is_some() => {
                return Err(ConfigError::new(
                    field("socket_group"),
                    format!(
                        "cannot be combined with {} (the inherited socket belongs to whoever created it)",
                        field("socket_fd")
                    ),
                ));
            }
            Some(name) => Some(
                validate_socket_group(name)
                    .map_err(|r| ConfigError::new(field("socket_group"), r))?,
            ),
        };
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
        let tag = self.tag.clone();
        if let Some(tag) = &tag
            && (tag.is_empty() || tag.len() > MAX_TAG_LEN || tag.contains('\0'))
        {
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
        let thread_pool_size = self.thread_pool_size.unwrap_or(0);
        if thread_pool_size > MAX_THREAD_POOL_SIZE {
            return Err(ConfigError::new(
                field("thread_pool_size"),
                format!("must be at most {MAX_THREAD_POOL_SIZE} (got {thread_pool_size})"),
            ));
        }
        let cache = match self.cache.as_deref() {
            None | Some("auto") => CachePolicy::Auto,
            Some("never") => CachePolicy::Never,
            Some("always") => CachePolicy::Always,
            Some("metadata") => CachePolicy::Metadata,
            Some(other) => {
                return Err(ConfigError::new(
                    field("cache"),
                    format!("`{other}` is not one of never, auto, always, metadata"),
                ));
            }
        };
        let uid = crate::sys::fs::geteuid();
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
        if let Some(control) = &self.control_socket {
            validate_socket_path(control)
                .map_err(|r| ConfigError::new(field("control_socket"), r))?;
            if matches!(&socket, SocketSpec::Path(path) if path == control) {
                return Err(ConfigError::new(
                    field("control_socket"),
                    "must differ from the vhost-user socket",
                ));
            }
        }
        let dax = self.validate_dax(origin)?;
        let inode_file_handles = match self.inode_file_handles.as_deref() {
            None => InodeFileHandles::Never,
            Some(text) => InodeFileHandles::parse(text).ok_or_else(|| {
                ConfigError::new(
                    field("inode_file_handles"),
                    format!("`{text}` is not one of {}", InodeFileHandles::NAMES),
                )
            })?,
        };
        if inode_file_handles == InodeFileHandles::Mandatory {
            crate::fs::file_handle::probe_dir(&shared_dir).map_err(|e| {
                ConfigError::new(field("inode_file_handles"), format!("mandatory, but {e}"))
            })?;
        }
        let cap = |name: &str, value: Option<u64>, default: u64| match value {
            Some(0) => Err(ConfigError::new(field(name), "must be at least 1")),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        let max_inodes = cap("max_inodes", self.max_inodes, DEFAULT_MAX_INODES)?;
        let max_open_handles = cap(
            "max_open_handles",
            self.max_open_handles,
            DEFAULT_MAX_OPEN_HANDLES,
        )?;
        Ok(FsConfig {
            inode_file_handles,
            max_inodes,
            max_open_handles,
            control_socket: self.control_socket.clone(),
            socket,
            socket_group,
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
            shmem_bit21: self.shmem_bit21,
            dax,
            killpriv_v2: self.killpriv_v2,
            readdirplus: !self.no_readdirplus,
            thread_pool_size,
        })
    }

    fn validate_dax(&self, origin: Origin) -> Result<Option<DaxConfig>, ConfigError> {
        let field = |name: &str| origin.field(name);
        let window_size = match &self.dax_window {
            None => 0,
            Some(text) => {
                let size =
                    parse_size(text).map_err(|r| ConfigError::new(field("dax_window"), r))?;
                let max = MAX_CHUNKS * DEFAULT_CHUNK_SIZE;
                if !size.is_multiple_of(DEFAULT_CHUNK_SIZE) {
                    return Err(ConfigError::new(
                        field("dax_window"),
                        format!("{} is not a multiple of 2 MiB", format_size(size)),
                    ));
                }
                if size > max {
                    return Err(ConfigError::new(
                        field("dax_window"),
                        format!(
                            "{} is larger than the {} maximum",
                            format_size(size),
                            format_size(max)
                        ),
                    ));
                }
                size
            }
        };
        let policy = match self.dax.as_deref() {
            None => Some(DaxPolicy::Always),
            Some("always") => Some(DaxPolicy::Always),
            Some("inode") => Some(DaxPolicy::Inode),
            Some("never") => None,
            Some(other) => {
                return Err(ConfigError::new(
                    field("dax"),
                    format!("`{other}` is not one of always, inode, never"),
                ));
            }
        };
        let pin_wait_budget = match &self.pin_wait_budget {
            None => DEFAULT_WAIT_BUDGET,
            Some(text) => {
                parse_duration(text).map_err(|r| ConfigError::new(field("pin_wait_budget"), r))?
            }
        };
        if window_size == 0 {
            let needs_window = |name: &str| {
                ConfigError::new(field(name), "needs a DAX window (set dax_window to a size)")
            };
            if self.dax.as_deref().is_some_and(|d| d != "never") {
                return Err(needs_window("dax"));
            }
            if self.pin_wait_budget.is_some() {
                return Err(needs_window("pin_wait_budget"));
            }
            if self.shmem_bit21 {
                return Err(needs_window("shmem_bit21"));
            }
            if self.dax_maps_within_file {
                return Err(needs_window("dax_maps_within_file"));
            }
            return Ok(None);
        }
        let Some(policy) = policy else {
            return Err(ConfigError::new(
                field("dax"),
                "never contradicts dax_window (omit dax_window, or set it to 0, for no DAX)",
            ));
        };
        Ok(Some(DaxConfig {
            window_size,
            policy,
            pin_wait_budget,
            map_extent: if self.dax_maps_within_file {
                MapExtent::WithinFile
            } else {
                MapExtent::Learn
            },
        }))
    }
}

/// Longest wait budget accepted.
const MAX_WAIT_BUDGET: Duration = Duration::from_secs(3600);

/// Parses `"500ms"`, `"10s"`, `"2m"` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as \"500ms\", \"10s\" or \"2m\""))?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (use ms, s or m)"
            ));
        }
    };
    if d > MAX_WAIT_BUDGET {
        return Err(format!("`{text}` is longer than the 1 hour maximum"));
    }
    Ok(d)
}

pub(crate) const FS_KEYS: &[&str] = &[
    "socket",
    "socket_group",
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
    "dax_window",
    "dax",
    "pin_wait_budget",
    "control_socket",
    "shmem_bit21",
    "dax_maps_within_file",
    "thread_pool_size",
    "inode_file_handles",
    "max_inodes",
    "max_open_handles",
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
    let count = |key: &str, what: &str| -> Result<Option<usize>, ConfigError> {
        match table.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_integer()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| ConfigError::new(origin.field(key), format!("must be {what}"))),
        }
    };
    let queues = count("queues", "a positive integer")?;
    let limit = |key: &str| -> Result<Option<u64>, ConfigError> {
        match table.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_integer()
                .and_then(|n| u64::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| ConfigError::new(origin.field(key), "must be a positive integer")),
        }
    };
    Ok(FsRequest {
        socket: get_path(table, "socket", origin)?,
        socket_group: string("socket_group")?,
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
        dax_window: get_size(table, "dax_window", origin)?,
        dax: string("dax")?,
        pin_wait_budget: get_duration(table, "pin_wait_budget", origin)?,
        control_socket: get_path(table, "control_socket", origin)?,
        shmem_bit21: get_bool(table, "shmem_bit21", origin)?,
        dax_maps_within_file: get_bool(table, "dax_maps_within_file", origin)?,
        thread_pool_size: count("thread_pool_size", "an integer of 0 or more")?,
        inode_file_handles: string("inode_file_handles")?,
        max_inodes: limit("max_inodes")?,
        max_open_handles: limit("max_open_handles")?,
        ..FsRequest::default()
    })
}
