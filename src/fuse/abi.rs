//! FUSE wire ABI: opcodes, flag bits and the fixed-size structs of
//! `<linux/fuse.h>` (protocol 7.38), with safe native-endian (de)serialisation.
//!
//! Every struct here is declared through the private `wire!` macro, which derives its size,
//! a decoder and an encoder from the field list, so layout and codec cannot
//! drift apart. Sizes are checked against the C header at compile time.

/// Major protocol version spoken by this server.
pub const KERNEL_VERSION: u32 = 7;
/// Highest minor version spoken by this server (fuse.h shipped with Linux 6.1).
pub const KERNEL_MINOR_VERSION: u32 = 38;
/// Oldest minor version accepted (what virtiofsd also requires).
pub const MIN_KERNEL_MINOR_VERSION: u32 = 27;
/// Node id of the root directory.
pub const ROOT_ID: u64 = 1;

/// Page size the guest uses to size per-request arrays (x86-64 / aarch64 4 KiB kernels).
pub const GUEST_PAGE_SIZE: usize = 4096;
/// `FUSE_REMOVEMAPPING_MAX_ENTRY`: `PAGE_SIZE / sizeof(fuse_removemapping_one)`.
pub const REMOVEMAPPING_MAX_ENTRY: usize = GUEST_PAGE_SIZE / RemovemappingOne::SIZE;
/// Largest BATCH_FORGET count accepted: more than fits in the biggest request we take.
pub const MAX_BATCH_FORGET: usize = MAX_BUFFER_SIZE / ForgetOne::SIZE;
/// Pages per request granted in INIT (`max_pages`).
pub const MAX_PAGES: u16 = 256;
/// Largest READ/WRITE payload granted in INIT (`max_write`), 1 MiB.
pub const MAX_BUFFER_SIZE: usize = MAX_PAGES as usize * GUEST_PAGE_SIZE;
/// [`MAX_BUFFER_SIZE`] as INIT's `u32` `max_write` field carries it.
pub const MAX_WRITE: u32 = 1 << 20;
const _: () = assert!(MAX_WRITE as usize == MAX_BUFFER_SIZE);

/// A fixed-size value that appears on the FUSE wire (native endian).
pub trait Wire: Sized {
    /// Encoded size in bytes.
    const SIZE: usize;
    /// Decodes from the first `SIZE` bytes of `b`; missing bytes read as zero.
    /// Callers check `b.len() >= SIZE` first (see [`Wire::read`]).
    fn get(b: &[u8]) -> Self;
    /// Appends the encoding to `out`.
    fn put(&self, out: &mut Vec<u8>);
    /// Decodes from the front of `b`, or `None` if `b` is too short.
    fn read(b: &[u8]) -> Option<Self> {
        (b.len() >= Self::SIZE).then(|| Self::get(b))
    }
    /// Encodes into a fresh vector.
    fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::SIZE);
        self.put(&mut v);
        v
    }
}

macro_rules! prim_wire {
    ($($t:ty),*) => {$(
        impl Wire for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn get(b: &[u8]) -> Self {
                b.first_chunk::<{ std::mem::size_of::<$t>() }>()
                    .map(|c| <$t>::from_ne_bytes(*c))
                    .unwrap_or(0)
            }
            fn put(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_ne_bytes());
            }
        }
    )*};
}
prim_wire!(u16, u32, u64, i32, i64);

impl<const N: usize> Wire for [u8; N] {
    const SIZE: usize = N;
    fn get(b: &[u8]) -> Self {
        b.first_chunk::<N>().copied().unwrap_or([0; N])
    }
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

// Every struct must open with a doc line (the `#[doc]` the pattern asks for) naming its C
// struct. Its fields are left undocumented on purpose: they mirror that struct of
// `include/uapi/linux/fuse.h` field for field, same names, widths and order (the size
// assertion below checks the total), so the header is their documentation.
macro_rules! wire {
    (#[doc = $doc:literal] $(#[$m:meta])* pub struct $name:ident { $( $(#[$fm:meta])* pub $f:ident : $t:ty ),* $(,)? } = $size:expr;) => {
        #[doc = $doc]
        $(#[$m])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub struct $name { $( $(#[$fm])* pub $f: $t ),* }
        impl Wire for $name {
            const SIZE: usize = 0 $( + <$t as Wire>::SIZE )*;
            fn get(b: &[u8]) -> Self {
                let mut off = 0usize;
                $(
                    let $f = <$t as Wire>::get(b.get(off..).unwrap_or(&[]));
                    off += <$t as Wire>::SIZE;
                )*
                let _ = off;
                Self { $($f),* }
            }
            fn put(&self, out: &mut Vec<u8>) {
                $( Wire::put(&self.$f, out); )*
            }
        }
        const _: () = assert!(<$name as Wire>::SIZE == $size, "wire size differs from fuse.h");
    };
}

wire! {
    /// `fuse_in_header`.
    pub struct InHeader {
        pub len: u32, pub opcode: u32, pub unique: u64, pub nodeid: u64,
        pub uid: u32, pub gid: u32, pub pid: u32, pub total_extlen: u16, pub padding: u16,
    } = 40;
}
wire! {
    /// `fuse_out_header`.
    pub struct OutHeader { pub len: u32, pub error: i32, pub unique: u64 } = 16;
}
wire! {
    /// `fuse_attr`.
    pub struct Attr {
        pub ino: u64, pub size: u64, pub blocks: u64, pub atime: u64, pub mtime: u64, pub ctime: u64,
        pub atimensec: u32, pub mtimensec: u32, pub ctimensec: u32, pub mode: u32, pub nlink: u32,
        pub uid: u32, pub gid: u32, pub rdev: u32, pub blksize: u32, pub flags: u32,
    } = 88;
}
wire! {
    /// `fuse_entry_out`.
    pub struct EntryOut {
        pub nodeid: u64, pub generation: u64, pub entry_valid: u64, pub attr_valid: u64,
        pub entry_valid_nsec: u32, pub attr_valid_nsec: u32, pub attr: Attr,
    } = 128;
}
wire! {
    /// `fuse_attr_out`.
    pub struct AttrOut { pub attr_valid: u64, pub attr_valid_nsec: u32, pub dummy: u32, pub attr: Attr } = 104;
}
wire! {
    /// `fuse_kstatfs` inside `fuse_statfs_out`.
    pub struct Kstatfs {
        pub blocks: u64, pub bfree: u64, pub bavail: u64, pub files: u64, pub ffree: u64,
        pub bsize: u32, pub namelen: u32, pub frsize: u32, pub padding: u32, pub spare: [u8; 24],
    } = 80;
}
wire! {
    /// The leading words of `fuse_init_in` every protocol minor sends; 7.36+
    /// kernels follow them with `flags2` and reserved words (64 bytes total).
    pub struct InitIn { pub major: u32, pub minor: u32, pub max_readahead: u32, pub flags: u32 } = 16;
}
wire! {
    /// `fuse_init_out`.
    pub struct InitOut {
        pub major: u32, pub minor: u32, pub max_readahead: u32, pub flags: u32,
        pub max_background: u16, pub congestion_threshold: u16, pub max_write: u32, pub time_gran: u32,
        pub max_pages: u16, pub map_alignment: u16, pub flags2: u32, pub unused: [u8; 28],
    } = 64;
}
wire! {
    /// `fuse_forget_in`.
    pub struct ForgetIn { pub nlookup: u64 } = 8;
}
wire! {
    /// `fuse_forget_one`.
    pub struct ForgetOne { pub nodeid: u64, pub nlookup: u64 } = 16;
}
wire! {
    /// `fuse_batch_forget_in`.
    pub struct BatchForgetIn { pub count: u32, pub dummy: u32 } = 8;
}
wire! {
    /// `fuse_getattr_in`.
    pub struct GetattrIn { pub getattr_flags: u32, pub dummy: u32, pub fh: u64 } = 16;
}
wire! {
    /// `fuse_setattr_in`.
    pub struct SetattrIn {
        pub valid: u32, pub padding: u32, pub fh: u64, pub size: u64, pub lock_owner: u64,
        pub atime: u64, pub mtime: u64, pub ctime: u64, pub atimensec: u32, pub mtimensec: u32,
        pub ctimensec: u32, pub mode: u32, pub unused4: u32, pub uid: u32, pub gid: u32, pub unused5: u32,
    } = 88;
}
wire! {
    /// `fuse_mknod_in`.
    pub struct MknodIn { pub mode: u32, pub rdev: u32, pub umask: u32, pub padding: u32 } = 16;
}
wire! {
    /// `fuse_mkdir_in`.
    pub struct MkdirIn { pub mode: u32, pub umask: u32 } = 8;
}
wire! {
    /// `fuse_rename_in`.
    pub struct RenameIn { pub newdir: u64 } = 8;
}
wire! {
    /// `fuse_rename2_in`.
    pub struct Rename2In { pub newdir: u64, pub flags: u32, pub padding: u32 } = 16;
}
wire! {
    /// `fuse_link_in`.
    pub struct LinkIn { pub oldnodeid: u64 } = 8;
}
wire! {
    /// `fuse_open_in`.
    pub struct OpenIn { pub flags: u32, pub open_flags: u32 } = 8;
}
wire! {
    /// `fuse_create_in`.
    pub struct CreateIn { pub flags: u32, pub mode: u32, pub umask: u32, pub open_flags: u32 } = 16;
}
wire! {
    /// `fuse_open_out`.
    pub struct OpenOut { pub fh: u64, pub open_flags: u32, pub padding: u32 } = 16;
}
wire! {
    /// `fuse_release_in`.
    pub struct ReleaseIn { pub fh: u64, pub flags: u32, pub release_flags: u32, pub lock_owner: u64 } = 24;
}
wire! {
    /// `fuse_flush_in`.
    pub struct FlushIn { pub fh: u64, pub unused: u32, pub padding: u32, pub lock_owner: u64 } = 24;
}
wire! {
    /// `fuse_read_in` (also READDIR / READDIRPLUS).
    pub struct ReadIn {
        pub fh: u64, pub offset: u64, pub size: u32, pub read_flags: u32, pub lock_owner: u64,
        pub flags: u32, pub padding: u32,
    } = 40;
}
wire! {
    /// `fuse_write_in`.
    pub struct WriteIn {
        pub fh: u64, pub offset: u64, pub size: u32, pub write_flags: u32, pub lock_owner: u64,
        pub flags: u32, pub padding: u32,
    } = 40;
}
wire! {
    /// `fuse_write_out`.
    pub struct WriteOut { pub size: u32, pub padding: u32 } = 8;
}
wire! {
    /// `fuse_fsync_in`.
    pub struct FsyncIn { pub fh: u64, pub fsync_flags: u32, pub padding: u32 } = 16;
}
wire! {
    /// `fuse_setxattr_in` (with `FUSE_SETXATTR_EXT`, 7.33+).
    pub struct SetxattrIn { pub size: u32, pub flags: u32, pub setxattr_flags: u32, pub padding: u32 } = 16;
}
wire! {
    /// `fuse_setxattr_in` without `FUSE_SETXATTR_EXT` (`FUSE_COMPAT_SETXATTR_IN_SIZE`).
    pub struct SetxattrInCompat { pub size: u32, pub flags: u32 } = 8;
}
wire! {
    /// `fuse_getxattr_in` (also LISTXATTR).
    pub struct GetxattrIn { pub size: u32, pub padding: u32 } = 8;
}
wire! {
    /// `fuse_getxattr_out`.
    pub struct GetxattrOut { pub size: u32, pub padding: u32 } = 8;
}
wire! {
    /// `fuse_access_in`.
    pub struct AccessIn { pub mask: u32, pub padding: u32 } = 8;
}
wire! {
    /// `fuse_interrupt_in`.
    pub struct InterruptIn { pub unique: u64 } = 8;
}
wire! {
    /// `fuse_fallocate_in`.
    pub struct FallocateIn { pub fh: u64, pub offset: u64, pub length: u64, pub mode: u32, pub padding: u32 } = 32;
}
wire! {
    /// `fuse_lseek_in`.
    pub struct LseekIn { pub fh: u64, pub offset: u64, pub whence: u32, pub padding: u32 } = 24;
}
wire! {
    /// `fuse_lseek_out`.
    pub struct LseekOut { pub offset: u64 } = 8;
}
wire! {
    /// `fuse_copy_file_range_in`.
    pub struct CopyFileRangeIn {
        pub fh_in: u64, pub off_in: u64, pub nodeid_out: u64, pub fh_out: u64, pub off_out: u64,
        pub len: u64, pub flags: u64,
    } = 56;
}
wire! {
    /// `fuse_file_lock`.
    pub struct FileLock { pub start: u64, pub end: u64, pub typ: u32, pub pid: u32 } = 24;
}
wire! {
    /// `fuse_lk_in`.
    pub struct LkIn { pub fh: u64, pub owner: u64, pub lk: FileLock, pub lk_flags: u32, pub padding: u32 } = 48;
}
wire! {
    /// `fuse_syncfs_in`.
    pub struct SyncfsIn { pub padding: u64 } = 8;
}
wire! {
    /// `fuse_setupmapping_in`.
    pub struct SetupmappingIn { pub fh: u64, pub foffset: u64, pub len: u64, pub flags: u64, pub moffset: u64 } = 40;
}
wire! {
    /// `fuse_removemapping_in`.
    pub struct RemovemappingIn { pub count: u32 } = 4;
}
wire! {
    /// `fuse_removemapping_one`.
    pub struct RemovemappingOne { pub moffset: u64, pub len: u64 } = 16;
}
wire! {
    /// `fuse_dirent` header (name follows, padded to 8 bytes).
    pub struct Dirent { pub ino: u64, pub off: u64, pub namelen: u32, pub typ: u32 } = 24;
}

/// FUSE opcodes (`enum fuse_opcode`).
#[allow(missing_docs)]
pub mod opcode {
    pub const LOOKUP: u32 = 1;
    pub const FORGET: u32 = 2;
    pub const GETATTR: u32 = 3;
    pub const SETATTR: u32 = 4;
    pub const READLINK: u32 = 5;
    pub const SYMLINK: u32 = 6;
    pub const MKNOD: u32 = 8;
    pub const MKDIR: u32 = 9;
    pub const UNLINK: u32 = 10;
    pub const RMDIR: u32 = 11;
    pub const RENAME: u32 = 12;
    pub const LINK: u32 = 13;
    pub const OPEN: u32 = 14;
    pub const READ: u32 = 15;
    pub const WRITE: u32 = 16;
    pub const STATFS: u32 = 17;
    pub const RELEASE: u32 = 18;
    pub const FSYNC: u32 = 20;
    pub const SETXATTR: u32 = 21;
    pub const GETXATTR: u32 = 22;
    pub const LISTXATTR: u32 = 23;
    pub const REMOVEXATTR: u32 = 24;
    pub const FLUSH: u32 = 25;
    pub const INIT: u32 = 26;
    pub const OPENDIR: u32 = 27;
    pub const READDIR: u32 = 28;
    pub const RELEASEDIR: u32 = 29;
    pub const FSYNCDIR: u32 = 30;
    pub const GETLK: u32 = 31;
    pub const SETLK: u32 = 32;
    pub const SETLKW: u32 = 33;
    pub const ACCESS: u32 = 34;
    pub const CREATE: u32 = 35;
    pub const INTERRUPT: u32 = 36;
    pub const BMAP: u32 = 37;
    pub const DESTROY: u32 = 38;
    pub const IOCTL: u32 = 39;
    pub const POLL: u32 = 40;
    pub const NOTIFY_REPLY: u32 = 41;
    pub const BATCH_FORGET: u32 = 42;
    pub const FALLOCATE: u32 = 43;
    pub const READDIRPLUS: u32 = 44;
    pub const RENAME2: u32 = 45;
    pub const LSEEK: u32 = 46;
    pub const COPY_FILE_RANGE: u32 = 47;
    pub const SETUPMAPPING: u32 = 48;
    pub const REMOVEMAPPING: u32 = 49;
    pub const SYNCFS: u32 = 50;
    pub const TMPFILE: u32 = 51;
    pub const STATX: u32 = 52;
}

/// INIT flags (`flags | flags2 << 32`).
#[allow(missing_docs)]
pub mod init_flags {
    pub const ASYNC_READ: u64 = 1 << 0;
    pub const POSIX_LOCKS: u64 = 1 << 1;
    pub const ATOMIC_O_TRUNC: u64 = 1 << 3;
    pub const EXPORT_SUPPORT: u64 = 1 << 4;
    pub const BIG_WRITES: u64 = 1 << 5;
    pub const DONT_MASK: u64 = 1 << 6;
    pub const FLOCK_LOCKS: u64 = 1 << 10;
    pub const AUTO_INVAL_DATA: u64 = 1 << 12;
    pub const DO_READDIRPLUS: u64 = 1 << 13;
    pub const READDIRPLUS_AUTO: u64 = 1 << 14;
    pub const ASYNC_DIO: u64 = 1 << 15;
    pub const WRITEBACK_CACHE: u64 = 1 << 16;
    pub const PARALLEL_DIROPS: u64 = 1 << 18;
    pub const HANDLE_KILLPRIV: u64 = 1 << 19;
    pub const POSIX_ACL: u64 = 1 << 20;
    pub const MAX_PAGES: u64 = 1 << 22;
    pub const CACHE_SYMLINKS: u64 = 1 << 23;
    pub const MAP_ALIGNMENT: u64 = 1 << 26;
    pub const SUBMOUNTS: u64 = 1 << 27;
    pub const HANDLE_KILLPRIV_V2: u64 = 1 << 28;
    pub const SETXATTR_EXT: u64 = 1 << 29;
    pub const INIT_EXT: u64 = 1 << 30;
    pub const SECURITY_CTX: u64 = 1 << 32;
    pub const HAS_INODE_DAX: u64 = 1 << 33;
    pub const CREATE_SUPP_GROUP: u64 = 1 << 34;
}

/// Request extension types (`fuse_ext_header.type`).
#[allow(missing_docs)]
pub mod ext_type {
    /// `FUSE_EXT_GROUPS`: `fuse_supp_groups { u32 nr_groups; u32 groups[]; }`.
    pub const GROUPS: u32 = 32;
}

/// `fuse_setattr_in.valid` bits.
#[allow(missing_docs)]
pub mod fattr {
    pub const MODE: u32 = 1 << 0;
    pub const UID: u32 = 1 << 1;
    pub const GID: u32 = 1 << 2;
    pub const SIZE: u32 = 1 << 3;
    pub const ATIME: u32 = 1 << 4;
    pub const MTIME: u32 = 1 << 5;
    pub const FH: u32 = 1 << 6;
    pub const ATIME_NOW: u32 = 1 << 7;
    pub const MTIME_NOW: u32 = 1 << 8;
    pub const LOCKOWNER: u32 = 1 << 9;
    pub const CTIME: u32 = 1 << 10;
    pub const KILL_SUIDGID: u32 = 1 << 11;
}

/// `fuse_open_out.open_flags` bits.
#[allow(missing_docs)]
pub mod fopen {
    pub const DIRECT_IO: u32 = 1 << 0;
    pub const KEEP_CACHE: u32 = 1 << 1;
    pub const NONSEEKABLE: u32 = 1 << 2;
    pub const CACHE_DIR: u32 = 1 << 3;
}

/// Miscellaneous per-request flag bits.
#[allow(missing_docs)]
pub mod misc {
    pub const GETATTR_FH: u32 = 1 << 0;
    pub const WRITE_CACHE: u32 = 1 << 0;
    pub const WRITE_LOCKOWNER: u32 = 1 << 1;
    pub const WRITE_KILL_SUIDGID: u32 = 1 << 2;
    pub const OPEN_KILL_SUIDGID: u32 = 1 << 0;
    pub const RELEASE_FLUSH: u32 = 1 << 0;
    pub const FSYNC_FDATASYNC: u32 = 1 << 0;
    pub const SETXATTR_ACL_KILL_SGID: u32 = 1 << 0;
    pub const SETUPMAPPING_FLAG_WRITE: u64 = 1 << 0;
    pub const SETUPMAPPING_FLAG_READ: u64 = 1 << 1;
    pub const LK_FLOCK: u32 = 1 << 0;
}

/// Bytes a dirent with a `namelen`-byte name takes, padded to 8.
pub const fn dirent_size(namelen: usize) -> usize {
    (Dirent::SIZE + namelen + 7) & !7
}

/// Bytes a direntplus with a `namelen`-byte name takes, padded to 8.
pub const fn direntplus_size(namelen: usize) -> usize {
    (EntryOut::SIZE + Dirent::SIZE + namelen + 7) & !7
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_short_input() {
        let h = InHeader {
            len: 40,
            opcode: 26,
            unique: 7,
            nodeid: 1,
            uid: 2,
            gid: 3,
            pid: 4,
            total_extlen: 0,
            padding: 0,
        };
        let b = h.to_bytes();
        assert_eq!(b.len(), InHeader::SIZE);
        assert_eq!(InHeader::read(&b), Some(h));
        assert_eq!(InHeader::read(&b[..39]), None);
        assert_eq!(REMOVEMAPPING_MAX_ENTRY, 256);
        assert_eq!(dirent_size(1), 32);
        assert_eq!(direntplus_size(8), 160);
    }
}
