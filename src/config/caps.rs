//! Capabilities the daemon keeps once it serves (running as root), and virtiofsd's
//! `--modcaps` that changes them.
//!
//! Capabilities are per thread, so the daemon drops them once, on its main thread, after
//! its setup (sockets bound, the sandbox entered, the open-files limit raised) and before
//! it starts any other thread: every thread it starts inherits the reduced sets. What it
//! keeps is [`DaemonConfig::capabilities`]: the union of its devices' sets.

use std::fmt;

use super::{ConfigError, DaemonConfig, FsConfig};

/// Linux's capability names (`CAP_` left off, lower case), by number (`linux/capability.h`).
const NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// A set of capabilities, bit N standing for capability number N (the kernel's layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct CapSet(u64);

impl CapSet {
    /// No capability.
    pub const EMPTY: CapSet = CapSet(0);

    /// virtiofsd's default set for a file server, and ours: CHOWN, DAC_OVERRIDE, FOWNER,
    /// FSETID, SETGID, SETUID, MKNOD, SETFCAP (0x880000db).
    pub const FS_DEFAULT: CapSet =
        CapSet(1 << 0 | 1 << 1 | 1 << 3 | 1 << 4 | 1 << 6 | 1 << 7 | 1 << 27 | 1 << 31);

    /// CAP_DAC_READ_SEARCH, which `open_by_handle_at` needs.
    pub const DAC_READ_SEARCH: CapSet = CapSet(1 << 2);

    /// The set of these bits (the kernel's layout).
    pub const fn from_bits(bits: u64) -> CapSet {
        CapSet(bits)
    }

    /// The bits, in the kernel's layout.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// The capability named `name` (`sys_admin`, any case; an optional `cap_` prefix).
    pub fn named(name: &str) -> Option<CapSet> {
        let lower = name.to_ascii_lowercase();
        let bare = lower.strip_prefix("cap_").unwrap_or(&lower);
        NAMES
            .iter()
            .position(|n| *n == bare)
            .map(|i| CapSet(1 << i))
    }

    /// Both sets.
    #[must_use]
    pub const fn union(self, other: CapSet) -> CapSet {
        CapSet(self.0 | other.0)
    }

    /// This set without `other`.
    #[must_use]
    pub const fn without(self, other: CapSet) -> CapSet {
        CapSet(self.0 & !other.0)
    }

    /// Whether every capability of `other` is in this set.
    pub const fn contains(self, other: CapSet) -> bool {
        self.0 & other.0 == other.0
    }
}

impl fmt::Display for CapSet {
    /// `chown,dac_override,...`, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("none");
        }
        let mut first = true;
        for bit in 0..64 {
            if self.0 & (1 << bit) == 0 {
                continue;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            match NAMES.get(bit) {
                Some(name) => f.write_str(name)?,
                None => write!(f, "{bit}")?,
            }
        }
        Ok(())
    }
}

/// `--modcaps=+sys_admin:-mknod`, validated: what to add to and take from a device's set.
/// Later items win over earlier ones for the same capability, as in virtiofsd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModCaps {
    /// Capabilities added (`+name`).
    pub add: CapSet,
    /// Capabilities taken away (`-name`).
    pub remove: CapSet,
}

impl ModCaps {
    /// Parses virtiofsd's syntax: `(+|-)name` items separated by `:`; names as in
    /// `capabilities(7)` without `CAP_` (any case, `cap_` accepted too).
    pub fn parse(text: &str) -> Result<ModCaps, String> {
        let mut caps = ModCaps::default();
        for item in text.split(':') {
            let mut chars = item.chars();
            let action = chars.next();
            let name = chars.as_str();
            let cap = match action {
                None => {
                    return Err(format!(
                        "`{text}` has an empty item (expected (+|-)capability:...)"
                    ));
                }
                Some('+' | '-') => CapSet::named(name).ok_or_else(|| {
                    format!("`{name}` is not a capability name (e.g. sys_admin, mknod)")
                })?,
                Some(other) => {
                    return Err(format!(
                        "`{item}` must start with + or - (got `{other}`; expected (+|-)capability:...)"
                    ));
                }
            };
            if action == Some('+') {
                caps.add = caps.add.union(cap);
                caps.remove = caps.remove.without(cap);
            } else {
                caps.remove = caps.remove.union(cap);
                caps.add = caps.add.without(cap);
            }
        }
        Ok(caps)
    }

    /// `set` with these changes.
    pub fn apply(self, set: CapSet) -> CapSet {
        set.union(self.add).without(self.remove)
    }
}

/// Validates a `modcaps` value for `field`.
pub(crate) fn validate_modcaps(text: &str, field: &str) -> Result<ModCaps, ConfigError> {
    ModCaps::parse(text).map_err(|r| ConfigError::new(field, r))
}

impl FsConfig {
    /// The capabilities an fs device needs while it serves, when the daemon runs as root:
    /// virtiofsd's default set, changed by `modcaps`.
    ///
    /// The one place the set is computed from the configuration: holding inodes by file
    /// handle (`inode_file_handles` prefer or mandatory) adds
    /// [`CapSet::DAC_READ_SEARCH`], which `open_by_handle_at` needs (validation refuses a
    /// `modcaps` that takes it away then, as virtiofsd does).
    pub fn capabilities(&self) -> CapSet {
        let set = self.modcaps.apply(CapSet::FS_DEFAULT);
        if self.inode_file_handles.needs_dac_read_search() {
            set.union(CapSet::DAC_READ_SEARCH)
        } else {
            set
        }
    }
}

impl DaemonConfig {
    /// What the daemon keeps once it serves: the union of its devices' sets (a pmem
    /// device needs none: it syncs and maps a file it opened before the drop).
    pub fn capabilities(&self) -> CapSet {
        self.fs
            .iter()
            .fold(CapSet::EMPTY, |set, fs| set.union(fs.capabilities()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_set_is_virtiofsds() {
        assert_eq!(CapSet::FS_DEFAULT.bits(), 0x8800_00db);
        assert_eq!(
            CapSet::FS_DEFAULT.to_string(),
            "chown,dac_override,fowner,fsetid,setgid,setuid,mknod,setfcap"
        );
        assert_eq!(CapSet::EMPTY.to_string(), "none");
    }

    #[test]
    fn names_are_capabilities_7s() {
        assert_eq!(CapSet::named("sys_admin"), Some(CapSet::from_bits(1 << 21)));
        assert_eq!(CapSet::named("SYS_ADMIN"), Some(CapSet::from_bits(1 << 21)));
        assert_eq!(CapSet::named("cap_mknod"), Some(CapSet::from_bits(1 << 27)));
        assert_eq!(
            CapSet::named("checkpoint_restore"),
            Some(CapSet::from_bits(1 << 40))
        );
        assert_eq!(
            CapSet::named("dac_read_search"),
            Some(CapSet::DAC_READ_SEARCH)
        );
        for bad in ["", "admin", "sys-admin", "41", "cap_"] {
            assert_eq!(CapSet::named(bad), None, "{bad}");
        }
    }

    #[test]
    fn modcaps_parse_as_virtiofsd() {
        let m = ModCaps::parse("+sys_admin:-mknod").unwrap();
        let set = m.apply(CapSet::FS_DEFAULT);
        assert!(set.contains(CapSet::named("sys_admin").unwrap()));
        assert!(!set.contains(CapSet::named("mknod").unwrap()));
        assert!(set.contains(CapSet::named("chown").unwrap()));
        // The later item wins.
        let m = ModCaps::parse("-chown:+chown").unwrap();
        assert_eq!(m.apply(CapSet::FS_DEFAULT), CapSet::FS_DEFAULT);
        let m = ModCaps::parse("+sys_admin:-SYS_ADMIN").unwrap();
        assert_eq!(m.apply(CapSet::FS_DEFAULT), CapSet::FS_DEFAULT);
        for bad in ["", ":", "+sys_admin:", "sys_admin", "+nope", "*chown", "+"] {
            assert!(ModCaps::parse(bad).is_err(), "{bad}");
        }
    }
}
