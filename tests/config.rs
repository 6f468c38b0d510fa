//! Bad configuration: one line naming the field, exit status 2, nothing left on disk.
//! Example configs: every file in configs/ validates.

mod common;

use std::process::Command;

use common::*;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(binary()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn each_bad_pmem_command_line_exits_2_with_one_line_and_creates_nothing() {
    let dir = TempDir::new("bad-cli");
    std::fs::create_dir(dir.join("subdir")).unwrap();
    std::fs::write(dir.join("small.img"), vec![0u8; 2 << 20]).unwrap();
    std::fs::write(dir.join("odd.img"), vec![0u8; 3 << 20]).unwrap();
    let before = dir.entries();
    let sock = dir.join("p.sock");
    let sock = sock.to_str().unwrap();
    let new_file = dir.join("new.img");
    let new_file = new_file.to_str().unwrap();
    let small = dir.join("small.img");
    let small = small.to_str().unwrap();
    let odd = dir.join("odd.img");
    let odd = odd.to_str().unwrap();
    let subdir = dir.join("subdir");
    let subdir = subdir.to_str().unwrap();
    let missing_sock = dir.join("nowhere/p.sock");
    let missing_sock = missing_sock.to_str().unwrap();

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "--socket", sock, "--file", new_file, "--size", "4M", "--create", "--bogus",
            ],
            "--bogus",
        ),
        (
            vec![
                "--socket", sock, "--file", new_file, "--size", "4X", "--create",
            ],
            "--size: unknown unit",
        ),
        (
            vec![
                "--socket", sock, "--file", new_file, "--size", "3M", "--create",
            ],
            "--size: 3 MiB is not a multiple of 2 MiB",
        ),
        (
            vec![
                "--socket", sock, "--file", new_file, "--size", "0", "--create",
            ],
            "--size: must not be zero",
        ),
        (
            vec!["--socket", sock, "--file", new_file, "--size", "4M"],
            "--file:",
        ),
        (
            vec!["--socket", sock, "--file", new_file, "--create"],
            "--size: is required",
        ),
        (
            vec![
                "--socket",
                missing_sock,
                "--file",
                new_file,
                "--size",
                "4M",
                "--create",
            ],
            "--socket: directory",
        ),
        (
            vec![
                "--socket",
                sock,
                "--file",
                new_file,
                "--size",
                "4M",
                "--create",
                "--readonly",
            ],
            "--create: cannot be combined with readonly",
        ),
        (
            vec!["--socket", sock, "--file", subdir],
            "is not a regular file or block device",
        ),
        (
            vec!["--socket", sock, "--file", small, "--size", "4M"],
            "--size: 4 MiB is larger than",
        ),
        (vec!["--socket", sock, "--file", odd], "--file: size of"),
        (vec!["--socket", small, "--file", small], "--socket:"),
        (
            vec!["--socket", sock, "--file", small, "--log-level", "loud"],
            "--log-level",
        ),
    ];
    for (args, expected) in cases {
        let mut full = vec!["pmem"];
        full.extend_from_slice(&args);
        let (code, stderr) = run(&full);
        assert_eq!(code, 2, "{full:?}: stderr {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{full:?}: not one line: {stderr}"
        );
        assert!(
            stderr.contains(expected),
            "{full:?}: expected {expected:?} in {stderr}"
        );
        assert_eq!(dir.entries(), before, "{full:?} left something on disk");
    }
}

#[test]
fn each_bad_config_file_exits_2_naming_the_field() {
    let dir = TempDir::new("bad-config");
    let sock = dir.join("p.sock");
    let img = dir.join("p.img");
    let head = format!(
        "socket = {:?}\nfile = {:?}\n",
        sock.to_str().unwrap(),
        img.to_str().unwrap()
    );
    let share = std::env::temp_dir();
    let fs_head = format!(
        "socket = {:?}\nshared_dir = {:?}\nsandbox = \"none\"\n",
        dir.join("f.sock").to_str().unwrap(),
        share.to_str().unwrap()
    );
    let ctl = dir.join("f.control");
    let cases: Vec<(String, &str)> = vec![
        (
            format!("[[pmem]]\n{head}size = \"4M\"\ncreate = true\nsise = 1\n"),
            "pmem[0].sise: unknown field",
        ),
        (
            format!("[[pmem]]\n{head}size = \"4 parsecs\"\ncreate = true\n"),
            "pmem[0].size: unknown unit",
        ),
        (
            format!("[[pmem]]\n{head}size = \"5M\"\ncreate = true\n"),
            "pmem[0].size: 5 MiB is not a multiple",
        ),
        (
            format!("[[pmem]]\n{head}size = \"4M\"\ncreate = \"yes\"\n"),
            "pmem[0].create: must be true or false",
        ),
        (format!("[[pmem]]\n{head}size = \"4M\"\n"), "pmem[0].file:"),
        (
            format!(
                "[[pmem]]\n{head}size = \"4M\"\ncreate = true\n[[pmem]]\n{head}size = \"4M\"\ncreate = true\n"
            ),
            "pmem[1].socket: ",
        ),
        ("colour = \"blue\"\n".to_string(), "colour: unknown field"),
        ("[[pmem]\n".to_string(), "config: line 1"),
        (String::new(), "config: defines no device"),
        ("log_level = \"chatty\"\n".to_string(), "log_level:"),
        (
            format!("[[fs]]\n{fs_head}dax_window = \"3M\"\n"),
            "fs[0].dax_window: 3 MiB is not a multiple of 2 MiB",
        ),
        (
            format!("[[fs]]\n{fs_head}dax_window = true\n"),
            "fs[0].dax_window: must be a size",
        ),
        (
            format!("[[fs]]\n{fs_head}socket_group = \"no-such-group-vhost-dax\"\n"),
            "fs[0].socket_group: no group named `no-such-group-vhost-dax`",
        ),
        (
            format!("[[pmem]]\n{head}size = \"4M\"\ncreate = true\nsocket_group = 7\n"),
            "pmem[0].socket_group: must be a string",
        ),
        (
            format!(
                "[[pmem]]\n{head}size = \"4M\"\ncreate = true\nsocket_group = \"no-such-group-vhost-dax\"\n"
            ),
            "pmem[0].socket_group: no group named",
        ),
        (
            format!("[[fs]]\n{fs_head}dax_window = \"8M\"\npin_wait_budget = [1]\n"),
            "fs[0].pin_wait_budget: must be a duration",
        ),
        (
            format!(
                "[[fs]]\n{fs_head}dax_window = \"8M\"\ncontrol_socket = {:?}\n\
                 [[pmem]]\nsocket = {:?}\nfile = {:?}\nsize = \"4M\"\ncreate = true\n",
                ctl.to_str().unwrap(),
                ctl.to_str().unwrap(),
                img.to_str().unwrap()
            ),
            "is used by another device",
        ),
    ];
    for (text, expected) in cases {
        let path = dir.join("bad.toml");
        std::fs::write(&path, &text).unwrap();
        for command in ["check-config", "run"] {
            let args: Vec<&str> = if command == "run" {
                vec!["run", "--config", path.to_str().unwrap()]
            } else {
                vec!["check-config", path.to_str().unwrap()]
            };
            let (code, stderr) = run(&args);
            assert_eq!(code, 2, "{command} {text:?}: {stderr}");
            assert_eq!(
                stderr.trim_end().lines().count(),
                1,
                "not one line: {stderr}"
            );
            assert!(
                stderr.contains(expected),
                "{text:?}: expected {expected:?} in {stderr}"
            );
        }
        assert_eq!(
            dir.entries(),
            vec!["bad.toml".to_string()],
            "{text:?} left something"
        );
    }
}

/// The examples point at /run/vhost-dax and /var/lib/vhost-dax; relocate those into a
/// sandbox so validation can check them without touching the host.
#[test]
fn every_example_config_validates_and_check_config_creates_nothing() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        seen += 1;
        let dir = TempDir::new("example");
        std::fs::create_dir_all(dir.join("run")).unwrap();
        std::fs::create_dir_all(dir.join("lib")).unwrap();
        std::fs::create_dir_all(dir.join("share")).unwrap();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("/run/vhost-dax", dir.join("run").to_str().unwrap())
            .replace(
                "/var/lib/vhost-dax/share",
                dir.join("share").to_str().unwrap(),
            )
            .replace("/var/lib/vhost-dax", dir.join("lib").to_str().unwrap());
        // Examples that use an existing image get one of the size they expect.
        {
            let (name, size) = ("existing.img", 64u64 << 20);
            std::fs::write(dir.join("lib").join(name), vec![]).unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("lib").join(name))
                .unwrap()
                .set_len(size)
                .unwrap();
        }
        let config = dir.join("example.toml");
        std::fs::write(&config, text).unwrap();
        let (code, stderr) = run(&["check-config", config.to_str().unwrap()]);
        assert_eq!(code, 0, "{}: {stderr}", path.display());
        let lib: Vec<_> = std::fs::read_dir(dir.join("lib")).unwrap().collect();
        assert_eq!(
            lib.len(),
            1,
            "{}: check-config created files",
            path.display()
        );
        assert_eq!(std::fs::read_dir(dir.join("run")).unwrap().count(), 0);
    }
    assert!(
        seen >= 2,
        "expected example configs in {}",
        examples.display()
    );
}

#[test]
fn each_bad_fs_command_line_exits_2_with_one_line_and_creates_nothing() {
    let dir = TempDir::new("bad-fs-cli");
    std::fs::create_dir(dir.join("share")).unwrap();
    std::fs::write(dir.join("file"), b"x").unwrap();
    let before = dir.entries();
    let sock = dir.join("fs.sock");
    let sock = sock.to_str().unwrap();
    let share = dir.join("share");
    let share = share.to_str().unwrap();
    let file = dir.join("file");
    let file = file.to_str().unwrap();
    let missing = dir.join("missing");
    let missing = missing.to_str().unwrap();
    let missing_dir_sock = dir.join("nodir/control.sock");
    let missing_dir_sock = missing_dir_sock.to_str().unwrap();
    let long_tag = "t".repeat(37);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--socket", sock, "--shared-dir", missing],
            "--shared-dir:",
        ),
        (
            vec!["--socket", sock, "--shared-dir", file],
            "is not an existing directory",
        ),
        (
            vec!["--socket", sock, "--shared-dir", share, "--tag", &long_tag],
            "--tag: must be 1 to 36 bytes",
        ),
        (
            vec!["--socket", sock, "--shared-dir", share, "--tag", ""],
            "--tag:",
        ),
        (
            vec!["--socket", sock, "--shared-dir", share, "--queues", "0"],
            "--queues: must be between 1 and 16",
        ),
        (
            vec!["--socket", sock, "--shared-dir", share, "--queues", "17"],
            "--queues:",
        ),
        (
            vec![
                "--socket",
                sock,
                "--shared-dir",
                share,
                "--cache",
                "sometimes",
            ],
            "--cache: `sometimes` is not one of",
        ),
        (
            vec!["--socket", sock, "--shared-dir", share, "--sandbox", "jail"],
            "--sandbox",
        ),
        (vec!["--socket", file, "--shared-dir", share], "--socket:"),
        (
            vec![
                "--socket",
                sock,
                "--shared-dir",
                share,
                "--dax-window",
                "3M",
            ],
            "--dax-window: 3 MiB is not a multiple of 2 MiB",
        ),
        (
            vec![
                "--socket",
                sock,
                "--shared-dir",
                share,
                "--dax-window",
                "1Q",
            ],
            "--dax-window:",
        ),
        (
            vec![
                "--socket",
                sock,
                "--shared-dir",
                share,
                "--dax-window",
                "8M",
                "--dax",
                "some",
            ],
            "--dax: `some` is not one of always, inode, never",
        ),
        (
            vec![
                "--socket",
                sock,
                "--shared-dir",
                share,
                "--dax-window",
                "8M",
                "--dax",
                "never",
            ],
            "--dax: never contradicts",
        ),
        (
            vec!["--socket", sock, "--shared-dir", share, "--dax", "always"],
            "--dax: needs a DAX window",
        ),
        (
            vec![
                "--socket",
                sock,
                "--shared-dir",
                share,
                "--control-socket",
                sock,
            ],
            "--control-socket: must differ from the vhost-user socket",
        ),
        (
            vec![
                "--socket",
                sock,
                "--shared-dir",
                share,
                "--dax-window",
                "8M",
                "--control-socket",
                sock,
            ],
            "--control-socket: must differ from the vhost-user socket",
        ),
        (
            vec![
                "--socket",
                sock,
                "--shared-dir",
                share,
                "--dax-window",
                "8M",
                "--control-socket",
                missing_dir_sock,
            ],
            "--control-socket: directory",
        ),
        (
            vec![
                "--socket",
                sock,
                "--shared-dir",
                share,
                "--dax-window",
                "8M",
                "--pin-wait-budget",
                "soon",
            ],
            "--pin-wait-budget:",
        ),
        (
            vec![
                "--socket",
                sock,
                "--shared-dir",
                share,
                "--dax-window",
                "8M",
                "--pin-wait-budget",
                "2h",
            ],
            "--pin-wait-budget:",
        ),
    ];
    for (args, expected) in cases {
        let mut full = vec!["fs"];
        full.extend_from_slice(&args);
        let (code, stderr) = run(&full);
        assert_eq!(code, 2, "{full:?}: stderr {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{full:?}: not one line: {stderr}"
        );
        assert!(
            stderr.contains(expected),
            "{full:?}: expected {expected:?} in {stderr}"
        );
        assert_eq!(dir.entries(), before, "{full:?} left something on disk");
    }
}

#[test]
fn a_sandboxed_fs_device_must_be_the_only_device() {
    let dir = TempDir::new("sandbox-alone");
    std::fs::create_dir(dir.join("share")).unwrap();
    let text = format!(
        "[[fs]]\nsocket = {:?}\nshared_dir = {:?}\nsandbox = \"chroot\"\n\
         [[pmem]]\nsocket = {:?}\nfile = {:?}\nsize = \"2M\"\ncreate = true\n",
        dir.join("fs.sock"),
        dir.join("share"),
        dir.join("p.sock"),
        dir.join("p.img"),
    );
    let path = dir.join("c.toml");
    std::fs::write(&path, text).unwrap();
    let (code, stderr) = run(&["check-config", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("fs[0].sandbox:"), "{stderr}");
}

#[test]
fn check_config_counts_every_kind_of_device() {
    let dir = TempDir::new("check-count");
    std::fs::create_dir(dir.join("share")).unwrap();
    let config = dir.join("fs-only.toml");
    std::fs::write(
        &config,
        format!(
            "[[fs]]\nsocket = \"{}\"\nshared_dir = \"{}\"\ndax_window = \"8M\"\n\
             dax_maps_within_file = true\n",
            dir.join("fs.sock").display(),
            dir.join("share").display()
        ),
    )
    .unwrap();
    let out = Command::new(binary())
        .args(["check-config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ok (0 pmem and 1 fs device(s))"),
        "{stdout}"
    );
}

#[test]
fn dax_maps_within_file_needs_a_window() {
    let dir = TempDir::new("within-nowindow");
    std::fs::create_dir(dir.join("share")).unwrap();
    let (code, stderr) = run(&[
        "fs",
        "--socket",
        dir.join("fs.sock").to_str().unwrap(),
        "--shared-dir",
        dir.join("share").to_str().unwrap(),
        "--dax-maps-within-file",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("dax-maps-within-file"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn thread_pool_size_is_checked_on_the_command_line_and_in_a_config_file() {
    let dir = TempDir::new("pool-size");
    std::fs::create_dir(dir.join("share")).unwrap();
    let socket = dir.join("fs.sock");
    let (code, stderr) = run(&[
        "fs",
        "--socket",
        socket.to_str().unwrap(),
        "--shared-dir",
        dir.join("share").to_str().unwrap(),
        "--thread-pool-size",
        "1025",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--thread-pool-size"), "{stderr}");
    assert!(!socket.exists());
    let config = |value: &str| {
        let path = dir.join("pool.toml");
        std::fs::write(
            &path,
            format!(
                "[[fs]]\nsocket = \"{}\"\nshared_dir = \"{}\"\nthread_pool_size = {value}\n",
                socket.display(),
                dir.join("share").display()
            ),
        )
        .unwrap();
        run(&["check-config", path.to_str().unwrap()])
    };
    assert_eq!(config("8").0, 0);
    assert_eq!(config("0").0, 0);
    for bad in ["-1", "\"8\"", "4096"] {
        let (code, stderr) = config(bad);
        assert_eq!(code, 2, "{bad}: {stderr}");
        assert!(stderr.contains("fs[0].thread_pool_size"), "{bad}: {stderr}");
    }
}

#[test]
fn check_config_tells_a_live_socket_without_disturbing_its_daemon() {
    let dir = TempDir::new("check-live");
    std::fs::create_dir(dir.join("share")).unwrap();
    let socket = dir.join("fs.sock");
    // A daemon waiting for its VMM: it takes any connection for it.
    let mut daemon = spawn_fs_daemon(&dir.join("share"), &socket, &[]);
    let config = dir.join("same-socket.toml");
    std::fs::write(
        &config,
        format!(
            "[[fs]]\nsocket = \"{}\"\nshared_dir = \"{}\"\n",
            socket.display(),
            dir.join("share").display()
        ),
    )
    .unwrap();
    let (code, stderr) = run(&["check-config", config.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("is in use by a running process"),
        "{stderr}"
    );
    // The daemon never saw a connection: still waiting, and its VMM can still come.
    assert!(
        daemon.wait(std::time::Duration::from_millis(300)).is_err(),
        "the daemon exited"
    );
    assert!(
        !daemon.log().contains("frontend connected"),
        "{}",
        daemon.log()
    );
    let frontend = connect(&socket);
    assert!(frontend.num_queues() >= 2);
}

#[test]
fn a_missing_argument_is_named_on_one_line() {
    let (code, stderr) = run(&["pmem", "--socket", "/tmp/never.sock"]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--file"),
        "the missing argument is named: {stderr}"
    );
}

#[test]
fn inode_file_handles_and_the_caps_are_checked_before_anything_is_created() {
    let dir = TempDir::new("inode-handles");
    std::fs::create_dir(dir.join("share")).unwrap();
    let socket = dir.join("fs.sock");
    let fs = |share: &str, extra: &[&str]| {
        let mut args = vec![
            "fs",
            "--socket",
            socket.to_str().unwrap(),
            "--shared-dir",
            share,
            "--sandbox",
            "none",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let share = dir.join("share");
    let share = share.to_str().unwrap();
    for (extra, field) in [
        (
            &["--inode-file-handles", "always"][..],
            "--inode-file-handles",
        ),
        (&["--max-inodes", "0"][..], "--max-inodes"),
        (&["--max-open-handles", "0"][..], "--max-open-handles"),
        // procfs gives no file handles: mandatory cannot start there.
        (
            &["--inode-file-handles", "mandatory"][..],
            "--inode-file-handles",
        ),
    ] {
        let share = if field == "--inode-file-handles" && extra[1] == "mandatory" {
            "/proc/self"
        } else {
            share
        };
        let (code, stderr) = fs(share, extra);
        assert_eq!(code, 2, "{extra:?}: {stderr}");
        assert!(stderr.contains(field), "{extra:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{extra:?}: {stderr}");
        assert!(!socket.exists(), "{extra:?}");
    }
    let config = |body: &str| {
        let path = dir.join("handles.toml");
        std::fs::write(
            &path,
            format!(
                "[[fs]]\nsocket = \"{}\"\nshared_dir = \"{share}\"\n{body}\n",
                socket.display()
            ),
        )
        .unwrap();
        run(&["check-config", path.to_str().unwrap()])
    };
    assert_eq!(
        config("inode_file_handles = \"prefer\"\nmax_inodes = 5000").0,
        0
    );
    assert_eq!(config("max_open_handles = 100").0, 0);
    for (bad, field) in [
        (
            "inode_file_handles = \"sometimes\"",
            "fs[0].inode_file_handles",
        ),
        ("max_inodes = -1", "fs[0].max_inodes"),
        ("max_open_handles = \"9\"", "fs[0].max_open_handles"),
    ] {
        let (code, stderr) = config(bad);
        assert_eq!(code, 2, "{bad}: {stderr}");
        assert!(stderr.contains(field), "{bad}: {stderr}");
    }
}
