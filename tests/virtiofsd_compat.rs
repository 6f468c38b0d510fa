//! `vhost-dax-virtiofsd` started the way libvirt starts a virtiofs daemon: the socket
//! created by the parent, listening, passed as `--fd=N` (close-on-exec cleared in the
//! child), with the exact option lists `qemuVirtioFSBuildCommandLine` produces in its two
//! forms; the daemon must serve a guest through that socket and never unlink it.

mod common;

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::*;
use vhost_dax::frontend::{DaemonProcess, FuseQueue};
use vhost_dax::fuse::abi::{fopen, init_flags};
use vhost_dax::fuse::testing::Client;

fn compat_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vhost-dax-virtiofsd"))
}

/// `vhost-dax-virtiofsd ARGS` with `listener` inherited as descriptor `listener`'s
/// number: only the child clears close-on-exec, so no other test's child inherits it.
fn command_with_fd(listener: &UnixListener, args: &[&str]) -> Command {
    let fd: RawFd = listener.as_raw_fd();
    let mut command = Command::new(compat_binary());
    // The log level comes from the command line alone (-d, --log-level).
    command.args(args).env_remove("RUST_LOG");
    // SAFETY: the closure runs in the forked child before exec and calls only fcntl,
    // which is async-signal-safe; `fd` is open in the child (inherited at fork).
    unsafe {
        command.pre_exec(move || {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

/// Creates the listening socket as libvirt does, starts the daemon with it and closes
/// the parent's copy (VIR_COMMAND_PASS_FD_CLOSE_PARENT).
fn start_with_fd(socket: &Path, args: impl Fn(RawFd) -> Vec<String>) -> DaemonProcess {
    let listener = UnixListener::bind(socket).unwrap();
    let args = args(listener.as_raw_fd());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let command = command_with_fd(&listener, &args);
    let daemon = DaemonProcess::spawn_command(command, socket, WAIT).expect("daemon starts");
    drop(listener);
    daemon
}

/// A guest on request queue 1 of the device behind `socket`, after INIT.
fn guest(socket: &Path) -> (Client<FuseQueue>, vhost_dax::fuse::abi::InitOut) {
    let frontend = Arc::new(Mutex::new(connect(socket)));
    let client = Client::over(FuseQueue::new(frontend, 1, WAIT));
    let init = client.init();
    (client, init)
}

const ROOT: u64 = 1;

#[test]
fn libvirts_legacy_o_command_line_serves_through_the_inherited_socket() {
    let dir = TempDir::new("compat-o");
    let share = dir.join("share,dir");
    std::fs::create_dir(&share).unwrap();
    std::fs::write(share.join("hello"), b"from the host").unwrap();
    let socket = dir.join("fs0-fs.sock");
    // libvirt doubles commas in the source path.
    let source = share.to_str().unwrap().replace(',', ",,");
    let mut daemon = start_with_fd(&socket, |fd| {
        vec![
            format!("--fd={fd}"),
            "-o".into(),
            format!(
                "source={source},cache=always,xattr,no_flock,no_posix_lock,\
                 xattrmap=:map:trusted.:user.virtiofs.:"
            ),
            "--thread-pool-size=16".into(),
            "-d".into(),
        ]
    });
    let (c, _) = guest(&socket);
    let e = c.lookup(ROOT, b"hello").unwrap();
    let open = c.open(e.nodeid, libc::O_RDONLY as u32).unwrap();
    assert_eq!(open.open_flags, fopen::KEEP_CACHE, "cache=always");
    assert_eq!(c.read(e.nodeid, open.fh, 0, 100).unwrap(), b"from the host");
    c.setxattr(e.nodeid, b"user.k", b"v", 0).unwrap();
    assert_eq!(c.getxattr(e.nodeid, b"user.k", 10).unwrap(), b"v", "xattr");
    c.setxattr(e.nodeid, b"trusted.overlay.opaque", b"y", 0)
        .unwrap();
    let mut host = [0u8; 8];
    let path = std::ffi::CString::new(share.join("hello").into_os_string().into_encoded_bytes());
    let name = c"user.virtiofs.trusted.overlay.opaque";
    // SAFETY: valid C strings and a buffer of the length given.
    let n = unsafe {
        libc::getxattr(
            path.unwrap().as_ptr(),
            name.as_ptr(),
            host.as_mut_ptr().cast(),
            host.len(),
        )
    };
    assert_eq!(n, 1, "xattrmap: the guest's trusted.* under user.virtiofs.");
    drop(c);
    assert!(daemon.wait(WAIT).unwrap().success(), "{}", daemon.log());
    let log = daemon.log();
    assert!(log.contains("DEBUG"), "-d turns debug logging on:\n{log}");
    assert!(log.contains("16 pool worker(s)"), "{log}");
    assert!(
        socket.exists(),
        "the daemon must not unlink the socket it inherited"
    );
}

#[test]
fn libvirts_separate_options_command_line_serves_through_the_inherited_socket() {
    let dir = TempDir::new("compat-separate");
    let share = dir.join("share");
    std::fs::create_dir(&share).unwrap();
    std::fs::write(share.join("a"), b"A").unwrap();
    let socket = dir.join("fs1-fs.sock");
    let share_arg = share.to_str().unwrap().to_owned();
    let mut daemon = start_with_fd(&socket, |fd| {
        vec![
            format!("--fd={fd}"),
            "--shared-dir".into(),
            share_arg.clone(),
            "--cache".into(),
            "never".into(),
            "--sandbox".into(),
            "none".into(),
            "--xattr".into(),
            "--thread-pool-size=0".into(),
            "--rlimit-nofile=4096".into(),
            "--modcaps=+sys_admin:-mknod".into(),
            "--log-level".into(),
            "debug".into(),
        ]
    });
    let (c, init) = guest(&socket);
    assert_eq!(
        u64::from(init.flags) & init_flags::DO_READDIRPLUS,
        0,
        "no READDIRPLUS with cache never (as virtiofsd)"
    );
    let e = c.lookup(ROOT, b"a").unwrap();
    assert_eq!((e.entry_valid, e.attr_valid), (0, 0), "cache never");
    let open = c.open(e.nodeid, libc::O_RDWR as u32).unwrap();
    assert_eq!(open.open_flags, fopen::DIRECT_IO, "cache never");
    c.write(e.nodeid, open.fh, 1, b"B").unwrap();
    assert_eq!(std::fs::read(share.join("a")).unwrap(), b"AB");
    // The daemon's own limit, as --rlimit-nofile asked.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", daemon.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>()[3..5],
        ["4096", "4096"]
    );
    // --modcaps changed what a root daemon keeps: virtiofsd's default set (0x880000db),
    // with dac_read_search (2) for the default --inode-file-handles=prefer, with
    // sys_admin (21) and without mknod (27).
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
        let eff = status.lines().find(|l| l.starts_with("CapEff:")).unwrap();
        let eff = u64::from_str_radix(eff["CapEff:".len()..].trim(), 16).unwrap();
        assert_eq!(
            eff,
            (0x8800_00df | 1 << 21) & !(1 << 27),
            "{}",
            daemon.log()
        );
    }
    drop(c);
    assert!(daemon.wait(WAIT).unwrap().success(), "{}", daemon.log());
    assert!(socket.exists(), "the inherited socket's file stays");
}

/// A group other than ours, if the system has one (to see the chown happen).
fn some_other_group() -> (String, u32) {
    let ours = std::fs::metadata("/proc/self").unwrap().gid();
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    groups
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let gid = f.nth(1)?.parse().ok()?;
            Some((name.to_owned(), gid))
        })
        .find(|(_, gid)| *gid != ours)
        .unwrap_or(("root".into(), 0))
}

#[test]
fn socket_group_gives_the_created_socket_to_the_group_with_mode_0660() {
    let dir = TempDir::new("compat-group");
    std::fs::create_dir(dir.join("share")).unwrap();
    let (group, gid) = some_other_group();
    let socket = dir.join("fs.sock");
    let mut daemon = DaemonProcess::spawn(
        &compat_binary(),
        [
            "--socket-path",
            socket.to_str().unwrap(),
            "--shared-dir",
            dir.join("share").to_str().unwrap(),
            "--socket-group",
            &group,
            "--sandbox=none",
        ],
        &socket,
        WAIT,
    )
    .unwrap();
    let md = std::fs::metadata(&socket).unwrap();
    assert_eq!(md.gid(), gid, "{group}");
    assert_eq!(md.permissions().mode() & 0o777, 0o660);
    let (c, _) = guest(&socket);
    drop(c);
    assert!(daemon.wait(WAIT).unwrap().success());
    assert!(!socket.exists(), "a socket the daemon created is removed");

    // Without a group the socket is owner-only, as virtiofsd makes it.
    let mut daemon = DaemonProcess::spawn(
        &compat_binary(),
        [
            "--socket-path",
            socket.to_str().unwrap(),
            "--shared-dir",
            dir.join("share").to_str().unwrap(),
            "--sandbox=none",
        ],
        &socket,
        WAIT,
    )
    .unwrap();
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
    drop(connect(&socket));
    assert!(daemon.wait(WAIT).unwrap().success());

    // The same flag on the native command line.
    let mut daemon = spawn_fs_daemon(
        &dir.join("share"),
        &socket,
        &["--socket-group", group.as_str()],
    );
    let md = std::fs::metadata(&socket).unwrap();
    assert_eq!((md.gid(), md.permissions().mode() & 0o777), (gid, 0o660));
    drop(connect(&socket));
    assert!(daemon.wait(WAIT).unwrap().success());
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(compat_binary()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn print_capabilities_prints_the_backend_json() {
    let (code, stdout, stderr) = run(&["--print-capabilities"]);
    assert_eq!(code, 0, "{stderr}");
    let value: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(value["type"], "fs");
    assert_eq!(value["features"], serde_json::json!(["separate-options"]));
    let (code, stdout, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("vhost-dax-virtiofsd "), "{stdout}");
}

#[test]
fn the_packaged_descriptor_matches_the_binary() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/50-vhost-dax-virtiofsd.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let descriptor: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(descriptor["type"], "fs");
    assert!(
        descriptor["binary"]
            .as_str()
            .unwrap()
            .ends_with("/vhost-dax-virtiofsd")
    );
    let (_, stdout, _) = run(&["--print-capabilities"]);
    let capabilities: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(descriptor["features"], capabilities["features"]);
}

#[test]
fn bad_command_lines_exit_2_with_one_line_and_create_nothing() {
    let dir = TempDir::new("compat-bad");
    std::fs::create_dir(dir.join("share")).unwrap();
    let share = dir.join("share");
    let share = share.to_str().unwrap();
    let sock = dir.join("x.sock");
    let sock = sock.to_str().unwrap();
    let before = dir.entries();
    let map_not_last = format!("source={share},xattrmap=:map:a.:b.: :ok:all:::");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "--socket-path",
                sock,
                "--shared-dir",
                share,
                "--modcaps=+sys_admin:-no_such_cap",
            ],
            "--modcaps: `no_such_cap` is not a capability name",
        ),
        (
            vec!["--socket-path", sock, "-o", "source=/x,modcaps=chown"],
            "-o modcaps: `chown` must start with + or -",
        ),
        (
            vec!["--socket-path", sock, "-o", "source=/x,posix_lock"],
            "-o posix_lock: not supported by vhost-dax",
        ),
        (
            vec![
                "--socket-path",
                sock,
                "--shared-dir",
                share,
                "--socket-group",
                "no-such-group-vhost-dax",
            ],
            "--socket-group: no group named",
        ),
        (
            vec![
                "--socket-path",
                sock,
                "--shared-dir",
                share,
                "--cache",
                "sometimes",
            ],
            "--cache: `sometimes` is not one of",
        ),
        (vec!["--socket-path", sock], "--shared-dir: is required"),
        (vec!["--shared-dir", share], "--socket-path: is required"),
        (
            vec!["--fd=987654", "--shared-dir", share],
            "--fd: file descriptor 987654 is not open",
        ),
        (
            vec!["--fd=0", "--shared-dir", share],
            "--fd: file descriptor 0 is not a socket",
        ),
        (
            vec!["--fd=0", "--socket-path", sock, "--shared-dir", share],
            "--fd: cannot be combined with --socket-path",
        ),
        (vec!["--bogus"], "--bogus: unknown option"),
        (
            vec![
                "--socket-path",
                sock,
                "--shared-dir",
                share,
                "--xattrmap=:ok:all:::\n:prefix:everywhere:a.:b.:",
            ],
            "--xattrmap: rule 2 `:prefix:everywhere:`: scope `everywhere` is not one of",
        ),
        (
            vec!["--socket-path", sock, "-o", &map_not_last],
            "--xattrmap: rule 1 `:map:a.:b.:`: a map rule must be the last rule",
        ),
    ];
    for (args, want) in cases {
        let (code, _, stderr) = run(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert_eq!(dir.entries(), before, "{args:?} created something");
    }
}

#[test]
fn an_inherited_socket_that_is_not_listening_is_refused_naming_fd() {
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let fd = a.as_raw_fd();
    let dir = TempDir::new("compat-notlistening");
    let fd_arg = format!("--fd={fd}");
    let mut command = Command::new(compat_binary());
    command.args([
        fd_arg.as_str(),
        "--shared-dir",
        dir.path().to_str().unwrap(),
    ]);
    // SAFETY: as in command_with_fd: fcntl only, in the child before exec.
    unsafe {
        command.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "--fd: file descriptor {fd} is a Unix socket that is not listening"
        )),
        "{stderr}"
    );
}

/// The shipped units start the daemon the way `systemd-socket-activate` does: systemd
/// listens, and on the first connection starts `vhost-dax-virtiofsd --fd=3` with the
/// socket as descriptor 3 (packaging/systemd/vhost-dax-virtiofsd@.service).
#[test]
fn systemd_socket_activation_serves_through_fd_3() {
    let Ok(activate) = which("systemd-socket-activate") else {
        // Part of Debian's systemd package, on every CI machine; said, not passed quietly.
        panic!("systemd-socket-activate is not installed (apt-get install systemd)");
    };
    let dir = TempDir::new("compat-systemd");
    let share = dir.join("share");
    std::fs::create_dir(&share).unwrap();
    std::fs::write(share.join("hello"), b"activated").unwrap();
    let socket = dir.join("fs.sock");
    let mut command = Command::new(activate);
    command
        .arg("--listen")
        .arg(&socket)
        .arg(compat_binary())
        .arg("--fd=3")
        .arg(format!("--shared-dir={}", share.display()))
        .arg("--sandbox=none")
        .env_remove("RUST_LOG");
    let mut daemon = DaemonProcess::spawn_command(command, &socket, WAIT).expect("listening");
    let (c, _) = guest(&socket);
    let e = c.lookup(ROOT, b"hello").unwrap();
    let open = c.open(e.nodeid, libc::O_RDONLY as u32).unwrap();
    assert_eq!(c.read(e.nodeid, open.fh, 0, 100).unwrap(), b"activated");
    drop(c);
    assert!(daemon.wait(WAIT).unwrap().success(), "{}", daemon.log());
}

/// `name` on PATH.
fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

#[test]
fn the_systemd_units_start_the_binaries_the_readme_installs() {
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/systemd");
    let service = std::fs::read_to_string(units.join("vhost-dax-virtiofsd@.service")).unwrap();
    assert!(service.contains("ExecStart=/usr/libexec/vhost-dax-virtiofsd --fd=3 "));
    let socket = std::fs::read_to_string(units.join("vhost-dax-virtiofsd@.socket")).unwrap();
    assert!(socket.contains("ListenStream=/run/vhost-dax/%i.sock"));
    let run = std::fs::read_to_string(units.join("vhost-dax@.service")).unwrap();
    assert!(run.contains("ExecStart=/usr/bin/vhost-dax run --config /etc/vhost-dax/%i.toml"));
    assert!(
        run.contains("RuntimeDirectory=vhost-dax"),
        "configs put sockets in /run/vhost-dax"
    );
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for installed in ["/usr/libexec/vhost-dax-virtiofsd", "/usr/bin/vhost-dax"] {
        assert!(readme.contains(installed), "README installs {installed}");
    }
}
