//! The FUSE wire layer: ABI structs ([`abi`]), request decoding ([`decode`]),
//! the [`Filesystem`] trait, the dispatching [`Server`] and reply encoding.
//!
//! A request flows one way: bytes -> [`decode::decode`] -> one `match` in
//! [`Server::handle`] -> a [`Filesystem`] method -> reply bytes.
//!
//! # Use from a virtqueue worker
//!
//! ```no_run
//! use vhost_dax::fs::{PassthroughConfig, PassthroughFs};
//! use vhost_dax::fuse::Server;
//!
//! let server = Server::new(PassthroughFs::new(PassthroughConfig::new("/srv/share")).unwrap());
//! // Per descriptor chain: gather the device-readable bytes, sum the
//! // device-writable lengths, then scatter the reply back.
//! # let readable: Vec<u8> = Vec::new(); let writable_len = 0usize;
//! let reply = server.handle(&readable, writable_len);
//! if reply.is_empty() {
//!     // FORGET / BATCH_FORGET / INTERRUPT: complete the chain with used length 0.
//! } else {
//!     // Copy `reply` into the writable descriptors; used length = reply.len().
//! }
//! ```
//!
//! `Server` is `Send + Sync`; share it (e.g. in an `Arc`) between the
//! hiprio and request queue threads.

pub mod abi;
pub mod decode;
pub mod error;
pub mod ext;
pub mod filesystem;
pub mod payload;
pub mod reply;
pub mod request;
pub mod server;
pub mod stats;
#[doc(hidden)]
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::{Errno, FsResult, RequestError};
pub use filesystem::{Context, Entry, Filesystem, Handle, NodeId, Opened};
pub use payload::{SliceReader, VecWriter, ZeroCopyReader, ZeroCopyWriter};
pub use reply::{DirEntry, DirentBuf};
pub use server::{ReplyParts, Server};
