//! Property tests for the pure pieces that see registry and archive input: reference parsing
//! and printing, digests, platform normalisation and matching, and entry-name normalisation
//! inside the root (`rootfs/whiteout.rs`).

use acrpull::fuzzing::normalize_entry_name;
use acrpull::{Digest, Platform, Reference};
use proptest::prelude::*;

fn hex(len: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(prop::sample::select(b"0123456789abcdef".to_vec()), len)
        .prop_map(|bytes| String::from_utf8(bytes).unwrap())
}

fn digest_text() -> impl Strategy<Value = String> {
    prop_oneof![
        hex(64).prop_map(|hex| format!("sha256:{hex}")),
        hex(128).prop_map(|hex| format!("sha512:{hex}")),
    ]
}

/// A registry that names itself as one: a dotted host, `localhost` or an IP, maybe a port.
fn registry() -> impl Strategy<Value = String> {
    let host = prop_oneof![
        "[a-z0-9]{1,8}(\\.[a-z0-9]{1,8}){1,3}",
        Just("localhost".to_string()),
        Just("127.0.0.1".to_string()),
        Just("[::1]".to_string()),
        "[a-z0-9]{1,8}\\.azurecr\\.io",
    ];
    (host, proptest::option::of(1u16..))
        .prop_map(|(host, port)| port.map_or(host.clone(), |port| format!("{host}:{port}")))
}

fn repository() -> impl Strategy<Value = String> {
    proptest::collection::vec("[a-z0-9]{1,6}(([._]|__|-{1,3})[a-z0-9]{1,6}){0,2}", 1..4)
        .prop_map(|components| components.join("/"))
}

proptest! {
    /// A reference built from valid parts parses to those parts and prints back to a string
    /// that parses to the same reference.
    #[test]
    fn reference_parts_round_trip(
        registry in proptest::option::of(registry()),
        repository in repository(),
        tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}"),
        digest in proptest::option::of(digest_text()),
    ) {
        // Without a registry, a first component with a `.` (or `localhost`) would name one.
        let first = repository.split('/').next().unwrap_or_default();
        prop_assume!(registry.is_some() || !(first.contains('.') || first == "localhost"));
        let mut text = registry.clone().map_or(String::new(), |registry| format!("{registry}/"));
        text.push_str(&repository);
        if let Some(tag) = &tag {
            text.push(':');
            text.push_str(tag);
        }
        if let Some(digest) = &digest {
            text.push('@');
            text.push_str(digest);
        }
        let reference: Reference = text.parse().map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let expected_registry = registry.unwrap_or_else(|| "docker.io".to_string());
        prop_assert_eq!(reference.registry(), expected_registry.as_str());
        if expected_registry == "docker.io" && !repository.contains('/') {
            prop_assert_eq!(reference.repository(), format!("library/{repository}"));
        } else {
            prop_assert_eq!(reference.repository(), repository.as_str());
        }
        let expected_tag = match (&tag, &digest) {
            (None, None) => Some("latest"),
            (tag, _) => tag.as_deref(),
        };
        prop_assert_eq!(reference.tag(), expected_tag);
        prop_assert_eq!(reference.digest().map(ToString::to_string), digest);
        let printed = reference.to_string();
        prop_assert_eq!(printed.parse::<Reference>().ok(), Some(reference), "{}", printed);
    }

    /// Whatever string parses as a reference prints back to one that parses the same.
    #[test]
    fn any_parsed_reference_round_trips(text in "[a-zA-Z0-9:/@._\\-\\[\\]]{1,40}") {
        if let Ok(reference) = text.parse::<Reference>() {
            let printed = reference.to_string();
            prop_assert_eq!(printed.parse::<Reference>().ok(), Some(reference), "{} -> {}", text, printed);
        }
    }

    /// Valid digests print back exactly; nothing that parses can hold a path separator.
    #[test]
    fn digest_round_trip(text in digest_text()) {
        let digest: Digest = text.parse().unwrap();
        prop_assert_eq!(digest.to_string(), text);
    }

    #[test]
    fn digest_rejects_what_is_not_lowercase_hex_of_the_right_length(
        algorithm in prop::sample::select(vec!["sha256", "sha512", "md5", "SHA256", ""]),
        body in "[0-9a-fA-F./]{0,130}",
    ) {
        let text = format!("{algorithm}:{body}");
        let valid_len = match algorithm {
            "sha256" => Some(64),
            "sha512" => Some(128),
            _ => None,
        };
        let valid = valid_len == Some(body.len())
            && body.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        prop_assert_eq!(text.parse::<Digest>().is_ok(), valid, "{}", text);
    }

    /// Normalisation is idempotent, matching is reflexive, and a parsed platform prints back
    /// to the same platform.
    #[test]
    fn platform_normalisation_is_idempotent(
        os in "[a-zA-Z]{1,8}",
        architecture in prop_oneof![
            prop::sample::select(vec!["amd64", "x86_64", "X86-64", "aarch64", "ARM64", "arm", "armhf", "armel", "i386", "386", "ppc64le", "s390x", "riscv64"]).prop_map(String::from),
            "[a-z0-9_]{1,8}",
        ],
        variant in proptest::option::of(prop_oneof![
            prop::sample::select(vec!["v1", "v5", "v6", "v7", "v8", "5", "6", "7", "8", "V8"]).prop_map(String::from),
            "[a-z0-9]{1,4}",
        ]),
    ) {
        let platform = Platform::new(&os, &architecture, variant.as_deref());
        let again = Platform::new(&platform.os, &platform.architecture, platform.variant.as_deref());
        prop_assert_eq!(&again, &platform);
        prop_assert!(platform.matches(&os, &architecture, variant.as_deref()));
        prop_assert!(platform.matches(&platform.os, &platform.architecture, platform.variant.as_deref()));
        let printed = platform.to_string();
        prop_assert_eq!(printed.parse::<Platform>().ok(), Some(platform), "{}", printed);
    }

    /// containerd's aliases select the same index entries.
    #[test]
    fn platform_aliases_match_each_other(os in "[a-z]{1,8}") {
        for (one, other) in [
            (("x86_64", None), ("amd64", None)),
            (("amd64", Some("v1")), ("amd64", None)),
            (("aarch64", None), ("arm64", Some("v8"))),
            (("arm64", Some("8")), ("arm64", None)),
            (("arm", None), ("arm", Some("v7"))),
            (("armhf", None), ("arm", Some("7"))),
            (("armel", None), ("arm", Some("v6"))),
            (("i386", None), ("386", None)),
        ] {
            let platform = Platform::new(&os, one.0, one.1);
            prop_assert!(platform.matches(&os, other.0, other.1), "{:?} vs {:?}", one, other);
        }
        let arm64 = Platform::new(&os, "arm64", None);
        prop_assert!(!arm64.matches(&os, "amd64", None));
        prop_assert!(!Platform::new(&os, "arm", Some("v6")).matches(&os, "arm", Some("v7")));
    }

    /// A normalised entry name stays inside the root: relative, no empty, `.` or `..`
    /// components, no NUL, components of at most 255 bytes, at most 256 deep; normalising it
    /// again changes nothing.
    #[test]
    fn entry_names_normalise_inside_the_root(
        components in proptest::collection::vec(
            prop_oneof![
                Just(b"".to_vec()),
                Just(b".".to_vec()),
                Just(b"..".to_vec()),
                Just(b"...".to_vec()),
                Just(b".wh..wh..opq".to_vec()),
                proptest::collection::vec(any::<u8>().prop_filter("no slash", |b| *b != b'/'), 1..12),
            ],
            0..12,
        ),
        leading_slash in any::<bool>(),
    ) {
        let mut name = if leading_slash { b"/".to_vec() } else { Vec::new() };
        name.extend_from_slice(&components.join(&b'/'));
        let has_dotdot = components.iter().any(|c| c == b"..");
        let has_nul = components.iter().any(|c| c.contains(&0));
        match normalize_entry_name(&name) {
            Ok(normal) => {
                prop_assert!(!has_dotdot && !has_nul);
                prop_assert!(!normal.starts_with(b"/") && !normal.ends_with(b"/"));
                for component in normal.split(|&b| b == b'/') {
                    prop_assert!(normal.is_empty() || !component.is_empty());
                    prop_assert!(component != b"." && component != b"..");
                    prop_assert!(!component.contains(&0) && component.len() <= 255);
                }
                prop_assert!(normal.split(|&b| b == b'/').count() <= 256);
                prop_assert_eq!(normalize_entry_name(&normal), Ok(normal.clone()));
                let kept: Vec<&[u8]> = components
                    .iter()
                    .map(Vec::as_slice)
                    .filter(|c| !c.is_empty() && *c != b".")
                    .collect();
                prop_assert_eq!(normal, kept.join(&b'/'));
            }
            Err(_) => prop_assert!(has_dotdot || has_nul),
        }
    }

    /// Any byte string: either refused, or normalised to a path with no `..` component.
    #[test]
    fn arbitrary_entry_names_never_normalise_to_dotdot(name in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(normal) = normalize_entry_name(&name) {
            prop_assert!(normal.split(|&b| b == b'/').all(|c| c != b".."));
            prop_assert!(!normal.starts_with(b"/"));
        }
    }
}
