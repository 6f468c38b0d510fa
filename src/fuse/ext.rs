//! Request extensions (FUSE 7.38): records after a request's arguments, `total_extlen`
//! 8-byte units in all, each a `fuse_ext_header { u32 size; u32 type; }` followed by
//! its payload, `size` (header included) a multiple of 8.
//!
//! The one the server reads is `FUSE_EXT_GROUPS`, which Linux (≥ 6.6, `fs/fuse/dir.c`
//! `get_create_supp_group`) sends with CREATE, MKNOD, MKDIR, SYMLINK and TMPFILE once
//! `FUSE_CREATE_SUPP_GROUP` is granted, when the caller is in the parent directory's
//! group through a supplementary group only: one group, the parent's gid. Other types
//! are skipped (none is granted).

use super::abi::{ext_type, opcode};
use super::error::RequestError;

/// What a request's extensions carried that the server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extensions {
    /// The supplementary group of `FUSE_EXT_GROUPS`.
    pub supp_gid: Option<u32>,
}

/// The opcodes that may carry `FUSE_EXT_GROUPS`.
fn creates(op: u32) -> bool {
    matches!(
        op,
        opcode::CREATE | opcode::MKNOD | opcode::MKDIR | opcode::SYMLINK | opcode::TMPFILE
    )
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Parses the extension bytes `ext` of a request of opcode `op`; `groups_granted`:
/// `FUSE_CREATE_SUPP_GROUP` was granted in INIT. Without it, or for an opcode that
/// creates nothing, the extensions are skipped unread, as before 7.38.
pub fn parse(op: u32, ext: &[u8], groups_granted: bool) -> Result<Extensions, RequestError> {
    let mut out = Extensions::default();
    if !groups_granted || !creates(op) {
        return Ok(out);
    }
    let bad = |what| RequestError::BadExtension { opcode: op, what };
    let mut rest = ext;
    while !rest.is_empty() {
        let size = u32_at(rest, 0).ok_or(bad("truncated header"))?;
        let kind = u32_at(rest, 4).ok_or(bad("truncated header"))?;
        let size = usize::try_from(size).map_err(|_| bad("size too large"))?;
        if size < 8 || !size.is_multiple_of(8) || size > rest.len() {
            return Err(bad("size not a multiple of 8 within the request"));
        }
        let (record, next) = rest.split_at(size);
        if kind == ext_type::GROUPS {
            if out.supp_gid.is_some() {
                return Err(bad("FUSE_EXT_GROUPS twice"));
            }
            let n = u32_at(record, 8).ok_or(bad("FUSE_EXT_GROUPS without nr_groups"))?;
            // Linux sends exactly one group; the record is padded to 8 bytes.
            if n != 1 || size != 16 {
                return Err(bad("FUSE_EXT_GROUPS must carry one group"));
            }
            out.supp_gid = u32_at(record, 12);
        }
        rest = next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u32, payload: &[u32]) -> Vec<u8> {
        let size = u32::try_from(8 + 4 * payload.len())
            .unwrap()
            .next_multiple_of(8);
        let mut v = size.to_le_bytes().to_vec();
        v.extend(kind.to_le_bytes());
        for word in payload {
            v.extend(word.to_le_bytes());
        }
        v.resize(usize::try_from(size).unwrap(), 0);
        v
    }

    #[test]
    fn the_group_the_kernel_sends_is_read_for_creations_only() {
        let groups = record(ext_type::GROUPS, &[1, 4242]);
        for op in [
            opcode::CREATE,
            opcode::MKNOD,
            opcode::MKDIR,
            opcode::SYMLINK,
            opcode::TMPFILE,
        ] {
            assert_eq!(parse(op, &groups, true).unwrap().supp_gid, Some(4242));
            // Not granted: skipped, as before.
            assert_eq!(parse(op, &groups, false).unwrap().supp_gid, None);
        }
        assert_eq!(parse(opcode::LOOKUP, &groups, true).unwrap().supp_gid, None);
        // Another type before it is skipped (a security context, 4 words).
        let mut both = record(31, &[1, 2, 3, 4]);
        both.extend(&groups);
        assert_eq!(
            parse(opcode::MKDIR, &both, true).unwrap().supp_gid,
            Some(4242)
        );
        assert_eq!(parse(opcode::MKDIR, &[], true).unwrap().supp_gid, None);
    }

    #[test]
    fn malformed_extensions_are_refused() {
        let groups = record(ext_type::GROUPS, &[1, 7]);
        let mut twice = groups.clone();
        twice.extend(&groups);
        let mut big = groups.clone();
        big[0] = 24; // claims more than there is
        let mut odd = groups.clone();
        odd[0] = 12;
        let mut zero = groups.clone();
        zero[0] = 0;
        for (what, bytes) in [
            ("two group records", twice),
            ("past the end", big),
            ("not a multiple of 8", odd),
            ("size 0", zero),
            ("no groups", record(ext_type::GROUPS, &[0])),
            ("two groups", record(ext_type::GROUPS, &[2, 7, 8])),
            ("truncated header", vec![16, 0, 0, 0]),
        ] {
            let e = parse(opcode::CREATE, &bytes, true).unwrap_err();
            assert!(
                matches!(e, RequestError::BadExtension { opcode: o, .. } if o == opcode::CREATE),
                "{what}: {e}"
            );
            assert_eq!(e.errno(), crate::fuse::Errno::EINVAL, "{what}");
        }
    }
}
