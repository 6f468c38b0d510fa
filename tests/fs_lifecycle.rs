//! The fs daemon's lifecycle: disconnect, SIGTERM, reconnect, config space.

mod common;

use common::*;
use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost_dax::frontend::{Frontend, FrontendOptions};

fn start(name: &str, extra: &[&str]) -> (TempDir, vhost_dax::frontend::DaemonProcess) {
    let dir = TempDir::new(name);
    std::fs::create_dir(dir.join("share")).unwrap();
    let daemon = spawn_fs_daemon(&dir.join("share"), &dir.join("fs.sock"), extra);
    (dir, daemon)
}

fn connect_fs(socket: &std::path::Path) -> Frontend {
    Frontend::connect(socket, &FrontendOptions::default()).unwrap()
}

#[test]
fn config_space_carries_tag_and_queue_count() {
    let (dir, _daemon) = start("fs-config", &["--tag", "myshare", "--queues", "3"]);
    let mut frontend = connect_fs(&dir.join("fs.sock"));
    assert_eq!(frontend.num_queues(), 4, "hiprio + 3 request queues");
    let config = frontend.get_config(0, 40).unwrap();
    assert_eq!(&config[..7], b"myshare");
    assert!(config[7..36].iter().all(|&b| b == 0));
    assert_eq!(u32::from_le_bytes(config[36..40].try_into().unwrap()), 3);
}

/// QEMU's vhost-user-fs-pci sets the tag itself: offered a config space it warns at every
/// start, and a backend channel the daemon closes unused shows as an unexpected end of
/// file. Without --tag and a window the device offers neither.
#[test]
fn without_tag_or_window_no_config_space_and_no_backend_channel() {
    let (dir, _daemon) = start("fs-plain", &[]);
    let mut frontend = connect_fs(&dir.join("fs.sock"));
    let acked = frontend.acked_protocol_features();
    assert!(
        !acked.contains(VhostUserProtocolFeatures::CONFIG),
        "{acked:?}"
    );
    assert!(
        !acked.contains(VhostUserProtocolFeatures::BACKEND_REQ),
        "{acked:?}"
    );
    assert!(!frontend.has_backend_channel());
    assert!(
        frontend.get_config(0, 40).is_err(),
        "no config space to read"
    );
}

#[test]
fn disconnect_exits_0_and_removes_the_socket() {
    let (dir, mut daemon) = start("fs-disconnect", &[]);
    drop(connect_fs(&dir.join("fs.sock")));
    assert!(daemon.wait(WAIT).unwrap().success());
    assert!(!dir.join("fs.sock").exists());
}

#[test]
fn sigterm_exits_0_and_removes_the_socket() {
    let (dir, mut daemon) = start("fs-sigterm", &[]);
    let _frontend = connect_fs(&dir.join("fs.sock"));
    daemon.signal(libc::SIGTERM).unwrap();
    assert!(daemon.wait(WAIT).unwrap().success());
    assert!(!dir.join("fs.sock").exists());
    assert!(daemon.log().contains("shutdown complete"));
}

#[test]
fn reconnect_serves_the_next_frontend() {
    let (dir, mut daemon) = start("fs-reconnect", &["--reconnect", "--tag", "t"]);
    drop(connect_fs(&dir.join("fs.sock")));
    let mut second = connect_fs(&dir.join("fs.sock"));
    assert_eq!(second.get_config(36, 4).unwrap(), 1u32.to_le_bytes());
    daemon.signal(libc::SIGINT).unwrap();
    assert!(daemon.wait(WAIT).unwrap().success());
    assert!(!dir.join("fs.sock").exists());
}

/// Descriptors the daemon holds, by what they are (sockets, eventfds, files, ...).
fn open_fds(pid: u32) -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|target| target.display().to_string())
        .collect();
    fds.sort();
    fds
}

/// A VMM that reconnects again and again (a reboot loop, a live-migration test) must not
/// cost the daemon descriptors: every connection's eventfds, memory-region files and
/// sockets go with it.
#[test]
fn reconnects_leak_no_descriptors() {
    let (dir, mut daemon) = start("fs-reconnect-fds", &["--reconnect", "--queues", "2"]);
    let socket = dir.join("fs.sock");
    let options = FrontendOptions {
        num_queues: 3,
        ..FrontendOptions::default()
    };
    // One connection first: what stays after it (thread-local caches, the log) is the
    // baseline, not a leak.
    drop(Frontend::connect(&socket, &options).unwrap());
    // Between connections only the listener is a socket of the device's, and a
    // connection's teardown is over when two looks 50 ms apart agree.
    let settled = |pid: u32| {
        let deadline = std::time::Instant::now() + WAIT;
        let mut last = open_fds(pid);
        loop {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let now = open_fds(pid);
            let sockets = now.iter().filter(|f| f.starts_with("socket:")).count();
            if (now == last && sockets <= 1) || std::time::Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    };
    let before = settled(daemon.pid());
    for _ in 0..20 {
        let frontend = Frontend::connect(&socket, &options).unwrap();
        frontend.kick(1).unwrap();
        drop(frontend);
    }
    let after = settled(daemon.pid());
    assert_eq!(after, before, "descriptors after 20 more connections");
    daemon.signal(libc::SIGTERM).unwrap();
    assert!(daemon.wait(WAIT).unwrap().success());
}

/// `--syslog` sends the log to the system log socket as RFC 3164 lines of facility
/// daemon (a test socket stands in for /dev/log).
#[test]
fn syslog_lines_reach_the_system_log_socket() {
    let dir = TempDir::new("fs-syslog");
    std::fs::create_dir(dir.join("share")).unwrap();
    let log_socket = dir.join("log.sock");
    let syslog = std::os::unix::net::UnixDatagram::bind(&log_socket).unwrap();
    syslog
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut command = std::process::Command::new(binary());
    command.env(vhost_dax::logging::SYSLOG_SOCKET_ENV, &log_socket);
    let _daemon = spawn_fs_daemon_with(
        command,
        &dir.join("share"),
        &dir.join("fs.sock"),
        &["--syslog"],
    );
    let mut lines = Vec::new();
    let mut buf = [0u8; 4096];
    while !lines.iter().any(|l: &String| l.contains("sharing")) {
        let n = syslog.recv(&mut buf).expect("a syslog line within 10 s");
        lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let sharing = lines.iter().find(|l| l.contains("sharing")).unwrap();
    assert!(
        sharing.starts_with("<30>vhost-dax["),
        "daemon.info: {sharing}"
    );
    assert!(
        sharing.contains("]: vhost_dax::daemon: fs: sharing "),
        "{sharing}"
    );
}
