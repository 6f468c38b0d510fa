//! Every virtiofsd flag: what it sets, or the error that refuses it.

use super::*;

fn serve(args: &[&str]) -> VirtiofsdOptions {
    match parse(args.iter().copied()) {
        Ok(VirtiofsdCommand::Serve(options)) => *options,
        other => panic!("{args:?}: expected a device, got {other:?}"),
    }
}

fn error(args: &[&str]) -> ConfigError {
    match parse(args.iter().copied()) {
        Err(e) => e,
        Ok(other) => panic!("{args:?}: expected an error, got {other:?}"),
    }
}

/// What the parser adds on its own to a request that says nothing of these: the
/// sandbox virtiofsd defaults to (namespace as root, none otherwise) and inodes held by
/// file handle where possible (`prefer`).
fn defaults() -> FsRequest {
    let sandbox = if crate::sys::fs::geteuid() == 0 {
        "namespace"
    } else {
        "none"
    };
    FsRequest {
        sandbox: Some(sandbox.into()),
        inode_file_handles: Some("prefer".into()),
        ..FsRequest::default()
    }
}

/// Accepted flags and the request they make (on top of [`defaults`]).
fn accepted() -> Vec<(Vec<&'static str>, FsRequest)> {
    let base = defaults;
    vec![
        (
            vec!["--shared-dir", "/srv/a"],
            FsRequest {
                shared_dir: Some("/srv/a".into()),
                ..base()
            },
        ),
        (
            vec!["--shared-dir=/srv/a=b"],
            FsRequest {
                shared_dir: Some("/srv/a=b".into()),
                ..base()
            },
        ),
        (
            vec!["--socket-path", "/run/a.sock"],
            FsRequest {
                socket: Some("/run/a.sock".into()),
                ..base()
            },
        ),
        (
            vec!["--socket=/run/a.sock"],
            FsRequest {
                socket: Some("/run/a.sock".into()),
                ..base()
            },
        ),
        (
            vec!["--fd=3"],
            FsRequest {
                socket_fd: Some(3),
                ..base()
            },
        ),
        (
            vec!["--fd", "17"],
            FsRequest {
                socket_fd: Some(17),
                ..base()
            },
        ),
        (
            vec!["--socket-group", "kvm"],
            FsRequest {
                socket_group: Some("kvm".into()),
                ..base()
            },
        ),
        (
            vec!["--tag=myfs"],
            FsRequest {
                tag: Some("myfs".into()),
                ..base()
            },
        ),
        (
            vec!["--thread-pool-size=64"],
            FsRequest {
                thread_pool_size: Some(64),
                ..base()
            },
        ),
        (
            vec!["--cache", "auto"],
            FsRequest {
                cache: Some("auto".into()),
                ..base()
            },
        ),
        (
            vec!["--cache=always"],
            FsRequest {
                cache: Some("always".into()),
                ..base()
            },
        ),
        (
            vec!["--cache=metadata"],
            FsRequest {
                cache: Some("metadata".into()),
                ..base()
            },
        ),
        (
            // virtiofsd: no READDIRPLUS without a cache.
            vec!["--cache=never"],
            FsRequest {
                cache: Some("never".into()),
                no_readdirplus: true,
                ..base()
            },
        ),
        (
            vec!["--sandbox", "chroot"],
            FsRequest {
                sandbox: Some("chroot".into()),
                ..base()
            },
        ),
        (
            vec!["--sandbox=namespace"],
            FsRequest {
                sandbox: Some("namespace".into()),
                ..base()
            },
        ),
        (
            vec!["--sandbox=none"],
            FsRequest {
                sandbox: Some("none".into()),
                ..base()
            },
        ),
        (
            vec!["--xattr"],
            FsRequest {
                xattr: true,
                ..base()
            },
        ),
        (vec!["--xattr", "--no-xattr"], base()),
        (
            vec!["--readonly"],
            FsRequest {
                readonly: true,
                ..base()
            },
        ),
        (
            vec!["--writeback"],
            FsRequest {
                writeback: true,
                ..base()
            },
        ),
        (
            vec!["--no-readdirplus"],
            FsRequest {
                no_readdirplus: true,
                ..base()
            },
        ),
        (
            vec!["--killpriv-v2"],
            FsRequest {
                killpriv_v2: true,
                ..base()
            },
        ),
        (vec!["--killpriv-v2", "--no-killpriv-v2"], base()),
        // What the daemon does already.
        (vec!["--no-announce-submounts"], base()),
        (vec!["--no-posix-lock"], base()),
        (vec!["--no-flock"], base()),
        (vec!["--preserve-noatime"], base()),
        (
            vec!["--inode-file-handles=never"],
            FsRequest {
                inode_file_handles: Some("never".into()),
                ..base()
            },
        ),
        (
            vec!["--inode-file-handles=prefer"],
            FsRequest {
                inode_file_handles: Some("prefer".into()),
                ..base()
            },
        ),
        (
            vec!["--inode-file-handles", "mandatory"],
            FsRequest {
                inode_file_handles: Some("mandatory".into()),
                ..base()
            },
        ),
        (
            // virtiofsd's deprecated alias.
            vec!["--inode-file-handles=fallback"],
            FsRequest {
                inode_file_handles: Some("prefer".into()),
                ..base()
            },
        ),
        (vec!["--seccomp=none"], base()),
        (vec!["--seccomp", "none"], base()),
        (vec!["--posix-acl=never"], base()),
        (vec!["--security-label=never"], base()),
        (vec!["-f"], base()),
        (vec!["--log-level", "debug"], base()),
        (vec!["--rlimit-nofile=4096"], base()),
        (vec!["-d"], base()),
        (vec!["--syslog"], base()),
    ]
}

#[test]
fn every_accepted_flag_sets_what_virtiofsd_means() {
    for (args, want) in accepted() {
        assert_eq!(serve(&args).request, want, "{args:?}");
    }
}

#[test]
fn process_settings_land_outside_the_request() {
    assert_eq!(
        serve(&["--log-level=trace"]).log_level.as_deref(),
        Some("trace")
    );
    assert_eq!(serve(&["-d"]).log_level.as_deref(), Some("debug"));
    assert_eq!(
        serve(&["-o", "loglevel=err"]).log_level.as_deref(),
        Some("error")
    );
    assert_eq!(serve(&["--rlimit-nofile", "0"]).rlimit_nofile, Some(0));
    assert_eq!(serve(&["--rlimit-nofile=4096"]).rlimit_nofile, Some(4096));
    assert_eq!(serve(&[]).rlimit_nofile, None);
    assert!(serve(&["--syslog"]).syslog);
    assert!(!serve(&[]).syslog);
    assert!(
        serve(&["-f"]).notes[0].contains("no effect"),
        "-f is noted, not silently dropped"
    );
}

/// Refused flags: (arguments, the flag the message must name).
fn refused_flags() -> Vec<(Vec<&'static str>, &'static str)> {
    vec![
        (vec!["--announce-submounts"], "--announce-submounts"),
        (vec!["--posix-lock"], "--posix-lock"),
        (vec!["--flock"], "--flock"),
        (vec!["--allow-direct-io"], "--allow-direct-io"),
        (vec!["--allow-mmap"], "--allow-mmap"),
        (vec!["--modcaps=+sys_admin"], "--modcaps"),
        (vec!["--xattrmap", ":map::user.virtiofs.:"], "--xattrmap"),
        (vec!["--uid-map=:0:1000:1:"], "--uid-map"),
        (vec!["--gid-map=:0:1000:1:"], "--gid-map"),
        (vec!["--translate-uid=guest:0:1000:1"], "--translate-uid"),
        (vec!["--translate-gid=guest:0:1000:1"], "--translate-gid"),
        (vec!["--migration-mode=file-handles"], "--migration-mode"),
        (vec!["--migration-on-error=abort"], "--migration-on-error"),
        (
            vec!["--migration-verify-handles"],
            "--migration-verify-handles",
        ),
        (
            vec!["--migration-confirm-paths"],
            "--migration-confirm-paths",
        ),
        (vec!["--seccomp=kill"], "--seccomp"),
        (vec!["--seccomp=log"], "--seccomp"),
        (vec!["--seccomp=trap"], "--seccomp"),
        (vec!["--posix-acl"], "--posix-acl"),
        (vec!["--posix-acl=auto"], "--posix-acl"),
        (vec!["--security-label=always"], "--security-label"),
        (vec!["-o", "xattrmap=:map::user.x.:"], "-o xattrmap"),
        (vec!["-o", "modcaps=+sys_admin"], "-o modcaps"),
        (vec!["-o", "allow_direct_io"], "-o allow_direct_io"),
        (vec!["-o", "announce_submounts"], "-o announce_submounts"),
        (vec!["-o", "posix_lock"], "-o posix_lock"),
        (vec!["-o", "flock"], "-o flock"),
        (vec!["-o", "posix_acl"], "-o posix_acl"),
        (vec!["-o", "security_label"], "-o security_label"),
    ]
}

#[test]
fn every_unimplemented_flag_is_refused_by_name() {
    for (args, flag) in refused_flags() {
        let e = error(&args);
        assert_eq!(e.field, flag, "{args:?}");
        assert!(
            e.reason.starts_with("not supported by vhost-dax ("),
            "{args:?}: {e}"
        );
        assert!(!e.to_string().contains('\n'), "one line: {e}");
    }
}

#[test]
fn every_known_long_flag_has_a_case() {
    let cases: Vec<Vec<&str>> = accepted()
        .into_iter()
        .map(|(args, _)| args)
        .chain(refused_flags().into_iter().map(|(args, _)| args))
        .collect();
    for (name, _) in LONG_FLAGS {
        if ["print-capabilities", "version", "help"].contains(name) {
            continue; // commands_short_circuit
        }
        let flag = format!("--{name}");
        let covered = cases.iter().flatten().any(|arg| {
            *arg == flag
                || arg
                    .strip_prefix(flag.as_str())
                    .is_some_and(|r| r.starts_with('='))
        });
        assert!(covered, "{flag} has no test case");
    }
}

#[test]
fn bad_values_and_unknown_flags_name_the_flag() {
    let cases: &[(&[&str], &str, &str)] = &[
        (&["--bogus"], "--bogus", "unknown option"),
        (&["-x"], "-x", "unknown option"),
        (&["--"], "--", "unexpected argument"),
        (&["share"], "share", "unexpected argument"),
        (
            &["--cache=sometimes"],
            "--cache",
            "`sometimes` is not one of",
        ),
        (&["--cache=none"], "--cache", "`none` is not one of"),
        (&["--sandbox", "jail"], "--sandbox", "`jail` is not one of"),
        (&["--fd=three"], "--fd", "not a non-negative integer"),
        (&["--fd=-1"], "--fd", "not a non-negative integer"),
        (&["--thread-pool-size=-2"], "--thread-pool-size", "integer"),
        (&["--rlimit-nofile=lots"], "--rlimit-nofile", "integer"),
        (&["--log-level=loud"], "--log-level", "`loud` is not one of"),
        (
            &["--inode-file-handles=maybe"],
            "--inode-file-handles",
            "not one of",
        ),
        (&["--seccomp=strict"], "--seccomp", "not one of"),
        (&["--posix-acl=sometimes"], "--posix-acl", "not one of"),
        (&["--shared-dir"], "--shared-dir", "needs a value"),
        (&["--fd"], "--fd", "needs a value"),
        (&["-o"], "-o", "needs a value"),
        (&["--xattr=yes"], "--xattr", "takes no value"),
        (&["-o", "source=/x,bogus"], "-o bogus", "unknown -o option"),
        (&["-o", "bogus=1"], "-o bogus", "unknown -o option"),
        (&["-o", "cache=never"], "-o cache", "`never` is not one of"),
        (&["-o", "sandbox=jail"], "-o sandbox", "not one of"),
        (&["-o", "loglevel=trace"], "-o loglevel", "not one of"),
        (&["-o", "xattr,"], "-o", "empty option"),
    ];
    for (args, field, reason) in cases {
        let e = error(args);
        assert_eq!(e.field, *field, "{args:?}: {e}");
        assert!(e.reason.contains(reason), "{args:?}: {e}");
    }
}

#[test]
fn libvirts_legacy_o_line_is_understood() {
    // qemuVirtioFSBuildCommandLine without separate-options; a comma in the path is
    // doubled by libvirt.
    let o = serve(&[
        "--fd=3",
        "-o",
        "source=/srv/vm,,1,cache=always,sandbox=chroot,xattr,no_flock,no_posix_lock",
        "--thread-pool-size=16",
        "--rlimit-nofile=8192",
        "-d",
    ]);
    let want = FsRequest {
        socket_fd: Some(3),
        shared_dir: Some("/srv/vm,1".into()),
        cache: Some("always".into()),
        sandbox: Some("chroot".into()),
        inode_file_handles: Some("prefer".into()),
        xattr: true,
        thread_pool_size: Some(16),
        ..FsRequest::default()
    };
    assert_eq!(o.request, want);
    assert_eq!(o.log_level.as_deref(), Some("debug"));
    assert_eq!(o.rlimit_nofile, Some(8192));

    let o = serve(&[
        "-osource=/a",
        "-o",
        "cache=none,no_xattr",
        "-o",
        "cache=metadata",
    ]);
    assert_eq!(o.request.shared_dir, Some("/a".into()));
    assert_eq!(
        o.request.cache.as_deref(),
        Some("metadata"),
        "the last one wins"
    );
    let o = serve(&["-o", "cache=none"]);
    assert_eq!(o.request.cache.as_deref(), Some("never"));
    assert!(o.request.no_readdirplus);
    let o = serve(&[
        "-o",
        "writeback,no_writeback,killpriv_v2,no_readdirplus,readdirplus",
    ]);
    assert!(!o.request.writeback && o.request.killpriv_v2 && !o.request.no_readdirplus);
    for word in [
        "no_allow_direct_io",
        "no_posix_acl",
        "no_security_label",
        "no_killpriv_v2",
    ] {
        assert_eq!(serve(&["-o", word]).request, defaults(), "{word}");
    }
    // Short flags together, as getopt allows.
    assert_eq!(serve(&["-fd"]).log_level.as_deref(), Some("debug"));
}

#[test]
fn libvirts_separate_options_line_is_understood() {
    let o = serve(&[
        "--fd=5",
        "--shared-dir",
        "/srv/vm",
        "--cache",
        "never",
        "--sandbox",
        "namespace",
        "--xattr",
        "--thread-pool-size=0",
        "--rlimit-nofile=1000",
        "--log-level",
        "debug",
    ]);
    let want = FsRequest {
        socket_fd: Some(5),
        shared_dir: Some("/srv/vm".into()),
        cache: Some("never".into()),
        no_readdirplus: true,
        sandbox: Some("namespace".into()),
        inode_file_handles: Some("prefer".into()),
        xattr: true,
        thread_pool_size: Some(0),
        ..FsRequest::default()
    };
    assert_eq!(o.request, want);
}

#[test]
fn commands_short_circuit() {
    assert_eq!(
        parse(["--print-capabilities"]),
        Ok(VirtiofsdCommand::PrintCapabilities)
    );
    assert_eq!(parse(["-V"]), Ok(VirtiofsdCommand::Version));
    assert_eq!(parse(["--version"]), Ok(VirtiofsdCommand::Version));
    assert_eq!(parse(["-h"]), Ok(VirtiofsdCommand::Help));
    assert_eq!(
        parse(["--shared-dir", "/x", "--help"]),
        Ok(VirtiofsdCommand::Help)
    );
    // A refused flag is refused even next to a command.
    assert!(parse(["--print-capabilities", "--modcaps=+sys_admin"]).is_err());
}

#[test]
fn capabilities_claim_only_separate_options() {
    let value: serde_json::Value = serde_json::from_str(&capabilities_json()).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"type": "fs", "features": ["separate-options"]})
    );
}

#[test]
fn non_utf8_paths_pass_through() {
    let path = OsString::from_vec(b"/srv/\xff".to_vec());
    let options = match parse([OsString::from("--shared-dir"), path.clone()]) {
        Ok(VirtiofsdCommand::Serve(o)) => o,
        other => panic!("{other:?}"),
    };
    assert_eq!(options.request.shared_dir, Some(PathBuf::from(path)));
    let mut o = b"source=/srv/".to_vec();
    o.push(0xfe);
    let options = match parse([OsString::from("-o"), OsString::from_vec(o)]) {
        Ok(VirtiofsdCommand::Serve(o)) => o,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        options.request.shared_dir.unwrap().as_os_str().as_bytes(),
        b"/srv/\xfe"
    );
}

#[test]
fn validation_names_virtiofsds_flags() {
    use crate::config::Origin;
    let dir = std::env::temp_dir();
    let dir = dir.to_str().unwrap();
    let check = |args: &[&str], field: &str| {
        let e = serve(args).request.validate(Origin::Virtiofsd).unwrap_err();
        assert_eq!(e.field, field, "{args:?}: {e}");
    };
    check(&["--shared-dir", dir], "--socket-path");
    check(&["--socket-path=/tmp/vd-x.sock"], "--shared-dir");
    check(
        &["--shared-dir", dir, "--fd=3", "--socket-path=/tmp/x.sock"],
        "--fd",
    );
    check(&["--shared-dir", dir, "--fd=987654"], "--fd");
    check(
        &["--shared-dir", dir, "--socket-path=/nowhere/at/all/x.sock"],
        "--socket-path",
    );
    check(
        &[
            "--shared-dir",
            dir,
            "--socket-path=/tmp/vd-x.sock",
            "--socket-group=no-such-group-vhost-dax",
        ],
        "--socket-group",
    );
    check(
        &[
            "-o",
            "source=/nowhere/at/all",
            "--socket-path=/tmp/vd-x.sock",
        ],
        "--shared-dir",
    );
    check(
        &[
            "--shared-dir",
            dir,
            "--socket-path=/tmp/vd-x.sock",
            "--tag=",
        ],
        "--tag",
    );
}
