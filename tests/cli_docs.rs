//! Shell completions and man pages come from the command line itself, so they name every
//! subcommand and flag a user can type.

mod common;

use std::process::Command;

#[test]
fn completions_know_the_subcommands_and_their_flags() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(common::binary())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        for word in [
            "pmem",
            "check-config",
            "shared-dir",
            "dax-window",
            "baseline",
        ] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    let out = Command::new(common::binary())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn manpages_are_one_per_subcommand_and_describe_the_flags() {
    let dir = common::TempDir::new("manpages");
    let out_dir = dir.join("man1");
    let out = Command::new(common::binary())
        .arg("manpages")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fs = std::fs::read_to_string(out_dir.join("vhost-dax-fs.1")).unwrap();
    assert!(fs.starts_with(".ie"), "roff: {}", &fs[..fs.len().min(80)]);
    assert!(fs.contains(".TH vhost-dax-fs 1"), "{fs}");
    assert!(
        fs.contains("shared\\-dir") && fs.contains("Directory to share"),
        "{fs}"
    );
    let top = std::fs::read_to_string(out_dir.join("vhost-dax.1")).unwrap();
    assert!(
        top.contains("vhost\\-dax\\-pmem(1)") || top.contains("pmem"),
        "{top}"
    );
    // Into a path that is a file: an error, said.
    std::fs::write(dir.join("file"), "").unwrap();
    let out = Command::new(common::binary())
        .arg("manpages")
        .arg(dir.join("file"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("vhost-dax: manpages: "));
}
