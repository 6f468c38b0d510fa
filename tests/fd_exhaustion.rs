//! One device of a `run --config` daemon using every descriptor the process may hold must
//! not end another: the other keeps its socket, fails to take a frontend while nothing
//! is left, and serves it once the first device's guest gives its descriptors back.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};

use common::*;
use vhost_dax::frontend::{Frontend, FrontendOptions, FuseQueue};
use vhost_dax::fuse::testing::Client;

const ROOT: u64 = 1;

#[test]
fn a_device_keeps_listening_while_its_neighbour_holds_every_descriptor() {
    let dir = TempDir::new("fd-exhaustion");
    let share = dir.join("share");
    std::fs::create_dir(&share).unwrap();
    for i in 0..200 {
        std::fs::write(share.join(format!("f{i}")), b"x").unwrap();
    }
    let (fs_sock, pmem_sock) = (dir.join("fs.sock"), dir.join("pmem.sock"));
    let config = dir.join("vhost-dax.toml");
    std::fs::write(
        &config,
        format!(
            "[[fs]]\nsocket = {:?}\nshared_dir = {:?}\nsandbox = \"none\"\n\n\
             [[pmem]]\nsocket = {:?}\nfile = {:?}\nsize = \"4M\"\ncreate = true\n",
            fs_sock,
            share,
            pmem_sock,
            dir.join("pmem.img")
        ),
    )
    .unwrap();
    // A hard limit the daemon cannot raise: each inode the guest looks up holds one.
    let mut command = Command::new("prlimit");
    command.arg("--nofile=64:64").arg("--").arg(binary());
    let daemon = spawn_daemon_with(
        command,
        &["run", "--config", config.to_str().unwrap()],
        &pmem_sock,
    );
    wait_until("the fs socket", || fs_sock.exists());

    let fs = Arc::new(Mutex::new(connect(&fs_sock)));
    let guest = Client::over(FuseQueue::new(fs.clone(), 1, WAIT));
    guest.init();
    let mut known = Vec::new();
    let mut exhausted = false;
    for i in 0..200 {
        match guest.lookup(ROOT, format!("f{i}").as_bytes()) {
            Ok(entry) => known.push((entry.nodeid, 1)),
            Err(errno) => {
                assert_eq!(errno, libc::EMFILE, "after {} lookups", known.len());
                exhausted = true;
                break;
            }
        }
    }
    assert!(exhausted, "200 lookups under a limit of 64 descriptors");

    // A VMM connects to the pmem device now: nothing is left to accept it with.
    let socket = pmem_sock.clone();
    let vmm = std::thread::spawn(move || Frontend::connect(&socket, &FrontendOptions::default()));
    wait_until("the pmem device to fail to take its frontend", || {
        daemon.log().contains("cannot take a frontend")
    });
    assert!(pmem_sock.exists(), "the pmem device keeps its socket");

    // The fs guest forgets its inodes; the pmem device takes its frontend. The attempt
    // made while nothing was left may have been dropped after its accept (then the VMM
    // reconnects, as QEMU's reconnect= does), or waited in the backlog and is served now.
    guest.batch_forget(&known);
    let mut pmem = match vmm.join().unwrap() {
        Ok(frontend) => frontend,
        Err(e) => {
            eprintln!("first attempt dropped ({e}); reconnecting");
            Frontend::connect(&pmem_sock, &FrontendOptions::default())
                .unwrap_or_else(|e| panic!("pmem frontend not served: {e}\n{}", daemon.log()))
        }
    };
    let config_space = pmem.get_config(8, 8).unwrap();
    assert_eq!(
        u64::from_le_bytes(config_space.try_into().unwrap()),
        4 << 20
    );
    assert!(
        daemon.log().contains("took a frontend after"),
        "{}",
        daemon.log()
    );
    // The fs guest goes on too.
    guest
        .lookup(ROOT, b"f0")
        .expect("lookup once descriptors are back");
}
