//! `--xattrmap`: virtiofsd's extended-attribute name mapping (its
//! `doc/xattr-mapping.md`), parsed once at start and applied to every xattr request.
//!
//! A map is a list of rules, each `:type:scope:key:prepend:` where the separator is the
//! rule's first non-blank character (any character; `/prefix/all/trusted./user.virtiofs./`
//! is the same rule), with blanks and newlines allowed between rules. Rules are tried in
//! order and the first that matches decides:
//!
//! - **scope** `client` matches a name the guest sends (GETXATTR, SETXATTR,
//!   REMOVEXATTR) when it starts with **key**; `server` matches a name of the host's
//!   LISTXATTR reply when it starts with **prepend**; `all` is both.
//! - **type** `prefix`: a guest name gets **prepend** put in front; a host name has
//!   **prepend** stripped. `ok`: the name passes unchanged. `bad`: a guest name is
//!   refused with `EPERM` (a GETXATTR with `ENODATA`, as virtiofsd), a host name is
//!   hidden. `unsupported`: a guest name is refused with `EOPNOTSUPP`, a host name is
//!   hidden.
//! - `:map:key:prepend:` is shorthand, and must be the last rule: it becomes
//!   `:prefix:all:key:prepend:`, then (for a non-empty key) `:bad:all:prepend:key:` (the
//!   guest cannot reach the prefixed names directly, the host's own unprefixed ones are
//!   hidden) and `:ok:all:::`; for an empty key, `:bad:all:::`.
//!
//! Where this differs from virtiofsd 1.14, and why:
//! - A map must have a rule that matches every guest name (a `client` or `all` rule
//!   with an empty key) and one that matches every host name (a `server` or `all` rule
//!   with an empty prepend). virtiofsd's documentation requires it too, but accepts a
//!   map without and then panics on the first name no rule matches; here such a map is
//!   a configuration error.
//! - A host name that is exactly a `prefix` rule's **prepend** would be listed as an
//!   empty name, which a Linux guest takes for a corrupt list (the whole LISTXATTR fails
//!   with EIO): it is hidden. For the same reason an empty list stays empty (virtiofsd
//!   answers a single NUL byte).
//!
//! - The renamed `security.capability` (see [`XattrMap::security_capability`]) is dropped
//!   on WRITE, on a truncate (SETATTR, OPEN or CREATE with `O_TRUNC`) and on a change of
//!   owner, as virtiofsd does, but not on SETXATTR of another name (virtiofsd drops it
//!   there too; Linux does not).
//!
//! The module is pure: it maps names and lists, and does no I/O.

use std::borrow::Cow;
use std::ffi::{CStr, CString};
use std::fmt;

use crate::fuse::Errno;

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Prepend to guest names, strip from host names.
    Prefix,
    /// Pass unchanged.
    Ok,
    /// Refuse with `EPERM`, hide from listings.
    Bad,
    /// Refuse with `EOPNOTSUPP`, hide from listings.
    Unsupported,
}

impl Kind {
    const NAMES: &'static str = "prefix, ok, bad, unsupported, map";

    fn parse(word: &str) -> Option<Self> {
        match word {
            "prefix" => Some(Kind::Prefix),
            "ok" => Some(Kind::Ok),
            "bad" => Some(Kind::Bad),
            "unsupported" => Some(Kind::Unsupported),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Prefix => "prefix",
            Kind::Ok => "ok",
            Kind::Bad => "bad",
            Kind::Unsupported => "unsupported",
        }
    }
}

/// One rule, with a `map` shorthand already expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    kind: Kind,
    /// Matches guest names (scope `client` or `all`).
    client: bool,
    /// Matches host names (scope `server` or `all`).
    server: bool,
    /// Prefix of the guest names it matches.
    key: Vec<u8>,
    /// Prefix of the host names it matches; what `prefix` puts in front of guest names.
    prepend: Vec<u8>,
}

impl Rule {
    fn all(kind: Kind, key: &[u8], prepend: &[u8]) -> Self {
        Rule {
            kind,
            client: true,
            server: true,
            key: key.to_vec(),
            prepend: prepend.to_vec(),
        }
    }
}

/// Why a map was refused. Every variant but [`XattrMapError::Empty`] names the rule (from
/// 1, as written) and shows it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XattrMapError {
    /// Only blanks.
    #[error("has no rules (a rule is :type:scope:key:prepend: or :map:key:prepend:)")]
    Empty,
    /// The input ended before the rule's last separator.
    #[error(
        "rule {rule} `{text}` is incomplete: it needs {fields} fields, each closed by `{sep}` \
         (:type:scope:key:prepend: or :map:key:prepend:)"
    )]
    Incomplete {
        /// Rule number, from 1.
        rule: usize,
        /// The rule as written (escaped to one line).
        text: String,
        /// Its separator.
        sep: char,
        /// How many fields its type needs.
        fields: usize,
    },
    /// The type is not one of prefix, ok, bad, unsupported, map.
    #[error("rule {rule} `{text}`: type `{got}` is not one of {}", Kind::NAMES)]
    Type {
        /// Rule number, from 1.
        rule: usize,
        /// The rule as written (escaped to one line).
        text: String,
        /// The type written.
        got: String,
    },
    /// The scope is not one of client, server, all.
    #[error("rule {rule} `{text}`: scope `{got}` is not one of client, server, all")]
    Scope {
        /// Rule number, from 1.
        rule: usize,
        /// The rule as written (escaped to one line).
        text: String,
        /// The scope written.
        got: String,
    },
    /// A `map` rule is followed by another rule.
    #[error("rule {rule} `{text}`: a map rule must be the last rule")]
    MapNotLast {
        /// Rule number, from 1.
        rule: usize,
        /// The rule as written (escaped to one line).
        text: String,
    },
    /// A key or prepend holds a NUL byte (no xattr name can).
    #[error("rule {rule} `{text}`: a key or prepend cannot hold a NUL byte")]
    Nul {
        /// Rule number, from 1.
        rule: usize,
        /// The rule as written (escaped to one line).
        text: String,
    },
    /// Some guest names match no rule.
    #[error(
        "no rule matches every name the guest sends: end with a client or all rule whose key \
         is empty (e.g. `:ok:all:::` or `:bad:all:::`)"
    )]
    NoClientDefault,
    /// Some host names match no rule.
    #[error(
        "no rule matches every name the host lists: end with a server or all rule whose \
         prepend is empty (e.g. `:ok:all:::` or `:bad:all:::`)"
    )]
    NoServerDefault,
}

/// A parsed `--xattrmap`. Equal maps come from the same text.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct XattrMap {
    /// The text it was parsed from, kept to show and to serialize.
    source: String,
    rules: Vec<Rule>,
    /// The host name of the guest's `security.capability`, when the map renames it.
    security_capability: Option<CString>,
}

impl fmt::Debug for XattrMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("XattrMap").field(&self.source).finish()
    }
}

impl fmt::Display for XattrMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl TryFrom<String> for XattrMap {
    type Error = XattrMapError;

    fn try_from(text: String) -> Result<Self, XattrMapError> {
        XattrMap::parse(&text)
    }
}

impl From<XattrMap> for String {
    fn from(map: XattrMap) -> String {
        map.source
    }
}

impl std::str::FromStr for XattrMap {
    type Err = XattrMapError;

    fn from_str(text: &str) -> Result<Self, XattrMapError> {
        XattrMap::parse(text)
    }
}

/// Reads a rule's fields, one separator-closed field at a time.
struct RuleReader<'a> {
    text: &'a str,
    /// Byte offset of the rule's separator.
    start: usize,
    /// Byte offset of the next unread character.
    at: usize,
    sep: char,
    rule: usize,
}

impl<'a> RuleReader<'a> {
    /// The rule read so far (or, when it is incomplete, the rest of the input), escaped
    /// to one line.
    fn shown(&self, to: usize) -> String {
        self.text[self.start..to].escape_debug().to_string()
    }

    /// The next field, or `None` when the input ends before its separator.
    fn field(&mut self) -> Option<&'a str> {
        let rest = &self.text[self.at..];
        let len = rest.find(self.sep)?;
        self.at += len + self.sep.len_utf8();
        Some(&rest[..len])
    }

    /// The next field of a rule of `fields` fields.
    fn take(&mut self, fields: usize) -> Result<&'a str, XattrMapError> {
        match self.field() {
            Some(field) => Ok(field),
            None => Err(self.incomplete(fields)),
        }
    }

    fn incomplete(&self, fields: usize) -> XattrMapError {
        XattrMapError::Incomplete {
            rule: self.rule,
            text: self.shown(self.text.len()),
            sep: self.sep,
            fields,
        }
    }

    /// The next field as a name prefix.
    fn prefix(&mut self, fields: usize) -> Result<Vec<u8>, XattrMapError> {
        let field = self.take(fields)?;
        let bytes = field.as_bytes().to_vec();
        if bytes.contains(&0) {
            // Point at the whole rule: it may hold more than one NUL.
            let end = self.text[self.at..]
                .find(self.sep)
                .map_or(self.text.len(), |n| self.at + n);
            return Err(XattrMapError::Nul {
                rule: self.rule,
                text: self.shown(end),
            });
        }
        Ok(bytes)
    }
}

impl RuleReader<'_> {
    /// Reads the rule, appending it (a `map` expanded) to `rules`.
    fn rule(&mut self, rules: &mut Vec<Rule>) -> Result<(), XattrMapError> {
        let rule = self.rule;
        let word = self.take(4)?;
        if word == "map" {
            let key = self.prefix(3)?;
            let prepend = self.prefix(3)?;
            if !self.text[self.at..].trim().is_empty() {
                return Err(XattrMapError::MapNotLast {
                    rule,
                    text: self.shown(self.at),
                });
            }
            rules.push(Rule::all(Kind::Prefix, &key, &prepend));
            if key.is_empty() {
                rules.push(Rule::all(Kind::Bad, b"", b""));
            } else {
                rules.push(Rule::all(Kind::Bad, &prepend, &key));
                rules.push(Rule::all(Kind::Ok, b"", b""));
            }
            return Ok(());
        }
        let Some(kind) = Kind::parse(word) else {
            // Show the rule up to its type: the rest may not be a rule at all.
            return Err(XattrMapError::Type {
                rule,
                text: self.shown(self.at),
                got: word.escape_debug().to_string(),
            });
        };
        let scope = self.take(4)?;
        let (client, server) = match scope {
            "client" => (true, false),
            "server" => (false, true),
            "all" => (true, true),
            _ => {
                return Err(XattrMapError::Scope {
                    rule,
                    text: self.shown(self.at),
                    got: scope.escape_debug().to_string(),
                });
            }
        };
        let key = self.prefix(4)?;
        let prepend = self.prefix(4)?;
        rules.push(Rule {
            kind,
            client,
            server,
            key,
            prepend,
        });
        Ok(())
    }
}

impl XattrMap {
    /// Parses virtiofsd's `--xattrmap` syntax (see the module documentation).
    pub fn parse(text: &str) -> Result<Self, XattrMapError> {
        let mut rules = Vec::new();
        let mut at = 0;
        let mut rule = 0;
        // Each rule starts at the next non-blank character, its separator.
        while let Some((skip, sep)) = text[at..].char_indices().find(|(_, c)| !c.is_whitespace()) {
            rule += 1;
            let start = at + skip;
            let mut r = RuleReader {
                text,
                start,
                at: start + sep.len_utf8(),
                sep,
                rule,
            };
            r.rule(&mut rules)?;
            at = r.at;
        }
        if rules.is_empty() {
            return Err(XattrMapError::Empty);
        }
        if !rules.iter().any(|r| r.client && r.key.is_empty()) {
            return Err(XattrMapError::NoClientDefault);
        }
        if !rules.iter().any(|r| r.server && r.prepend.is_empty()) {
            return Err(XattrMapError::NoServerDefault);
        }
        let mut map = XattrMap {
            source: text.to_owned(),
            rules,
            security_capability: None,
        };
        map.security_capability = match map.map_client_name(c"security.capability") {
            Ok(Cow::Owned(host)) => Some(host),
            Ok(Cow::Borrowed(_)) | Err(_) => None,
        };
        Ok(map)
    }

    /// The host name for a name the guest sent (GETXATTR, SETXATTR, REMOVEXATTR):
    /// `EPERM` for a `bad` rule, `EOPNOTSUPP` for an `unsupported` one. (A GETXATTR
    /// answers `ENODATA` instead of `EPERM`, as virtiofsd: the caller does that.)
    pub fn map_client_name<'a>(&self, name: &'a CStr) -> Result<Cow<'a, CStr>, Errno> {
        let bytes = name.to_bytes();
        let rule = self
            .rules
            .iter()
            .find(|r| r.client && bytes.starts_with(&r.key));
        match rule.map(|r| (r.kind, r)) {
            Some((Kind::Ok, _)) => Ok(Cow::Borrowed(name)),
            Some((Kind::Prefix, r)) => {
                let mut host = Vec::with_capacity(r.prepend.len() + bytes.len());
                host.extend_from_slice(&r.prepend);
                host.extend_from_slice(bytes);
                // Neither part holds a NUL: `name` is a C string and `parse` refused one
                // in a prepend.
                CString::new(host)
                    .map(Cow::Owned)
                    .map_err(|_| Errno::EINVAL)
            }
            Some((Kind::Unsupported, _)) => Err(Errno::EOPNOTSUPP),
            // `parse` made sure some rule matches every name; none would be `bad`.
            Some((Kind::Bad, _)) | None => Err(Errno::EPERM),
        }
    }

    /// The guest's view of a host LISTXATTR reply (names, each closed by a NUL): each
    /// name as the first `server` rule matching it says (stripped, unchanged, or
    /// hidden), in the host's order.
    pub fn map_server_list(&self, list: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(list.len());
        for name in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            let rule = self
                .rules
                .iter()
                .find(|r| r.server && name.starts_with(&r.prepend));
            let shown = match rule.map(|r| (r.kind, r)) {
                Some((Kind::Ok, _)) => name,
                Some((Kind::Prefix, r)) => &name[r.prepend.len()..],
                // `parse` made sure some rule matches every name; none would hide it.
                Some((Kind::Bad | Kind::Unsupported, _)) | None => continue,
            };
            // A host name equal to a prepend: an empty name would make the guest
            // reject the whole list.
            if shown.is_empty() {
                continue;
            }
            out.extend_from_slice(shown);
            out.push(0);
        }
        out
    }

    /// The host name the guest's `security.capability` is stored under, when the map
    /// renames it (`None`: unchanged, or refused). The host kernel drops file
    /// capabilities on a write, truncate or chown under their real name only, so the
    /// daemon must drop this one itself.
    pub fn security_capability(&self) -> Option<&CStr> {
        self.security_capability.as_deref()
    }

    /// The rules after `map` expansion, one per line in the `:type:scope:key:prepend:`
    /// form (for the log).
    pub fn describe(&self) -> String {
        self.rules
            .iter()
            .map(|r| {
                let scope = match (r.client, r.server) {
                    (true, true) => "all",
                    (true, false) => "client",
                    _ => "server",
                };
                format!(
                    ":{}:{scope}:{}:{}:",
                    r.kind.name(),
                    String::from_utf8_lossy(&r.key),
                    String::from_utf8_lossy(&r.prepend)
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests;
