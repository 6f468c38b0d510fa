//! Options of the passthrough filesystem.

use std::path::PathBuf;
use std::time::Duration;

use crate::fuse::abi::fopen;

/// How much the guest may cache (virtiofsd's `--cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CachePolicy {
    /// No caching: zero timeouts, files opened with `FOPEN_DIRECT_IO`.
    Never,
    /// Short (1 s) timeouts; page cache kept per open as the kernel decides.
    #[default]
    Auto,
    /// Long (1 day) timeouts; `FOPEN_KEEP_CACHE` on files, `FOPEN_CACHE_DIR` on directories.
    Always,
    /// Metadata only (virtiofsd's `metadata`): long (1 day) timeouts for entries and
    /// attributes, files opened with `FOPEN_DIRECT_IO` (no data in the guest's page
    /// cache), directories with `FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE`.
    Metadata,
}

impl std::fmt::Display for CachePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Never => "never",
            Self::Auto => "auto",
            Self::Always => "always",
            Self::Metadata => "metadata",
        })
    }
}

impl CachePolicy {
    /// Entry and attribute timeout.
    pub fn timeout(self) -> Duration {
        match self {
            Self::Never => Duration::ZERO,
            Self::Auto => Duration::from_secs(1),
            Self::Always | Self::Metadata => Duration::from_secs(86400),
        }
    }

    /// `FOPEN_*` bits for an opened regular file.
    pub fn file_open_flags(self) -> u32 {
        match self {
            Self::Never | Self::Metadata => fopen::DIRECT_IO,
            Self::Auto => 0,
            Self::Always => fopen::KEEP_CACHE,
        }
    }

    /// `FOPEN_*` bits for an opened directory.
    pub fn dir_open_flags(self) -> u32 {
        match self {
            Self::Never => fopen::DIRECT_IO,
            Self::Auto => 0,
            Self::Always => fopen::CACHE_DIR,
            Self::Metadata => fopen::CACHE_DIR | fopen::KEEP_CACHE,
        }
    }
}

/// How inodes the guest knows are held (virtiofsd's `--inode-file-handles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InodeFileHandles {
    /// Every inode holds an `O_PATH` descriptor (one open file per known inode).
    #[default]
    Never,
    /// Inodes are held by file handle where the filesystem exports them, by `O_PATH`
    /// descriptor where it does not (logged once per mount); if handles cannot be opened
    /// at all (no `CAP_DAC_READ_SEARCH`), by descriptor throughout (logged at start).
    Prefer,
    /// Every inode is held by file handle: the start fails when handles cannot be
    /// opened, and a LOOKUP of a file on a filesystem without them fails (`EOPNOTSUPP`).
    Mandatory,
}

impl InodeFileHandles {
    /// The names on the command line and in config files.
    pub const NAMES: &'static str = "never, prefer, mandatory";

    /// Parses `never`, `prefer` or `mandatory` (virtiofsd's `fallback` is `prefer`).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "never" => Some(Self::Never),
            "prefer" | "fallback" => Some(Self::Prefer),
            "mandatory" => Some(Self::Mandatory),
            _ => None,
        }
    }

    /// True when this mode opens inodes by handle, which needs `CAP_DAC_READ_SEARCH` for
    /// as long as the device serves (`open_by_handle_at(2)`): a daemon that drops
    /// capabilities after setup must keep it.
    pub fn needs_dac_read_search(self) -> bool {
        self != Self::Never
    }
}

impl std::fmt::Display for InodeFileHandles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Never => "never",
            Self::Prefer => "prefer",
            Self::Mandatory => "mandatory",
        })
    }
}

/// Default cap on the nodes of one session (`--max-inodes`).
pub const DEFAULT_MAX_INODES: u64 = 1_000_000;
/// Default cap on the open handles of one session (`--max-open-handles`).
pub const DEFAULT_MAX_OPEN_HANDLES: u64 = 1_000_000;

/// Configuration of a [`super::PassthroughFs`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PassthroughConfig {
    /// Directory shared with the guest (opened once, by path, at start).
    pub root: PathBuf,
    /// Guest caching policy.
    pub cache: CachePolicy,
    /// Refuse every modifying operation with `EROFS`.
    pub readonly: bool,
    /// Serve extended attributes (off: xattr requests get `ENOSYS`, which the
    /// guest turns into `EOPNOTSUPP` for the connection).
    pub xattr: bool,
    /// Grant `FUSE_WRITEBACK_CACHE` (opens O_WRONLY as O_RDWR and drops O_APPEND).
    pub writeback: bool,
    /// Grant `FUSE_HANDLE_KILLPRIV_V2`: the daemon clears suid/sgid on write,
    /// truncate and open(O_TRUNC) when the guest asks it to.
    pub killpriv_v2: bool,
    /// Let the guest create character and block device nodes.
    pub allow_device_nodes: bool,
    /// Grant `FUSE_DO_READDIRPLUS` / `FUSE_READDIRPLUS_AUTO`.
    pub readdirplus: bool,
    /// How inodes are held: `O_PATH` descriptors or file handles.
    pub inode_file_handles: InodeFileHandles,
    /// Most nodes (root included) a session may know: a LOOKUP, CREATE, MKNOD, MKDIR,
    /// SYMLINK, LINK or TMPFILE that would add one more gets `ENFILE`.
    pub max_inodes: u64,
    /// Most handles (OPEN, OPENDIR, CREATE, TMPFILE) a session may hold open at once: one
    /// more gets `ENFILE`.
    pub max_open_handles: u64,
}

impl PassthroughConfig {
    /// Defaults for sharing `root`: cache auto, read-write, xattrs on,
    /// writeback and killpriv_v2 off, no device nodes, readdirplus on, inodes held by
    /// `O_PATH` descriptor, at most [`DEFAULT_MAX_INODES`] nodes and
    /// [`DEFAULT_MAX_OPEN_HANDLES`] open handles.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            cache: CachePolicy::Auto,
            readonly: false,
            xattr: true,
            writeback: false,
            killpriv_v2: false,
            allow_device_nodes: false,
            readdirplus: true,
            inode_file_handles: InodeFileHandles::Never,
            max_inodes: DEFAULT_MAX_INODES,
            max_open_handles: DEFAULT_MAX_OPEN_HANDLES,
        }
    }
}
