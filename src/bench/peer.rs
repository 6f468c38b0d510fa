//! The side-by-side peer: virtiofsd, found or named, run on the same share in the same
//! run as our daemon.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use super::fuse::Target;
use super::{BenchError, PeerOutcome, PeerRun, Samples};

/// What `--peer` asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PeerChoice {
    /// virtiofsd if it can be found (the default); absent otherwise.
    #[default]
    Auto,
    /// No peer (`--peer none`).
    None,
    /// virtiofsd, found as for `Auto` or at the given path; a run without it fails.
    Virtiofsd(Option<PathBuf>),
}

/// A `--peer` value that is not `none`, `auto`, `virtiofsd` or `virtiofsd=PATH`.
#[derive(Debug, thiserror::Error)]
#[error("--peer takes none, auto, virtiofsd or virtiofsd=PATH, not `{0}`")]
pub struct PeerChoiceError(String);

impl FromStr for PeerChoice {
    type Err = PeerChoiceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(PeerChoice::None),
            "auto" => Ok(PeerChoice::Auto),
            "virtiofsd" => Ok(PeerChoice::Virtiofsd(None)),
            _ => match s.strip_prefix("virtiofsd=") {
                Some(path) if !path.is_empty() => Ok(PeerChoice::Virtiofsd(Some(path.into()))),
                _ => Err(PeerChoiceError(s.to_string())),
            },
        }
    }
}

/// The peer during a run.
pub(super) struct Peer {
    state: State,
    /// Named on the command line: its failures fail the run.
    required: bool,
}

enum State {
    Absent(String),
    Ready { path: PathBuf, version: String },
    Failed(String),
}

impl Peer {
    /// Finds (and checks) the peer `choice` names.
    pub(super) fn resolve(choice: &PeerChoice) -> Result<Peer, BenchError> {
        let (path, required) = match choice {
            PeerChoice::None => {
                return Ok(Peer {
                    state: State::Absent("disabled (--peer none)".into()),
                    required: false,
                });
            }
            PeerChoice::Auto => (find_virtiofsd(), false),
            PeerChoice::Virtiofsd(None) => (find_virtiofsd(), true),
            PeerChoice::Virtiofsd(Some(path)) => (Some(path.clone()), true),
        };
        let state = match path {
            None => State::Absent(
                "not found on PATH (nor $VIRTIOFSD, $CARGO_HOME/bin, /usr/libexec)".into(),
            ),
            Some(path) => match check(&path) {
                Ok(version) => State::Ready { path, version },
                Err(reason) => State::Absent(format!("{}: {reason}", path.display())),
            },
        };
        match state {
            State::Absent(reason) if required => Err(BenchError::Peer(reason)),
            state => Ok(Peer { state, required }),
        }
    }

    /// Why there is no peer, if there is none.
    pub(super) fn absent(&self) -> Option<&str> {
        match &self.state {
            State::Absent(reason) => Some(reason),
            _ => None,
        }
    }

    /// The daemon to run this repeat, unless absent or failed.
    pub(super) fn target(&self) -> Option<Target> {
        match &self.state {
            State::Ready { path, .. } => Some(Target::virtiofsd(path)),
            _ => None,
        }
    }

    /// A session failed: the run fails if the peer was asked for, else the peer is dropped.
    pub(super) fn failed(&mut self, error: BenchError) -> Result<(), BenchError> {
        if self.required {
            return Err(error);
        }
        log::debug!("bench: virtiofsd dropped: {error}");
        self.state = State::Failed(error.to_string().trim_end().to_string());
        Ok(())
    }

    /// The peer's part of the report.
    pub(super) fn outcome(self, samples: Samples) -> PeerOutcome {
        match self.state {
            State::Absent(reason) => PeerOutcome::Absent(reason),
            State::Failed(reason) => PeerOutcome::Failed(reason),
            State::Ready { path, version } => PeerOutcome::Ran(PeerRun {
                path,
                version,
                results: samples.figures(),
            }),
        }
    }
}

/// `$VIRTIOFSD`, then `PATH`, then `${CARGO_HOME:-$HOME/.cargo}/bin` (where `cargo install`
/// puts it), then `/usr/libexec` (distribution packages): as guest-tests/linux/run.sh.
fn find_virtiofsd() -> Option<PathBuf> {
    let env = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    let mut candidates: Vec<PathBuf> = Vec::new();
    candidates.extend(env("VIRTIOFSD").map(PathBuf::from));
    if let Some(path) = env("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join("virtiofsd")));
    }
    let cargo_home = env("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    candidates.extend(cargo_home.map(|home| home.join("bin/virtiofsd")));
    candidates.push("/usr/libexec/virtiofsd".into());
    candidates.into_iter().find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Checks that `path` is the Rust virtiofsd (its command line); returns its version.
fn check(path: &Path) -> Result<String, String> {
    let help = Command::new(path)
        .arg("--help")
        .output()
        .map_err(|e| format!("cannot run it: {e}"))?;
    let help = String::from_utf8_lossy(&help.stdout);
    if !help.contains("--shared-dir") || !help.contains("--socket-path") {
        return Err("not a virtiofsd with --shared-dir and --socket-path (the Rust one)".into());
    }
    let version = Command::new(path)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run it: {e}"))?;
    Ok(String::from_utf8_lossy(&version.stdout)
        .lines()
        .next()
        .unwrap_or("virtiofsd")
        .trim()
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_choices_parse() {
        assert_eq!("none".parse::<PeerChoice>().unwrap(), PeerChoice::None);
        assert_eq!("auto".parse::<PeerChoice>().unwrap(), PeerChoice::Auto);
        assert_eq!(
            "virtiofsd".parse::<PeerChoice>().unwrap(),
            PeerChoice::Virtiofsd(None)
        );
        assert_eq!(
            "virtiofsd=/opt/v/virtiofsd".parse::<PeerChoice>().unwrap(),
            PeerChoice::Virtiofsd(Some("/opt/v/virtiofsd".into()))
        );
        for bad in ["", "virtiofsd=", "qemu", "virtiofsd:/x"] {
            assert!(bad.parse::<PeerChoice>().is_err(), "{bad}");
        }
    }

    #[test]
    fn disabled_and_missing_peers_are_absent_unless_named() {
        let none = Peer::resolve(&PeerChoice::None).unwrap();
        assert_eq!(none.absent(), Some("disabled (--peer none)"));
        assert!(none.target().is_none());
        let named = PeerChoice::Virtiofsd(Some("/nonexistent/virtiofsd".into()));
        assert!(matches!(Peer::resolve(&named), Err(BenchError::Peer(_))));
    }
}
