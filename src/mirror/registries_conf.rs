//! containers `registries.conf` (v2): where the files are, how drop-ins merge, how a
//! reference finds its `[[registry]]`, and which entries are refused, following
//! containers/image `pkg/sysregistriesv2`.
//!
//! Files: `--registries-conf` or `CONTAINERS_REGISTRIES_CONF` alone; otherwise
//! `$HOME/.config/containers/registries.conf` with its `registries.conf.d` when it exists (it
//! replaces the system file), else `/etc/containers/registries.conf` with
//! `/etc/containers/registries.conf.d` and `$HOME/.config/containers/registries.conf.d`.
//! Drop-ins (`*.conf`, lexical order) replace whole `[[registry]]` entries of the same prefix.
//! Within one file, entries for one location that disagree on `insecure` or `blocked` are an
//! error; of two entries with one prefix the first counts. Prefixes match at `/` boundaries,
//! `*.example.com` matches any subdomain, the longest prefix wins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    registry: Vec<RawEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawEntry {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror_by_digest_only: bool,
    pull_from_mirror: Option<String>,
    #[serde(default)]
    mirror: Vec<RawMirror>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawMirror {
    #[serde(default)]
    location: String,
    #[serde(default)]
    insecure: bool,
    pull_from_mirror: Option<String>,
}

/// When a mirror is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorUse {
    /// For every pull (`all`, the default).
    All,
    /// Only for content named by digest (`digest-only`, or the registry's
    /// `mirror-by-digest-only`).
    DigestOnly,
    /// Only for pulls by tag (`tag-only`).
    TagOnly,
}

/// One `[[registry.mirror]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// `host[:port][/path]`.
    pub location: String,
    /// Plain HTTP or unverified TLS allowed.
    pub insecure: bool,
    /// When it is used.
    pub usage: MirrorUse,
}

/// One validated `[[registry]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// What references it applies to (`location` when not given; `*.example.com` wildcards).
    pub prefix: String,
    /// Where the content is (empty only for wildcard prefixes: the reference as written).
    pub location: String,
    /// Plain HTTP or unverified TLS allowed.
    pub insecure: bool,
    /// Pulls refused.
    pub blocked: bool,
    /// Mirrors, in order.
    pub mirrors: Vec<Mirror>,
}

/// Where the registries.conf files are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfFiles {
    /// The main file, and whether it must exist (it must when named explicitly).
    pub main: Option<(PathBuf, bool)>,
    /// Drop-in directories, in order (each read in lexical order; missing ones are skipped).
    pub drop_in_dirs: Vec<PathBuf>,
}

impl ConfFiles {
    /// The files as containers tools choose them: `flag` (`--registries-conf`), else `env`
    /// (`CONTAINERS_REGISTRIES_CONF`), each alone; else the user's file in `home` with its
    /// drop-ins when it exists, else `system/registries.conf` (`system` is
    /// `/etc/containers`) with the system and user drop-ins.
    pub fn locate(
        flag: Option<&Path>,
        env: Option<PathBuf>,
        home: Option<&Path>,
        system: &Path,
    ) -> Self {
        if let Some(path) = flag.map(Path::to_path_buf).or(env) {
            return Self {
                main: Some((path, true)),
                drop_in_dirs: Vec::new(),
            };
        }
        let user_dir = home.map(|home| home.join(".config/containers"));
        if let Some(user_dir) = &user_dir {
            let user_file = user_dir.join("registries.conf");
            if user_file.exists() {
                return Self {
                    main: Some((user_file, false)),
                    drop_in_dirs: vec![user_dir.join("registries.conf.d")],
                };
            }
        }
        let mut drop_in_dirs = vec![system.join("registries.conf.d")];
        drop_in_dirs.extend(user_dir.map(|dir| dir.join("registries.conf.d")));
        Self {
            main: Some((system.join("registries.conf"), false)),
            drop_in_dirs,
        }
    }

    /// Every file to read, in order: the main file (when present) then the drop-ins.
    fn paths(&self) -> Result<Vec<(PathBuf, bool)>, ConfigError> {
        let mut paths = Vec::new();
        if let Some((path, required)) = &self.main {
            if *required || path.exists() {
                paths.push((path.clone(), *required));
            }
        }
        for dir in &self.drop_in_dirs {
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(ConfigError::Read {
                        path: dir.clone(),
                        source,
                    })
                }
            };
            let mut files = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|source| ConfigError::Read {
                    path: dir.clone(),
                    source,
                })?;
                let path = entry.path();
                let is_conf = path.extension().is_some_and(|ext| ext == "conf");
                if is_conf && !path.is_dir() {
                    files.push(path);
                }
            }
            files.sort();
            paths.extend(files.into_iter().map(|path| (path, false)));
        }
        Ok(paths)
    }

    /// Read, validate and merge every file.
    pub fn load(&self) -> Result<Vec<Registry>, ConfigError> {
        let mut merged: BTreeMap<String, Registry> = BTreeMap::new();
        for (path, required) in self.paths()? {
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                // A drop-in removed between listing and reading, as containers/image allows.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => continue,
                Err(source) => return Err(ConfigError::Read { path, source }),
            };
            let registries = parse(&text).map_err(|message| ConfigError::Parse {
                path: path.clone(),
                message,
            })?;
            tracing::debug!(path = %path.display(), entries = registries.len(), "registries.conf");
            for registry in registries {
                merged.insert(registry.prefix.clone(), registry);
            }
        }
        Ok(merged.into_values().collect())
    }
}

/// Parse and validate one file's `[[registry]]` entries (unknown keys are ignored, as
/// containers tools ignore them).
pub fn parse(text: &str) -> Result<Vec<Registry>, String> {
    let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut registries: Vec<Registry> = Vec::new();
    for raw in file.registry {
        let registry = validate(raw)?;
        // Entries for one location must agree on its security settings.
        let key = |r: &Registry| {
            if r.location.is_empty() {
                r.prefix.clone()
            } else {
                r.location.clone()
            }
        };
        for other in registries.iter().filter(|o| key(o) == key(&registry)) {
            for (setting, differs) in [
                ("insecure", other.insecure != registry.insecure),
                ("blocked", other.blocked != registry.blocked),
            ] {
                if differs {
                    return Err(format!(
                        "registry `{}` is defined multiple times with conflicting `{setting}` settings",
                        key(&registry)
                    ));
                }
            }
        }
        if registries.iter().any(|o| o.prefix == registry.prefix) {
            tracing::warn!(prefix = %registry.prefix, "registries.conf defines this prefix twice; the first entry counts");
            continue;
        }
        registries.push(registry);
    }
    Ok(registries)
}

fn validate(raw: RawEntry) -> Result<Registry, String> {
    let location = location(&raw.location)?;
    let prefix = if raw.prefix.is_empty() {
        if location.is_empty() {
            return Err("a [[registry]] sets neither `location` nor `prefix`".into());
        }
        location.clone()
    } else {
        let prefix = self::location(&raw.prefix)?;
        if !prefix.starts_with("*.") && location.is_empty() {
            return Err(format!(
                "[[registry]] `{prefix}` has no `location` (only `*.example.com` prefixes may leave it out)"
            ));
        }
        prefix
    };
    if prefix.starts_with("*.") && prefix.contains(['/', '@', ':']) {
        return Err(format!(
            "wildcard prefix `{prefix}` must have the form `*.example.com` (no port, no path)"
        ));
    }
    if raw.pull_from_mirror.is_some() {
        return Err(format!(
            "`pull-from-mirror` belongs in a [[registry.mirror]], not in [[registry]] `{prefix}`"
        ));
    }
    let mut mirrors = Vec::new();
    for mirror in raw.mirror {
        let mirror_location = self::location(&mirror.location)?;
        if mirror_location.is_empty() {
            return Err(format!("a mirror of `{prefix}` has no `location`"));
        }
        if raw.mirror_by_digest_only && mirror.pull_from_mirror.is_some() {
            return Err(format!(
                "`{prefix}` sets `mirror-by-digest-only` and its mirror `{mirror_location}` sets `pull-from-mirror`: set one"
            ));
        }
        let usage = match mirror.pull_from_mirror.as_deref() {
            None | Some("") | Some("all") if raw.mirror_by_digest_only => MirrorUse::DigestOnly,
            None | Some("") | Some("all") => MirrorUse::All,
            Some("digest-only") => MirrorUse::DigestOnly,
            Some("tag-only") => MirrorUse::TagOnly,
            Some(other) => {
                return Err(format!(
                    "`pull-from-mirror = \"{other}\"` of mirror `{mirror_location}`: use all, digest-only or tag-only"
                ))
            }
        };
        mirrors.push(Mirror {
            location: mirror_location,
            insecure: mirror.insecure,
            usage,
        });
    }
    Ok(Registry {
        prefix,
        location,
        insecure: raw.insecure,
        blocked: raw.blocked,
        mirrors,
    })
}

/// A location or prefix: trailing `/` dropped; a URL scheme is refused (containers tools
/// refuse it too: the scheme is not how TLS is chosen here).
fn location(input: &str) -> Result<String, String> {
    let trimmed = input.trim_end_matches('/');
    if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
        return Err(format!(
            "`{input}`: URI schemes are not supported in registries.conf (use `insecure = true` for plain HTTP)"
        ));
    }
    Ok(trimmed.to_string())
}

/// How much of `name` (`registry/repository`) `prefix` matches, or `None`.
pub fn matching_len(name: &str, prefix: &str) -> Option<usize> {
    if let Some(domain) = prefix.strip_prefix('*') {
        // `*.example.com`: `.example.com` found in the registry part, ending it.
        let index = name.find(domain)?;
        if name[..index].contains('/') {
            return None;
        }
        let end = index + domain.len();
        return match name.as_bytes().get(end) {
            None | Some(b':' | b'/' | b'@') => Some(end),
            Some(_) => None,
        };
    }
    match name.strip_prefix(prefix)?.as_bytes().first() {
        None | Some(b'/') => Some(prefix.len()),
        Some(_) => None,
    }
}

/// The entry for `name` (`registry/repository`): the longest matching prefix, and how much of
/// `name` it matched.
pub fn find<'a>(registries: &'a [Registry], name: &str) -> Option<(&'a Registry, usize)> {
    registries
        .iter()
        .filter_map(|registry| Some((registry, matching_len(name, &registry.prefix)?)))
        .max_by_key(|(registry, _)| registry.prefix.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Cases of containers/image `TestRefMatchingPrefix` and `TestRefMatchingSubdomainPrefix`
    /// (pkg/sysregistriesv2), on names.
    #[test]
    fn prefixes_match_at_boundaries_and_wildcards_match_subdomains() {
        for (name, prefix, expected) in [
            ("docker.io/library/busybox", "docker.io", Some(9)),
            ("docker.io/library/busybox", "docker.io/library", Some(17)),
            (
                "docker.io/library/busybox",
                "docker.io/library/busybox",
                Some(25),
            ),
            ("docker.io/library/busybox", "docker.io/lib", None),
            ("docker.io/library/busybox", "docker.i", None),
            ("docker.io", "docker.io/library", None),
            ("sub.example.com/foo", "*.example.com", Some(15)),
            ("a.b.example.com/foo", "*.example.com", Some(15)),
            ("sub.example.com:5000/foo", "*.example.com", Some(15)),
            ("example.com/foo", "*.example.com", None),
            ("sub.example.community/foo", "*.example.com", None),
            ("other.io/sub.example.com/foo", "*.example.com", None),
        ] {
            assert_eq!(matching_len(name, prefix), expected, "{name} / {prefix}");
        }
    }

    #[test]
    fn conflicting_entries_and_bad_settings_are_refused() {
        for (text, expected) in [
            (
                "[[registry]]\nlocation = \"r.example\"\ninsecure = true\n[[registry]]\nprefix = \"r.example/team\"\nlocation = \"r.example\"\n",
                "conflicting `insecure`",
            ),
            (
                "[[registry]]\nlocation = \"r.example\"\n[[registry]]\nprefix = \"x.example\"\nlocation = \"r.example\"\nblocked = true\n",
                "conflicting `blocked`",
            ),
            ("[[registry]]\ninsecure = true\n", "neither `location` nor `prefix`"),
            ("[[registry]]\nprefix = \"r.example\"\n", "has no `location`"),
            ("[[registry]]\nlocation = \"https://r.example\"\n", "URI schemes"),
            ("[[registry]]\nprefix = \"*.example.com/x\"\n", "wildcard prefix"),
            ("[[registry]]\nprefix = \"*.example.com:5000\"\n", "wildcard prefix"),
            (
                "[[registry]]\nlocation = \"r.example\"\npull-from-mirror = \"all\"\n",
                "belongs in a [[registry.mirror]]",
            ),
            (
                "[[registry]]\nlocation = \"r.example\"\n[[registry.mirror]]\nlocation = \"m\"\npull-from-mirror = \"sometimes\"\n",
                "use all, digest-only or tag-only",
            ),
            (
                "[[registry]]\nlocation = \"r.example\"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = \"m\"\npull-from-mirror = \"all\"\n",
                "set one",
            ),
            ("[[registry]]\nlocation = \"r.example\"\n[[registry.mirror]]\ninsecure = true\n", "has no `location`"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
        // Same prefix twice without a conflict: the first counts.
        let registries = parse(
            "[[registry]]\nlocation = \"r.example\"\n[[registry.mirror]]\nlocation = \"first\"\n[[registry]]\nlocation = \"r.example\"\n[[registry.mirror]]\nlocation = \"second\"\n",
        )
        .unwrap();
        assert_eq!(registries.len(), 1);
        assert_eq!(registries[0].mirrors[0].location, "first");
        // mirror-by-digest-only makes every mirror digest-only.
        let registries = parse(
            "[[registry]]\nlocation = \"r.example\"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = \"m\"\n",
        )
        .unwrap();
        assert_eq!(registries[0].mirrors[0].usage, MirrorUse::DigestOnly);
    }

    #[test]
    fn the_user_file_replaces_the_system_file_and_drop_ins_merge_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let system = dir.path().join("etc");
        write(
            &system.join("registries.conf"),
            "[[registry]]\nlocation = \"a.example\"\n[[registry.mirror]]\nlocation = \"system-mirror\"\n",
        );
        write(
            &system.join("registries.conf.d/20-b.conf"),
            "[[registry]]\nlocation = \"b.example\"\nblocked = true\n",
        );
        write(
            &system.join("registries.conf.d/10-a.conf"),
            "[[registry]]\nlocation = \"a.example\"\n[[registry.mirror]]\nlocation = \"drop-in-mirror\"\n",
        );
        write(&system.join("registries.conf.d/ignored.txt"), "not toml [");
        write(
            &home.join(".config/containers/registries.conf.d/30-a.conf"),
            "[[registry]]\nlocation = \"a.example\"\n[[registry.mirror]]\nlocation = \"user-drop-in\"\n",
        );
        let files = ConfFiles::locate(None, None, Some(&home), &system);
        assert_eq!(
            files.drop_in_dirs,
            [
                system.join("registries.conf.d"),
                home.join(".config/containers/registries.conf.d")
            ]
        );
        let registries = files.load().unwrap();
        let a = find(&registries, "a.example/x").unwrap().0;
        // 10-a.conf replaced the system entry, then the user drop-in replaced that.
        assert_eq!(a.mirrors[0].location, "user-drop-in");
        assert!(find(&registries, "b.example/x").unwrap().0.blocked);

        // A user registries.conf replaces the system file and the system drop-ins.
        write(
            &home.join(".config/containers/registries.conf"),
            "[[registry]]\nlocation = \"c.example\"\n",
        );
        let files = ConfFiles::locate(None, None, Some(&home), &system);
        let registries = files.load().unwrap();
        assert!(find(&registries, "b.example/x").is_none());
        assert_eq!(
            find(&registries, "a.example/x").unwrap().0.mirrors[0].location,
            "user-drop-in"
        );
        assert!(find(&registries, "c.example/x").is_some());

        // An explicit file is read alone, and must exist.
        let explicit = dir.path().join("explicit.conf");
        let files = ConfFiles::locate(Some(&explicit), None, Some(&home), &system);
        assert!(matches!(files.load(), Err(ConfigError::Read { .. })));
        write(&explicit, "");
        assert!(files.load().unwrap().is_empty());

        // A bad drop-in names itself.
        write(
            &system.join("registries.conf.d/40-bad.conf"),
            "[[registry]]\nlocation = \"https://x\"\n",
        );
        std::fs::remove_file(home.join(".config/containers/registries.conf")).unwrap();
        let error = ConfFiles::locate(None, None, Some(&home), &system)
            .load()
            .unwrap_err()
            .to_string();
        assert!(error.contains("40-bad.conf"), "{error}");
    }
}
