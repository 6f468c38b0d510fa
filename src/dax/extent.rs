//! How far a frontend will map into a file, and a [`Mapper`] that stays within it.
//!
//! Frontends differ. An mmap-based one (ours, alioth) maps a whole 2 MiB chunk of a small
//! file: the bytes past the end of the file read as zero and nothing changes on the host.
//! QEMU 11.1 builds every map as RAM from the descriptor and refuses one that ends past
//! the end of a non-empty file (the length rounded up to the host page first), and it
//! grows an empty file to the mapped length. With such a frontend only the whole pages
//! inside the file can be mapped, and the partial last page of a file cannot be mapped at
//! all.
//!
//! [`ExtentMapper`] sits between the ledger and the real mapper. The ledger keeps asking
//! for whole chunks; this layer decides how much of each chunk the frontend is asked for,
//! in one or more pieces, and remembers them, so that:
//! - no map ever reaches past the end of an empty file (a frontend could grow it);
//! - under [`MapExtent::WithinFile`] a chunk is mapped only up to the last whole page of
//!   the file, and a chunk that holds the file's partial last page is refused, because
//!   the guest would read that page through an unmapped hole (never the file's bytes);
//! - when the file grows, the pages that are now inside it are added to live mappings
//!   ([`Mapper::extend`]), and a size change that would put an unmappable partial page
//!   inside a live mapping is refused before it happens ([`Mapper::follows_resize`]);
//! - under [`MapExtent::Learn`] (the default) chunks are mapped whole until the frontend
//!   refuses a map that reaches past the end of the file; from then on it is treated as
//!   `WithinFile` (logged once) and the refused map is tried again within the file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex, MutexGuard};

use super::backing::FileIdentity;
use super::config::PAGE_SIZE;
use super::mapper::{Mapper, MapperError};
use super::offset::{FileOffset, WindowOffset};

/// How far the frontend will map into a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MapExtent {
    /// Map whole chunks until the frontend refuses one that ends past the end of its
    /// file; then behave as `WithinFile`.
    #[default]
    Learn,
    /// The frontend maps past the end of a file (mmap semantics).
    PastEof,
    /// The frontend maps only within the file (QEMU 11.1).
    WithinFile,
}

/// One chunk range the ledger mapped, as the frontend holds it.
#[derive(Debug)]
struct Held {
    len: u64,
    file: FileIdentity,
    file_offset: u64,
    writable: bool,
    /// The pieces sent to the frontend, `(window_offset, len)`, in file order; each is
    /// unmapped exactly as it was mapped.
    pieces: Vec<(u64, u64)>,
    /// Bytes of the range the pieces cover, from its start.
    mapped: u64,
}

#[derive(Debug)]
struct State {
    extent: MapExtent,
    held: BTreeMap<u64, Held>,
}

/// A [`Mapper`] that asks its inner mapper only for what the frontend will map.
pub struct ExtentMapper {
    inner: Arc<dyn Mapper>,
    state: Mutex<State>,
}

impl std::fmt::Debug for ExtentMapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtentMapper")
            .field("extent", &self.extent())
            .finish_non_exhaustive()
    }
}

fn round_down_page(v: u64) -> u64 {
    v - v % PAGE_SIZE
}

fn file_size(fd: BorrowedFd<'_>) -> Result<(FileIdentity, u64), MapperError> {
    let meta = File::from(fd.try_clone_to_owned()?).metadata()?;
    let identity = FileIdentity {
        dev: meta.dev(),
        ino: meta.ino(),
    };
    Ok((identity, meta.len()))
}

/// How many bytes of `file_offset..+len` a within-file frontend can map for a file of
/// `size` bytes, or why the range cannot be shown correctly at all.
fn within_file_len(len: u64, file_offset: u64, size: u64) -> Result<u64, String> {
    let whole = round_down_page(size);
    let end = file_offset.saturating_add(len);
    if size <= file_offset {
        return Err(format!(
            "the range starts at {file_offset:#x}, at or past the end of the {size}-byte file"
        ));
    }
    if whole < end && whole != size {
        return Err(format!(
            "the {size}-byte file ends inside a page of this range; the frontend maps \
             only whole pages inside a file, so that page cannot be shown"
        ));
    }
    Ok(whole.min(end) - file_offset)
}

impl ExtentMapper {
    /// Wraps `inner`, starting with the rule `extent`.
    pub fn new(inner: Arc<dyn Mapper>, extent: MapExtent) -> Self {
        ExtentMapper {
            inner,
            state: Mutex::new(State {
                extent,
                held: BTreeMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The rule in force now (`Learn` until a refusal taught otherwise).
    pub fn extent(&self) -> MapExtent {
        self.lock().extent
    }

    /// Sends one piece and records it.
    fn send_piece(
        &self,
        held: &mut Held,
        window_offset: u64,
        fd: BorrowedFd<'_>,
        upto: u64,
    ) -> Result<(), MapperError> {
        let piece_len = upto - held.mapped;
        let piece_window = window_offset + held.mapped;
        self.inner.map(
            WindowOffset(piece_window),
            piece_len,
            fd,
            FileOffset(held.file_offset + held.mapped),
            held.writable,
        )?;
        held.pieces.push((piece_window, piece_len));
        held.mapped = upto;
        Ok(())
    }
}

impl Mapper for ExtentMapper {
    fn map(
        &self,
        window_offset: WindowOffset,
        len: u64,
        file: BorrowedFd<'_>,
        file_offset: FileOffset,
        writable: bool,
    ) -> Result<(), MapperError> {
        let (window_offset, file_offset) = (window_offset.raw(), file_offset.raw());
        // Held across the frontend calls: map, unmap and extend of one window are
        // serialised here, so an extension never lands in a range already given back.
        let mut state = self.lock();
        let (identity, size) = file_size(file)?;
        if size == 0 {
            return Err(MapperError::Unmappable {
                reason: "the file is empty: a frontend that maps from the descriptor would \
                         have to grow it"
                    .into(),
            });
        }
        let mut held = Held {
            len,
            file: identity,
            file_offset,
            writable,
            pieces: Vec::new(),
            mapped: 0,
        };
        if state.extent != MapExtent::WithinFile {
            match self.send_piece(&mut held, window_offset, file, len) {
                Ok(()) => {
                    state.held.insert(window_offset, held);
                    return Ok(());
                }
                Err(MapperError::Refused { reason })
                    if state.extent == MapExtent::Learn
                        && file_offset.saturating_add(len) > size =>
                {
                    log::warn!(
                        "dax: the frontend refused to map past the end of a file ({reason}); \
                         from now on only whole pages inside files are mapped, files whose \
                         size is not a multiple of {PAGE_SIZE} bytes are served without DAX \
                         where the guest lets us choose (FUSE_ATTR_DAX), and their last \
                         page fails with EIO where it does not. Start the daemon with \
                         --dax-maps-within-file to have this from the first map"
                    );
                    state.extent = MapExtent::WithinFile;
                }
                Err(e) => return Err(e),
            }
        }
        let upto = within_file_len(len, file_offset, size)
            .map_err(|reason| MapperError::Unmappable { reason })?;
        self.send_piece(&mut held, window_offset, file, upto)?;
        state.held.insert(window_offset, held);
        Ok(())
    }

    fn unmap(&self, window_offset: u64, len: u64) -> Result<(), MapperError> {
        let mut state = self.lock();
        let Some(held) = state.held.get_mut(&window_offset) else {
            log::debug!(
                "dax: {window_offset:#x}+{len:#x} is no longer held by the frontend (it \
                 dropped its mappings itself)"
            );
            return Ok(());
        };
        if held.len != len {
            return Err(MapperError::Io(io::Error::other(format!(
                "unmap of {window_offset:#x}+{len:#x} does not match the mapping of \
                 {window_offset:#x}+{:#x}",
                held.len
            ))));
        }
        // Last piece first: what is left stays a prefix the records describe.
        while let Some(&(piece_window, piece_len)) = held.pieces.last() {
            self.inner.unmap(piece_window, piece_len)?;
            held.pieces.pop();
            held.mapped = piece_window - window_offset;
        }
        state.held.remove(&window_offset);
        Ok(())
    }

    fn extend(
        &self,
        window_offset: WindowOffset,
        len: u64,
        file: BorrowedFd<'_>,
        file_offset: FileOffset,
    ) -> Result<(), MapperError> {
        let (window_offset, file_offset) = (window_offset.raw(), file_offset.raw());
        let mut state = self.lock();
        let Some(held) = state.held.get_mut(&window_offset) else {
            return Ok(());
        };
        if held.mapped == held.len {
            return Ok(()); // all of the range is mapped already: nothing to look up
        }
        let (identity, size) = file_size(file)?;
        if held.len != len || held.file != identity || held.file_offset != file_offset {
            return Ok(()); // released and mapped again meanwhile: not ours to extend
        }
        let upto = round_down_page(size).saturating_sub(file_offset).min(len);
        if upto <= held.mapped {
            return Ok(());
        }
        self.send_piece(held, window_offset, file, upto)
    }

    fn follows_resize(
        &self,
        window_offset: WindowOffset,
        file_offset: FileOffset,
        new_size: u64,
    ) -> bool {
        let (window_offset, file_offset) = (window_offset.raw(), file_offset.raw());
        let state = self.lock();
        let Some(held) = state.held.get(&window_offset) else {
            return true;
        };
        if held.file_offset != file_offset || held.mapped == held.len {
            return true;
        }
        // A partial last page inside this range, past what the frontend holds: the guest
        // would read it through a hole.
        let tail = round_down_page(new_size);
        new_size == tail
            || tail < file_offset
            || tail >= file_offset + held.len
            || new_size <= file_offset + held.mapped
    }

    fn maps_within_file(&self) -> bool {
        self.lock().extent == MapExtent::WithinFile
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_file_len_maps_whole_pages_and_refuses_partial_tails() {
        const MIB2: u64 = 2 << 20;
        assert_eq!(within_file_len(MIB2, 0, 8192), Ok(8192));
        assert_eq!(within_file_len(MIB2, 0, 3 * MIB2), Ok(MIB2));
        assert_eq!(within_file_len(MIB2, MIB2, MIB2 + 4096), Ok(4096));
        // The tail lies in a later chunk: this one is whole.
        assert_eq!(within_file_len(MIB2, 0, MIB2 + 10), Ok(MIB2));
        assert!(within_file_len(MIB2, 0, 10).is_err());
        assert!(within_file_len(MIB2, 0, 4097).is_err());
        assert!(within_file_len(MIB2, MIB2, MIB2).is_err());
        assert!(within_file_len(MIB2, 0, 0).is_err());
    }
}
