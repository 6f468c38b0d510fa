//! The small pieces: configuration, errors and their errnos, the in-memory mapper, file
//! backings, and introspection (stats, mappings, dump, serialisation).

use std::io::Write as _;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use super::support::{CHUNK, TestBacking, dynb, ledger, temp_file};
use crate::dax::{
    Backing, BackingId, DEFAULT_CHUNK_SIZE, DEFAULT_WAIT_BUDGET, Failure, Field, FileBacking,
    FileIdentity, FileOffset, Ledger, LedgerConfig, LedgerError, MAX_CHUNKS, Mapper, MapperCall,
    MapperError, MemoryMapper, Op, PinHolder, PinId, PinWait, Stuck, WindowOffset,
};

fn mapper() -> Arc<dyn Mapper> {
    Arc::new(MemoryMapper::new())
}

#[test]
fn config_defaults_follow_the_linux_guest() {
    let config = LedgerConfig::new(64 << 20);
    assert_eq!(config.chunk_size, DEFAULT_CHUNK_SIZE);
    assert_eq!(config.chunk_size, 2 << 20);
    assert_eq!(config.wait_budget, DEFAULT_WAIT_BUDGET);
    assert_eq!(config.wait_budget, Duration::from_secs(10));
    let ledger = Ledger::new(config, mapper()).unwrap();
    assert_eq!(
        (ledger.window_size(), ledger.chunk_size()),
        (64 << 20, 2 << 20)
    );
    let small = LedgerConfig::new(4096).with_chunk_size(4096);
    assert_eq!(Ledger::new(small, mapper()).unwrap().chunk_size(), 4096);
}

#[test]
fn config_rejects_bad_shapes() {
    let cases = [
        (
            LedgerConfig::new(3 * 4096).with_chunk_size(3 * 4096),
            "BadChunkSize",
        ),
        (
            LedgerConfig::new(4096).with_chunk_size(2048),
            "BadChunkSize",
        ),
        (LedgerConfig::new(0), "BadWindowSize"),
        (LedgerConfig::new(3 << 20), "BadWindowSize"),
        (
            LedgerConfig::new((MAX_CHUNKS + 1) * 4096).with_chunk_size(4096),
            "TooManyChunks",
        ),
    ];
    for (config, want) in cases {
        let err = Ledger::new(config, mapper()).unwrap_err();
        assert!(format!("{err:?}").starts_with(want), "{err:?}");
        assert_eq!(err.errno(), libc::EINVAL);
    }
    let err = Ledger::new(LedgerConfig::new(3 << 20), mapper()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "window size 0x300000 is not a non-zero multiple of the chunk size 0x200000"
    );
}

#[test]
fn every_error_has_its_errno() {
    let io = |n| std::io::Error::from_raw_os_error(n);
    let mapper_err = |source| LedgerError::Mapper {
        call: MapperCall::Map,
        window_offset: 0,
        len: 1,
        source,
    };
    let cases = [
        (LedgerError::NotMapped { offset: 0 }, libc::EFAULT),
        (
            LedgerError::Draining {
                offset: 0,
                op: Op::Unmap,
            },
            libc::EBUSY,
        ),
        (
            LedgerError::Timeout {
                op: Op::Reset,
                waited: Duration::ZERO,
                stuck: vec![],
            },
            libc::EBUSY,
        ),
        (
            LedgerError::ReadOnlyBacking {
                backing: BackingId(1),
            },
            libc::EACCES,
        ),
        (LedgerError::WouldWait { op: Op::Map }, libc::EAGAIN),
        (
            LedgerError::BackingSize {
                backing: BackingId(1),
                source: io(libc::ENOENT),
            },
            libc::ENOENT,
        ),
        (
            LedgerError::BackingSize {
                backing: BackingId(1),
                source: std::io::Error::other("no errno"),
            },
            libc::EIO,
        ),
        // Never ENOMEM: Linux retries a DAX fault that gets ENOMEM for ever.
        (
            mapper_err(MapperError::Refused { reason: "x".into() }),
            libc::EIO,
        ),
        (
            mapper_err(MapperError::Unmappable { reason: "x".into() }),
            libc::EIO,
        ),
        (
            LedgerError::Unfollowable {
                backing: BackingId(1),
                new_size: 10,
                window_offset: 0,
            },
            libc::EIO,
        ),
        (mapper_err(MapperError::Io(io(libc::EPIPE))), libc::EPIPE),
        (mapper_err(MapperError::Timeout), libc::EIO),
        (mapper_err(MapperError::Disconnected), libc::EIO),
    ];
    for (err, errno) in cases {
        assert_eq!(err.errno(), errno, "{err:?}");
    }
    assert!(MapperError::Disconnected.frontend_gone());
    assert!(!MapperError::Timeout.frontend_gone());
    assert!(!MapperError::Refused { reason: "x".into() }.frontend_gone());
    assert!(!MapperError::Io(io(libc::EIO)).frontend_gone());
}

#[test]
fn error_messages_carry_the_numbers() {
    let err = LedgerError::Misaligned {
        what: Field::FileOffset,
        value: 0x1234,
        align: 0x1000,
    };
    assert_eq!(
        err.to_string(),
        "file offset 0x1234 is not a multiple of 0x1000"
    );
    let err = LedgerError::Timeout {
        op: Op::ReleaseFileRange,
        waited: Duration::from_millis(5),
        stuck: vec![
            Stuck::Chunk {
                window_offset: 0x20_0000,
                pins: 1,
                holders: vec![PinHolder {
                    pin: PinId(9),
                    holder: "vfio".into(),
                    held_for: Duration::from_secs(1),
                }],
                draining_for: Some(Op::ReleaseFileRange),
            },
            Stuck::FileRange {
                backing: BackingId(3),
                from: 0x1000,
                end: Some(0x2000),
            },
        ],
    };
    assert_eq!(
        err.to_string(),
        "release_file_range gave up after 5ms; stuck: chunk 0x200000: 1 pin(s) \
         [pin#9 by \"vfio\" for 1s], draining for release_file_range; \
         file range 0x1000..0x2000 of backing 3"
    );
}

#[test]
fn the_memory_mapper_records_mappings_and_contract_breaches() {
    let m = MemoryMapper::with_window(4 * CHUNK);
    let file = temp_file();
    let id = FileIdentity::of(file.as_fd()).unwrap();
    m.map(WindowOffset(0), CHUNK, file.as_fd(), FileOffset(4096), true)
        .unwrap();
    let live = m.live();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].file, id);
    assert_eq!(live[0].file_offset, FileOffset(4096));
    assert_eq!(
        m.mapping_at(CHUNK - 1).map(|l| l.window_offset),
        Some(WindowOffset(0))
    );
    assert_eq!(m.mapping_at(CHUNK), None);
    assert!(m.violations().is_empty());

    // A map over a live byte, an unmap that is not one earlier map, a map beyond the
    // window: refused and recorded.
    assert!(matches!(
        m.map(
            WindowOffset(0),
            2 * CHUNK,
            file.as_fd(),
            FileOffset(0),
            false
        ),
        Err(MapperError::Refused { .. })
    ));
    assert!(m.unmap(0, 2 * CHUNK).is_err());
    assert!(
        m.map(
            WindowOffset(3 * CHUNK),
            2 * CHUNK,
            file.as_fd(),
            FileOffset(0),
            false
        )
        .is_err()
    );
    assert_eq!(m.violations().len(), 3);
    assert_eq!(m.live().len(), 1);

    m.fail_next_unmap(Failure::Timeout);
    assert!(matches!(m.unmap(0, CHUNK), Err(MapperError::Timeout)));
    assert_eq!(m.live().len(), 1, "a failed unmap unmaps nothing");
    m.unmap(0, CHUNK).unwrap();
    m.fail_next_map(Failure::Io);
    assert!(matches!(
        m.map(WindowOffset(0), CHUNK, file.as_fd(), FileOffset(0), true),
        Err(MapperError::Io(_))
    ));
    m.map(WindowOffset(0), CHUNK, file.as_fd(), FileOffset(0), true)
        .unwrap();
    assert_eq!((m.map_calls(), m.unmap_calls()), (5, 3));

    m.disconnect();
    assert!(m.live().is_empty());
    assert!(matches!(m.unmap(0, CHUNK), Err(MapperError::Disconnected)));
    assert!(matches!(
        m.map(WindowOffset(0), CHUNK, file.as_fd(), FileOffset(0), true),
        Err(MapperError::Disconnected)
    ));
}

#[test]
fn file_backings_know_their_identity_size_and_access() {
    let mut file = temp_file();
    file.write_all(&[7u8; 5000]).unwrap();
    let id = FileIdentity::of(file.as_fd()).unwrap();
    let b = FileBacking::new(file.try_clone().unwrap(), true).unwrap();
    assert_eq!(b.id(), id.backing_id());
    assert_eq!(b.size().unwrap(), 5000);
    b.file().set_len(100).unwrap();
    assert_eq!(b.size().unwrap(), 100);
    assert!(b.writable());
    assert_eq!(FileIdentity::of(b.fd()).unwrap(), id);

    let other = FileBacking::new(temp_file(), false).unwrap();
    assert_ne!(other.id(), b.id(), "two inodes, two ids");
    let chosen = FileBacking::with_id(temp_file(), BackingId(42), false);
    assert_eq!(chosen.id(), BackingId(42));

    let path = std::env::temp_dir().join(format!("vhost-dax-ledger-open-{}", std::process::id()));
    std::fs::write(&path, b"abc").unwrap();
    let ro = FileBacking::open(&path, false).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(ro.size().unwrap(), 3);
    assert!(!ro.writable());

    // A read-only backing is never mapped writable.
    let (ledger, mapper) = ledger(2, Duration::ZERO);
    let ro: Arc<dyn Backing> = Arc::new(ro);
    assert!(matches!(
        ledger.map(WindowOffset(0), CHUNK, Arc::clone(&ro), FileOffset(0), true),
        Err(LedgerError::ReadOnlyBacking { .. })
    ));
    ledger
        .map(WindowOffset(0), CHUNK, ro, FileOffset(0), false)
        .unwrap();
    assert!(!mapper.live()[0].writable);
}

#[test]
fn stats_count_what_happened() {
    let (ledger, mapper) = ledger(4, Duration::ZERO);
    let b = TestBacking::new(1, 4 * CHUNK, true);
    ledger
        .map(WindowOffset(0), CHUNK, dynb(&b), FileOffset(0), true)
        .unwrap(); // map
    ledger
        .map(WindowOffset(0), CHUNK, dynb(&b), FileOffset(0), false)
        .unwrap(); // already mapped
    ledger
        .map(WindowOffset(0), 2 * CHUNK, dynb(&b), FileOffset(0), true)
        .unwrap(); // remap (drain + unmap)
    let pin = ledger.pin(0, 1, "p", PinWait::Fail).unwrap(); // pin
    assert!(ledger.pin(2 * CHUNK, 1, "p", PinWait::Fail).is_err()); // refusal
    assert!(ledger.unmap(0, 2 * CHUNK).is_err()); // drain + timeout
    drop(pin);
    drop(ledger.release_file_range(b.id_value(), 0, None).unwrap()); // drain
    mapper.fail_next_map(Failure::Refused);
    assert!(
        ledger
            .map(
                WindowOffset(2 * CHUNK),
                CHUNK,
                dynb(&b),
                FileOffset(0),
                true
            )
            .is_err()
    ); // mapper error
    ledger.unmap(0, 4 * CHUNK).unwrap(); // drain + unmap
    let s = ledger.stats();
    assert_eq!(
        (s.maps, s.remaps, s.already_mapped, s.unmaps),
        (2, 1, 1, 2),
        "{s:?}"
    );
    assert_eq!((s.pins, s.pin_refusals), (1, 1));
    assert_eq!((s.drains, s.file_range_releases), (4, 1));
    assert_eq!((s.timeouts, s.mapper_errors), (1, 1));
    assert_eq!(s.waits, 0, "a zero budget never sleeps");
}

#[test]
fn mappings_dump_and_stats_are_readable_and_serialisable() {
    let (ledger, _) = ledger(8, Duration::ZERO);
    let b = TestBacking::new(5, 8 * CHUNK, true);
    ledger
        .map(
            WindowOffset(CHUNK),
            2 * CHUNK,
            dynb(&b),
            FileOffset(4096),
            false,
        )
        .unwrap();
    ledger
        .map(
            WindowOffset(4 * CHUNK),
            CHUNK,
            dynb(&b),
            FileOffset(0),
            true,
        )
        .unwrap();
    let _pin = ledger
        .pin(CHUNK, 1, "virtio-fs-req", PinWait::Fail)
        .unwrap();
    let _guard = ledger.release_file_range(b.id_value(), 0, Some(1)).unwrap();

    let maps = ledger.mappings();
    assert_eq!(maps.len(), 2);
    assert_eq!(
        (maps[0].window_offset, maps[0].len, maps[0].backing),
        (WindowOffset(CHUNK), 2 * CHUNK, BackingId(5))
    );
    assert_eq!(
        (maps[0].file_offset, maps[0].writable, maps[0].pins),
        (FileOffset(4096), false, 1)
    );
    assert!(maps[1].draining, "file byte 0 lies in the second mapping");
    assert!(!maps[0].draining);

    let dump = ledger.dump();
    let lines: Vec<&str> = dump.lines().collect();
    assert!(lines[0].starts_with("dax ledger: window 0x20000 in 8 chunk(s) of 0x4000"));
    assert!(
        lines[1].contains("chunk 0") && lines[1].ends_with("free"),
        "{dump}"
    );
    assert!(lines[2].contains("chunks 1-2"), "{dump}");
    assert!(
        lines[2].contains("mapped  backing 5 file 0x1000 ro  pinned: 1x1"),
        "{dump}"
    );
    assert!(
        lines[3].contains("chunk 3") && lines[3].ends_with("free"),
        "{dump}"
    );
    assert!(lines[4].contains("backing 5 file 0x0 rw  draining for release_file_range"));
    assert!(lines[5].contains("chunks 5-7"), "{dump}");
    assert!(dump.contains("pin#"), "{dump}");
    assert!(
        dump.contains("\"virtio-fs-req\" on 0x4000..0x4001"),
        "{dump}"
    );
    assert!(dump.contains("release_file_range on 1 chunk(s), holding backing 5 file 0x0..0x1"));

    let json = serde_json::to_value(ledger.stats()).unwrap();
    assert_eq!(json["live_mappings"], 2);
    assert_eq!(json["live_pins"], 1);
    assert_eq!(json["draining_chunks"], 1);
    let json = serde_json::to_value(&maps).unwrap();
    assert_eq!(json[0]["backing"], 5);
    let json = serde_json::to_value(ledger.pins()).unwrap();
    assert_eq!(json[0]["holder"], "virtio-fs-req");
}
