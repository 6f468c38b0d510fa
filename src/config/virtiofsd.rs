//! virtiofsd's command line, for `vhost-dax-virtiofsd`: the binary libvirt (or any
//! virtiofsd launcher) can exec in place of virtiofsd.
//!
//! Flags keep virtiofsd's (1.x) names and meanings, including the legacy `-o` forms
//! libvirt sends to a daemon that does not report `separate-options`. The result is an
//! ordinary [`FsRequest`], validated by [`FsRequest::validate`] with
//! [`Origin::Virtiofsd`](super::Origin::Virtiofsd) like every other way of configuring a device. A virtiofsd flag
//! the daemon does not implement is refused with an error that names it; none is
//! silently ignored. Flags that ask for what the daemon already does (`--sandbox none`,
//! `--seccomp none`, `-o no_posix_lock`) are accepted, and say so in the README's table.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use super::{ConfigError, FsRequest};

#[cfg(test)]
mod tests;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VirtiofsdCommand {
    /// Serve one virtio-fs device.
    Serve(Box<VirtiofsdOptions>),
    /// `--print-capabilities`: print [`capabilities_json`] and exit.
    PrintCapabilities,
    /// `-V` / `--version`.
    Version,
    /// `-h` / `--help`.
    Help,
}

/// A virtiofsd command line turned into the daemon's terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VirtiofsdOptions {
    /// The device, still to be validated (with [`super::Origin::Virtiofsd`]).
    pub request: FsRequest,
    /// `--log-level`, `-d` or `-o loglevel=` (error, warn, info, debug, trace, off).
    pub log_level: Option<String>,
    /// `--rlimit-nofile N`: set the open-files limit (soft and hard) to N; 0 leaves it
    /// unchanged. Absent: raise the soft limit to the hard one (at most 1,000,000).
    pub rlimit_nofile: Option<u64>,
    /// `--syslog`: log to the system log instead of stderr.
    pub syslog: bool,
    /// Things worth a log line at start (deprecated forms, flags with no effect).
    pub notes: Vec<String>,
}

/// The vhost-user backend capabilities (QEMU's docs/interop/vhost-user.json, type `fs`):
/// only `separate-options` (libvirt then passes `--shared-dir`, `--cache`, … instead of
/// `-o`). `migrate-precopy` is not claimed: the daemon has no device-state migration.
pub fn capabilities_json() -> String {
    // Written out so that "type" comes first, as in QEMU's and virtiofsd's examples.
    "{\n  \"type\": \"fs\",\n  \"features\": [\n    \"separate-options\"\n  ]\n}".to_owned()
}

/// The text of `--help`.
pub const HELP: &str = "\
vhost-dax-virtiofsd: the vhost-dax virtio-fs daemon behind virtiofsd's command line

Usage: vhost-dax-virtiofsd --shared-dir DIR (--socket-path PATH | --fd N) [OPTIONS]

  --shared-dir DIR          directory to share (-o source=DIR)
  --socket-path PATH        vhost-user socket to create (--socket: deprecated alias)
  --fd N                    serve on listening Unix socket N inherited from the parent
  --socket-group NAME       give the created socket to group NAME, mode 0660
  --tag TAG                 mount tag in the device's config space (none: the VMM sets it)
  --cache POLICY            never, auto (default), always, metadata (-o cache=)
  --sandbox MODE            namespace (default as root), chroot, none (-o sandbox=)
  --xattr, --no-xattr       serve extended attributes (default off; -o xattr, -o no_xattr)
  --readonly                refuse every modification with EROFS
  --writeback               grant the guest a writeback cache (-o writeback)
  --no-readdirplus          do not grant READDIRPLUS (also implied by --cache never)
  --killpriv-v2             grant FUSE_HANDLE_KILLPRIV_V2 (--no-killpriv-v2: default)
  --thread-pool-size N      worker threads serving requests (0, the default: none)
  --inode-file-handles MODE prefer (default), never, mandatory: hold inodes by file
                            handle instead of an O_PATH descriptor each (needs root)
  --rlimit-nofile N         open-files limit (0: unchanged)
  --log-level LEVEL         error, warn, info (default), debug, trace, off (-d: debug)
  --print-capabilities      print the vhost-user backend capabilities (JSON) and exit
  -V, --version             print the version and exit
  -h, --help                print this help and exit

Accepted because they ask for what the daemon does: --sandbox none, --seccomp none,
--no-announce-submounts, --no-posix-lock, --no-flock, --posix-acl=never, --security-label=never, --preserve-noatime, -f, -o no_posix_lock,
-o no_flock, -o no_allow_direct_io, -o no_posix_acl, -o no_security_label.
Every other virtiofsd flag is refused with exit status 2 (see the README).
";

/// How a long flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arity {
    /// `--flag`.
    Switch,
    /// `--flag VALUE` or `--flag=VALUE`.
    Value,
    /// `--flag` or `--flag=VALUE` (the value only after `=`).
    OptionalValue,
}

/// Every long flag known, virtiofsd's and ours, with how it takes its value.
const LONG_FLAGS: &[(&str, Arity)] = &[
    ("shared-dir", Arity::Value),
    ("socket-path", Arity::Value),
    ("socket", Arity::Value),
    ("fd", Arity::Value),
    ("socket-group", Arity::Value),
    ("tag", Arity::Value),
    ("thread-pool-size", Arity::Value),
    ("cache", Arity::Value),
    ("sandbox", Arity::Value),
    ("rlimit-nofile", Arity::Value),
    ("log-level", Arity::Value),
    ("inode-file-handles", Arity::Value),
    ("seccomp", Arity::Value),
    ("modcaps", Arity::Value),
    ("xattrmap", Arity::Value),
    ("uid-map", Arity::Value),
    ("gid-map", Arity::Value),
    ("translate-uid", Arity::Value),
    ("translate-gid", Arity::Value),
    ("migration-mode", Arity::Value),
    ("migration-on-error", Arity::Value),
    ("posix-acl", Arity::OptionalValue),
    ("security-label", Arity::OptionalValue),
    ("xattr", Arity::Switch),
    ("no-xattr", Arity::Switch),
    ("readonly", Arity::Switch),
    ("writeback", Arity::Switch),
    ("no-readdirplus", Arity::Switch),
    ("killpriv-v2", Arity::Switch),
    ("no-killpriv-v2", Arity::Switch),
    ("announce-submounts", Arity::Switch),
    ("no-announce-submounts", Arity::Switch),
    ("posix-lock", Arity::Switch),
    ("no-posix-lock", Arity::Switch),
    ("flock", Arity::Switch),
    ("no-flock", Arity::Switch),
    ("allow-direct-io", Arity::Switch),
    ("allow-mmap", Arity::Switch),
    ("preserve-noatime", Arity::Switch),
    ("syslog", Arity::Switch),
    ("migration-verify-handles", Arity::Switch),
    ("migration-confirm-paths", Arity::Switch),
    ("print-capabilities", Arity::Switch),
    ("version", Arity::Switch),
    ("help", Arity::Switch),
];

/// A flag the daemon does not implement: `FLAG: not supported by vhost-dax (WHY)`.
fn refused(flag: &str, why: &str) -> ConfigError {
    ConfigError::new(flag, format!("not supported by vhost-dax ({why})"))
}

fn bad_value(flag: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError::new(flag, format!("`{value}` is not one of {expected}"))
}

const NO_MIGRATION: &str = "vhost-user migration of the device state is not implemented";
const NO_ID_MAPPING: &str = "the daemon enters no user namespace and maps no ids; run it as \
     root, or unprivileged with --sandbox none (files are then created as the daemon's user)";

/// The command line being read.
#[derive(Debug, Default)]
struct State {
    opts: VirtiofsdOptions,
    print_capabilities: bool,
    version: bool,
    help: bool,
}

/// Reads virtiofsd's command line (without the program name).
pub fn parse<I, S>(args: I) -> Result<VirtiofsdCommand, ConfigError>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let mut state = State::default();
    let mut args = args.into_iter().map(Into::into);
    while let Some(arg) = args.next() {
        let bytes = arg.as_bytes();
        if let Some(long) = bytes.strip_prefix(b"--").filter(|l| !l.is_empty()) {
            let (name, inline) = match long.iter().position(|&b| b == b'=') {
                Some(at) => (
                    &long[..at],
                    Some(OsString::from_vec(long[at + 1..].to_vec())),
                ),
                None => (long, None),
            };
            let name = std::str::from_utf8(name).map_err(|_| {
                ConfigError::new(arg.to_string_lossy(), "unknown option (not valid UTF-8)")
            })?;
            let flag = format!("--{name}");
            let Some(&(_, arity)) = LONG_FLAGS.iter().find(|(n, _)| *n == name) else {
                return Err(ConfigError::new(
                    flag,
                    "unknown option (not a virtiofsd option vhost-dax knows; see --help)",
                ));
            };
            let value = match (arity, inline) {
                (Arity::Switch, Some(_)) => {
                    return Err(ConfigError::new(flag, "takes no value"));
                }
                (Arity::Switch | Arity::OptionalValue, inline) => inline,
                (Arity::Value, Some(v)) => Some(v),
                (Arity::Value, None) => Some(
                    args.next()
                        .ok_or_else(|| ConfigError::new(&flag, "needs a value"))?,
                ),
            };
            state.long(name, &flag, value)?;
        } else if let Some(shorts) = bytes
            .strip_prefix(b"-")
            .filter(|s| !s.is_empty() && *s != b"-")
        {
            state.shorts(shorts, &mut args)?;
        } else {
            return Err(ConfigError::new(
                arg.to_string_lossy(),
                "unexpected argument (vhost-dax-virtiofsd takes options only)",
            ));
        }
    }
    state.finish()
}

fn utf8(flag: &str, value: OsString) -> Result<String, ConfigError> {
    value
        .into_string()
        .map_err(|_| ConfigError::new(flag, "the value is not valid UTF-8"))
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, ConfigError> {
    value
        .parse()
        .map_err(|_| ConfigError::new(flag, format!("`{value}` is not a non-negative integer")))
}

fn log_level(flag: &str, value: &str) -> Result<String, ConfigError> {
    match value {
        "error" | "warn" | "info" | "debug" | "trace" | "off" => Ok(value.to_owned()),
        _ => Err(bad_value(
            flag,
            value,
            "error, warn, info, debug, trace, off",
        )),
    }
}

impl State {
    fn request(&mut self) -> &mut FsRequest {
        &mut self.opts.request
    }

    fn note(&mut self, text: impl Into<String>) {
        self.opts.notes.push(text.into());
    }

    /// One long flag; `value` is present exactly when its arity gave one.
    fn long(&mut self, name: &str, flag: &str, value: Option<OsString>) -> Result<(), ConfigError> {
        // Flags whose value is a path keep it as bytes.
        match name {
            "shared-dir" => {
                self.request().shared_dir = value.map(PathBuf::from);
                return Ok(());
            }
            "socket-path" | "socket" => {
                if name == "socket" {
                    self.note("--socket is deprecated in virtiofsd: use --socket-path");
                }
                self.request().socket = value.map(PathBuf::from);
                return Ok(());
            }
            _ => {}
        }
        let text = value.map(|v| utf8(flag, v)).transpose()?;
        let value = text.as_deref().unwrap_or("");
        match name {
            "fd" => {
                let fd: u32 = number(flag, value)?;
                let fd = i32::try_from(fd)
                    .map_err(|_| ConfigError::new(flag, format!("{fd} is not a descriptor")))?;
                self.request().socket_fd = Some(fd);
            }
            "socket-group" => self.request().socket_group = Some(value.to_owned()),
            "tag" => self.request().tag = Some(value.to_owned()),
            "thread-pool-size" => self.request().thread_pool_size = Some(number(flag, value)?),
            "cache" => self.cache(flag, value, &["never", "auto", "always", "metadata"])?,
            "sandbox" => self.sandbox(flag, value)?,
            "rlimit-nofile" => self.opts.rlimit_nofile = Some(number(flag, value)?),
            "log-level" => self.opts.log_level = Some(log_level(flag, value)?),
            "xattr" => self.request().xattr = true,
            "no-xattr" => self.request().xattr = false,
            "readonly" => self.request().readonly = true,
            "writeback" => self.request().writeback = true,
            "no-readdirplus" => self.request().no_readdirplus = true,
            "killpriv-v2" => self.request().killpriv_v2 = true,
            "no-killpriv-v2" => self.request().killpriv_v2 = false,
            // What the daemon does: submounts are not announced, POSIX and BSD locks
            // are not served (the guest keeps them local), O_NOATIME reaches the host.
            "no-announce-submounts" | "no-posix-lock" | "no-flock" | "preserve-noatime" => {}
            "print-capabilities" => self.print_capabilities = true,
            "version" => self.version = true,
            "help" => self.help = true,
            "inode-file-handles" => match value {
                "never" | "prefer" | "mandatory" => {
                    self.request().inode_file_handles = Some(value.to_owned());
                }
                "fallback" => {
                    self.opts.notes.push(
                        "--inode-file-handles=fallback is virtiofsd's deprecated name for prefer"
                            .to_owned(),
                    );
                    self.request().inode_file_handles = Some("prefer".to_owned());
                }
                _ => return Err(bad_value(flag, value, "never, prefer, mandatory")),
            },
            "seccomp" => match value {
                "none" => {}
                "kill" | "log" | "trap" => {
                    return Err(refused(
                        flag,
                        "the daemon installs no seccomp filter; use --seccomp=none",
                    ));
                }
                _ => return Err(bad_value(flag, value, "none, kill, log, trap")),
            },
            "posix-acl" | "security-label" => match text.as_deref() {
                Some("never") => {}
                None | Some("auto" | "always") => {
                    return Err(refused(
                        flag,
                        "POSIX ACLs and security labels are not negotiated; only =never is accepted",
                    ));
                }
                Some(other) => return Err(bad_value(flag, other, "never, auto, always")),
            },
            "announce-submounts" => {
                return Err(refused(
                    flag,
                    "submounts are not announced to the guest (FUSE_SUBMOUNTS); --no-announce-submounts is what it does",
                ));
            }
            "posix-lock" | "flock" => {
                return Err(refused(
                    flag,
                    "POSIX and BSD locks are not served: the guest keeps them local; --no-posix-lock and --no-flock are what it does",
                ));
            }
            "allow-direct-io" => {
                return Err(refused(
                    flag,
                    "the guest's O_DIRECT is never passed on to host files",
                ));
            }
            "allow-mmap" => {
                return Err(refused(
                    flag,
                    "FUSE_DIRECT_IO_ALLOW_MMAP is not granted: with --cache never or metadata the guest cannot mmap shared files",
                ));
            }
            "modcaps" => {
                return Err(refused(
                    flag,
                    "the daemon does not drop or change its capabilities",
                ));
            }
            "syslog" => self.opts.syslog = true,
            "xattrmap" => {
                return Err(refused(
                    flag,
                    "extended attribute names are passed through untranslated",
                ));
            }
            "uid-map" | "gid-map" | "translate-uid" | "translate-gid" => {
                return Err(refused(flag, NO_ID_MAPPING));
            }
            "migration-mode"
            | "migration-on-error"
            | "migration-verify-handles"
            | "migration-confirm-paths" => return Err(refused(flag, NO_MIGRATION)),
            _ => unreachable!("every name of LONG_FLAGS is handled: {name}"),
        }
        Ok(())
    }

    fn cache(&mut self, flag: &str, value: &str, allowed: &[&str]) -> Result<(), ConfigError> {
        let policy = if value == "none" && allowed.contains(&"none") {
            "never"
        } else {
            value
        };
        if !allowed.contains(&value) {
            return Err(bad_value(flag, value, &allowed.join(", ")));
        }
        self.request().cache = Some(policy.to_owned());
        Ok(())
    }

    fn sandbox(&mut self, flag: &str, value: &str) -> Result<(), ConfigError> {
        match value {
            "namespace" | "chroot" | "none" => {
                self.request().sandbox = Some(value.to_owned());
                Ok(())
            }
            _ => Err(bad_value(flag, value, "namespace, chroot, none")),
        }
    }

    /// `-o LIST`, `-oLIST`, `-d`, `-f`, `-V`, `-h`, and several of them in one word
    /// (`-df`); `-o` takes the rest of the word, or the next argument.
    fn shorts(
        &mut self,
        shorts: &[u8],
        args: &mut impl Iterator<Item = OsString>,
    ) -> Result<(), ConfigError> {
        for (i, &letter) in shorts.iter().enumerate() {
            match letter {
                b'o' => {
                    let rest = &shorts[i + 1..];
                    let list = if rest.is_empty() {
                        args.next()
                            .ok_or_else(|| ConfigError::new("-o", "needs a value"))?
                            .into_vec()
                    } else {
                        rest.to_vec()
                    };
                    self.note(
                        "-o options are deprecated in virtiofsd (libvirt passes them when the \
                         daemon does not report separate-options)",
                    );
                    for option in split_compat_list(&list) {
                        self.compat(&option)?;
                    }
                    return Ok(());
                }
                b'd' => self.opts.log_level = Some("debug".into()),
                b'f' => self.note("-f has no effect: the daemon always runs in the foreground"),
                b'V' => self.version = true,
                b'h' => self.help = true,
                other => {
                    return Err(ConfigError::new(
                        format!("-{}", char::from(other)),
                        "unknown option (not a virtiofsd option vhost-dax knows; see --help)",
                    ));
                }
            }
        }
        Ok(())
    }

    /// One item of a legacy `-o` list: `key=value` or a single word.
    fn compat(&mut self, option: &[u8]) -> Result<(), ConfigError> {
        if let Some(at) = option.iter().position(|&b| b == b'=') {
            let key = String::from_utf8_lossy(&option[..at]).into_owned();
            let raw = &option[at + 1..];
            let flag = format!("-o {key}");
            if key == "source" {
                self.request().shared_dir = Some(PathBuf::from(OsString::from_vec(raw.to_vec())));
                return Ok(());
            }
            let value = utf8(&flag, OsString::from_vec(raw.to_vec()))?;
            return match key.as_str() {
                "cache" => self.cache(&flag, &value, &["auto", "always", "none", "metadata"]),
                "sandbox" => self.sandbox(&flag, &value),
                "loglevel" => {
                    let level = match value.as_str() {
                        "err" => "error",
                        "warn" | "info" | "debug" => value.as_str(),
                        _ => return Err(bad_value(&flag, &value, "debug, info, warn, err")),
                    };
                    self.opts.log_level = Some(level.to_owned());
                    Ok(())
                }
                "xattrmap" => Err(refused(
                    &flag,
                    "extended attribute names are passed through untranslated",
                )),
                "modcaps" => Err(refused(
                    &flag,
                    "the daemon does not drop or change its capabilities",
                )),
                _ => Err(ConfigError::new(flag, "unknown -o option")),
            };
        }
        let word = String::from_utf8_lossy(option).into_owned();
        let flag = format!("-o {word}");
        match word.as_str() {
            "xattr" => self.request().xattr = true,
            "no_xattr" => self.request().xattr = false,
            "readdirplus" => self.request().no_readdirplus = false,
            "no_readdirplus" => self.request().no_readdirplus = true,
            "writeback" => self.request().writeback = true,
            "no_writeback" => self.request().writeback = false,
            "killpriv_v2" => self.request().killpriv_v2 = true,
            "no_killpriv_v2" => self.request().killpriv_v2 = false,
            // What the daemon does (see the long forms).
            "no_allow_direct_io" | "no_posix_acl" | "no_security_label" | "no_posix_lock"
            | "no_flock" => {}
            "allow_direct_io" => {
                return Err(refused(
                    &flag,
                    "the guest's O_DIRECT is never passed on to host files",
                ));
            }
            "announce_submounts" => {
                return Err(refused(
                    &flag,
                    "submounts are not announced to the guest (FUSE_SUBMOUNTS)",
                ));
            }
            "posix_lock" | "flock" => {
                return Err(refused(
                    &flag,
                    "POSIX and BSD locks are not served: the guest keeps them local (no_posix_lock, no_flock)",
                ));
            }
            "posix_acl" | "security_label" => {
                return Err(refused(
                    &flag,
                    "POSIX ACLs and security labels are not negotiated",
                ));
            }
            "" => return Err(ConfigError::new("-o", "empty option in the list")),
            _ => return Err(ConfigError::new(flag, "unknown -o option")),
        }
        Ok(())
    }

    fn finish(mut self) -> Result<VirtiofsdCommand, ConfigError> {
        if self.help {
            return Ok(VirtiofsdCommand::Help);
        }
        if self.version {
            return Ok(VirtiofsdCommand::Version);
        }
        if self.print_capabilities {
            return Ok(VirtiofsdCommand::PrintCapabilities);
        }
        let request = self.request();
        // virtiofsd turns READDIRPLUS off with --cache never (its entries would expire
        // at once).
        if request.cache.as_deref() == Some("never") {
            request.no_readdirplus = true;
        }
        // virtiofsd's default sandbox is namespace. Unprivileged, virtiofsd would enter
        // a user namespace, which this daemon does not do: it then runs unconfined, as
        // with --sandbox none (fd-relative resolution only).
        if request.sandbox.is_none() {
            let uid = crate::sys::fs::geteuid();
            request.sandbox = Some(if uid == 0 { "namespace" } else { "none" }.into());
        }
        // virtiofsd 1.14 holds inodes by file handle where it can (`prefer`): a drop-in
        // does the same, so a large share does not run into the descriptor limit.
        if request.inode_file_handles.is_none() {
            request.inode_file_handles = Some("prefer".into());
        }
        Ok(VirtiofsdCommand::Serve(Box::new(self.opts)))
    }
}

/// Splits a `-o` list at commas; a doubled comma is a comma inside a value (the escaping
/// libvirt applies to `source=` paths).
fn split_compat_list(list: &[u8]) -> Vec<Vec<u8>> {
    let mut items = Vec::new();
    let mut current = Vec::new();
    let mut i = 0;
    while i < list.len() {
        match list[i] {
            b',' if list.get(i + 1) == Some(&b',') => {
                current.push(b',');
                i += 2;
            }
            b',' => {
                items.push(std::mem::take(&mut current));
                i += 1;
            }
            b => {
                current.push(b);
                i += 1;
            }
        }
    }
    items.push(current);
    items
}
