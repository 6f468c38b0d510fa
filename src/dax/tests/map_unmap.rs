//! `map`, `unmap`, `release_backing` and `reset`: references, replacement, frontend
//! failures and every validation error.

use std::sync::Arc;
use std::time::Duration;

use super::support::{CHUNK, TestBacking, dynb, ledger};
use crate::dax::{
    Failure, Field, FileOffset, LedgerError, MapOutcome, MapperCall, MapperError, PAGE_SIZE,
    UnmapOutcome, WindowOffset,
};

const NO_WAIT: Duration = Duration::ZERO;

#[test]
fn a_mapping_holds_one_reference_and_the_backing_one_more() {
    let (ledger, mapper) = ledger(8, NO_WAIT);
    let b = TestBacking::new(1, 8 * CHUNK, true);
    assert_eq!(Arc::strong_count(&b), 1);

    let out = ledger
        .map(WindowOffset(0), CHUNK, dynb(&b), FileOffset(0), true)
        .unwrap();
    assert_eq!(out, MapOutcome::Mapped { replaced: 0 });
    // ours + the map-time reference + the "has mappings" reference
    assert_eq!(Arc::strong_count(&b), 3);
    assert!(ledger.has_mappings(b.id_value()));

    ledger
        .map(
            WindowOffset(2 * CHUNK),
            2 * CHUNK,
            dynb(&b),
            FileOffset(CHUNK),
            false,
        )
        .unwrap();
    // one more map-time reference; the "has mappings" one is taken only on 0 -> 1
    assert_eq!(Arc::strong_count(&b), 4);
    assert_eq!(ledger.mappings_of(b.id_value()), 2);

    let live = mapper.live();
    assert_eq!(live.len(), 2);
    assert_eq!(
        (live[0].window_offset, live[0].len),
        (WindowOffset(0), CHUNK)
    );
    assert_eq!(
        (live[1].window_offset, live[1].len),
        (WindowOffset(2 * CHUNK), 2 * CHUNK)
    );
    assert_eq!(live[1].file_offset, FileOffset(CHUNK));
    assert!(live[0].writable && !live[1].writable);
    assert_eq!(live[0].file, b.identity());

    assert_eq!(
        ledger.unmap(0, CHUNK).unwrap(),
        UnmapOutcome { released: 1 }
    );
    assert_eq!(Arc::strong_count(&b), 3);
    assert!(ledger.has_mappings(b.id_value()));
    // 1 -> 0 drops the "has mappings" reference as well
    assert_eq!(ledger.unmap(2 * CHUNK, 2 * CHUNK).unwrap().released, 1);
    assert_eq!(Arc::strong_count(&b), 1);
    assert!(!ledger.has_mappings(b.id_value()));
    assert_eq!(ledger.mappings_of(b.id_value()), 0);
    assert!(mapper.live().is_empty());
    assert!(mapper.violations().is_empty());
    ledger.check_invariants().unwrap();
}

#[test]
fn map_validates_before_touching_anything() {
    let (ledger, mapper) = ledger(4, NO_WAIT);
    let b = TestBacking::new(1, 4 * CHUNK, true);
    let ro = TestBacking::new(2, 4 * CHUNK, false);
    // (expected error, window offset, length, file offset, writable, backing)
    type Case<'a> = (LedgerError, u64, u64, u64, bool, &'a Arc<TestBacking>);
    let cases: Vec<Case<'_>> = vec![
        (
            LedgerError::Misaligned {
                what: Field::WindowOffset,
                value: 4096,
                align: CHUNK,
            },
            4096,
            CHUNK,
            0,
            false,
            &b,
        ),
        (
            LedgerError::Misaligned {
                what: Field::Length,
                value: CHUNK + 4096,
                align: CHUNK,
            },
            0,
            CHUNK + 4096,
            0,
            false,
            &b,
        ),
        (LedgerError::EmptyRange { offset: 0 }, 0, 0, 0, false, &b),
        (
            LedgerError::OutOfWindow {
                offset: 3 * CHUNK,
                len: 2 * CHUNK,
                window: 4 * CHUNK,
            },
            3 * CHUNK,
            2 * CHUNK,
            0,
            false,
            &b,
        ),
        (
            LedgerError::Overflow {
                what: Field::WindowOffset,
                offset: u64::MAX - CHUNK + 1,
                len: CHUNK,
            },
            u64::MAX - CHUNK + 1,
            CHUNK,
            0,
            false,
            &b,
        ),
        (
            LedgerError::Misaligned {
                what: Field::FileOffset,
                value: 100,
                align: PAGE_SIZE,
            },
            0,
            CHUNK,
            100,
            false,
            &b,
        ),
        (
            LedgerError::Overflow {
                what: Field::FileOffset,
                offset: u64::MAX - PAGE_SIZE + 1,
                len: CHUNK,
            },
            0,
            CHUNK,
            u64::MAX - PAGE_SIZE + 1,
            false,
            &b,
        ),
        (
            LedgerError::ReadOnlyBacking {
                backing: ro.id_value(),
            },
            0,
            CHUNK,
            0,
            true,
            &ro,
        ),
    ];
    for (want, offset, len, file_offset, writable, backing) in cases {
        let got = ledger
            .map(
                WindowOffset(offset),
                len,
                dynb(backing),
                FileOffset(file_offset),
                writable,
            )
            .unwrap_err();
        assert_eq!(format!("{got:?}"), format!("{want:?}"));
        assert_eq!(got.errno(), want.errno());
    }
    // A read-only backing maps read-only.
    ledger
        .map(WindowOffset(0), CHUNK, dynb(&ro), FileOffset(0), false)
        .unwrap();
    assert_eq!(mapper.map_calls(), 1);
    assert_eq!(Arc::strong_count(&b), 1);
}

#[test]
fn the_same_mapping_again_is_a_no_op_when_access_suffices() {
    let (ledger, mapper) = ledger(4, NO_WAIT);
    let b = TestBacking::new(1, 4 * CHUNK, true);
    ledger
        .map(WindowOffset(0), 2 * CHUNK, dynb(&b), FileOffset(0), true)
        .unwrap();
    // read -> write upgrade of a range mapped writable up front: nothing to do
    for writable in [false, true] {
        let out = ledger
            .map(
                WindowOffset(0),
                2 * CHUNK,
                dynb(&b),
                FileOffset(0),
                writable,
            )
            .unwrap();
        assert_eq!(out, MapOutcome::AlreadyMapped);
    }
    assert_eq!(mapper.map_calls(), 1);
    assert_eq!(mapper.unmap_calls(), 0);
    assert_eq!(ledger.stats().already_mapped, 2);
    assert_eq!(Arc::strong_count(&b), 3, "no extra reference for a no-op");

    // Read-only mapped, write asked: the mapping is replaced.
    ledger
        .map(
            WindowOffset(2 * CHUNK),
            CHUNK,
            dynb(&b),
            FileOffset(0),
            false,
        )
        .unwrap();
    let out = ledger
        .map(
            WindowOffset(2 * CHUNK),
            CHUNK,
            dynb(&b),
            FileOffset(0),
            true,
        )
        .unwrap();
    assert_eq!(out, MapOutcome::Mapped { replaced: 1 });
    // Other file offset, or other length: replaced too.
    let out = ledger
        .map(
            WindowOffset(0),
            2 * CHUNK,
            dynb(&b),
            FileOffset(PAGE_SIZE),
            true,
        )
        .unwrap();
    assert_eq!(out, MapOutcome::Mapped { replaced: 1 });
    let out = ledger
        .map(
            WindowOffset(0),
            CHUNK,
            dynb(&b),
            FileOffset(PAGE_SIZE),
            true,
        )
        .unwrap();
    assert_eq!(out, MapOutcome::Mapped { replaced: 1 });
    let stats = ledger.stats();
    assert_eq!((stats.maps, stats.remaps, stats.unmaps), (5, 3, 3));
    assert_eq!(Arc::strong_count(&b), 4);
    assert!(mapper.violations().is_empty());
}

#[test]
fn a_map_releases_every_mapping_it_touches_whole() {
    let (ledger, mapper) = ledger(8, NO_WAIT);
    let a = TestBacking::new(1, 8 * CHUNK, true);
    let b = TestBacking::new(2, 8 * CHUNK, true);
    let c = TestBacking::new(3, 8 * CHUNK, true);
    ledger
        .map(WindowOffset(0), 2 * CHUNK, dynb(&a), FileOffset(0), true)
        .unwrap();
    ledger
        .map(
            WindowOffset(2 * CHUNK),
            2 * CHUNK,
            dynb(&b),
            FileOffset(0),
            true,
        )
        .unwrap();
    ledger
        .map(
            WindowOffset(4 * CHUNK),
            CHUNK,
            dynb(&a),
            FileOffset(0),
            true,
        )
        .unwrap();

    // Chunks 1..3 touch the first two mappings; both go, whole.
    let out = ledger
        .map(
            WindowOffset(CHUNK),
            2 * CHUNK,
            dynb(&c),
            FileOffset(0),
            false,
        )
        .unwrap();
    assert_eq!(out, MapOutcome::Mapped { replaced: 2 });
    let live: Vec<(u64, u64)> = mapper
        .live()
        .iter()
        .map(|m| (m.window_offset.raw(), m.len))
        .collect();
    assert_eq!(live, vec![(CHUNK, 2 * CHUNK), (4 * CHUNK, CHUNK)]);
    assert_eq!(Arc::strong_count(&a), 3, "a keeps its other mapping");
    assert_eq!(Arc::strong_count(&b), 1, "b lost its only mapping");
    assert_eq!(Arc::strong_count(&c), 3);
    assert!(!ledger.has_mappings(b.id_value()));
    assert!(mapper.violations().is_empty());
    ledger.check_invariants().unwrap();
}

#[test]
fn a_refused_map_leaves_its_chunks_free() {
    let (ledger, mapper) = ledger(4, NO_WAIT);
    let a = TestBacking::new(1, 4 * CHUNK, true);
    let b = TestBacking::new(2, 4 * CHUNK, true);
    ledger
        .map(WindowOffset(0), CHUNK, dynb(&a), FileOffset(0), true)
        .unwrap();
    mapper.fail_next_map(Failure::Refused);
    let err = ledger
        .map(WindowOffset(0), CHUNK, dynb(&b), FileOffset(0), true)
        .unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::Mapper {
                call: MapperCall::Map,
                window_offset: 0,
                len: CHUNK,
                source: MapperError::Refused { .. }
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.errno(), libc::EIO);
    // The old mapping was released before the new map was tried; nothing half-done.
    assert!(ledger.mappings().is_empty());
    assert!(mapper.live().is_empty());
    assert_eq!(Arc::strong_count(&a), 1);
    assert_eq!(Arc::strong_count(&b), 1);
    assert_eq!(ledger.stats().mapper_errors, 1);
    // The chunk is usable again.
    ledger
        .map(WindowOffset(0), CHUNK, dynb(&b), FileOffset(0), true)
        .unwrap();
    ledger.check_invariants().unwrap();
}

#[test]
fn a_failed_unmap_keeps_the_mapping_and_its_references() {
    let (ledger, mapper) = ledger(4, NO_WAIT);
    let a = TestBacking::new(1, 4 * CHUNK, true);
    ledger
        .map(WindowOffset(0), CHUNK, dynb(&a), FileOffset(0), true)
        .unwrap();
    ledger
        .map(WindowOffset(CHUNK), CHUNK, dynb(&a), FileOffset(0), true)
        .unwrap();
    mapper.fail_next_unmap(Failure::Io);
    let err = ledger.unmap(0, 2 * CHUNK).unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::Mapper {
                call: MapperCall::Unmap,
                window_offset: 0,
                len: CHUNK,
                source: MapperError::Io(_)
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.errno(), libc::EIO);
    // The first unmap failed; the second mapping was still released.
    let left = ledger.mappings();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].window_offset, WindowOffset(0));
    assert!(!left[0].draining, "the drain ended");
    assert_eq!(Arc::strong_count(&a), 3);
    assert_eq!(mapper.live().len(), 1);
    // A later attempt goes through.
    assert_eq!(ledger.unmap(0, CHUNK).unwrap().released, 1);
    assert_eq!(Arc::strong_count(&a), 1);

    // A failed unmap of a mapping being replaced fails the map, and keeps it.
    ledger
        .map(WindowOffset(0), CHUNK, dynb(&a), FileOffset(0), true)
        .unwrap();
    mapper.fail_next_unmap(Failure::Timeout);
    let err = ledger
        .map(
            WindowOffset(0),
            CHUNK,
            dynb(&a),
            FileOffset(PAGE_SIZE),
            true,
        )
        .unwrap_err();
    assert!(matches!(
        err,
        LedgerError::Mapper {
            call: MapperCall::Unmap,
            source: MapperError::Timeout,
            ..
        }
    ));
    assert_eq!(ledger.mappings()[0].file_offset, FileOffset(0));
    assert_eq!(mapper.live()[0].file_offset, FileOffset(0));
    ledger.check_invariants().unwrap();
}

#[test]
fn a_disconnected_frontend_took_its_mappings_with_it() {
    let (ledger, mapper) = ledger(4, NO_WAIT);
    let a = TestBacking::new(1, 4 * CHUNK, true);
    ledger
        .map(WindowOffset(0), CHUNK, dynb(&a), FileOffset(0), true)
        .unwrap();
    ledger
        .map(
            WindowOffset(2 * CHUNK),
            2 * CHUNK,
            dynb(&a),
            FileOffset(0),
            true,
        )
        .unwrap();
    mapper.disconnect();
    assert_eq!(ledger.reset().unwrap(), 2);
    assert_eq!(Arc::strong_count(&a), 1);
    assert_eq!(ledger.stats().mapper_errors, 0);
    let err = ledger
        .map(WindowOffset(0), CHUNK, dynb(&a), FileOffset(0), true)
        .unwrap_err();
    assert!(matches!(
        err,
        LedgerError::Mapper {
            source: MapperError::Disconnected,
            ..
        }
    ));
    assert!(ledger.mappings().is_empty());
}

#[test]
fn unmap_releases_whole_mappings_only() {
    let (ledger, mapper) = ledger(8, NO_WAIT);
    let a = TestBacking::new(1, 8 * CHUNK, true);
    ledger
        .map(
            WindowOffset(CHUNK),
            2 * CHUNK,
            dynb(&a),
            FileOffset(0),
            true,
        )
        .unwrap();
    let err = ledger.unmap(2 * CHUNK, 4 * CHUNK).unwrap_err();
    match err {
        LedgerError::PartialMapping {
            offset,
            len,
            mapping_offset,
            mapping_len,
        } => assert_eq!(
            (offset, len, mapping_offset, mapping_len),
            (2 * CHUNK, 4 * CHUNK, CHUNK, 2 * CHUNK)
        ),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.errno(), libc::EINVAL);
    assert_eq!(mapper.live().len(), 1);
    assert_eq!(mapper.unmap_calls(), 0);

    ledger
        .map(
            WindowOffset(5 * CHUNK),
            CHUNK,
            dynb(&a),
            FileOffset(0),
            true,
        )
        .unwrap();
    // Unmapped chunks in the range are skipped; each mapping is unmapped with its own range.
    assert_eq!(ledger.unmap(0, 8 * CHUNK).unwrap().released, 2);
    assert_eq!(mapper.unmap_calls(), 2);
    assert!(mapper.violations().is_empty());
    assert_eq!(ledger.unmap(0, 8 * CHUNK).unwrap().released, 0);
    assert_eq!(Arc::strong_count(&a), 1);
}

/// One REMOVEMAPPING range over N adjacent mappings of one file, contiguous in the file
/// too, is still N unmaps, each of exactly one earlier map's range: QEMU 11.1 looks an
/// unmap up by exact (offset, length) and refuses anything else, as the vhost-user spec
/// says it may ("the given range shall correspond to the entirety of a valid mapped
/// region"), so the ledger never coalesces them.
#[test]
fn adjacent_mappings_are_unmapped_one_request_each() {
    let (ledger, mapper) = ledger(8, NO_WAIT);
    let a = TestBacking::new(1, 8 * CHUNK, true);
    for i in 0..4 {
        ledger
            .map(
                WindowOffset(i * CHUNK),
                CHUNK,
                dynb(&a),
                FileOffset(i * CHUNK),
                true,
            )
            .unwrap();
    }
    assert_eq!(ledger.unmap(0, 4 * CHUNK).unwrap().released, 4);
    assert_eq!(mapper.unmap_calls(), 4);
    assert!(mapper.violations().is_empty(), "{:?}", mapper.violations());
    assert!(mapper.live().is_empty());
    assert_eq!(Arc::strong_count(&a), 1);
}

#[test]
fn unmap_validates_its_range() {
    let (ledger, _) = ledger(4, NO_WAIT);
    let cases = [
        (CHUNK / 2, CHUNK, "Misaligned { what: WindowOffset"),
        (0, CHUNK / 2, "Misaligned { what: Length"),
        (0, 0, "EmptyRange"),
        (2 * CHUNK, 4 * CHUNK, "OutOfWindow"),
        (u64::MAX - CHUNK + 1, CHUNK, "Overflow"),
    ];
    for (offset, len, want) in cases {
        let err = ledger.unmap(offset, len).unwrap_err();
        assert!(format!("{err:?}").starts_with(want), "{err:?}");
        assert_eq!(err.errno(), libc::EINVAL);
    }
}

#[test]
fn forget_alone_releases_nothing() {
    let (ledger, mapper) = ledger(4, NO_WAIT);
    let b = TestBacking::new(7, 4 * CHUNK, true);
    let id = b.id_value();
    let weak = Arc::downgrade(&b);
    ledger
        .map(WindowOffset(0), CHUNK, dynb(&b), FileOffset(0), true)
        .unwrap();
    ledger
        .map(
            WindowOffset(CHUNK),
            CHUNK,
            dynb(&b),
            FileOffset(CHUNK),
            true,
        )
        .unwrap();
    // FORGET / unlink: the owner drops its reference. The mappings keep the file open.
    drop(b);
    assert_eq!(weak.strong_count(), 3);
    let alive = weak.upgrade().expect("still open");
    assert_eq!(mapper.live()[0].file, alive.identity());
    drop(alive);
    // Eviction of the inode (or the guest's REMOVEMAPPING) releases them.
    assert_eq!(ledger.release_backing(id).unwrap(), 2);
    assert_eq!(weak.strong_count(), 0, "the file is closed now");
    assert!(mapper.live().is_empty());
    assert_eq!(ledger.release_backing(id).unwrap(), 0);
}

#[test]
fn release_backing_touches_only_that_backing() {
    let (ledger, mapper) = ledger(4, NO_WAIT);
    let a = TestBacking::new(1, 4 * CHUNK, true);
    let b = TestBacking::new(2, 4 * CHUNK, true);
    ledger
        .map(WindowOffset(0), CHUNK, dynb(&a), FileOffset(0), true)
        .unwrap();
    ledger
        .map(WindowOffset(CHUNK), CHUNK, dynb(&b), FileOffset(0), true)
        .unwrap();
    ledger
        .map(
            WindowOffset(2 * CHUNK),
            CHUNK,
            dynb(&a),
            FileOffset(0),
            true,
        )
        .unwrap();
    assert_eq!(ledger.release_backing(a.id_value()).unwrap(), 2);
    assert_eq!(mapper.live().len(), 1);
    assert_eq!(mapper.live()[0].file, b.identity());
    assert_eq!(Arc::strong_count(&a), 1);
    assert_eq!(Arc::strong_count(&b), 3);
}

#[test]
fn reset_returns_every_count_to_zero() {
    let (ledger, mapper) = ledger(8, NO_WAIT);
    let backings: Vec<_> = (0..3)
        .map(|i| TestBacking::new(i, 8 * CHUNK, true))
        .collect();
    for (i, b) in backings.iter().enumerate() {
        let at = 2 * i as u64 * CHUNK;
        ledger
            .map(WindowOffset(at), 2 * CHUNK, dynb(b), FileOffset(0), true)
            .unwrap();
    }
    let pin = ledger
        .pin(0, 10, "reader", crate::dax::PinWait::Fail)
        .unwrap();
    drop(pin);
    assert_eq!(ledger.reset().unwrap(), 3);
    let stats = ledger.stats();
    assert_eq!(
        (
            stats.live_mappings,
            stats.mapped_chunks,
            stats.live_pins,
            stats.pinned_chunks,
            stats.draining_chunks,
            stats.backings_with_mappings
        ),
        (0, 0, 0, 0, 0, 0)
    );
    for b in &backings {
        assert_eq!(Arc::strong_count(b), 1);
    }
    assert!(mapper.live().is_empty());
    assert_eq!(ledger.reset().unwrap(), 0);
}
