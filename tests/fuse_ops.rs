//! FUSE operations against the daemon binary, through our frontend and a real socket.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use vhost_dax::frontend::{DaemonProcess, FuseQueue};
use vhost_dax::fuse::testing::Client;

const ROOT: u64 = 1;

struct Fs {
    dir: TempDir,
    _daemon: DaemonProcess,
    c: Client<FuseQueue>,
}

fn start(name: &str, extra: &[&str]) -> Fs {
    let dir = TempDir::new(name);
    std::fs::create_dir(dir.join("share")).unwrap();
    let socket = dir.join("fs.sock");
    let share = dir.join("share");
    let mut args = vec![
        "fs",
        "--socket",
        socket.to_str().unwrap(),
        "--shared-dir",
        share.to_str().unwrap(),
        "--sandbox",
        "none",
    ];
    args.extend_from_slice(extra);
    let daemon = spawn_daemon(&args, &socket);
    let frontend = Arc::new(Mutex::new(connect(&socket)));
    let c = Client::over(FuseQueue::new(frontend, 1, WAIT));
    c.init();
    Fs {
        dir,
        _daemon: daemon,
        c,
    }
}

#[test]
fn create_write_read_through_the_queue() {
    let f = start("fuse-rw", &[]);
    let (e, o) =
        f.c.create(ROOT, b"hello", 0o644, libc::O_RDWR as u32)
            .unwrap();
    assert_eq!(
        f.c.write(e.nodeid, o.fh, 0, b"over the socket").unwrap(),
        15
    );
    assert_eq!(f.c.read(e.nodeid, o.fh, 5, 100).unwrap(), b"the socket");
    f.c.release(e.nodeid, o.fh).unwrap();
    assert_eq!(
        std::fs::read(f.dir.join("share/hello")).unwrap(),
        b"over the socket"
    );
    assert_eq!(f.c.lookup(ROOT, b"missing").unwrap_err(), libc::ENOENT);
}
