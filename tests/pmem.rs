//! The pmem daemon on a real socket, driven by our frontend.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::process::Command;

use common::*;
use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost_dax::device::pmem::{VIRTIO_PMEM_RESP_EIO, VIRTIO_PMEM_RESP_OK};
use vhost_dax::frontend::{Buffer, Frontend, FrontendOptions, VIRTIO_F_VERSION_1};

const SIZE: u64 = 4 << 20;

struct Setup {
    dir: TempDir,
    daemon: vhost_dax::frontend::DaemonProcess,
}

impl Setup {
    fn socket(&self) -> std::path::PathBuf {
        self.dir.join("pmem.sock")
    }
    fn file(&self) -> std::path::PathBuf {
        self.dir.join("pmem.img")
    }
}

fn start(name: &str, extra: &[&str]) -> Setup {
    start_with(name, extra, Command::new(binary()))
}

fn start_with(name: &str, extra: &[&str], command: Command) -> Setup {
    let dir = TempDir::new(name);
    let socket = dir.join("pmem.sock");
    let file = dir.join("pmem.img");
    let mut args = vec![
        "pmem",
        "--socket",
        socket.to_str().unwrap(),
        "--file",
        file.to_str().unwrap(),
        "--size",
        "4M",
        "--create",
    ];
    args.extend_from_slice(extra);
    let daemon = spawn_daemon_with(command, &args, &socket);
    Setup { dir, daemon }
}

fn wait_mapped(frontend: &Frontend) {
    wait_until("region 0 mapped", || {
        frontend.windows().is_mapped(0, 0, SIZE)
    });
}

#[test]
fn negotiates_and_reports_config_with_frontend_owned_start() {
    let setup = start("config", &[]);
    let mut frontend = connect(&setup.socket());
    assert_ne!(frontend.acked_features() & VIRTIO_F_VERSION_1, 0);
    assert!(
        frontend
            .acked_protocol_features()
            .contains(VhostUserProtocolFeatures::SHMEM | VhostUserProtocolFeatures::REPLY_ACK)
    );
    assert_eq!(frontend.windows().region_len(0), Some(SIZE));

    let config = frontend.get_config(0, 16).unwrap();
    assert_eq!(
        &config[0..8],
        &0u64.to_le_bytes(),
        "start is 0 until the frontend sets it"
    );
    assert_eq!(&config[8..16], &SIZE.to_le_bytes());

    frontend
        .set_config(0, &0x1_4000_0000u64.to_le_bytes())
        .unwrap();
    let config = frontend.get_config(0, 16).unwrap();
    assert_eq!(&config[0..8], &0x1_4000_0000u64.to_le_bytes());
    // `size` is the device's, not the frontend's: the write is ignored.
    frontend.set_config(8, &1u64.to_le_bytes()).unwrap();
    let config = frontend.get_config(8, 8).unwrap();
    assert_eq!(config, SIZE.to_le_bytes());
}

#[test]
fn region_is_mapped_and_window_writes_reach_the_host_file() {
    let setup = start("window", &[]);
    let frontend = connect(&setup.socket());
    wait_mapped(&frontend);
    let live = frontend.windows().live();
    assert_eq!(live.len(), 1);
    assert_eq!(
        (live[0].offset, live[0].len, live[0].fd_offset),
        (0, SIZE, 0)
    );
    assert!(live[0].writable);

    let window = frontend.windows();
    window.write(0, 0x1234, b"through the window").unwrap();
    window.write(0, SIZE - 4, b"tail").unwrap();
    let host = std::fs::read(setup.file()).unwrap();
    assert_eq!(host.len() as u64, SIZE);
    assert_eq!(&host[0x1234..0x1234 + 18], b"through the window");
    assert_eq!(&host[host.len() - 4..], b"tail");

    // And the other way: host writes are visible through the window.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(setup.file())
        .unwrap();
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(4096)).unwrap();
    file.write_all(b"from the host").unwrap();
    let mut seen = [0u8; 13];
    window.read(0, 4096, &mut seen).unwrap();
    assert_eq!(&seen, b"from the host");
}

/// The test's end of the daemon's sync gate (see `device::sync_gate`).
struct Gate {
    reader: BufReader<std::os::unix::net::UnixStream>,
    writer: std::os::unix::net::UnixStream,
}

impl Gate {
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line.trim().to_string()
    }
    fn release(&mut self) {
        self.writer.write_all(b"g").unwrap();
    }
}

fn start_gated(name: &str) -> (Setup, Gate) {
    let gate_dir = TempDir::new(&format!("{name}-gate"));
    let gate_path = gate_dir.join("gate.sock");
    let listener = UnixListener::bind(&gate_path).unwrap();
    let mut command = Command::new(binary());
    command.env(vhost_dax::device::sync_gate::SYNC_GATE_ENV, &gate_path);
    let setup = start_with(name, &[], command);
    let (stream, _) = listener.accept().unwrap();
    let gate = Gate {
        reader: BufReader::new(stream.try_clone().unwrap()),
        writer: stream,
    };
    std::mem::forget(gate_dir); // removed with the process's temp files; the socket must outlive accept
    (setup, gate)
}

#[test]
fn flush_completes_only_after_the_sync_finished() {
    let (setup, mut gate) = start_gated("flush-order");
    let mut frontend = connect(&setup.socket());
    wait_mapped(&frontend);
    let (buffers, status) = flush_request(&frontend);
    let head = frontend.submit(0, &buffers).unwrap();

    assert_eq!(gate.line(), "start 1 1");
    // The sync is being held: the request must not have been answered.
    assert!(frontend.collect_used(0).unwrap().is_empty());
    assert_eq!(read_u32(&frontend, status), 0xffff_ffff);
    gate.release();
    assert_eq!(gate.line(), "done 1 OK");
    let used = frontend.wait_used(0, 1, WAIT).unwrap();
    assert_eq!((used[0].head, used[0].len), (head, 4));
    assert_eq!(read_u32(&frontend, status), VIRTIO_PMEM_RESP_OK);
}

#[test]
fn concurrent_flushes_share_syncs() {
    let (setup, mut gate) = start_gated("group-commit");
    let mut frontend = connect(&setup.socket());
    wait_mapped(&frontend);
    let (first, first_status) = flush_request(&frontend);
    frontend.submit(0, &first).unwrap();
    assert_eq!(gate.line(), "start 1 1");
    // 63 more arrive while sync 1 runs: none of them may ride on it.
    let mut statuses = vec![first_status];
    for _ in 0..63 {
        let (buffers, status) = flush_request(&frontend);
        frontend.add_chain(0, &buffers).unwrap();
        statuses.push(status);
    }
    frontend.kick(0).unwrap();
    gate.release();
    assert_eq!(gate.line(), "done 1 OK");

    let mut syncs = 1;
    let mut covered = 1;
    while covered < 64 {
        let start = gate.line();
        let parts: Vec<&str> = start.split(' ').collect();
        assert_eq!(parts[0], "start", "unexpected gate line {start}");
        covered += parts[2].parse::<usize>().unwrap();
        syncs += 1;
        gate.release();
        assert!(gate.line().starts_with("done"));
    }
    frontend.wait_used(0, 64, WAIT).unwrap();
    for status in statuses {
        assert_eq!(read_u32(&frontend, status), VIRTIO_PMEM_RESP_OK);
    }
    assert_eq!(covered, 64);
    assert!(syncs <= 8, "64 flushes needed {syncs} syncs");
}

#[test]
fn burst_of_flushes_is_coalesced_and_counted_at_shutdown() {
    let mut setup = start("burst", &[]);
    let mut frontend = connect(&setup.socket());
    wait_mapped(&frontend);
    let mut statuses = Vec::new();
    for _ in 0..64 {
        let (buffers, status) = flush_request(&frontend);
        frontend.add_chain(0, &buffers).unwrap();
        statuses.push(status);
    }
    frontend.kick(0).unwrap();
    frontend.wait_used(0, 64, WAIT).unwrap();
    assert!(
        statuses
            .iter()
            .all(|&s| read_u32(&frontend, s) == VIRTIO_PMEM_RESP_OK)
    );
    setup.daemon.signal(libc::SIGTERM).unwrap();
    assert!(setup.daemon.wait(WAIT).unwrap().success());
    let log = setup.daemon.log();
    let line = log
        .lines()
        .find(|l| l.contains("flush requests served with"))
        .expect("flush counters logged at shutdown");
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.trim_start_matches('(').parse().ok())
        .collect();
    // requests, syncs (the shutdown's own final sync is not a request's).
    assert_eq!(numbers[0], 64, "{line}");
    assert!(
        numbers[1] < 32,
        "64 concurrent flushes took {} syncs: {line}",
        numbers[1]
    );
}

/// (what, chain, expected used length, expected status word)
type MalformedCase = (
    &'static str,
    Vec<Buffer>,
    u32,
    Option<(vm_memory::GuestAddress, u32)>,
);

#[test]
fn malformed_requests_get_an_error_or_are_skipped_and_the_queue_keeps_working() {
    let setup = start("malformed", &[]);
    let mut frontend = connect(&setup.socket());
    wait_mapped(&frontend);
    let ram = frontend.ram();
    let unknown = ram.alloc_bytes(&7u32.to_le_bytes()).unwrap();
    let short = ram.alloc_bytes(&[0u8; 2]).unwrap();
    let flush = ram.alloc_bytes(&0u32.to_le_bytes()).unwrap();
    let status = |f: &Frontend| f.ram().alloc_bytes(&0xffff_ffffu32.to_le_bytes()).unwrap();
    let outside = 1u64 << 40;

    let s1 = status(&frontend);
    let s2 = status(&frontend);
    let s3 = status(&frontend);
    let s4 = status(&frontend);
    let s5 = status(&frontend);
    let cases: Vec<MalformedCase> = vec![
        (
            "unknown type",
            vec![Buffer::readable(unknown, 4), Buffer::writable(s1, 4)],
            4,
            Some((s1, VIRTIO_PMEM_RESP_EIO)),
        ),
        (
            "short request",
            vec![Buffer::readable(short, 2), Buffer::writable(s2, 4)],
            4,
            Some((s2, VIRTIO_PMEM_RESP_EIO)),
        ),
        (
            "no response buffer",
            vec![Buffer::readable(flush, 4)],
            0,
            None,
        ),
        (
            "response buffer too small",
            vec![Buffer::readable(flush, 4), Buffer::writable(s3, 2)],
            0,
            None,
        ),
        (
            "wrong direction",
            vec![Buffer::writable(s4, 4), Buffer::readable(flush, 4)],
            4,
            Some((s4, VIRTIO_PMEM_RESP_EIO)),
        ),
        (
            "request outside guest memory",
            vec![
                Buffer {
                    addr: outside,
                    len: 4,
                    write: false,
                },
                Buffer::writable(s5, 4),
            ],
            4,
            Some((s5, VIRTIO_PMEM_RESP_EIO)),
        ),
    ];
    for (what, chain, used_len, expect_status) in cases {
        let head = frontend.submit(0, &chain).unwrap();
        let used = frontend.wait_used(0, 1, WAIT).unwrap();
        assert_eq!((used[0].head, used[0].len), (head, used_len), "{what}");
        if let Some((addr, code)) = expect_status {
            assert_eq!(read_u32(&frontend, addr), code, "{what}");
        }
        // A valid flush right after still works.
        let (buffers, ok_status) = flush_request(&frontend);
        frontend.submit(0, &buffers).unwrap();
        frontend.wait_used(0, 1, WAIT).unwrap();
        assert_eq!(
            read_u32(&frontend, ok_status),
            VIRTIO_PMEM_RESP_OK,
            "after {what}"
        );
    }
}

#[test]
fn disconnect_exits_cleanly_and_removes_the_socket() {
    let mut setup = start("disconnect", &[]);
    let frontend = connect(&setup.socket());
    wait_mapped(&frontend);
    drop(frontend);
    let status = setup.daemon.wait(WAIT).unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(!setup.socket().exists(), "socket file left behind");
    assert!(
        setup
            .daemon
            .log()
            .contains("released 1 mapping(s) of a disconnected frontend")
    );
}

#[test]
fn sigterm_unmaps_the_region_syncs_and_removes_the_socket() {
    let mut setup = start("sigterm", &[]);
    let frontend = connect(&setup.socket());
    wait_mapped(&frontend);
    frontend
        .windows()
        .write(0, 0, b"durable before exit")
        .unwrap();
    setup.daemon.signal(libc::SIGTERM).unwrap();
    let status = setup.daemon.wait(WAIT).unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(
        frontend.windows().live().is_empty(),
        "frontend still holds a mapping"
    );
    assert_eq!(frontend.windows().stats().unmaps, 1);
    assert!(!setup.socket().exists(), "socket file left behind");
    assert_eq!(
        &std::fs::read(setup.file()).unwrap()[..19],
        b"durable before exit"
    );
}

#[test]
fn reconnect_serves_a_second_frontend() {
    let mut setup = start("reconnect", &["--reconnect"]);
    let first = connect(&setup.socket());
    wait_mapped(&first);
    first.windows().write(0, 0, b"first").unwrap();
    drop(first);

    let mut second = connect(&setup.socket());
    wait_mapped(&second);
    let mut seen = [0u8; 5];
    second.windows().read(0, 0, &mut seen).unwrap();
    assert_eq!(&seen, b"first");
    let (buffers, status) = flush_request(&second);
    second.submit(0, &buffers).unwrap();
    second.wait_used(0, 1, WAIT).unwrap();
    assert_eq!(read_u32(&second, status), VIRTIO_PMEM_RESP_OK);

    setup.daemon.signal(libc::SIGTERM).unwrap();
    assert!(setup.daemon.wait(WAIT).unwrap().success());
    assert!(second.windows().live().is_empty());
    assert_eq!(
        second.windows().stats().unmaps,
        1,
        "the second frontend was asked to unmap its mapping"
    );
    assert!(!setup.socket().exists());
}

#[test]
fn reset_releases_the_region_and_reactivation_maps_it_again() {
    let setup = start("reset", &[]);
    let mut frontend = connect(&setup.socket());
    wait_mapped(&frontend);
    frontend.reset_device().unwrap();
    // The frontend dropped the region itself at the reset; the daemon sends no unmap
    // for it (QEMU 11.1 would refuse one).
    assert!(frontend.windows().live().is_empty());
    assert_eq!(frontend.windows().stats().dropped_at_reset, 1);
    // A driver re-initialises the device by acking features again.
    let features = frontend.acked_features();
    vhost::VhostBackend::set_features(frontend.vhost(), features).unwrap();
    wait_mapped(&frontend);
    assert_eq!(frontend.windows().stats().maps, 2);
    assert_eq!(frontend.windows().stats().unmaps, 0);
    assert_eq!(frontend.windows().stats().refused, 0);
}

#[test]
fn readonly_device_maps_read_only_and_flushes_without_error() {
    let dir = TempDir::new("readonly");
    let file = dir.join("ro.img");
    std::fs::write(&file, vec![0xabu8; usize::try_from(SIZE).unwrap()]).unwrap();
    let socket = dir.join("ro.sock");
    let _daemon = spawn_daemon(
        &[
            "pmem",
            "--socket",
            socket.to_str().unwrap(),
            "--file",
            file.to_str().unwrap(),
            "--readonly",
        ],
        &socket,
    );
    let mut frontend = connect(&socket);
    wait_mapped(&frontend);
    assert!(!frontend.windows().live()[0].writable);
    let mut seen = [0u8; 4];
    frontend.windows().read(0, 100, &mut seen).unwrap();
    assert_eq!(seen, [0xab; 4]);
    let (buffers, status) = flush_request(&frontend);
    frontend.submit(0, &buffers).unwrap();
    frontend.wait_used(0, 1, WAIT).unwrap();
    assert_eq!(read_u32(&frontend, status), VIRTIO_PMEM_RESP_OK);
}

#[test]
fn without_shmem_the_device_serves_flushes_and_says_who_maps() {
    let mut setup = start("no-shmem", &[]);
    let options = FrontendOptions {
        protocol_features: FrontendOptions::default().protocol_features
            - VhostUserProtocolFeatures::SHMEM
            - VhostUserProtocolFeatures::BACKEND_REQ,
        ..FrontendOptions::default()
    };
    let mut frontend = Frontend::connect(&setup.socket(), &options).unwrap();
    assert!(frontend.windows().region_len(0).is_none());
    let (buffers, status) = flush_request(&frontend);
    frontend.submit(0, &buffers).unwrap();
    frontend.wait_used(0, 1, WAIT).unwrap();
    assert_eq!(read_u32(&frontend, status), VIRTIO_PMEM_RESP_OK);
    setup.daemon.signal(libc::SIGTERM).unwrap();
    setup.daemon.wait(WAIT).unwrap();
    let log = setup.daemon.log();
    assert_eq!(
        log.matches("must map the region itself").count(),
        1,
        "{log}"
    );
}

/// A frontend that speaks SHMEM as protocol bit 21 and sizes its regions itself, as alioth
/// did before the renumbering.
fn bit21_frontend_options(region_size: u64) -> FrontendOptions {
    FrontendOptions {
        protocol_features: (FrontendOptions::default().protocol_features
            - VhostUserProtocolFeatures::SHMEM)
            | VhostUserProtocolFeatures::from_bits_retain(1 << 21),
        shmem_sizes: Some(vec![region_size]),
        ..FrontendOptions::default()
    }
}

#[test]
fn with_shmem_bit21_an_alioth_style_frontend_gets_the_region_mapped() {
    let setup = start("bit21", &["--shmem-bit21"]);
    let frontend = Frontend::connect(&setup.socket(), &bit21_frontend_options(SIZE)).unwrap();
    assert!(
        !frontend
            .acked_protocol_features()
            .contains(VhostUserProtocolFeatures::SHMEM),
        "bit 22 was not negotiated"
    );
    wait_mapped(&frontend);
}

#[test]
fn without_the_switch_a_bit21_frontend_gets_no_mapping() {
    let mut setup = start("no-bit21", &[]);
    let frontend = Frontend::connect(&setup.socket(), &bit21_frontend_options(SIZE)).unwrap();
    setup.daemon.signal(libc::SIGTERM).unwrap();
    setup.daemon.wait(WAIT).unwrap();
    // No map was even tried: SHMEM was not negotiated.
    assert_eq!(frontend.windows().stats().maps, 0);
    assert_eq!(frontend.windows().stats().refused, 0);
    assert!(setup.daemon.log().contains("must map the region itself"));
}

#[test]
fn a_backing_cut_short_behind_the_daemon_fails_flush_and_is_not_mapped_again() {
    let setup = start("shrunk", &["--reconnect"]);
    let mut frontend = connect(&setup.socket());
    wait_mapped(&frontend);
    // Someone else truncates the image (the guest's window now reaches past its end).
    std::fs::OpenOptions::new()
        .write(true)
        .open(setup.file())
        .unwrap()
        .set_len(4096)
        .unwrap();
    let (buffers, status) = flush_request(&frontend);
    frontend.submit(0, &buffers).unwrap();
    frontend.wait_used(0, 1, WAIT).unwrap();
    assert_eq!(
        read_u32(&frontend, status),
        VIRTIO_PMEM_RESP_EIO,
        "a flush cannot promise data past the new end is durable"
    );
    // The next frontend gets no mapping of the short file, and the log says why.
    drop(frontend);
    let second = connect(&setup.socket());
    wait_until("the log to say why", || {
        setup.daemon.log().contains("shorter than the device's")
    });
    assert_eq!(second.windows().stats().maps, 0);
}

#[test]
fn sighup_stops_as_cleanly_as_sigterm() {
    let mut setup = start("sighup", &[]);
    let frontend = connect(&setup.socket());
    wait_mapped(&frontend);
    setup.daemon.signal(libc::SIGHUP).unwrap();
    let status = setup.daemon.wait(WAIT).unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(!setup.socket().exists(), "socket file left behind");
    assert_eq!(
        frontend.windows().stats().unmaps,
        1,
        "the region was unmapped"
    );
}

/// A pmem device's control socket: its flush and sync counters (`vhost-dax stats`), and
/// DMA pins on its region (the region is the ledger's one mapping).
#[test]
fn the_control_socket_reports_flushes_and_pins_the_region() {
    let dir = TempDir::new("pmem-control");
    let (socket, control) = (dir.join("pmem.sock"), dir.join("pmem.control"));
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
        "--control-socket",
        control.to_str().unwrap(),
    ];
    let _daemon = spawn_daemon(&args, &socket);
    let mut frontend = connect(&socket);
    wait_mapped(&frontend);
    for _ in 0..3 {
        let (buffers, status) = flush_request(&frontend);
        frontend.submit(0, &buffers).unwrap();
        frontend.wait_used(0, 1, WAIT).unwrap();
        assert_eq!(read_u32(&frontend, status), VIRTIO_PMEM_RESP_OK);
    }
    let out = Command::new(binary())
        .args(["stats", control.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["pmem"]["requests"], 3, "{answer}");
    let syncs = answer["pmem"]["syncs"].as_u64().unwrap();
    assert!((1..=3).contains(&syncs), "{answer}");
    assert_eq!(answer["stats"]["live_mappings"], 1, "the region: {answer}");
    assert!(answer["fuse"].is_null());

    let out = Command::new(binary())
        .args(["stats", control.to_str().unwrap(), "--prometheus"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let needle = format!(
        "vhost_dax_pmem_flush_requests_total{{control=\"{}\"}} 3",
        control.display()
    );
    assert!(text.contains(&needle), "{text}");

    let mut client = vhost_dax::control::client::ControlClient::connect(&control, WAIT).unwrap();
    let pin = client
        .pin(0, 4096, "dma")
        .expect("a pin on the mapped region");
    client.unpin(pin).unwrap();
}
