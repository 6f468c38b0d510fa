//! Pins, the end of file, and the second kind of release (`release_file_range`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::support::{CHUNK, TestBacking, capture_logs, dynb, ledger, logs_containing};
use crate::dax::{
    BackingId, Field, FileOffset, FileRangeGuard, Ledger, LedgerError, Op, PinGuard, PinId,
    PinWait, Stuck, WindowOffset,
};

const NO_WAIT: Duration = Duration::ZERO;
const SHORT: Duration = Duration::from_millis(30);

#[test]
fn pins_are_counted_per_chunk_and_are_not_references() {
    let (ledger, _) = ledger(4, NO_WAIT);
    let b = TestBacking::new(1, 4 * CHUNK, true);
    ledger
        .map(WindowOffset(0), 4 * CHUNK, dynb(&b), FileOffset(0), true)
        .unwrap();
    let refs = Arc::strong_count(&b);
    // Across chunks 0 and 1, then inside chunk 1.
    let p1 = ledger
        .pin(CHUNK - 10, 20, "fuse-read", PinWait::Fail)
        .unwrap();
    let p2 = ledger.pin(CHUNK + 5, 5, "dma", PinWait::Wait).unwrap();
    assert_eq!(
        Arc::strong_count(&b),
        refs,
        "a pin takes no backing reference"
    );
    assert_eq!(p1.window_range(), CHUNK - 10..CHUNK + 10);
    assert_ne!(p1.id(), p2.id());
    let stats = ledger.stats();
    assert_eq!(
        (stats.live_pins, stats.pinned_chunks, stats.pins),
        (2, 2, 2)
    );
    assert_eq!(ledger.mappings()[0].pins, 3, "chunk 0 once, chunk 1 twice");
    let pins = ledger.pins();
    assert_eq!(pins.len(), 2);
    assert_eq!(pins[0].holder, "fuse-read");
    assert_eq!((pins[0].window_offset, pins[0].len), (CHUNK - 10, 20));
    drop(p1);
    assert_eq!(ledger.mappings()[0].pins, 1);
    p2.unpin();
    assert_eq!(ledger.stats().live_pins, 0);
    ledger.check_invariants().unwrap();
}

#[test]
fn a_pin_needs_every_chunk_mapped() {
    let (ledger, _) = ledger(4, NO_WAIT);
    let b = TestBacking::new(1, 4 * CHUNK, true);
    ledger
        .map(WindowOffset(CHUNK), CHUNK, dynb(&b), FileOffset(0), true)
        .unwrap();
    let err = ledger.pin(0, 10, "x", PinWait::Wait).unwrap_err();
    assert!(
        matches!(err, LedgerError::NotMapped { offset: 0 }),
        "{err:?}"
    );
    assert_eq!(err.errno(), libc::EFAULT);
    let err = ledger
        .pin(CHUNK, CHUNK + 1, "x", PinWait::Wait)
        .unwrap_err();
    assert!(
        matches!(err, LedgerError::NotMapped { offset } if offset == 2 * CHUNK),
        "{err:?}"
    );
    assert_eq!(ledger.stats().pin_refusals, 2);
    assert_eq!(ledger.stats().live_pins, 0);
}

#[test]
fn a_pin_validates_its_range() {
    let (ledger, _) = ledger(4, NO_WAIT);
    let err = ledger.pin(0, 0, "x", PinWait::Fail).unwrap_err();
    assert!(matches!(err, LedgerError::EmptyRange { offset: 0 }));
    let err = ledger
        .pin(4 * CHUNK - 1, 2, "x", PinWait::Fail)
        .unwrap_err();
    assert!(matches!(err, LedgerError::OutOfWindow { len: 2, .. }));
    let err = ledger.pin(u64::MAX, 2, "x", PinWait::Fail).unwrap_err();
    assert!(matches!(
        err,
        LedgerError::Overflow {
            what: Field::WindowOffset,
            offset: u64::MAX,
            len: 2
        }
    ));
}

#[test]
fn no_pin_reaches_beyond_the_end_of_file() {
    let (ledger, _) = ledger(4, NO_WAIT);
    let b = TestBacking::new(1, 5000, true);
    // A small file: its mapping reaches past EOF, which is fine until someone pins there.
    ledger
        .map(WindowOffset(0), CHUNK, dynb(&b), FileOffset(0), true)
        .unwrap();
    ledger
        .map(WindowOffset(CHUNK), CHUNK, dynb(&b), FileOffset(4096), true)
        .unwrap();
    ledger.pin(0, 5000, "x", PinWait::Fail).unwrap().unpin();
    let err = ledger.pin(0, 5001, "x", PinWait::Fail).unwrap_err();
    match err {
        LedgerError::BeyondEof {
            backing,
            file_end,
            eof,
        } => assert_eq!((backing, file_end, eof), (BackingId(1), 5001, 5000)),
        ref other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.errno(), libc::EFAULT);
    // The second mapping starts at file byte 4096: window CHUNK+904 is file byte 5000.
    ledger.pin(CHUNK, 904, "x", PinWait::Fail).unwrap().unpin();
    let err = ledger.pin(CHUNK, 905, "x", PinWait::Fail).unwrap_err();
    assert!(matches!(err, LedgerError::BeyondEof { file_end: 5001, .. }));
    // A pin over both mappings is checked against the furthest byte it reaches.
    let err = ledger.pin(10, CHUNK, "x", PinWait::Fail).unwrap_err();
    assert!(
        matches!(err, LedgerError::BeyondEof { file_end, .. } if file_end == CHUNK),
        "{err:?}"
    );
    // A refused pin leaves nothing behind.
    assert_eq!(ledger.stats().live_pins, 0);
    assert_eq!(ledger.stats().pin_refusals, 3);
    ledger.check_invariants().unwrap();
}

#[test]
fn a_backing_that_cannot_tell_its_size_gets_no_pin() {
    let (ledger, _) = ledger(2, NO_WAIT);
    let b = TestBacking::new(1, CHUNK, true);
    ledger
        .map(WindowOffset(0), CHUNK, dynb(&b), FileOffset(0), true)
        .unwrap();
    b.fail_size(true);
    let err = ledger.pin(0, 1, "x", PinWait::Fail).unwrap_err();
    assert!(matches!(err, LedgerError::BackingSize { .. }), "{err:?}");
    assert_eq!(err.errno(), libc::ESTALE);
    assert_eq!(ledger.stats().live_pins, 0);
}

#[test]
fn a_pinned_chunk_is_never_unmapped_and_the_wait_names_the_holder() {
    capture_logs();
    let (ledger, mapper) = ledger(4, SHORT);
    let b = TestBacking::new(1, 4 * CHUNK, true);
    ledger
        .map(WindowOffset(0), 2 * CHUNK, dynb(&b), FileOffset(0), true)
        .unwrap();
    let pin = ledger
        .pin(CHUNK, 8, "vfio-dma-2c1f", PinWait::Fail)
        .unwrap();
    let err = ledger.unmap(0, 2 * CHUNK).unwrap_err();
    let LedgerError::Timeout { op, waited, stuck } = &err else {
        panic!("unexpected {err:?}");
    };
    assert_eq!(*op, Op::Unmap);
    assert!(*waited >= SHORT);
    assert_eq!(stuck.len(), 1);
    match &stuck[0] {
        Stuck::Chunk {
            window_offset,
            pins,
            holders,
            draining_for,
        } => {
            assert_eq!((*window_offset, *pins), (CHUNK, 1));
            assert_eq!(holders.len(), 1);
            assert_eq!(holders[0].holder, "vfio-dma-2c1f");
            assert_eq!(holders[0].pin, pin.id());
            assert_eq!(*draining_for, Some(Op::Unmap));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.errno(), libc::EBUSY);
    assert!(err.to_string().contains("vfio-dma-2c1f"), "{err}");
    let logged = logs_containing("vfio-dma-2c1f");
    assert!(!logged.is_empty(), "the stuck holder is logged");
    assert!(logged.iter().all(|l| l.starts_with("WARN")));
    // Nothing was unmapped, and the chunks reopened when the wait gave up.
    assert_eq!(mapper.live().len(), 1);
    assert_eq!(mapper.unmap_calls(), 0);
    assert!(!ledger.mappings()[0].draining);
    let stats = ledger.stats();
    assert_eq!((stats.timeouts, stats.waits), (1, 1));
    assert!(stats.wait_time > Duration::ZERO);
    ledger.pin(0, 1, "x", PinWait::Fail).unwrap().unpin();
    drop(pin);
    assert_eq!(ledger.unmap(0, 2 * CHUNK).unwrap().released, 1);
}

#[test]
fn reset_and_remap_of_a_pinned_chunk_change_nothing() {
    let (ledger, mapper) = ledger(4, NO_WAIT);
    let a = TestBacking::new(1, 4 * CHUNK, true);
    let b = TestBacking::new(2, 4 * CHUNK, true);
    ledger
        .map(WindowOffset(0), CHUNK, dynb(&a), FileOffset(0), true)
        .unwrap();
    ledger
        .map(
            WindowOffset(2 * CHUNK),
            CHUNK,
            dynb(&b),
            FileOffset(0),
            true,
        )
        .unwrap();
    let pin = ledger.pin(2 * CHUNK, 1, "flush", PinWait::Fail).unwrap();
    let err = ledger.reset().unwrap_err();
    assert!(matches!(err, LedgerError::Timeout { op: Op::Reset, .. }));
    let err = ledger.release_backing(b.id_value()).unwrap_err();
    assert!(matches!(
        err,
        LedgerError::Timeout {
            op: Op::ReleaseBacking,
            ..
        }
    ));
    let err = ledger
        .map(
            WindowOffset(2 * CHUNK),
            CHUNK,
            dynb(&a),
            FileOffset(0),
            true,
        )
        .unwrap_err();
    assert!(matches!(err, LedgerError::Timeout { op: Op::Map, .. }));
    // All or nothing: the unpinned mapping of a was not released either.
    assert_eq!(mapper.live().len(), 2);
    assert_eq!(mapper.unmap_calls(), 0);
    assert_eq!(ledger.stats().timeouts, 3);
    drop(pin);
    assert_eq!(ledger.reset().unwrap(), 2);
}

#[test]
fn truncate_keeps_the_mappings_and_fences_pins_beyond_the_new_end() {
    let (ledger, mapper) = ledger(6, NO_WAIT);
    let b = TestBacking::new(1, 4 * CHUNK, true);
    let other = TestBacking::new(2, 4 * CHUNK, true);
    ledger
        .map(WindowOffset(0), 4 * CHUNK, dynb(&b), FileOffset(0), true)
        .unwrap();
    ledger
        .map(
            WindowOffset(4 * CHUNK),
            CHUNK,
            dynb(&other),
            FileOffset(0),
            true,
        )
        .unwrap();
    let new_size = CHUNK + CHUNK / 2;

    let guard = ledger
        .release_file_range(b.id_value(), new_size, None)
        .unwrap();
    assert_eq!(guard.drained_chunks(), &[CHUNK, 2 * CHUNK, 3 * CHUNK]);
    assert_eq!(guard.file_range(), (new_size, None));
    // Chunk 0 holds no byte at or past the new size: still open. Chunk 1 does: draining.
    ledger
        .pin(0, CHUNK, "below", PinWait::Fail)
        .unwrap()
        .unpin();
    let err = ledger.pin(CHUNK, 1, "x", PinWait::Fail).unwrap_err();
    match err {
        LedgerError::Draining { offset, op } => {
            assert_eq!((offset, op), (CHUNK, Op::ReleaseFileRange))
        }
        ref other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.errno(), libc::EBUSY);
    // Other backings are untouched.
    ledger
        .pin(4 * CHUNK, 1, "x", PinWait::Fail)
        .unwrap()
        .unpin();
    assert!(ledger.dump().contains("draining for release_file_range"));
    b.set_size(new_size);
    drop(guard);

    // The mapping stayed, whole, in the ledger and in the frontend.
    assert_eq!(ledger.mappings()[0].len, 4 * CHUNK);
    assert_eq!(mapper.live()[0].len, 4 * CHUNK);
    ledger
        .pin(CHUNK, CHUNK / 2, "below", PinWait::Fail)
        .unwrap()
        .unpin();
    let err = ledger
        .pin(CHUNK, CHUNK / 2 + 1, "x", PinWait::Fail)
        .unwrap_err();
    assert!(matches!(err, LedgerError::BeyondEof { .. }));
    let err = ledger.pin(3 * CHUNK, 1, "x", PinWait::Fail).unwrap_err();
    assert!(matches!(err, LedgerError::BeyondEof { .. }));

    // The file grows again: the same mapping serves it, with no new map.
    let maps = mapper.map_calls();
    b.set_size(4 * CHUNK);
    ledger
        .pin(3 * CHUNK, CHUNK, "x", PinWait::Fail)
        .unwrap()
        .unpin();
    assert_eq!(mapper.map_calls(), maps);
    assert_eq!(ledger.stats().file_range_releases, 1);
    ledger.check_invariants().unwrap();
}

#[test]
fn truncate_waits_for_pins_and_gives_up_cleanly() {
    let (ledger, _) = ledger(4, SHORT);
    let b = TestBacking::new(1, 4 * CHUNK, true);
    ledger
        .map(WindowOffset(0), 4 * CHUNK, dynb(&b), FileOffset(0), true)
        .unwrap();
    let pin = ledger.pin(2 * CHUNK, 1, "reader", PinWait::Fail).unwrap();
    let err = ledger
        .release_file_range(b.id_value(), 0, None)
        .unwrap_err();
    assert!(matches!(
        err,
        LedgerError::Timeout {
            op: Op::ReleaseFileRange,
            ..
        }
    ));
    // The chunks reopened: pins and maps work again.
    ledger.pin(0, 1, "x", PinWait::Fail).unwrap().unpin();
    assert_eq!(ledger.stats().draining_chunks, 0);
    drop(pin);
    let guard = ledger.release_file_range(b.id_value(), 0, None).unwrap();
    assert_eq!(guard.drained_chunks().len(), 4);
}

#[test]
fn punch_hole_drains_only_the_chunks_over_the_hole() {
    let (ledger, _) = ledger(4, NO_WAIT);
    let b = TestBacking::new(1, 4 * CHUNK, true);
    // Window chunk i maps file chunk i + 1.
    ledger
        .map(
            WindowOffset(0),
            3 * CHUNK,
            dynb(&b),
            FileOffset(CHUNK),
            true,
        )
        .unwrap();
    let guard = ledger
        .release_file_range(b.id_value(), 2 * CHUNK + 100, Some(CHUNK))
        .unwrap();
    // File bytes 2C+100 .. 3C+100 lie in window chunks 1 and 2.
    assert_eq!(guard.drained_chunks(), &[CHUNK, 2 * CHUNK]);
    ledger.pin(0, 1, "x", PinWait::Fail).unwrap().unpin();
    drop(guard);
    let empty = ledger
        .release_file_range(b.id_value(), CHUNK, Some(0))
        .unwrap();
    assert!(empty.drained_chunks().is_empty());
    ledger.pin(CHUNK, 1, "x", PinWait::Fail).unwrap().unpin();
    let err = ledger
        .release_file_range(b.id_value(), u64::MAX, Some(2))
        .unwrap_err();
    assert!(matches!(
        err,
        LedgerError::Overflow {
            what: Field::FileOffset,
            ..
        }
    ));
}

#[test]
fn a_second_guard_on_the_same_chunks_waits_for_the_first() {
    let (ledger, _) = ledger(4, NO_WAIT);
    let b = TestBacking::new(1, 4 * CHUNK, true);
    ledger
        .map(WindowOffset(0), 2 * CHUNK, dynb(&b), FileOffset(0), true)
        .unwrap();
    let first = ledger
        .release_file_range(b.id_value(), CHUNK, None)
        .unwrap();
    let err = ledger
        .release_file_range(b.id_value(), 0, Some(CHUNK + 1))
        .unwrap_err();
    let LedgerError::Timeout { stuck, .. } = err else {
        panic!("unexpected {err:?}");
    };
    assert!(matches!(
        stuck.as_slice(),
        [Stuck::Chunk {
            draining_for: Some(Op::ReleaseFileRange),
            ..
        }]
    ));
    // A guard that shares no chunk goes ahead.
    let second = ledger
        .release_file_range(b.id_value(), 0, Some(CHUNK))
        .unwrap();
    assert_eq!(second.drained_chunks(), &[0]);
    drop(first);
    drop(second);
    ledger
        .release_file_range(b.id_value(), 0, None)
        .unwrap()
        .reopen();
}

#[test]
fn maps_of_a_file_range_being_changed_wait() {
    let (ledger, _) = ledger(4, NO_WAIT);
    let b = TestBacking::new(1, 8 * CHUNK, true);
    let c = TestBacking::new(2, 8 * CHUNK, true);
    // No chunk mapped yet: the guard still fences the file range.
    let guard = ledger
        .release_file_range(b.id_value(), 4 * CHUNK, None)
        .unwrap();
    assert!(guard.drained_chunks().is_empty());
    let err = ledger
        .map(
            WindowOffset(0),
            CHUNK,
            dynb(&b),
            FileOffset(4 * CHUNK - 4096),
            true,
        )
        .unwrap_err();
    let LedgerError::Timeout { op, stuck, .. } = err else {
        panic!("unexpected {err:?}");
    };
    assert_eq!(op, Op::Map);
    assert_eq!(
        stuck,
        vec![Stuck::FileRange {
            backing: b.id_value(),
            from: 4 * CHUNK,
            end: None
        }]
    );
    // Below the range, or another backing: no wait.
    ledger
        .map(
            WindowOffset(0),
            CHUNK,
            dynb(&b),
            FileOffset(3 * CHUNK),
            true,
        )
        .unwrap();
    ledger
        .map(
            WindowOffset(CHUNK),
            CHUNK,
            dynb(&c),
            FileOffset(4 * CHUNK),
            true,
        )
        .unwrap();
    drop(guard);
    ledger
        .map(
            WindowOffset(2 * CHUNK),
            CHUNK,
            dynb(&b),
            FileOffset(4 * CHUNK),
            true,
        )
        .unwrap();
}

#[test]
fn pin_wait_waits_only_for_draining_chunks() {
    let (ledger, _) = ledger(2, NO_WAIT);
    let b = TestBacking::new(1, 2 * CHUNK, true);
    ledger
        .map(WindowOffset(0), CHUNK, dynb(&b), FileOffset(0), true)
        .unwrap();
    let guard = ledger.release_file_range(b.id_value(), 0, None).unwrap();
    let err = ledger.pin(0, 1, "x", PinWait::Wait).unwrap_err();
    assert!(matches!(err, LedgerError::Timeout { op: Op::Pin, .. }));
    // Unmapped is an immediate refusal, even when asked to wait.
    let err = ledger.pin(CHUNK, 1, "x", PinWait::Wait).unwrap_err();
    assert!(matches!(err, LedgerError::NotMapped { .. }));
    drop(guard);
    ledger.pin(0, 1, "x", PinWait::Wait).unwrap().unpin();
}

#[test]
fn guards_can_be_sent_and_stored_by_id() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Ledger>();
    send::<PinGuard>();
    send::<FileRangeGuard>();

    let (ledger, _) = ledger(2, NO_WAIT);
    let ledger = Arc::new(ledger);
    let b = TestBacking::new(1, 2 * CHUNK, true);
    ledger
        .map(WindowOffset(0), 2 * CHUNK, dynb(&b), FileOffset(0), true)
        .unwrap();
    let mut held: HashMap<PinId, PinGuard> = HashMap::new();
    for at in [0, CHUNK] {
        let g = ledger.pin(at, 1, "control-socket", PinWait::Fail).unwrap();
        held.insert(g.id(), g);
    }
    assert_eq!(ledger.stats().live_pins, 2);
    let (&first, _) = held.iter().next().unwrap();
    let g = held.remove(&first).unwrap();
    std::thread::spawn(move || drop(g)).join().unwrap();
    assert_eq!(ledger.stats().live_pins, 1);
    // The guard outlives the ledger handle safely.
    let last = held.into_values().next().unwrap();
    drop(ledger);
    drop(last);
}

/// `try_map` / `try_unmap` (for a queue's own thread) do what `map` / `unmap` do when
/// nothing is in the way, and where those would wait they fail at once with `WouldWait`,
/// leaving mappings, pins, references and drains as they were; no timeout is counted.
#[test]
fn the_try_forms_never_wait_and_change_nothing_when_they_would() {
    // A long budget: had either waited, the test would hang, not pass.
    let (ledger, mapper) = ledger(4, Duration::from_secs(3600));
    let a = TestBacking::new(1, 4 * CHUNK, true);
    let b = TestBacking::new(2, 4 * CHUNK, true);
    ledger
        .try_map(WindowOffset(0), CHUNK, dynb(&a), FileOffset(0), true)
        .unwrap();
    assert_eq!(ledger.try_unmap(0, CHUNK).unwrap().released, 1);
    ledger
        .try_map(WindowOffset(0), CHUNK, dynb(&a), FileOffset(0), true)
        .unwrap();
    let pin = ledger.pin(10, 10, "dma", PinWait::Fail).unwrap();
    let refs = (Arc::strong_count(&a), Arc::strong_count(&b));
    let calls = (mapper.map_calls(), mapper.unmap_calls());
    // A remap of the pinned chunk to other data, and an unmap of it, would wait.
    let err = ledger
        .try_map(WindowOffset(0), CHUNK, dynb(&b), FileOffset(0), true)
        .unwrap_err();
    assert!(
        matches!(err, LedgerError::WouldWait { op: Op::Map }),
        "{err:?}"
    );
    let err = ledger.try_unmap(0, 2 * CHUNK).unwrap_err();
    assert!(
        matches!(err, LedgerError::WouldWait { op: Op::Unmap }),
        "{err:?}"
    );
    assert_eq!(err.errno(), libc::EAGAIN);
    assert_eq!((Arc::strong_count(&a), Arc::strong_count(&b)), refs);
    assert_eq!((mapper.map_calls(), mapper.unmap_calls()), calls);
    assert_eq!(ledger.mappings().len(), 1);
    assert_eq!(ledger.mappings()[0].pins, 1);
    assert_eq!(ledger.stats().timeouts, 0);
    ledger.check_invariants().unwrap();
    // Nothing was left draining: a free chunk maps at once, and once the pin is gone the
    // same unmap goes through.
    ledger
        .try_map(WindowOffset(CHUNK), CHUNK, dynb(&b), FileOffset(0), true)
        .unwrap();
    drop(pin);
    assert_eq!(ledger.try_unmap(0, 2 * CHUNK).unwrap().released, 2);
    ledger.check_invariants().unwrap();
}

/// Shutdown: a file-range release parked on a pin ends unchanged with `Stopping` the
/// moment `stop_waiting` is called (woken, not timed out), and later ones fail at once
/// instead of waiting; the pin and the mapping are untouched.
#[test]
fn stop_waiting_ends_parked_releases_unchanged() {
    let (ledger, _) = ledger(2, Duration::from_secs(30));
    let ledger = Arc::new(ledger);
    let b = TestBacking::new(7, 2 * CHUNK, true);
    ledger
        .map(WindowOffset(0), CHUNK, dynb(&b), FileOffset(0), true)
        .unwrap();
    let pin = ledger.pin(0, 10, "dma", PinWait::Fail).unwrap();
    let id = b.id_value();
    let parked = {
        let ledger = ledger.clone();
        std::thread::spawn(move || ledger.release_file_range(id, 0, None).map(drop))
    };
    while ledger.stats().waits == 0 {
        std::thread::yield_now();
    }
    ledger.stop_waiting();
    let err = parked.join().unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::Stopping {
                op: Op::ReleaseFileRange
            }
        ),
        "{err}"
    );
    assert_eq!(err.errno(), libc::EBUSY);
    assert_eq!(ledger.stats().timeouts, 0, "ended, not timed out");
    let again = ledger.release_file_range(id, 0, None).map(drop);
    assert!(matches!(again, Err(LedgerError::Stopping { .. })));
    assert_eq!(ledger.stats().live_pins, 1);
    assert_eq!(ledger.mappings().len(), 1, "the mapping stays");
    drop(pin);
    // With the pin gone nothing waits, so the release goes through even now.
    drop(ledger.release_file_range(id, 0, None).unwrap());
    ledger.check_invariants().unwrap();
}
