//! The control socket against a real ledger (over the in-memory frontend), over a real
//! socket in a temporary directory.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{ControlError, ControlServer, IDLE_EVICTABLE, MAX_CONNECTIONS, MAX_LINE};
use crate::dax::{
    Backing, FileBacking, FileOffset, Ledger, LedgerConfig, LedgerError, MemoryMapper, WindowOffset,
};

const CHUNK: u64 = 16 * 1024;
const CHUNKS: u64 = 8;
/// Size of the test file: three chunks.
const FILE_SIZE: u64 = 3 * CHUNK;

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("vhost-dax-control-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir).expect("create the test directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Fixture {
    ledger: Arc<Ledger>,
    mapper: Arc<MemoryMapper>,
    file: Arc<FileBacking>,
    server: ControlServer,
    path: PathBuf,
    // Last: removed after the server is gone.
    _dir: TempDir,
}

impl Fixture {
    fn new(budget: Duration) -> Fixture {
        let dir = TempDir::new();
        let file_path = dir.0.join("backing");
        std::fs::write(&file_path, vec![0u8; usize::try_from(FILE_SIZE).unwrap()]).unwrap();
        let file = Arc::new(FileBacking::open(&file_path, true).unwrap());
        let mapper = Arc::new(MemoryMapper::with_window(CHUNKS * CHUNK));
        let config = LedgerConfig::new(CHUNKS * CHUNK)
            .with_chunk_size(CHUNK)
            .with_wait_budget(budget);
        let ledger = Arc::new(Ledger::new(config, Arc::clone(&mapper) as _).unwrap());
        let path = dir.0.join("control.sock");
        let server = ControlServer::bind(&path, Arc::clone(&ledger)).expect("bind");
        Fixture {
            ledger,
            mapper,
            file,
            server,
            path,
            _dir: dir,
        }
    }

    /// Maps `chunks` chunks of the file at window chunk `at`, from file chunk `from`.
    fn map(&self, at: u64, chunks: u64, from: u64) {
        let backing = Arc::clone(&self.file) as Arc<dyn Backing>;
        self.ledger
            .map(
                WindowOffset(at * CHUNK),
                chunks * CHUNK,
                backing,
                FileOffset(from * CHUNK),
                true,
            )
            .expect("map");
    }

    fn connect(&self) -> Client {
        Client::connect(&self.path)
    }
}

struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    fn connect(path: &std::path::Path) -> Client {
        let stream = UnixStream::connect(path).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let writer = stream.try_clone().unwrap();
        Client {
            reader: BufReader::new(stream),
            writer,
        }
    }

    fn send(&mut self, line: &[u8]) {
        self.writer.write_all(line).unwrap();
        self.writer.write_all(b"\n").unwrap();
    }

    /// The next answer line, or `None` at end of file.
    fn answer(&mut self) -> Option<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).expect("read an answer") == 0 {
            return None;
        }
        assert!(line.ends_with('\n'), "answer without newline: {line:?}");
        Some(serde_json::from_str(&line).expect("the answer is JSON"))
    }

    fn ask(&mut self, request: Value) -> Value {
        self.ask_raw(request.to_string().as_bytes())
    }

    fn ask_raw(&mut self, line: &[u8]) -> Value {
        self.send(line);
        self.answer().expect("an answer before end of file")
    }

    fn pin(&mut self, offset: u64, len: u64) -> u64 {
        let a = self.ask(json!({"op":"pin","offset":offset,"len":len}));
        a["pin"]
            .as_u64()
            .unwrap_or_else(|| panic!("pin refused: {a}"))
    }
}

/// The errno of an error answer, checking its shape.
fn errno(answer: &Value) -> i64 {
    let obj = answer.as_object().expect("an object");
    assert_eq!(obj.len(), 2, "an error has two fields: {answer}");
    assert!(
        !obj["error"].as_str().expect("a reason").is_empty(),
        "{answer}"
    );
    obj["errno"].as_i64().expect("an errno")
}

/// Polls `cond` for up to five seconds.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

const SHORT: Duration = Duration::from_millis(50);
const LONG: Duration = Duration::from_secs(5);

#[test]
fn pin_unpin_round_trip() {
    let f = Fixture::new(SHORT);
    f.map(0, 2, 0);
    let mut c = f.connect();
    let id = c.pin(4096, CHUNK);
    let pins = f.ledger.pins();
    assert_eq!(pins.len(), 1);
    assert_eq!(pins[0].id.0, id);
    assert_eq!(pins[0].holder, "control:1");
    assert_eq!((pins[0].window_offset, pins[0].len), (4096, CHUNK));

    let other = c.pin(0, 1);
    assert_ne!(other, id);
    assert_eq!(f.ledger.stats().live_pins, 2);

    assert_eq!(c.ask(json!({"op":"unpin","pin":id})), json!({"ok":true}));
    assert_eq!(f.ledger.stats().live_pins, 1);
    // Twice is an unknown pin.
    let a = c.ask(json!({"op":"unpin","pin":id}));
    assert_eq!(errno(&a), i64::from(libc::ENOENT), "{a}");
    assert_eq!(c.ask(json!({"op":"unpin","pin":other})), json!({"ok":true}));
    assert_eq!(f.ledger.stats().live_pins, 0);
    f.ledger.check_invariants().unwrap();
}

#[test]
fn pin_ids_are_not_reused() {
    let f = Fixture::new(SHORT);
    f.map(0, 1, 0);
    let mut c = f.connect();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let id = c.pin(0, CHUNK);
        assert!(seen.insert(id), "pin {id} given twice");
        assert_eq!(c.ask(json!({"op":"unpin","pin":id})), json!({"ok":true}));
    }
}

#[test]
fn holder_names_the_connection_and_the_client() {
    let f = Fixture::new(SHORT);
    f.map(0, 1, 0);
    let mut a = f.connect();
    let mut b = f.connect();
    // Connections are numbered in accept order, which is connect order here.
    let a_id = a.pin(0, 1);
    let b_answer = b.ask(json!({"op":"pin","offset":0,"len":1,"holder":"vfio0"}));
    let b_id = b_answer["pin"].as_u64().expect("pinned");
    let holders: std::collections::HashMap<u64, String> = f
        .ledger
        .pins()
        .into_iter()
        .map(|p| (p.id.0, p.holder))
        .collect();
    assert_eq!(holders[&a_id], "control:1");
    assert_eq!(holders[&b_id], "control:2:vfio0");

    let listed = a.ask(json!({"op":"pins"}));
    let listed = listed["pins"].as_array().expect("a list");
    assert_eq!(listed.len(), 2);
    let b_entry = listed.iter().find(|p| p["pin"] == b_id).expect("b's pin");
    assert_eq!(b_entry["holder"], "control:2:vfio0");
    assert_eq!(b_entry["window_offset"], 0);
    assert_eq!(b_entry["len"], 1);
    assert!(b_entry["held_for_ms"].is_u64());
}

#[test]
fn pin_on_unmapped_chunk_is_refused() {
    let f = Fixture::new(SHORT);
    f.map(0, 1, 0);
    let mut c = f.connect();
    // Chunk 1 is not mapped, nor is the second chunk of a range straddling 0 and 1.
    for (offset, len) in [(CHUNK, 1), (CHUNK - 1, 2)] {
        let a = c.ask(json!({"op":"pin","offset":offset,"len":len}));
        assert_eq!(errno(&a), i64::from(libc::EFAULT), "{a}");
        assert!(a["error"].as_str().unwrap().contains("not mapped"), "{a}");
    }
    // Outside the window, empty: the ledger's EINVAL.
    for (offset, len) in [(CHUNKS * CHUNK, 1), (0, 0), (u64::MAX, 2)] {
        let a = c.ask(json!({"op":"pin","offset":offset,"len":len}));
        assert_eq!(errno(&a), i64::from(libc::EINVAL), "{a}");
    }
    assert_eq!(f.ledger.stats().live_pins, 0);
}

#[test]
fn pin_beyond_end_of_file_is_refused() {
    let f = Fixture::new(SHORT);
    // File chunk 2 is the file's last; chunks 2..4 of the file reach past its end.
    f.map(0, 2, 2);
    let mut c = f.connect();
    c.pin(0, CHUNK);
    let a = c.ask(json!({"op":"pin","offset":CHUNK,"len":1}));
    assert_eq!(errno(&a), i64::from(libc::EFAULT), "{a}");
    assert!(a["error"].as_str().unwrap().contains("end of file"), "{a}");
}

#[test]
fn pin_blocks_unmap_until_unpinned() {
    let f = Fixture::new(SHORT);
    f.map(0, 1, 0);
    f.map(1, 1, 1);
    let mut c = f.connect();
    let id = c.pin(100, 10);
    match f.ledger.unmap(0, CHUNK) {
        Err(e @ LedgerError::Timeout { .. }) => {
            assert_eq!(e.errno(), libc::EBUSY);
            // The ledger says who holds the chunk.
            assert!(e.to_string().contains("control:1"), "{e}");
        }
        other => panic!("unmap of a pinned chunk: {other:?}"),
    }
    assert!(f.mapper.mapping_at(0).is_some());
    // The other chunk is not held.
    f.ledger.unmap(CHUNK, CHUNK).unwrap();
    assert_eq!(c.ask(json!({"op":"unpin","pin":id})), json!({"ok":true}));
    assert_eq!(f.ledger.unmap(0, CHUNK).unwrap().released, 1);
    assert!(f.mapper.live().is_empty());
    assert_eq!(Arc::strong_count(&f.file), 1);
}

#[test]
fn closing_the_connection_drops_its_pins() {
    let f = Fixture::new(SHORT);
    f.map(0, 1, 0);
    f.map(1, 1, 1);
    let mut keeper = f.connect();
    let kept = keeper.pin(CHUNK, 1);
    let mut c = f.connect();
    c.pin(0, 1);
    c.pin(0, CHUNK);
    assert!(f.ledger.unmap(0, CHUNK).is_err());
    drop(c);
    eventually("the closed connection's pins to go", || {
        f.ledger.stats().live_pins == 1
    });
    assert_eq!(f.ledger.pins()[0].id.0, kept);
    assert_eq!(f.ledger.unmap(0, CHUNK).unwrap().released, 1);
    // The other connection's pin stays, and its connection still works.
    assert!(f.ledger.unmap(CHUNK, CHUNK).is_err());
    assert_eq!(
        keeper.ask(json!({"op":"unpin","pin":kept})),
        json!({"ok":true})
    );
    f.ledger.unmap(CHUNK, CHUNK).unwrap();
}

#[test]
fn a_pin_belongs_to_its_connection() {
    let f = Fixture::new(SHORT);
    f.map(0, 1, 0);
    let mut a = f.connect();
    let mut b = f.connect();
    let id = a.pin(0, 1);
    let answer = b.ask(json!({"op":"unpin","pin":id}));
    assert_eq!(errno(&answer), i64::from(libc::ENOENT), "{answer}");
    assert_eq!(f.ledger.stats().live_pins, 1);
    let answer = b.ask(json!({"op":"unpin","pin":id + 1000}));
    assert_eq!(errno(&answer), i64::from(libc::ENOENT), "{answer}");
    assert_eq!(a.ask(json!({"op":"unpin","pin":id})), json!({"ok":true}));
}

#[test]
fn pin_on_a_draining_chunk_fails_or_waits() {
    let f = Fixture::new(LONG);
    f.map(0, 1, 0);
    let mut c = f.connect();
    // A truncate in progress drains the chunk.
    let guard = f
        .ledger
        .release_file_range(f.file.id(), 0, None)
        .expect("drain");
    let a = c.ask(json!({"op":"pin","offset":0,"len":1}));
    assert_eq!(errno(&a), i64::from(libc::EBUSY), "{a}");
    assert!(a["error"].as_str().unwrap().contains("draining"), "{a}");
    let a = c.ask(json!({"op":"pin","offset":0,"len":1,"wait":false}));
    assert_eq!(errno(&a), i64::from(libc::EBUSY), "{a}");

    // The chunk reopens once the waiting pin is seen waiting, not after a guessed sleep.
    let ledger = f.ledger.clone();
    let waits_before = ledger.stats().waits;
    let reopen = std::thread::spawn(move || {
        eventually("the pin to wait", || ledger.stats().waits > waits_before);
        drop(guard);
    });
    let a = c.ask(json!({"op":"pin","offset":0,"len":1,"wait":true}));
    assert!(a["pin"].is_u64(), "{a}");
    reopen.join().unwrap();
    assert!(
        f.ledger.stats().waits > waits_before,
        "granted only after waiting"
    );
}

#[test]
fn a_wait_that_runs_out_is_ebusy() {
    let f = Fixture::new(SHORT);
    f.map(0, 1, 0);
    let _guard = f.ledger.release_file_range(f.file.id(), 0, None).unwrap();
    let mut c = f.connect();
    let a = c.ask(json!({"op":"pin","offset":0,"len":1,"wait":true}));
    assert_eq!(errno(&a), i64::from(libc::EBUSY), "{a}");
    assert!(a["error"].as_str().unwrap().contains("gave up"), "{a}");
}

#[test]
fn malformed_lines_are_answered_and_the_connection_keeps_working() {
    let f = Fixture::new(SHORT);
    f.map(0, 1, 0);
    let mut c = f.connect();
    let long = format!(r#"{{"op":"stats","pad":"{}"}}"#, "x".repeat(MAX_LINE));
    let huge = vec![b'y'; 20 * MAX_LINE];
    let bad: Vec<&[u8]> = vec![
        b"not json",
        b"",
        b"{}",
        b"[1,2]",
        b"42",
        br#"{"op":"frobnicate"}"#,
        br#"{"op":"pin","offset":"0","len":1}"#,
        br#"{"op":"pin","offset":0}"#,
        br#"{"op":"pin","offset":-1,"len":1}"#,
        br#"{"op":"pin","offset":0,"len":1,"wait":"yes"}"#,
        br#"{"op":"pin","offset":0,"len":1,"wiat":true}"#,
        br#"{"op":"unpin","pin":"one"}"#,
        br#"{"op":"stats"}{"op":"stats"}"#,
        b"\xff\xfe",
        long.as_bytes(),
        &huge,
    ];
    for line in bad {
        let a = c.ask_raw(line);
        assert_eq!(
            errno(&a),
            i64::from(libc::EINVAL),
            "{:?} -> {a}",
            String::from_utf8_lossy(&line[..line.len().min(80)])
        );
    }
    let a = c.ask_raw(&huge);
    assert!(a["error"].as_str().unwrap().contains("longer than"), "{a}");
    // Still in step: each line got exactly one answer, and requests still work.
    assert!(c.ask(json!({"op":"stats"}))["stats"].is_object());
    let id = c.pin(0, 1);
    // CRLF line ends are accepted.
    c.writer
        .write_all(format!("{{\"op\":\"unpin\",\"pin\":{id}}}\r\n").as_bytes())
        .unwrap();
    assert_eq!(c.answer(), Some(json!({"ok":true})));
    // A line of exactly the limit is read whole.
    let mut exact = br#"{"op":"stats"}"#.to_vec();
    exact.resize(MAX_LINE, b' ');
    assert!(c.ask_raw(&exact)["stats"].is_object());
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let f = Fixture::new(SHORT);
    f.map(0, 1, 0);
    let mut c = f.connect();
    let mut batch = Vec::new();
    for _ in 0..10 {
        batch.extend_from_slice(br#"{"op":"pin","offset":0,"len":1}"#);
        batch.push(b'\n');
        batch.extend_from_slice(b"bad\n");
    }
    c.writer.write_all(&batch).unwrap();
    for _ in 0..10 {
        assert!(c.answer().unwrap()["pin"].is_u64());
        assert_eq!(errno(&c.answer().unwrap()), i64::from(libc::EINVAL));
    }
    assert_eq!(f.ledger.stats().live_pins, 10);
    // A last line without a newline, then end of file: still answered.
    c.writer.write_all(br#"{"op":"stats"}"#).unwrap();
    c.writer.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(c.answer().unwrap()["stats"].is_object());
    assert_eq!(c.answer(), None);
    eventually("the pins to go", || f.ledger.stats().live_pins == 0);
}

#[test]
fn stats_reflect_the_ledger() {
    let f = Fixture::new(SHORT);
    let mut c = f.connect();
    let s = c.ask(json!({"op":"stats"}));
    let s = &s["stats"];
    assert_eq!(s["window_size"], CHUNKS * CHUNK);
    assert_eq!(s["chunk_size"], CHUNK);
    assert_eq!(s["chunks"], CHUNKS);
    assert_eq!(s["mapped_bytes"], 0);
    assert_eq!(s["live_pins"], 0);
    assert_eq!(s["control_connections"], 1);

    f.map(0, 2, 0);
    f.map(4, 1, 2);
    c.pin(0, 1);
    c.pin(CHUNK, CHUNK);
    let a = c.ask(json!({"op":"pin","offset":2 * CHUNK,"len":1}));
    assert_eq!(errno(&a), i64::from(libc::EFAULT));
    let mut other = f.connect();
    other.pin(4 * CHUNK, 1);
    f.ledger
        .pin(4 * CHUNK, 1, "test", crate::dax::PinWait::Fail)
        .map(drop)
        .unwrap();

    let answer = c.ask(json!({"op":"stats"}));
    let s = answer["stats"].as_object().expect("stats object");
    let ledger = f.ledger.stats();
    assert_eq!(s["maps"], ledger.maps);
    assert_eq!(s["maps"], 2);
    assert_eq!(s["pins"], 4);
    assert_eq!(s["pin_refusals"], 1);
    assert_eq!(s["live_mappings"], 2);
    assert_eq!(s["mapped_chunks"], 3);
    assert_eq!(s["mapped_bytes"], 3 * CHUNK);
    assert_eq!(s["live_pins"], 3);
    assert_eq!(s["pinned_chunks"], 3);
    assert_eq!(s["backings_with_mappings"], 1);
    assert_eq!(s["control_connections"], 2);
    assert_eq!(s["control_pins"], 3);
    assert!(s["wait_time_ns"].is_u64());
    // Every counter of LedgerStats is there (wait_time as nanoseconds).
    let expected = serde_json::to_value(&ledger).unwrap();
    for key in expected.as_object().unwrap().keys() {
        let key = if key == "wait_time" {
            "wait_time_ns"
        } else {
            key
        };
        assert!(s.contains_key(key), "stats lack {key}: {answer}");
    }
}

#[test]
fn mappings_reflect_the_ledger() {
    let f = Fixture::new(SHORT);
    let mut c = f.connect();
    assert_eq!(c.ask(json!({"op":"mappings"})), json!({"mappings":[]}));
    f.map(4, 1, 2);
    f.map(0, 2, 0);
    c.pin(CHUNK, 2);
    let ro = Arc::new(FileBacking::with_id(
        f.file.file().try_clone().unwrap(),
        crate::dax::BackingId(77),
        false,
    ));
    f.ledger
        .map(
            WindowOffset(6 * CHUNK),
            CHUNK,
            ro as Arc<dyn Backing>,
            FileOffset(0),
            false,
        )
        .unwrap();
    let id = f.file.id().0;
    assert_eq!(
        c.ask(json!({"op":"mappings"})),
        json!({"mappings":[
            {"window_offset":0,"len":2 * CHUNK,"backing":id,"file_offset":0,
             "writable":true,"pins":1,"draining":false},
            {"window_offset":4 * CHUNK,"len":CHUNK,"backing":id,"file_offset":2 * CHUNK,
             "writable":true,"pins":0,"draining":false},
            {"window_offset":6 * CHUNK,"len":CHUNK,"backing":77,"file_offset":0,
             "writable":false,"pins":0,"draining":false},
        ]})
    );
}

#[test]
fn shutdown_drops_pins_closes_clients_and_removes_the_socket() {
    let mut f = Fixture::new(SHORT);
    f.map(0, 1, 0);
    let mut c = f.connect();
    c.pin(0, 1);
    let mut idle = f.connect();
    assert!(idle.ask(json!({"op":"stats"}))["stats"].is_object());
    assert!(f.path.exists());
    assert_eq!(f.server.path(), f.path);
    let start = Instant::now();
    f.server.shutdown();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(!f.path.exists(), "the socket file is gone");
    assert_eq!(f.ledger.stats().live_pins, 0);
    assert_eq!(c.answer(), None, "the client sees end of file");
    assert_eq!(idle.answer(), None);
    f.ledger.unmap(0, CHUNK).unwrap();
    assert!(UnixStream::connect(&f.path).is_err());
    // Twice is harmless, and so is the drop after it.
    f.server.shutdown();
}

#[test]
fn drop_shuts_down_too() {
    let f = Fixture::new(SHORT);
    f.map(0, 1, 0);
    let mut c = f.connect();
    c.pin(0, 1);
    let Fixture {
        server,
        path,
        ledger,
        _dir,
        ..
    } = f;
    drop(server);
    assert!(!path.exists());
    assert_eq!(ledger.stats().live_pins, 0);
    assert_eq!(c.answer(), None);
}

#[test]
fn shutdown_with_a_client_that_does_not_read() {
    let mut f = Fixture::new(SHORT);
    let c = f.connect();
    // Fill the socket buffers: the server blocks writing answers no one reads.
    let mut writer = c.writer.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let request = b"{\"op\":\"mappings\"}\n".repeat(1000);
    while writer.write_all(&request).is_ok() {}
    let start = Instant::now();
    f.server.shutdown();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(!f.path.exists());
}

#[test]
fn bind_refuses_an_existing_path() {
    let f = Fixture::new(SHORT);
    // The live socket.
    match ControlServer::bind(&f.path, Arc::clone(&f.ledger)) {
        Err(e @ ControlError::Bind { .. }) => {
            assert!(e.to_string().contains(&*f.path.to_string_lossy()), "{e}");
        }
        other => panic!("second bind: {other:?}"),
    }
    // The first server still serves.
    assert!(f.connect().ask(json!({"op":"stats"}))["stats"].is_object());

    // A regular file, and a stale socket: left alone.
    let dir = TempDir::new();
    let file = dir.0.join("file");
    std::fs::write(&file, b"keep me").unwrap();
    let err = ControlServer::bind(&file, Arc::clone(&f.ledger)).unwrap_err();
    let ControlError::Bind { path, source } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(path, &file);
    assert_eq!(source.kind(), std::io::ErrorKind::AlreadyExists);
    assert!(err.to_string().contains(&*file.to_string_lossy()), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");

    let stale = dir.0.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(ControlServer::bind(&stale, Arc::clone(&f.ledger)).is_err());
    assert!(stale.exists());

    // A directory that does not exist: the bind's own error.
    let missing = dir.0.join("no/such/dir/sock");
    let err = ControlServer::bind(&missing, Arc::clone(&f.ledger)).unwrap_err();
    assert!(err.to_string().contains("no/such/dir"), "{err}");
}

#[test]
fn shutdown_leaves_a_replaced_socket_file_alone() {
    let mut f = Fixture::new(SHORT);
    std::fs::remove_file(&f.path).unwrap();
    std::fs::write(&f.path, b"someone else's").unwrap();
    f.server.shutdown();
    assert_eq!(std::fs::read(&f.path).unwrap(), b"someone else's");
}

#[test]
fn too_many_connections_are_refused_with_one_line() {
    let f = Fixture::new(SHORT);
    f.map(0, 1, 0);
    let mut clients: Vec<Client> = (0..MAX_CONNECTIONS).map(|_| f.connect()).collect();
    // Each holds a pin: none may be closed to make room, however long it is idle.
    for c in &mut clients {
        c.pin(0, 1);
    }
    std::thread::sleep(IDLE_EVICTABLE);
    let mut extra = f.connect();
    let a = extra.answer().expect("one error line");
    assert_eq!(errno(&a), i64::from(libc::EAGAIN), "{a}");
    assert!(a["error"].as_str().unwrap().contains("too many"), "{a}");
    assert_eq!(extra.answer(), None);

    // One goes, a new one is served.
    drop(clients.pop());
    eventually("a connection slot to free", || {
        let mut c = f.connect();
        c.send(br#"{"op":"stats"}"#);
        c.answer().is_some_and(|a| a["stats"].is_object())
    });
    for c in &mut clients {
        assert!(c.ask(json!({"op":"stats"}))["stats"].is_object());
    }
}

#[test]
fn a_new_connection_takes_the_place_of_the_longest_idle_one_without_pins() {
    let f = Fixture::new(SHORT);
    f.map(0, 1, 0);
    let mut pinning = f.connect();
    let pin = pinning.pin(0, 1);
    let mut quiet: Vec<Client> = (1..MAX_CONNECTIONS).map(|_| f.connect()).collect();
    for c in &mut quiet {
        assert!(c.ask(json!({"op":"stats"}))["stats"].is_object());
    }
    // Not yet idle long enough: refused.
    let mut early = f.connect();
    assert_eq!(
        errno(&early.answer().expect("one error line")),
        i64::from(libc::EAGAIN)
    );
    // The quiet ones have been idle long enough: a newcomer is served in the place of one.
    std::thread::sleep(IDLE_EVICTABLE);
    let mut newcomer = f.connect();
    assert!(newcomer.ask(json!({"op":"stats"}))["stats"].is_object());
    let mut closed = 0;
    for c in &mut quiet {
        // A shut-down connection refuses the write or answers end of file.
        let mut line = String::new();
        let served = c.writer.write_all(b"{\"op\":\"stats\"}\n").is_ok()
            && matches!(c.reader.read_line(&mut line), Ok(n) if n > 0);
        if !served {
            closed += 1;
        }
    }
    assert_eq!(closed, 1, "exactly one quiet connection made room");
    // The connection holding a pin kept it and is served.
    let a = pinning.ask(json!({"op":"unpin","pin":pin}));
    assert_eq!(a["ok"], true, "{a}");
}

#[test]
fn many_clients_pin_and_unpin_at_once() {
    let f = Fixture::new(LONG);
    f.map(0, 2, 0);
    let path = f.path.clone();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&path);
                let mut ids = Vec::new();
                for i in 0..50u64 {
                    let holder = format!("t{t}");
                    let a = c.ask(json!({"op":"pin","offset":(t * 4096 + i) % (2 * CHUNK),
                                         "len":1,"holder":holder}));
                    ids.push(a["pin"].as_u64().expect("pinned"));
                }
                for id in ids {
                    assert_eq!(c.ask(json!({"op":"unpin","pin":id})), json!({"ok":true}));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(f.ledger.stats().live_pins, 0);
    assert_eq!(f.ledger.stats().pins, 400);
    f.ledger.reset().unwrap();
    f.ledger.check_invariants().unwrap();
}

#[test]
fn shutdown_during_a_waiting_pin_drops_the_pin_it_gets() {
    let mut f = Fixture::new(LONG);
    f.map(0, 1, 0);
    let guard = f.ledger.release_file_range(f.file.id(), 0, None).unwrap();
    let mut c = f.connect();
    c.send(br#"{"op":"pin","offset":0,"len":1,"wait":true}"#);
    eventually("the pin to wait", || f.ledger.stats().waits >= 1);
    // Reopened once shutdown has cut the connection (its end of file reaches the client;
    // shutdown then waits for the pin's wait), not after a guessed sleep.
    let mut probe = c.writer.try_clone().unwrap();
    let reopen = std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        let n = std::io::Read::read(&mut probe, &mut byte).expect("end of file");
        assert_eq!(n, 0, "an answer on a connection being shut down");
        drop(guard);
    });
    // Shutdown waits for the pin's wait (bounded by the budget); the pin granted when the
    // chunk reopens belongs to a closed connection and goes at once.
    f.server.shutdown();
    reopen.join().unwrap();
    assert_eq!(f.ledger.stats().pins, 1);
    assert_eq!(f.ledger.stats().live_pins, 0);
    assert_eq!(c.answer(), None);
    f.ledger.unmap(0, CHUNK).unwrap();
}

#[test]
fn one_connection_holds_a_bounded_number_of_pins() {
    let f = Fixture::new(LONG);
    f.map(0, 1, 0);
    let mut c = f.connect();
    for _ in 0..super::MAX_PINS_PER_CONNECTION {
        let a = c.ask(json!({"op":"pin","offset":0,"len":1}));
        assert!(a["pin"].is_u64(), "{a}");
    }
    let a = c.ask(json!({"op":"pin","offset":0,"len":1}));
    assert_eq!(errno(&a), i64::from(libc::ENOSPC), "{a}");
    // Another connection still may pin.
    let mut other = f.connect();
    assert!(other.ask(json!({"op":"pin","offset":0,"len":1}))["pin"].is_u64());
    drop(c);
    eventually("the first connection's pins to go", || {
        f.ledger.stats().live_pins == 1
    });
}
