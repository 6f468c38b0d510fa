//! A frontend's memory cannot take the daemon down: a frontend that shrinks its guest RAM
//! after SET_MEM_TABLE and then posts a request placed in the cut part loses its own
//! connection (the daemon says why), the daemon lives on and serves the next frontend, and
//! another device of the same process never notices. Sealed guest RAM cannot be shrunk.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use vhost_dax::frontend::{Buffer, DaemonProcess, Frontend, FrontendOptions, FuseQueue};
use vhost_dax::fuse::abi::opcode;
use vhost_dax::fuse::testing::{Client, encode_request};

const ROOT: u64 = 1;
/// Guest RAM is cut back to this (the rings and everything allocated so far lie below).
const KEPT: u64 = 16 << 20;

/// Allocates past [`KEPT`], so what is allocated next lies in the part that will be cut.
fn skip_past_kept(frontend: &Frontend) {
    let ram = frontend.ram();
    let here = ram.alloc(1, 1).unwrap().0;
    assert!(here < KEPT, "the frontend's setup fits below {KEPT:#x}");
    ram.alloc(KEPT - here, 1).unwrap();
}

/// Checks the daemon is still running.
fn alive(daemon: &mut DaemonProcess) {
    assert!(
        daemon.wait(Duration::from_millis(200)).is_err(),
        "the daemon exited: {}",
        daemon.log()
    );
}

/// Waits until the daemon logs `text`, failing early (with its log) if it dies.
fn wait_for_log(daemon: &mut DaemonProcess, text: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    while !daemon.log().contains(text) {
        if let Ok(status) = daemon.wait(Duration::ZERO) {
            panic!("the daemon ended ({status}): {}", daemon.log());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {text:?} in the daemon's log: {}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A GETATTR of the root in the part of guest RAM that is cut next: (request, reply).
fn getattr_in_cut_part(frontend: &Frontend) -> [Buffer; 2] {
    skip_past_kept(frontend);
    let ram = frontend.ram();
    let req = encode_request(opcode::GETATTR, 99, ROOT, 0, 0, &[0u8; 16]);
    let at = ram.alloc_bytes(&req).unwrap();
    assert!(at.0 >= KEPT);
    let reply = ram.alloc(4096, 8).unwrap();
    [
        Buffer::readable(at, u32::try_from(req.len()).unwrap()),
        Buffer::writable(reply, 4096),
    ]
}

/// The fs frontend cuts its RAM and posts a request there; the daemon drops it.
fn misbehave_on_fs(daemon: &mut DaemonProcess, frontend: &Arc<Mutex<Frontend>>) {
    let mut fe = frontend.lock().unwrap();
    let buffers = getattr_in_cut_part(&fe);
    fe.ram().set_backing_len(KEPT).unwrap();
    fe.submit(1, &buffers).unwrap();
    drop(fe);
    wait_for_log(daemon, "the frontend cut guest memory");
    wait_for_log(daemon, "fs.sock: frontend disconnected");
    // Nothing came back for the request.
    assert!(frontend.lock().unwrap().collect_used(1).unwrap().is_empty());
}

#[test]
fn fs_a_frontend_that_shrinks_its_memory_under_a_request_loses_only_its_connection() {
    let dir = TempDir::new("memguard-fs");
    let share = dir.join("share");
    std::fs::create_dir(&share).unwrap();
    let socket = dir.join("fs.sock");
    let mut daemon = spawn_fs_daemon(&share, &socket, &["--reconnect"]);
    let frontend = Arc::new(Mutex::new(connect(&socket)));
    let guest = Client::over(FuseQueue::new(frontend.clone(), 1, WAIT));
    guest.init();
    wait_for_log(&mut daemon, "not sealed against shrinking");
    misbehave_on_fs(&mut daemon, &frontend);
    assert!(
        daemon.log().contains("region at guest address 0x0"),
        "{}",
        daemon.log()
    );
    alive(&mut daemon);
    drop(guest);
    drop(frontend);

    // The next frontend is served.
    let next = Arc::new(Mutex::new(connect(&socket)));
    let guest = Client::over(FuseQueue::new(next.clone(), 1, WAIT));
    guest.init();
    let attr = guest
        .getattr(ROOT, None)
        .expect("the next frontend is served");
    assert_eq!(attr.attr.mode & libc::S_IFMT, libc::S_IFDIR);
    alive(&mut daemon);
}

#[test]
fn pmem_a_frontend_that_shrinks_its_memory_under_a_flush_loses_only_its_connection() {
    let dir = TempDir::new("memguard-pmem");
    let socket = dir.join("pmem.sock");
    let file = dir.join("pmem.img");
    let mut daemon = spawn_daemon(
        &[
            "pmem",
            "--socket",
            socket.to_str().unwrap(),
            "--file",
            file.to_str().unwrap(),
            "--size",
            "4M",
            "--create",
            "--reconnect",
        ],
        &socket,
    );
    let mut fe = connect(&socket);
    skip_past_kept(&fe);
    let (buffers, _status) = flush_request(&fe);
    assert!(buffers[0].addr >= KEPT);
    fe.ram().set_backing_len(KEPT).unwrap();
    fe.submit(0, &buffers).unwrap();
    wait_for_log(&mut daemon, "the frontend cut guest memory");
    wait_for_log(&mut daemon, "pmem.sock: frontend disconnected");
    assert!(fe.collect_used(0).unwrap().is_empty());
    alive(&mut daemon);
    drop(fe);

    // The next frontend's FLUSH is answered.
    let mut next = connect(&socket);
    let (buffers, status) = flush_request(&next);
    next.submit(0, &buffers).unwrap();
    next.wait_used(0, 1, WAIT)
        .expect("the next frontend is served");
    assert_eq!(read_u32(&next, status), 0);
    alive(&mut daemon);
}

#[test]
fn sealed_guest_memory_cannot_be_shrunk_and_the_daemon_says_it_is_safe() {
    let dir = TempDir::new("memguard-sealed");
    let share = dir.join("share");
    std::fs::create_dir(&share).unwrap();
    let socket = dir.join("fs.sock");
    let mut daemon = spawn_fs_daemon(&share, &socket, &[]);
    let options = FrontendOptions {
        seal_memory: true,
        ..FrontendOptions::default()
    };
    let frontend = Arc::new(Mutex::new(Frontend::connect(&socket, &options).unwrap()));
    let guest = Client::over(FuseQueue::new(frontend.clone(), 1, WAIT));
    guest.init();
    let refused = frontend.lock().unwrap().ram().set_backing_len(KEPT);
    assert_eq!(refused.unwrap_err().raw_os_error(), Some(libc::EPERM));
    wait_for_log(&mut daemon, "all 1 region(s) sealed against shrinking");
    assert!(!daemon.log().contains("not sealed"), "{}", daemon.log());
    guest.getattr(ROOT, None).expect("served");
}

#[test]
fn pmem_keeps_serving_while_the_fs_frontend_of_the_same_process_cuts_its_memory() {
    let dir = TempDir::new("memguard-both");
    let share = dir.join("share");
    std::fs::create_dir(&share).unwrap();
    let (fs_sock, pmem_sock) = (dir.join("fs.sock"), dir.join("pmem.sock"));
    let config = dir.join("vhost-dax.toml");
    std::fs::write(
        &config,
        format!(
            "[[fs]]\nsocket = {:?}\nshared_dir = {:?}\nsandbox = \"none\"\nreconnect = true\n\n\
             [[pmem]]\nsocket = {:?}\nfile = {:?}\nsize = \"4M\"\ncreate = true\n",
            fs_sock,
            share,
            pmem_sock,
            dir.join("pmem.img")
        ),
    )
    .unwrap();
    let mut daemon = spawn_daemon_with(
        Command::new(binary()),
        &["run", "--config", config.to_str().unwrap()],
        &pmem_sock,
    );
    wait_until("the fs socket", || fs_sock.exists());
    let mut pmem = connect(&pmem_sock);
    let flush = |pmem: &mut Frontend| {
        let (buffers, status) = flush_request(pmem);
        pmem.submit(0, &buffers).unwrap();
        pmem.wait_used(0, 1, WAIT).expect("FLUSH answered");
        assert_eq!(read_u32(pmem, status), 0);
    };
    flush(&mut pmem);

    let fs = Arc::new(Mutex::new(connect(&fs_sock)));
    let guest = Client::over(FuseQueue::new(fs.clone(), 1, WAIT));
    guest.init();
    misbehave_on_fs(&mut daemon, &fs);
    drop(guest);
    drop(fs);

    // The pmem frontend, connected all along, is still served; and the fs device takes
    // its next frontend.
    flush(&mut pmem);
    let next = Arc::new(Mutex::new(connect(&fs_sock)));
    let guest = Client::over(FuseQueue::new(next.clone(), 1, WAIT));
    guest.init();
    guest
        .getattr(ROOT, None)
        .expect("the next fs frontend is served");
    flush(&mut pmem);
    alive(&mut daemon);
}

#[test]
fn a_shrink_of_memory_no_request_touches_ends_nothing() {
    let dir = TempDir::new("memguard-untouched");
    let share = dir.join("share");
    std::fs::create_dir(&share).unwrap();
    let socket = dir.join("fs.sock");
    let mut daemon = spawn_fs_daemon(&share, &socket, &[]);
    let frontend = Arc::new(Mutex::new(connect(&socket)));
    let guest = Client::over(FuseQueue::new(frontend.clone(), 1, WAIT));
    guest.init();
    // Everything allocated so far (rings, the guest's request slot) lies below the cut.
    let top = frontend.lock().unwrap().ram().alloc(1, 1).unwrap();
    assert!(top.0 < KEPT);
    frontend
        .lock()
        .unwrap()
        .ram()
        .set_backing_len(KEPT)
        .unwrap();
    // Requests below the cut go on being served on the same connection.
    for _ in 0..3 {
        guest.getattr(ROOT, None).expect("served");
    }
    assert!(!daemon.log().contains("cut guest memory"));
    alive(&mut daemon);
}

/// Points the used ring of queue 1 at `used` (desc and avail rings unchanged).
fn set_used_ring(frontend: &mut Frontend, used: u64) {
    let layout = frontend.queue_layout(1).unwrap();
    let ram = frontend.ram();
    let config = vhost::VringConfigData {
        queue_max_size: layout.size,
        queue_size: layout.size,
        flags: 0,
        desc_table_addr: ram.host_address(layout.desc.0).unwrap(),
        used_ring_addr: ram.host_address(used).unwrap(),
        avail_ring_addr: ram.host_address(layout.avail.0).unwrap(),
        log_addr: None,
    };
    use vhost::VhostBackend;
    frontend.vhost().set_vring_addr(1, &config).unwrap();
}

#[test]
fn a_ring_straddling_the_end_of_memory_serves_nothing_until_it_is_moved_back() {
    let dir = TempDir::new("memguard-ring");
    let share = dir.join("share");
    std::fs::create_dir(&share).unwrap();
    let socket = dir.join("fs.sock");
    let mut daemon = spawn_fs_daemon(&share, &socket, &[]);
    let frontend = Arc::new(Mutex::new(connect(&socket)));
    let guest = Client::over(FuseQueue::new(frontend.clone(), 1, WAIT));
    guest.init();
    let mut fe = frontend.lock().unwrap();
    let end = fe.ram().size();
    // The used ring starts 8 bytes before the end of guest RAM: its start translates, the
    // rest of its 6 + 8 * 256 bytes lies past the end.
    set_used_ring(&mut fe, end - 8);
    let mut body = Vec::new();
    body.extend_from_slice(&0o755u32.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    body.extend_from_slice(b"straddle\0");
    let req = encode_request(opcode::MKDIR, 77, ROOT, 0, 0, &body);
    let at = fe.ram().alloc_bytes(&req).unwrap();
    let reply = fe.ram().alloc(4096, 8).unwrap();
    fe.submit(
        1,
        &[
            Buffer::readable(at, u32::try_from(req.len()).unwrap()),
            Buffer::writable(reply, 4096),
        ],
    )
    .unwrap();
    wait_for_log(&mut daemon, "queue 1 serves nothing: its used ring");
    assert!(
        !share.join("straddle").exists(),
        "a request was served on a ring that cannot return it"
    );
    // Moved back inside memory, the queue serves what is waiting.
    let layout = fe.queue_layout(1).unwrap();
    set_used_ring(&mut fe, layout.used.0);
    fe.kick(1).unwrap();
    let used = fe
        .wait_used(1, 1, WAIT)
        .expect("served once the ring is whole");
    assert_eq!(used.len(), 1);
    assert!(share.join("straddle").is_dir());
    drop(fe);
    alive(&mut daemon);
}
