//! The seccomp filter of a running daemon: every task of the process has it (seen in
//! `/proc/PID/task/*/status`), with each action; none with `--seccomp none`; bad values
//! are one-line errors naming the field. That the list is complete is proven by the
//! rest of the suite, which runs every daemon under the default (`kill`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use vhost_dax::frontend::DaemonProcess;

/// `Seccomp:` and `NoNewPrivs:` of every task (thread) of process `pid`.
fn task_modes(pid: u32) -> Vec<(String, String, String)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let mut modes = Vec::new();
    for task in tasks {
        let task = task.unwrap().path();
        let Ok(status) = std::fs::read_to_string(task.join("status")) else {
            continue; // the thread ended meanwhile
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        let name = field("Name:");
        modes.push((name, field("Seccomp:"), field("NoNewPrivs:")));
    }
    modes
}

/// Waits for the daemon's word on its filter, then checks every task: mode 2 (filter)
/// and no_new_privs with a filter, mode 0 without one.
fn assert_every_task(daemon: &DaemonProcess, filtered: bool) -> usize {
    wait_until("the seccomp log line", || {
        daemon.log().contains("seccomp: ")
    });
    let modes = task_modes(daemon.pid());
    let want = if filtered { "2" } else { "0" };
    for (name, mode, _) in &modes {
        assert_eq!(mode, want, "task {name}: {modes:?}\n{}", daemon.log());
    }
    if filtered {
        assert!(modes.iter().all(|(_, _, nnp)| nnp == "1"), "{modes:?}");
    }
    modes.len()
}

fn fs_daemon(dir: &TempDir, extra: &[&str]) -> (DaemonProcess, PathBuf) {
    let share = dir.join("share");
    std::fs::create_dir_all(&share).unwrap();
    let socket = dir.join("fs.sock");
    (spawn_fs_daemon(&share, &socket, extra), socket)
}

fn stop(mut daemon: DaemonProcess) {
    daemon.signal(libc::SIGTERM).unwrap();
    let status = daemon.wait(WAIT).unwrap();
    assert!(status.success(), "{status}\n{}", daemon.log());
}

#[test]
fn every_thread_of_a_serving_fs_daemon_has_the_filter_by_default() {
    let dir = TempDir::new("seccomp-fs");
    let control = dir.join("fs.control");
    let (daemon, socket) = fs_daemon(
        &dir,
        &[
            "--thread-pool-size",
            "2",
            "--queues",
            "2",
            "--control-socket",
            control.to_str().unwrap(),
        ],
    );
    // The pool and control threads existed before the filter (TSYNC put it on them);
    // the frontend's queue threads are spawned after it.
    let frontend = connect(&socket);
    let tasks = assert_every_task(&daemon, true);
    assert!(tasks >= 4, "{tasks} tasks");
    assert!(
        daemon.log().contains("anything else: kill"),
        "{}",
        daemon.log()
    );
    drop(frontend);
    let mut daemon = daemon;
    let status = daemon.wait(WAIT).unwrap();
    assert!(status.success(), "{status}\n{}", daemon.log());
}

#[test]
fn a_pmem_daemon_has_the_filter_on_every_thread() {
    let dir = TempDir::new("seccomp-pmem");
    let socket = dir.join("pmem.sock");
    let image = dir.join("pmem.img");
    let control = dir.join("pmem.control");
    let daemon = spawn_daemon(
        &[
            "pmem",
            "--socket",
            socket.to_str().unwrap(),
            "--file",
            image.to_str().unwrap(),
            "--size",
            "4M",
            "--create",
            "--control-socket",
            control.to_str().unwrap(),
        ],
        &socket,
    );
    let frontend = connect(&socket);
    assert_every_task(&daemon, true);
    drop(frontend);
    stop(daemon);
}

#[test]
fn log_and_trap_install_the_filter_and_none_installs_nothing() {
    for (action, filtered) in [("log", true), ("trap", true), ("none", false)] {
        let dir = TempDir::new(&format!("seccomp-{action}"));
        let (daemon, socket) = fs_daemon(&dir, &["--seccomp", action]);
        let frontend = connect(&socket);
        assert_every_task(&daemon, filtered);
        if filtered {
            let want = format!("anything else: {action}");
            assert!(daemon.log().contains(&want), "{}", daemon.log());
        } else {
            assert!(daemon.log().contains("seccomp: no filter"));
        }
        drop(frontend);
        stop(daemon);
    }
}

#[test]
fn a_config_file_sets_the_filter_for_the_whole_daemon() {
    let dir = TempDir::new("seccomp-config");
    std::fs::create_dir(dir.join("share")).unwrap();
    let fs_socket = dir.join("fs.sock");
    let pmem_socket = dir.join("pmem.sock");
    let config = dir.join("two.toml");
    std::fs::write(
        &config,
        format!(
            "seccomp = \"none\"\n[[fs]]\nsocket = {:?}\nshared_dir = {:?}\nsandbox = \"none\"\n\
             [[pmem]]\nsocket = {:?}\nfile = {:?}\nsize = \"4M\"\ncreate = true\n",
            fs_socket.to_str().unwrap(),
            dir.join("share").to_str().unwrap(),
            pmem_socket.to_str().unwrap(),
            dir.join("pmem.img").to_str().unwrap(),
        ),
    )
    .unwrap();
    let daemon = spawn_daemon(&["run", "--config", config.to_str().unwrap()], &fs_socket);
    assert_every_task(&daemon, false);
    stop(daemon);

    // Without the key: the default, one filter for both devices.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("seccomp = \"none\"\n", "")).unwrap();
    let daemon = spawn_daemon(&["run", "--config", config.to_str().unwrap()], &fs_socket);
    assert_every_task(&daemon, true);
    stop(daemon);
}

#[test]
fn the_virtiofsd_command_line_takes_virtiofsds_seccomp_values() {
    let dir = TempDir::new("seccomp-compat");
    std::fs::create_dir(dir.join("share")).unwrap();
    let socket = dir.join("fs.sock");
    for (args, filtered) in [(&[][..], true), (&["--seccomp=none"][..], false)] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vhost-dax-virtiofsd"));
        command
            .args([
                "--socket-path",
                socket.to_str().unwrap(),
                "--shared-dir",
                dir.join("share").to_str().unwrap(),
                "--sandbox=none",
            ])
            .args(args);
        let daemon = DaemonProcess::spawn_command(command, &socket, WAIT).unwrap();
        assert_every_task(&daemon, filtered);
        stop(daemon);
    }
}

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(binary()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_one_line_exit_2(what: &str, (code, stderr): (i32, String), names: &str) {
    assert_eq!(code, 2, "{what}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{what}: {stderr}");
    assert!(stderr.contains(names), "{what}: {names:?} in {stderr}");
}

#[test]
fn a_bad_seccomp_value_is_one_line_naming_the_field_with_exit_2() {
    let dir = TempDir::new("seccomp-bad");
    std::fs::create_dir(dir.join("share")).unwrap();
    let socket = dir.join("fs.sock");
    let fs_args = |value: &'static str| {
        vec![
            "fs".to_owned(),
            "--socket".into(),
            socket.to_str().unwrap().into(),
            "--shared-dir".into(),
            dir.join("share").to_str().unwrap().into(),
            "--seccomp".into(),
            value.into(),
        ]
    };
    let args = fs_args("strict");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_one_line_exit_2("fs --seccomp strict", run(&args), "--seccomp");
    assert!(!socket.exists());

    let config = |text: &str| {
        let path = dir.join("bad.toml");
        std::fs::write(&path, text).unwrap();
        run(&["check-config", path.to_str().unwrap()])
    };
    let device = format!(
        "[[fs]]\nsocket = {:?}\nshared_dir = {:?}\nsandbox = \"none\"\n",
        socket.to_str().unwrap(),
        dir.join("share").to_str().unwrap()
    );
    assert_one_line_exit_2(
        "top-level strict",
        config(&format!("seccomp = \"strict\"\n{device}")),
        "seccomp: `strict` is not one of kill, log, trap, none",
    );
    assert_one_line_exit_2(
        "top-level number",
        config(&format!("seccomp = 1\n{device}")),
        "seccomp: must be a string",
    );
    assert_one_line_exit_2(
        "in a device table",
        config(&format!("{device}seccomp = \"log\"\n")),
        "fs[0].seccomp: is a daemon-level setting",
    );
    assert_eq!(config(&format!("seccomp = \"trap\"\n{device}")).0, 0);
    assert!(!socket.exists());

    let compat = Command::new(env!("CARGO_BIN_EXE_vhost-dax-virtiofsd"))
        .args(["--shared-dir", "/tmp", "--socket-path"])
        .arg(Path::new(&socket))
        .arg("--seccomp=strict")
        .output()
        .unwrap();
    assert_one_line_exit_2(
        "vhost-dax-virtiofsd --seccomp=strict",
        (
            compat.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&compat.stderr).into_owned(),
        ),
        "--seccomp: `strict` is not one of kill, log, trap, none",
    );
}

/// `--syslog` under the default filter: lines logged while serving reach the log socket,
/// also after the log daemon restarted (a new socket and connect, from a serving thread).
#[test]
fn syslog_keeps_working_under_the_filter_across_a_log_daemon_restart() {
    use std::os::unix::net::UnixDatagram;
    let dir = TempDir::new("seccomp-syslog");
    std::fs::create_dir(dir.join("share")).unwrap();
    let log_socket = dir.join("log.sock");
    let bind = || {
        let socket = UnixDatagram::bind(&log_socket).unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        socket
    };
    let until = |syslog: &UnixDatagram, needle: &str| {
        let mut buf = [0u8; 4096];
        loop {
            let n = syslog
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no syslog line with {needle:?} within 10 s: {e}"));
            if String::from_utf8_lossy(&buf[..n]).contains(needle) {
                return;
            }
        }
    };
    let syslog = bind();
    let mut command = Command::new(binary());
    command.env(vhost_dax::logging::SYSLOG_SOCKET_ENV, &log_socket);
    let socket = dir.join("fs.sock");
    let mut daemon = spawn_fs_daemon_with(
        command,
        &dir.join("share"),
        &socket,
        &["--syslog", "--reconnect"],
    );
    until(&syslog, "seccomp: filter installed");
    // The log daemon restarts: its old socket is gone, a new one is bound in its place.
    drop(syslog);
    std::fs::remove_file(&log_socket).unwrap();
    let syslog = bind();
    for _ in 0..2 {
        let frontend = connect(&socket);
        until(&syslog, "frontend connected");
        drop(frontend);
        until(&syslog, "waiting for the next frontend");
    }
    assert!(
        task_modes(daemon.pid())
            .iter()
            .all(|(_, mode, _)| mode == "2"),
        "the daemon still runs, filtered"
    );
    daemon.signal(libc::SIGHUP).unwrap();
    until(&syslog, "shutdown complete");
    assert!(daemon.wait(WAIT).unwrap().success());
}

/// Stopped and continued (a debugger, job control, a frozen cgroup), a daemon whose
/// threads sleep in timed waits (the control socket's poll) resumes them through
/// `restart_syscall`: it must be on the list, or `kill` ends the daemon right there.
#[test]
fn a_stopped_and_continued_daemon_keeps_serving() {
    let dir = TempDir::new("seccomp-stop");
    let control = dir.join("fs.control");
    let (mut daemon, socket) = fs_daemon(
        &dir,
        &[
            "--control-socket",
            control.to_str().unwrap(),
            "--thread-pool-size",
            "2",
        ],
    );
    wait_until("the filter", || daemon.log().contains("seccomp: filter"));
    // Let the control thread settle into its timed poll.
    std::thread::sleep(std::time::Duration::from_millis(200));
    for _ in 0..3 {
        daemon.signal(libc::SIGSTOP).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        daemon.signal(libc::SIGCONT).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let stats = Command::new(binary())
        .args(["stats", control.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(stats.status.success(), "{}", daemon.log());
    let frontend = connect(&socket);
    drop(frontend);
    let status = daemon.wait(WAIT).unwrap();
    assert!(status.success(), "{status}\n{}", daemon.log());
}
