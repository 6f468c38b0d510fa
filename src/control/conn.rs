//! One client connection: its lines, its answers and the pins it owns.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::protocol::{self, PinReply, Request, StatsReply};
use super::{MAX_LINE, MAX_PINS_PER_CONNECTION, Shared};
use crate::dax::{PinGuard, PinId, PinWait};

/// The pins one connection owns. Only the connection's own thread adds to it; the thread
/// (when the client goes) and [`ControlServer::shutdown`](super::ControlServer::shutdown)
/// close it, which drops them all.
pub(super) struct Conn {
    /// The connection's number, unique for the server's life (from 1).
    pub(super) no: u64,
    held: Mutex<Held>,
}

struct Held {
    closed: bool,
    pins: HashMap<PinId, PinGuard>,
    /// A request line is being answered.
    busy: bool,
    /// Since when the connection has been waiting for its next line.
    idle_since: Instant,
}

impl Held {
    fn idle_without_pins(&self, min: Duration) -> Option<Duration> {
        let idle = self.idle_since.elapsed();
        (!self.closed && !self.busy && self.pins.is_empty() && idle >= min).then_some(idle)
    }
}

impl Conn {
    pub(super) fn new(no: u64) -> Self {
        Conn {
            no,
            held: Mutex::new(Held {
                closed: false,
                pins: HashMap::new(),
                busy: false,
                idle_since: Instant::now(),
            }),
        }
    }

    /// A request line arrived: the connection is not idle until it is answered.
    fn begin(&self) {
        self.lock().busy = true;
    }

    /// The answer went out: idle from now.
    fn end(&self) {
        let mut held = self.lock();
        held.busy = false;
        held.idle_since = Instant::now();
    }

    /// How long the connection has been idle holding nothing, if at least `min`: such a
    /// connection may make room for a new one.
    pub(super) fn idle_without_pins(&self, min: Duration) -> Option<Duration> {
        self.lock().idle_without_pins(min)
    }

    /// Closes the connection's (empty) pin table if it is still idle holding nothing for at
    /// least `min`, so no pin can arrive while it is being shut down. Whether it was.
    pub(super) fn close_if_idle(&self, min: Duration) -> bool {
        let mut held = self.lock();
        let idle = held.idle_without_pins(min).is_some();
        held.closed |= idle;
        idle
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `guard` for the connection, or hands it back if the connection is closed.
    fn hold(&self, guard: PinGuard) -> Result<(), PinGuard> {
        let mut held = self.lock();
        if held.closed {
            return Err(guard);
        }
        held.pins.insert(guard.id(), guard);
        Ok(())
    }

    /// Takes back one of the connection's pins (the caller drops it, with no lock held).
    fn release(&self, id: PinId) -> Option<PinGuard> {
        self.lock().pins.remove(&id)
    }

    /// Closes the connection's pin table and unpins everything in it. Returns how many
    /// pins were dropped. The guards are dropped after the lock is released: an unpin takes
    /// the ledger's lock and wakes its waiters.
    pub(super) fn close(&self) -> usize {
        let pins = {
            let mut held = self.lock();
            held.closed = true;
            std::mem::take(&mut held.pins)
        };
        let n = pins.len();
        drop(pins);
        n
    }

    /// Pins held now.
    pub(super) fn pin_count(&self) -> usize {
        self.lock().pins.len()
    }
}

/// What the next line of a connection is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Line {
    /// A whole line, without its newline (the last line may lack one).
    Full(Vec<u8>),
    /// A line longer than the limit; it has been read and thrown away.
    TooLong,
    /// The client closed its side.
    Eof,
}

/// Reads lines of at most `max` bytes without ever buffering more than that: a longer line
/// is skipped up to its newline, however long it is.
pub(super) struct LineReader<R> {
    inner: BufReader<R>,
    max: usize,
}

impl<R: Read> LineReader<R> {
    pub(super) fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner: BufReader::with_capacity(max.max(64), inner),
            max,
        }
    }

    pub(super) fn next_line(&mut self) -> io::Result<Line> {
        let mut line = Vec::new();
        let mut too_long = false;
        loop {
            let buf = match self.inner.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                return Ok(match (too_long, line.is_empty()) {
                    (true, _) => Line::TooLong,
                    (false, true) => Line::Eof,
                    (false, false) => Line::Full(line),
                });
            }
            let (part, used, end) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], i + 1, true),
                None => (buf, buf.len(), false),
            };
            if !too_long && line.len() + part.len() > self.max {
                too_long = true;
                line = Vec::new();
            }
            if !too_long {
                line.extend_from_slice(part);
            }
            self.inner.consume(used);
            if end {
                if too_long {
                    return Ok(Line::TooLong);
                }
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Line::Full(line));
            }
        }
    }
}

/// Serves one connection until the client goes, the connection fails, or the server
/// shuts it down; then unpins whatever it still holds.
pub(super) fn serve(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    stream: UnixStream,
    mut writer: UnixStream,
) {
    let no = conn.no;
    log::debug!("dax control: connection {no} opened");
    let mut reader = LineReader::new(stream, MAX_LINE);
    loop {
        let reply = match reader.next_line() {
            Ok(Line::Full(line)) => {
                conn.begin();
                handle(&shared, &conn, &line)
            }
            Ok(Line::TooLong) => {
                conn.begin();
                protocol::error(
                    &format!("bad request: line longer than {MAX_LINE} bytes"),
                    libc::EINVAL,
                )
            }
            Ok(Line::Eof) => break,
            Err(e) => {
                log::debug!("dax control: connection {no}: read failed: {e}");
                break;
            }
        };
        let mut out = reply.to_string().into_bytes();
        out.push(b'\n');
        if let Err(e) = writer.write_all(&out) {
            log::debug!("dax control: connection {no}: write failed: {e}");
            break;
        }
        conn.end();
    }
    let dropped = conn.close();
    if dropped > 0 {
        log::info!(
            "dax control: connection {no} closed holding {dropped} pin(s); they are unpinned"
        );
    } else {
        log::debug!("dax control: connection {no} closed");
    }
    shared.active.fetch_sub(1, Ordering::SeqCst);
}

/// Answers one request line.
fn handle(shared: &Shared, conn: &Conn, line: &[u8]) -> Value {
    let request = match protocol::parse(line) {
        Ok(r) => r,
        Err(reason) => return protocol::error(&reason, libc::EINVAL),
    };
    if let Request::Stats {} = request {
        let (connections, pins) = shared.control_counts();
        let stats = shared.ledger.as_ref().map(|ledger| {
            StatsReply::new(
                ledger.stats(),
                ledger.window_size(),
                ledger.chunk_size(),
                connections,
                pins,
            )
        });
        let fuse = shared
            .fuse
            .as_ref()
            .map(|queues| protocol::fuse_stats(queues));
        let pmem = shared.pmem.as_ref().map(|counters| counters());
        return json!({ "stats": stats, "fuse": fuse, "pmem": pmem });
    }
    let Some(ledger) = shared.ledger.as_deref() else {
        return protocol::error("this device has no DAX window", libc::ENODEV);
    };
    match request {
        Request::Pin {
            offset,
            len,
            wait,
            holder,
        } => {
            let holder = match holder {
                Some(name) => format!("control:{}:{name}", conn.no),
                None => format!("control:{}", conn.no),
            };
            if conn.pin_count() >= MAX_PINS_PER_CONNECTION {
                return protocol::error(
                    &format!("at most {MAX_PINS_PER_CONNECTION} pins per connection"),
                    libc::ENOSPC,
                );
            }
            let wait = if wait { PinWait::Wait } else { PinWait::Fail };
            match ledger.pin(offset, len, &holder, wait) {
                Ok(guard) => {
                    let id = guard.id();
                    match conn.hold(guard) {
                        Ok(()) => {
                            log::debug!("dax control: {id} on {offset:#x}+{len:#x} for {holder:?}");
                            json!({ "pin": id.0 })
                        }
                        // Closed by a shutdown while the pin was being taken: it goes at
                        // once (the guard is dropped here, no lock held).
                        Err(_guard) => {
                            protocol::error("the control socket is shutting down", libc::ESHUTDOWN)
                        }
                    }
                }
                Err(e) => protocol::error(&protocol::reason(&e), e.errno()),
            }
        }
        Request::Unpin { pin } => match conn.release(PinId(pin)) {
            Some(guard) => {
                drop(guard);
                log::debug!("dax control: connection {}: unpinned pin#{pin}", conn.no);
                json!({ "ok": true })
            }
            None => protocol::error(
                &format!("pin {pin} is not held by this connection"),
                libc::ENOENT,
            ),
        },
        Request::Stats {} => unreachable!("answered above"),
        Request::Mappings {} => json!({ "mappings": ledger.mappings() }),
        Request::Pins {} => {
            let pins: Vec<PinReply> = ledger.pins().into_iter().map(PinReply::from).collect();
            json!({ "pins": pins })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<Line> {
        let mut r = LineReader::new(input, max);
        let mut out = Vec::new();
        loop {
            let l = r.next_line().unwrap();
            if l == Line::Eof {
                return out;
            }
            out.push(l);
        }
    }

    #[test]
    fn splits_lines_and_skips_long_ones() {
        let long = vec![b'x'; 100];
        let mut input = b"a\r\n\nbb\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\nccc\n");
        input.extend_from_slice(&long);
        input.extend_from_slice(b"tail");
        assert_eq!(
            lines(&input, 8),
            vec![
                Line::Full(b"a".to_vec()),
                Line::Full(Vec::new()),
                Line::Full(b"bb".to_vec()),
                Line::TooLong,
                Line::Full(b"ccc".to_vec()),
                Line::TooLong,
            ]
        );
        assert_eq!(
            lines(b"12345678\n123456789\nlast", 8),
            vec![
                Line::Full(b"12345678".to_vec()),
                Line::TooLong,
                Line::Full(b"last".to_vec()),
            ]
        );
    }
}
