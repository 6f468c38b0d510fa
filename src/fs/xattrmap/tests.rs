//! The examples of virtiofsd's `doc/xattr-mapping.md` and README, the parser's errors,
//! and two properties: a name the guest sets lists back as it wrote it, and nothing from
//! outside a prefix's space reaches a listing.

use super::*;
use proptest::prelude::*;

fn map(text: &str) -> XattrMap {
    XattrMap::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn client(m: &XattrMap, name: &str) -> Result<String, i32> {
    let name = CString::new(name).unwrap();
    m.map_client_name(&name)
        .map(|h| h.to_str().unwrap().to_owned())
        .map_err(Errno::get)
}

/// `names` joined as a host list (each closed by a NUL).
fn list(names: &[&str]) -> Vec<u8> {
    names.iter().flat_map(|n| n.bytes().chain([0])).collect()
}

const EXAMPLE_1: &str = ":prefix:all::user.virtiofs.::bad:all:::";
const EXAMPLE_2: &str = "/prefix/all/trusted./user.virtiofs./
            /bad/server//trusted./
            /bad/client/user.virtiofs.//
            /ok/all///";
const EXAMPLE_3: &str = "/bad/all/security./security./
            /ok/all///";
/// virtiofsd's README, for SELinux in the guest.
const SELINUX: &str = ":map:security.selinux:trusted.virtiofs.:";

#[test]
fn guest_names_as_the_documented_examples_map_them() {
    let ok = |s: &str| Ok::<String, i32>(s.to_owned());
    let cases: &[(&str, &str, Result<String, i32>)] = &[
        // (1) Everything under user.virtiofs.
        (
            EXAMPLE_1,
            "trusted.overlay.opaque",
            ok("user.virtiofs.trusted.overlay.opaque"),
        ),
        (EXAMPLE_1, "user.a", ok("user.virtiofs.user.a")),
        (
            ":map::user.virtiofs.:",
            "security.selinux",
            ok("user.virtiofs.security.selinux"),
        ),
        // (2) trusted. only; the target space is closed to the guest.
        (
            EXAMPLE_2,
            "trusted.overlay.opaque",
            ok("user.virtiofs.trusted.overlay.opaque"),
        ),
        (EXAMPLE_2, "user.virtiofs.trusted.x", Err(libc::EPERM)),
        (EXAMPLE_2, "user.a", ok("user.a")),
        (EXAMPLE_2, "security.selinux", ok("security.selinux")),
        (
            "/map/trusted./user.virtiofs./",
            "trusted.x",
            ok("user.virtiofs.trusted.x"),
        ),
        (
            "/map/trusted./user.virtiofs./",
            "user.virtiofs.x",
            Err(libc::EPERM),
        ),
        ("/map/trusted./user.virtiofs./", "user.a", ok("user.a")),
        // (3) security. refused.
        (EXAMPLE_3, "security.selinux", Err(libc::EPERM)),
        (EXAMPLE_3, "user.a", ok("user.a")),
        (
            SELINUX,
            "security.selinux",
            ok("trusted.virtiofs.security.selinux"),
        ),
        (
            SELINUX,
            "trusted.virtiofs.security.selinux",
            Err(libc::EPERM),
        ),
        (SELINUX, "security.capability", ok("security.capability")),
        // The table's single rules, each with a terminator.
        (
            ":prefix:client:trusted.:user.virtiofs.: :ok:all:::",
            "trusted.a",
            ok("user.virtiofs.trusted.a"),
        ),
        (
            ":prefix:server::user.virtiofs.: :ok:all:::",
            "trusted.a",
            ok("trusted.a"),
        ),
        (":ok:client:user.:: :bad:all:::", "user.a", ok("user.a")),
        (
            ":ok:client:user.:: :bad:all:::",
            "trusted.a",
            Err(libc::EPERM),
        ),
        (
            ":unsupported:client:system.posix_acl_:: :ok:all:::",
            "system.posix_acl_access",
            Err(libc::EOPNOTSUPP),
        ),
        // The first matching rule decides.
        (":ok:client:user.a:: :bad:all:::", "user.ab", ok("user.ab")),
        (
            ":bad:client:user.:: :ok:client:user.a:: :ok:all:::",
            "user.a",
            Err(libc::EPERM),
        ),
        // Separators other than ':' , mixed in one map.
        (
            "|prefix|all|trusted.|user.vm.| :ok:all:::",
            "trusted.x",
            ok("user.vm.trusted.x"),
        ),
    ];
    for (text, name, want) in cases {
        assert_eq!(&client(&map(text), name), want, "{text:?} {name}");
    }
}

#[test]
fn host_lists_as_the_documented_examples_show_them() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            EXAMPLE_1,
            &[
                "user.virtiofs.trusted.x",
                "security.selinux",
                "user.virtiofs.user.a",
                "user.b",
            ],
            &["trusted.x", "user.a"],
        ),
        (
            EXAMPLE_2,
            &[
                "trusted.real",
                "user.virtiofs.trusted.x",
                "user.a",
                "security.selinux",
            ],
            &["trusted.x", "user.a", "security.selinux"],
        ),
        (
            "/map/trusted./user.virtiofs./",
            &["trusted.real", "user.virtiofs.trusted.x", "user.a"],
            &["trusted.x", "user.a"],
        ),
        (EXAMPLE_3, &["security.selinux", "user.a"], &["user.a"]),
        (
            SELINUX,
            &[
                "security.selinux",
                "trusted.virtiofs.security.selinux",
                "user.a",
            ],
            &["security.selinux", "user.a"],
        ),
        // The table's server rules.
        (
            ":prefix:server::user.virtiofs.: :ok:all:::",
            &["user.virtiofs.a", "user.b"],
            &["a", "user.b"],
        ),
        // A client-only prefix rule leaves the listing alone.
        (
            ":prefix:client:trusted.:user.virtiofs.: :ok:all:::",
            &["user.virtiofs.trusted.a"],
            &["user.virtiofs.trusted.a"],
        ),
        (
            ":ok:server::security.: :bad:all:::",
            &["security.a", "user.b"],
            &["security.a"],
        ),
        (
            ":bad:server::security.: :ok:all:::",
            &["security.a", "user.b"],
            &["user.b"],
        ),
        (
            ":unsupported:server::system.: :ok:all:::",
            &["system.posix_acl_access", "user.b"],
            &["user.b"],
        ),
        // Deviations: a name that is only the prepend is hidden, an empty list stays empty.
        (EXAMPLE_1, &["user.virtiofs.", "user.virtiofs.a"], &["a"]),
        (EXAMPLE_1, &["user.b"], &[]),
        (EXAMPLE_1, &[], &[]),
    ];
    for (text, host, want) in cases {
        assert_eq!(
            map(text).map_server_list(&list(host)),
            list(want),
            "{text:?} {host:?}"
        );
    }
}

#[test]
fn map_shorthand_expands_as_virtiofsd() {
    assert_eq!(map(":map::user.virtiofs.:").rules, map(EXAMPLE_1).rules);
    assert_eq!(
        map(":map:trusted.:user.virtiofs.:").describe(),
        ":prefix:all:trusted.:user.virtiofs.: :bad:all:user.virtiofs.:trusted.: :ok:all:::"
    );
    // Blanks (newlines too) around and between rules; the same rule with two separators.
    assert_eq!(
        map("\n :prefix:all:trusted.:user.virtiofs.: /prefix/all/trusted./user.virtiofs./\n\t:ok:all:::  ")
            .describe(),
        ":prefix:all:trusted.:user.virtiofs.: :prefix:all:trusted.:user.virtiofs.: :ok:all:::"
    );
}

#[test]
fn bad_maps_name_the_rule_and_the_fault() {
    let cases: &[(&str, XattrMapError)] = &[
        ("  \n ", XattrMapError::Empty),
        (
            ":prefix:client:hi",
            XattrMapError::Incomplete {
                rule: 1,
                text: ":prefix:client:hi".into(),
                sep: ':',
                fields: 4,
            },
        ),
        // The tail without its last separator.
        (
            ":prefix:all:trusted.:user.virtiofs.: :ok:all::",
            XattrMapError::Incomplete {
                rule: 2,
                text: ":ok:all::".into(),
                sep: ':',
                fields: 4,
            },
        ),
        (
            ":map:trusted.",
            XattrMapError::Incomplete {
                rule: 1,
                text: ":map:trusted.".into(),
                sep: ':',
                fields: 3,
            },
        ),
        (
            ":ok:all::: :TOMATOPIRATE:trusted.:virtiofs.user.:",
            XattrMapError::Type {
                rule: 2,
                text: ":TOMATOPIRATE:".into(),
                got: "TOMATOPIRATE".into(),
            },
        ),
        (
            "/prefix/helloworld///",
            XattrMapError::Scope {
                rule: 1,
                text: "/prefix/helloworld/".into(),
                got: "helloworld".into(),
            },
        ),
        (
            ":map:trusted.:virtiofs.user.: :map:trusted.:virtiofs.user.:",
            XattrMapError::MapNotLast {
                rule: 1,
                text: ":map:trusted.:virtiofs.user.:".into(),
            },
        ),
        (
            ":ok:all:a\0b::",
            XattrMapError::Nul {
                rule: 1,
                text: ":ok:all:a\\0b:".into(),
            },
        ),
        (
            ":prefix:client:trusted.:user.virtiofs.:",
            XattrMapError::NoClientDefault,
        ),
        (
            ":ok:client::: :ok:server::x.:",
            XattrMapError::NoServerDefault,
        ),
        (
            ":prefix:all::user.virtiofs.:",
            XattrMapError::NoServerDefault,
        ),
    ];
    for (text, want) in cases {
        let got = XattrMap::parse(text).unwrap_err();
        assert_eq!(&got, want, "{text:?}");
        let shown = got.to_string();
        assert!(!shown.contains('\n'), "one line: {shown}");
    }
    // A rule spread over lines is shown on one.
    let e = XattrMap::parse(":ok:all:::\n/prefix/al\nl/a./b./").unwrap_err();
    assert_eq!(
        e.to_string(),
        "rule 2 `/prefix/al\\nl/`: scope `al\\nl` is not one of client, server, all"
    );
}

#[test]
fn serializes_as_its_text() {
    let m = map(EXAMPLE_2);
    let json = serde_json::to_string(&m).unwrap();
    assert_eq!(json, serde_json::to_string(EXAMPLE_2).unwrap());
    assert_eq!(serde_json::from_str::<XattrMap>(&json).unwrap(), m);
    assert!(serde_json::from_str::<XattrMap>("\":prefix:all:a:b:\"").is_err());
    assert_eq!(m.to_string(), EXAMPLE_2);
}

#[test]
fn security_capability_is_reported_only_when_renamed() {
    assert_eq!(
        map(EXAMPLE_1).security_capability(),
        Some(c"user.virtiofs.security.capability")
    );
    assert_eq!(map(SELINUX).security_capability(), None);
    assert_eq!(map(EXAMPLE_3).security_capability(), None);
}

/// Names from a few namespaces, some already carrying a prepend.
fn name() -> impl Strategy<Value = String> {
    let head = prop::sample::select(vec![
        "user.",
        "trusted.",
        "security.",
        "system.",
        "user.virtiofs.",
        "user.virtiofs.trusted.",
        "trusted.virtiofs.",
        "",
    ]);
    (head, "[a-z.]{1,6}").prop_map(|(h, t)| format!("{h}{t}"))
}

/// `:map:K:P:` maps, and the documented examples.
fn well_formed_map() -> impl Strategy<Value = XattrMap> {
    let k = prop::sample::select(vec![
        "",
        "trusted.",
        "security.selinux",
        "user.",
        "user.virtiofs.a",
    ]);
    let p = prop::sample::select(vec![
        "user.virtiofs.",
        "trusted.virtiofs.",
        "user.",
        "user.v",
    ]);
    prop_oneof![
        (k, p).prop_map(|(k, p)| map(&format!(":map:{k}:{p}:"))),
        prop::sample::select(vec![EXAMPLE_1, EXAMPLE_2, EXAMPLE_3]).prop_map(map),
    ]
}

proptest! {
    /// A name the guest sets (the host holding its mapped name) lists back as written.
    #[test]
    fn a_mapped_name_lists_back_as_the_guest_wrote_it(m in well_formed_map(), n in name()) {
        let c = CString::new(n.clone()).unwrap();
        if let Ok(host) = m.map_client_name(&c) {
            let listed = m.map_server_list(host.to_bytes_with_nul());
            prop_assert_eq!(listed, list(&[&n]), "{:?} {} -> {:?}", m, n, host);
        }
    }

    /// With `:map:K:P:`, every listed name is either a host name under P with P taken
    /// off, or a host name outside both K and P passed unchanged: the host's own names
    /// under K never show, and every host name under P does (stripped).
    #[test]
    fn nothing_outside_the_prefix_space_leaks_into_a_listing(
        k in prop::sample::select(vec!["", "trusted.", "security.selinux"]),
        p in prop::sample::select(vec!["user.virtiofs.", "trusted.virtiofs."]),
        host in prop::collection::btree_set(name(), 0..8),
    ) {
        let m = map(&format!(":map:{k}:{p}:"));
        let host: Vec<&str> = host.iter().map(String::as_str).collect();
        let shown = m.map_server_list(&list(&host));
        let shown: Vec<&str> = shown
            .split(|&b| b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| std::str::from_utf8(n).unwrap())
            .collect();
        let mut want = Vec::new();
        for h in &host {
            if let Some(rest) = h.strip_prefix(p) {
                want.push(rest);
            } else if !k.is_empty() && !h.starts_with(k) {
                want.push(h);
            }
        }
        prop_assert_eq!(shown, want);
    }
}
