//! A hostile frontend: random vhost-user messages (any request code, flags, declared size
//! and payload, no descriptors) sent to both devices. Whatever a message does to its
//! connection, the daemon stays up and serves the next frontend (`--reconnect`).
//! Fixed seed, a few hundred messages per device: a smoke run that fits `cargo test`.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use vhost_dax::frontend::{Frontend, FrontendOptions};

/// One message: request code (mostly the defined ones, 0..=45, sometimes anything),
/// flags, declared payload size (sometimes a lie), payload bytes.
fn message() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![3 => 0u32..=45, 1 => any::<u32>()],
        prop_oneof![3 => Just(1u32), 1 => any::<u32>()],
        proptest::collection::vec(any::<u8>(), 0..300),
        prop_oneof![3 => Just(None), 1 => Just(Some(u32::MAX)), 1 => (0u32..4096).prop_map(Some)],
    )
        .prop_map(|(request, flags, payload, declared)| {
            let size = declared.unwrap_or(u32::try_from(payload.len()).unwrap());
            let mut m = Vec::with_capacity(12 + payload.len());
            m.extend_from_slice(&request.to_le_bytes());
            m.extend_from_slice(&flags.to_le_bytes());
            m.extend_from_slice(&size.to_le_bytes());
            m.extend_from_slice(&payload);
            m
        })
}

/// Sends a few hostile messages on one connection, reading whatever comes back.
fn hostile_session(socket: &Path, messages: &[Vec<u8>]) {
    // The daemon takes one frontend at a time: while it tears the last one down, a
    // connect may find the backlog full (EAGAIN). It must be accepted within WAIT.
    let mut stream = None;
    wait_until("the daemon to accept the next hostile frontend", || {
        stream = UnixStream::connect(socket).ok();
        stream.is_some()
    });
    let mut stream = stream.unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    for m in messages {
        if stream.write_all(m).is_err() {
            break; // the daemon ended this connection: its right
        }
        let mut buf = [0u8; 512];
        let _ = stream.read(&mut buf);
    }
}

fn fuzz_device(
    name: &str,
    socket: &Path,
    daemon: &mut vhost_dax::frontend::DaemonProcess,
    options: &FrontendOptions,
) {
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 64,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    runner
        .run(&proptest::collection::vec(message(), 1..6), |messages| {
            hostile_session(socket, &messages);
            Ok(())
        })
        .unwrap();
    let connections = daemon.log().matches("frontend connected").count();
    assert!(
        connections >= 32,
        "{name}: only {connections} sessions reached the daemon"
    );
    // Still alive, and a well-behaved frontend is served.
    assert!(
        std::fs::metadata(format!("/proc/{}", daemon.pid())).is_ok(),
        "{name}: the daemon died:\n{}",
        daemon.log()
    );
    let mut frontend = None;
    wait_until("a well-behaved frontend to be served", || {
        frontend = Frontend::connect(socket, options).ok();
        frontend.is_some()
    });
    daemon.signal(libc::SIGTERM).unwrap();
    assert!(
        daemon.wait(WAIT).unwrap().success(),
        "{name}:\n{}",
        daemon.log()
    );
}

#[test]
fn random_vhost_user_messages_never_take_the_fs_daemon_down() {
    let dir = TempDir::new("fuzz-vu-fs");
    std::fs::create_dir(dir.join("share")).unwrap();
    let socket = dir.join("fs.sock");
    let mut daemon = spawn_fs_daemon(
        &dir.join("share"),
        &socket,
        &["--reconnect", "--tag", "t", "--dax-window", "8M"],
    );
    fuzz_device("fs", &socket, &mut daemon, &FrontendOptions::default());
}

#[test]
fn random_vhost_user_messages_never_take_the_pmem_daemon_down() {
    let dir = TempDir::new("fuzz-vu-pmem");
    let socket = dir.join("pmem.sock");
    let file = dir.join("pmem.img");
    let args = [
        "pmem",
        "--socket",
        socket.to_str().unwrap(),
        "--file",
        file.to_str().unwrap(),
        "--size",
        "4M",
        "--create",
        "--reconnect",
    ];
    let mut daemon = spawn_daemon(&args, &socket);
    fuzz_device("pmem", &socket, &mut daemon, &FrontendOptions::default());
}
