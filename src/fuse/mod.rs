//! The FUSE wire layer: ABI structs ([`abi`]), request decoding ([`decode`]),
//! the [`Filesystem`] trait, the dispatching [`Server`] and reply encoding.
//!
//! A request flows one way: bytes -> [`decode::decode`] -> one `match` in
//! [`Server::handle`] -> a [`Filesystem`] method -> reply bytes.

pub mod abi;
pub mod decode;
pub mod error;
pub mod filesystem;
pub mod reply;
pub mod server;
#[doc(hidden)]
pub mod testing;

pub use error::{Errno, FsResult, RequestError};
pub use filesystem::{Context, Entry, Filesystem, Handle, NodeId, Opened};
pub use reply::{DirEntry, DirentBuf};
pub use server::Server;
