//! Errors of the FUSE layer: errno values for replies and the ways a request
//! can be malformed.

use std::fmt;

/// A positive Linux errno, as carried (negated) in `fuse_out_header.error`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(i32);

impl Errno {
    /// Wraps a positive errno value; zero or negative values become `EIO`.
    pub const fn new(errno: i32) -> Self {
        if errno > 0 {
            Self(errno)
        } else {
            Self(libc::EIO)
        }
    }
    /// The errno left by the last failed libc call on this thread.
    pub fn last() -> Self {
        Self::new(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        )
    }
    /// The positive errno value.
    pub const fn get(self) -> i32 {
        self.0
    }
    /// `EAGAIN`, as a method called with [`Context::no_wait`](super::Context::no_wait)
    /// answers when serving would wait: the request is then served again where it may.
    pub const WOULD_WAIT: Self = Self(libc::EAGAIN);
    #[allow(missing_docs)]
    pub const EPERM: Self = Self(libc::EPERM);
    #[allow(missing_docs)]
    pub const ENOENT: Self = Self(libc::ENOENT);
    #[allow(missing_docs)]
    pub const EIO: Self = Self(libc::EIO);
    #[allow(missing_docs)]
    pub const EBADF: Self = Self(libc::EBADF);
    #[allow(missing_docs)]
    pub const EACCES: Self = Self(libc::EACCES);
    #[allow(missing_docs)]
    pub const EEXIST: Self = Self(libc::EEXIST);
    #[allow(missing_docs)]
    pub const EXDEV: Self = Self(libc::EXDEV);
    #[allow(missing_docs)]
    pub const ENOTDIR: Self = Self(libc::ENOTDIR);
    #[allow(missing_docs)]
    pub const EISDIR: Self = Self(libc::EISDIR);
    #[allow(missing_docs)]
    pub const EINVAL: Self = Self(libc::EINVAL);
    #[allow(missing_docs)]
    pub const ERANGE: Self = Self(libc::ERANGE);
    #[allow(missing_docs)]
    pub const EROFS: Self = Self(libc::EROFS);
    #[allow(missing_docs)]
    pub const ENOSYS: Self = Self(libc::ENOSYS);
    #[allow(missing_docs)]
    pub const ENOTEMPTY: Self = Self(libc::ENOTEMPTY);
    #[allow(missing_docs)]
    pub const ELOOP: Self = Self(libc::ELOOP);
    #[allow(missing_docs)]
    pub const EOPNOTSUPP: Self = Self(libc::EOPNOTSUPP);
    #[allow(missing_docs)]
    pub const EPROTO: Self = Self(libc::EPROTO);
    #[allow(missing_docs)]
    pub const ENAMETOOLONG: Self = Self(libc::ENAMETOOLONG);
    #[allow(missing_docs)]
    pub const EOVERFLOW: Self = Self(libc::EOVERFLOW);
    #[allow(missing_docs)]
    pub const ENODATA: Self = Self(libc::ENODATA);
    #[allow(missing_docs)]
    pub const ENXIO: Self = Self(libc::ENXIO);
    #[allow(missing_docs)]
    pub const ENOTSUP: Self = Self(libc::ENOTSUP);
    #[allow(missing_docs)]
    pub const ENFILE: Self = Self(libc::ENFILE);
    #[allow(missing_docs)]
    pub const ESTALE: Self = Self(libc::ESTALE);
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Errno({} {})",
            self.0,
            std::io::Error::from_raw_os_error(self.0)
        )
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&std::io::Error::from_raw_os_error(self.0), f)
    }
}

impl std::error::Error for Errno {}

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> Self {
        std::io::Error::from_raw_os_error(e.get())
    }
}

impl From<std::io::Error> for Errno {
    fn from(e: std::io::Error) -> Self {
        // Every io::Error we build comes from an errno; a synthetic one is a bug
        // worth seeing, so it is logged rather than silently turned into EIO.
        match e.raw_os_error() {
            Some(n) => Self::new(n),
            None => {
                log::warn!("io error without errno reaches the FUSE layer: {e}");
                Self::EIO
            }
        }
    }
}

/// Result of a filesystem operation.
pub type FsResult<T> = Result<T, Errno>;

/// Why a request could not be decoded (or may not be served yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Fewer bytes than a `fuse_in_header`.
    #[error("request of {got} bytes is shorter than the 40-byte fuse_in_header")]
    ShortHeader {
        /// Bytes received.
        got: usize,
    },
    /// `fuse_in_header.len` disagrees with the bytes the chain carried.
    #[error("fuse_in_header.len is {header} but the request has {actual} bytes")]
    LengthMismatch {
        /// Length claimed by the header.
        header: u32,
        /// Bytes received.
        actual: usize,
    },
    /// `total_extlen` claims more extension bytes than the body holds.
    #[error("opcode {opcode}: {extlen} bytes of extensions claimed, body has {body}")]
    BadExtensionLength {
        /// Opcode of the request.
        opcode: u32,
        /// Extension bytes claimed (`total_extlen * 8`).
        extlen: usize,
        /// Body bytes present.
        body: usize,
    },
    /// The body is shorter than the opcode's fixed argument struct.
    #[error("opcode {opcode}: body needs {want} bytes, has {got}")]
    ShortBody {
        /// Opcode of the request.
        opcode: u32,
        /// Bytes needed.
        want: usize,
        /// Bytes present.
        got: usize,
    },
    /// A name or value string is not NUL-terminated within the body.
    #[error("opcode {opcode}: string argument without terminating NUL")]
    MissingNul {
        /// Opcode of the request.
        opcode: u32,
    },
    /// A WRITE larger than the `max_write` granted in INIT.
    #[error("WRITE of {size} bytes exceeds max_write {max}")]
    WriteTooLarge {
        /// Bytes the request carries.
        size: u32,
        /// What INIT granted.
        max: u32,
    },
    /// A name is followed by bytes that belong to no argument.
    #[error("opcode {opcode}: {extra} byte(s) after the name's NUL")]
    BytesAfterName {
        /// Opcode of the request.
        opcode: u32,
        /// How many.
        extra: usize,
    },
    /// A count of array entries exceeds what the protocol allows.
    #[error("opcode {opcode}: {count} entries exceed the maximum of {max}")]
    TooManyEntries {
        /// Opcode of the request.
        opcode: u32,
        /// Count claimed.
        count: u64,
        /// Protocol maximum.
        max: u64,
    },
    /// A WRITE whose `size` disagrees with its payload.
    #[error("WRITE claims {size} bytes of data, carries {got}")]
    WriteSizeMismatch {
        /// `fuse_write_in.size`.
        size: u32,
        /// Payload bytes present.
        got: usize,
    },
    /// SETUPMAPPING / REMOVEMAPPING arguments that overflow, are empty or carry unknown flags.
    #[error("bad mapping: moffset {moffset:#x} foffset {foffset:#x} len {len:#x} flags {flags:#x}")]
    BadMapping {
        /// Window offset.
        moffset: u64,
        /// File offset (0 for REMOVEMAPPING).
        foffset: u64,
        /// Length.
        len: u64,
        /// Flags (0 for REMOVEMAPPING).
        flags: u64,
    },
    /// An opcode this server does not know.
    #[error("unknown opcode {0}")]
    UnknownOpcode(u32),
    /// A request other than INIT before INIT succeeded.
    #[error("opcode {0} before FUSE_INIT")]
    NotInitialized(u32),
    /// INIT with a protocol major version other than 7.
    #[error("unsupported FUSE protocol {major}.{minor}")]
    UnsupportedVersion {
        /// Major version offered.
        major: u32,
        /// Minor version offered.
        minor: u32,
    },
}

impl RequestError {
    /// The errno the reply carries. Exhaustive on purpose: a new variant must
    /// choose its errno here.
    pub fn errno(&self) -> Errno {
        match self {
            Self::ShortHeader { .. }
            | Self::LengthMismatch { .. }
            | Self::BadExtensionLength { .. }
            | Self::ShortBody { .. }
            | Self::MissingNul { .. }
            | Self::BytesAfterName { .. }
            | Self::WriteTooLarge { .. }
            | Self::TooManyEntries { .. }
            | Self::WriteSizeMismatch { .. }
            | Self::BadMapping { .. } => Errno::EINVAL,
            Self::UnknownOpcode(_) => Errno::ENOSYS,
            Self::NotInitialized(_) => Errno::EIO,
            Self::UnsupportedVersion { .. } => Errno::EPROTO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping() {
        assert_eq!(RequestError::ShortHeader { got: 3 }.errno(), Errno::EINVAL);
        assert_eq!(
            RequestError::LengthMismatch {
                header: 1,
                actual: 2
            }
            .errno(),
            Errno::EINVAL
        );
        assert_eq!(
            RequestError::BadExtensionLength {
                opcode: 1,
                extlen: 8,
                body: 0
            }
            .errno(),
            Errno::EINVAL
        );
        assert_eq!(
            RequestError::ShortBody {
                opcode: 1,
                want: 8,
                got: 0
            }
            .errno(),
            Errno::EINVAL
        );
        assert_eq!(
            RequestError::MissingNul { opcode: 1 }.errno(),
            Errno::EINVAL
        );
        assert_eq!(
            RequestError::TooManyEntries {
                opcode: 49,
                count: 9,
                max: 8
            }
            .errno(),
            Errno::EINVAL
        );
        assert_eq!(
            RequestError::WriteSizeMismatch { size: 4, got: 3 }.errno(),
            Errno::EINVAL
        );
        assert_eq!(
            RequestError::BadMapping {
                moffset: 0,
                foffset: 0,
                len: 0,
                flags: 0
            }
            .errno(),
            Errno::EINVAL
        );
        assert_eq!(RequestError::UnknownOpcode(999).errno(), Errno::ENOSYS);
        assert_eq!(RequestError::NotInitialized(1).errno(), Errno::EIO);
        assert_eq!(
            RequestError::UnsupportedVersion { major: 8, minor: 0 }.errno(),
            Errno::EPROTO
        );
        assert_eq!(Errno::new(0), Errno::EIO);
        assert_eq!(
            Errno::from(std::io::Error::from_raw_os_error(libc::ENOENT)),
            Errno::ENOENT
        );
    }
}
