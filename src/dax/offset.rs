//! Window and file offsets as distinct types, so that the two cannot be swapped.
//!
//! [`Ledger::map`](super::Ledger::map) and [`Mapper::map`](super::Mapper::map) take a byte
//! offset inside the device's shared-memory window and one inside the backing file side by
//! side; as plain `u64`s a call with the two swapped would compile and map the wrong bytes.
//! Wire formats (FUSE SETUPMAPPING, vhost-user SHMEM_MAP) keep raw `u64`s and convert at
//! the boundary.

use std::fmt;

use serde::Serialize;

/// A byte offset inside the device's shared-memory window (guest-physical, relative to
/// the window's start).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct WindowOffset(pub u64);

/// A byte offset inside the backing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct FileOffset(pub u64);

macro_rules! offset_impls {
    ($t:ident) => {
        impl $t {
            /// The offset as a plain byte count.
            pub const fn raw(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
    };
}

offset_impls!(WindowOffset);
offset_impls!(FileOffset);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_display_in_hex_and_serialize_as_numbers() {
        assert_eq!(WindowOffset(0x20_0000).to_string(), "0x200000");
        assert_eq!(FileOffset(0).to_string(), "0x0");
        assert_eq!(serde_json::to_string(&FileOffset(4096)).unwrap(), "4096");
    }
}
