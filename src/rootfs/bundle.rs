//! The OCI runtime `config.json` of a bundle, generated from an image config the way
//! `umoci unpack` does (its runc-spec defaults, the image's process settings, labels as
//! annotations, volumes as tmpfs mounts).
//!
//! A symbolic `User` is resolved against the image's own `/etc/passwd` and `/etc/group`. Those
//! files are attacker-controlled and may be symlinks, so they are opened through the same
//! in-root resolver as layer entries (never by host path), must be regular files (a FIFO
//! would block, a device could have side effects), and are read with a size cap.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use rustix::fs::{self as rfs, Mode, OFlags};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::error::Error;
use super::path::{PathResolution, Resolver};

/// Largest `/etc/passwd` or `/etc/group` read.
const MAX_DATABASE_BYTES: u64 = 4 << 20;
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const CAPABILITIES: [&str; 3] = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

/// The parts of an OCI image configuration (image-spec `config.md`) that a runtime
/// `config.json` is made from. Unknown fields are ignored; the fields read must have their
/// spec types, and `architecture` and `os` (REQUIRED in the spec) must be present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ImageConfig {
    /// When the image was created (RFC 3339).
    #[serde(default)]
    pub created: Option<String>,
    /// Who made the image.
    #[serde(default)]
    pub author: Option<String>,
    /// CPU architecture (`GOARCH` values).
    pub architecture: String,
    /// Operating system (`GOOS` values).
    pub os: String,
    /// How a container of the image runs.
    #[serde(default)]
    pub config: Option<ExecutionConfig>,
}

/// `config` of an image configuration: the defaults for a container's process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecutionConfig {
    /// `user`, `uid`, `user:group`, `uid:gid`...
    #[serde(default)]
    pub user: Option<String>,
    /// The keys of the `ExposedPorts` set (`80/tcp`).
    #[serde(default, deserialize_with = "set_keys")]
    pub exposed_ports: Vec<String>,
    /// `NAME=value` entries.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// The command's first arguments.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Arguments after the entrypoint (the command, without one).
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// The keys of the `Volumes` set (paths).
    #[serde(default, deserialize_with = "set_keys")]
    pub volumes: Vec<String>,
    /// Working directory of the process.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Labels (become annotations).
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Signal that stops the container.
    #[serde(default)]
    pub stop_signal: Option<String>,
}

/// A Go `map[string]struct{}` (`{"80/tcp": {}}`) as its sorted keys; `null` is empty.
fn set_keys<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let set = Option::<BTreeMap<String, serde::de::IgnoredAny>>::deserialize(deserializer)?;
    Ok(set.unwrap_or_default().into_keys().collect())
}

/// OCI runtime-spec config.json (for `--bundle`) generated from `image_config`, with the user
/// resolved inside `rootfs`. `rootless` selects `runc spec --rootless`-style namespaces, ID
/// mappings and mounts.
pub fn runtime_config(
    image_config: &ImageConfig,
    rootfs: &Path,
    rootless: bool,
) -> Result<Value, Error> {
    let config = image_config.config.clone().unwrap_or_default();
    let user_spec = config.user.clone().unwrap_or_default();
    let databases = Databases::read(rootfs)?;
    let user = resolve_user(&user_spec, &databases)?;
    let mut args: Vec<String> = config.entrypoint.clone().unwrap_or_default();
    args.extend(config.cmd.clone().unwrap_or_default());
    if args.is_empty() {
        // The runtime spec needs at least one argument; umoci (runc's default) runs `sh`.
        args.push("sh".to_string());
    }
    let cwd = match config.working_dir.as_deref() {
        Some(dir) if !dir.is_empty() => in_root("WorkingDir", dir)?,
        _ => "/".to_string(),
    };
    let mut process = json!({
        "terminal": false,
        "user": { "uid": user.uid, "gid": user.gid },
        "args": args,
        "env": environment(config.env.as_deref().unwrap_or_default(), user.home.as_deref()),
        "cwd": cwd,
        "capabilities": capabilities(),
        "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
        "noNewPrivileges": true,
    });
    if !user.additional_gids.is_empty() {
        process["user"]["additionalGids"] = json!(user.additional_gids);
    }
    let mut mounts = default_mounts(rootless);
    let mut volumes: Vec<String> = config
        .volumes
        .iter()
        .map(|volume| in_root("volume", volume))
        .collect::<Result<_, _>>()?;
    volumes.sort();
    volumes.dedup();
    let insert_at = mounts.len() - if rootless { 2 } else { 0 };
    for (offset, volume) in volumes.iter().enumerate() {
        let mount = json!({ "destination": volume, "type": "tmpfs", "source": "none", "options": ["rw", "nosuid", "nodev", "noexec", "relatime"] });
        mounts.insert(insert_at + offset, mount);
    }
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": { "path": "rootfs" },
        "hostname": "acrpull",
        "mounts": mounts,
        "annotations": annotations(image_config),
        "linux": linux_section(rootless),
    }))
}

/// A path from the image config (`WorkingDir`, a volume) as a clean absolute path inside the
/// container: `.` and empty components dropped, `..` resolved lexically and never above `/`,
/// relative paths taken from `/`. A runtime that joins it to the rootfs naively still stays
/// inside. A NUL byte is refused.
fn in_root(what: &str, path: &str) -> Result<String, Error> {
    if path.contains('\0') {
        return Err(bad(format!("{what} {path:?} contains a NUL byte")));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    let clean = format!("/{}", parts.join("/"));
    if clean != path {
        tracing::warn!(what, given = path, used = %clean, "image config path rewritten to stay inside the container");
    }
    Ok(clean)
}

/// The image environment over runc's defaults, plus `HOME` from the passwd entry (when the
/// image sets none, as Docker does; umoci would replace the image's).
fn environment(image_env: &[String], home: Option<&str>) -> Vec<String> {
    let mut env: Vec<String> = vec![DEFAULT_PATH.to_string(), "TERM=xterm".to_string()];
    for variable in image_env {
        let key = variable.split('=').next().unwrap_or_default();
        match env
            .iter_mut()
            .find(|existing| existing.split('=').next() == Some(key))
        {
            Some(existing) => existing.clone_from(variable),
            None => env.push(variable.clone()),
        }
    }
    if let Some(home) = home.filter(|_| !env.iter().any(|v| v.starts_with("HOME="))) {
        env.push(format!("HOME={home}"));
    }
    env
}

fn capabilities() -> Value {
    let set = json!(CAPABILITIES);
    json!({ "bounding": set, "effective": set, "inheritable": set, "permitted": set, "ambient": set })
}

fn default_mounts(rootless: bool) -> Vec<Value> {
    let devpts_options = if rootless {
        json!([
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620"
        ])
    } else {
        json!([
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5"
        ])
    };
    let mut mounts = vec![
        json!({ "destination": "/proc", "type": "proc", "source": "proc" }),
        json!({ "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] }),
        json!({ "destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": devpts_options }),
        json!({ "destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] }),
        json!({ "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"] }),
    ];
    if rootless {
        mounts.push(json!({ "destination": "/sys", "type": "bind", "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev", "ro"] }));
        mounts.push(json!({ "destination": "/etc/resolv.conf", "type": "bind", "source": "/etc/resolv.conf", "options": ["rbind", "ro"] }));
    } else {
        mounts.push(json!({ "destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"] }));
        mounts.push(json!({ "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }));
    }
    mounts
}

fn linux_section(rootless: bool) -> Value {
    let masked = [
        "/proc/kcore",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/sys/firmware",
        "/proc/scsi",
    ];
    let readonly = [
        "/proc/asound",
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ];
    let mut linux = json!({ "maskedPaths": masked, "readonlyPaths": readonly });
    if rootless {
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        linux["uidMappings"] = json!([{ "containerID": 0, "hostID": uid, "size": 1 }]);
        linux["gidMappings"] = json!([{ "containerID": 0, "hostID": gid, "size": 1 }]);
        linux["namespaces"] = json!([{ "type": "pid" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" }, { "type": "user" }]);
    } else {
        linux["resources"] = json!({ "devices": [{ "allow": false, "access": "rwm" }] });
        linux["namespaces"] = json!([{ "type": "pid" }, { "type": "network" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" }]);
    }
    linux
}

fn annotations(image_config: &ImageConfig) -> Value {
    let mut annotations: BTreeMap<String, String> = BTreeMap::new();
    let config = image_config.config.clone().unwrap_or_default();
    annotations.extend(config.labels.unwrap_or_default());
    let prefix = "org.opencontainers.image.";
    annotations.insert(
        format!("{prefix}architecture"),
        image_config.architecture.clone(),
    );
    annotations.insert(format!("{prefix}os"), image_config.os.clone());
    annotations.insert(
        format!("{prefix}author"),
        image_config.author.clone().unwrap_or_default(),
    );
    if let Some(created) = &image_config.created {
        annotations.insert(format!("{prefix}created"), created.clone());
    }
    // Written even when empty, as umoci writes them (the ports are sorted set keys).
    annotations.insert(
        format!("{prefix}exposedPorts"),
        config.exposed_ports.join(","),
    );
    annotations.insert(
        format!("{prefix}stopSignal"),
        config.stop_signal.unwrap_or_default(),
    );
    json!(annotations)
}

/// The image's `/etc/passwd` and `/etc/group` (empty when absent).
#[derive(Debug, Default)]
pub(crate) struct Databases {
    pub(crate) passwd: String,
    pub(crate) group: String,
}

impl Databases {
    fn read(rootfs: &Path) -> Result<Databases, Error> {
        let open_error = |source: std::io::Error| Error::OpenRoot {
            path: rootfs.to_path_buf(),
            source,
        };
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let root =
            rfs::open(rootfs, flags, Mode::empty()).map_err(|errno| open_error(errno.into()))?;
        let mut resolver = Resolver::new(root, PathResolution::Auto, false);
        Ok(Databases {
            passwd: read_database(&mut resolver, b"etc/passwd")?,
            group: read_database(&mut resolver, b"etc/group")?,
        })
    }
}

fn read_database(resolver: &mut Resolver, path: &[u8]) -> Result<String, Error> {
    let Ok(file) = resolver.open_file(path) else {
        return Ok(String::new());
    };
    let mut bytes = Vec::new();
    file.take(MAX_DATABASE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| Error::io("read", path, error))?;
    if bytes.len() as u64 > MAX_DATABASE_BYTES {
        return Err(Error::RuntimeConfig {
            reason: format!(
                "/{} is larger than {MAX_DATABASE_BYTES} bytes",
                String::from_utf8_lossy(path)
            ),
        });
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A resolved `process.user`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ResolvedUser {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) additional_gids: Vec<u32>,
    /// From the passwd entry; `None` when the image's `/etc/passwd` has none for the user.
    pub(crate) home: Option<String>,
}

/// Resolve `user[:group]` (names or numbers) like runc's `GetExecUser`: a name must exist in
/// the image's databases; a number need not; no user means uid 0, looked up like any other
/// (so root gets its home, `/root`); supplementary groups come from `/etc/group` membership
/// when no group is given.
pub(crate) fn resolve_user(spec: &str, databases: &Databases) -> Result<ResolvedUser, Error> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let passwd: Vec<Vec<&str>> = records(&databases.passwd, 7);
    let entry = passwd.iter().find(|fields| match user_part.parse::<u32>() {
        Ok(uid) => fields[2].parse::<u32>().ok() == Some(uid),
        Err(_) => fields[0] == user_part,
    });
    let mut user = match (entry, user_part.parse::<u32>()) {
        (Some(fields), _) => ResolvedUser {
            uid: fields[2]
                .parse()
                .map_err(|_| bad(format!("invalid uid for user {}", fields[0])))?,
            gid: fields[3]
                .parse()
                .map_err(|_| bad(format!("invalid gid for user {}", fields[0])))?,
            additional_gids: Vec::new(),
            home: Some(fields[5].to_string()),
        },
        (None, Ok(uid)) => ResolvedUser {
            uid,
            gid: 0,
            additional_gids: Vec::new(),
            home: None,
        },
        (None, Err(_)) => {
            return Err(bad(format!(
                "no user `{user_part}` in the image's /etc/passwd"
            )))
        }
    };
    let name = entry.map(|fields| fields[0]).unwrap_or_default();
    apply_group(&mut user, name, group_part, databases)?;
    Ok(user)
}

/// Set the primary group from `group` (name or number), or, when none is given, the
/// supplementary groups that list `name` as a member.
fn apply_group(
    user: &mut ResolvedUser,
    name: &str,
    group: Option<&str>,
    databases: &Databases,
) -> Result<(), Error> {
    let groups: Vec<Vec<&str>> = records(&databases.group, 4);
    let Some(group) = group else {
        user.additional_gids = groups
            .iter()
            .filter(|fields| !name.is_empty() && fields[3].split(',').any(|member| member == name))
            .filter_map(|fields| fields[2].parse().ok())
            .collect();
        return Ok(());
    };
    let found = groups.iter().find(|fields| match group.parse::<u32>() {
        Ok(gid) => fields[2].parse::<u32>().ok() == Some(gid),
        Err(_) => fields[0] == group,
    });
    user.gid = match (found, group.parse::<u32>()) {
        (Some(fields), _) => fields[2]
            .parse()
            .map_err(|_| bad(format!("invalid gid for group {group}")))?,
        (None, Ok(gid)) => gid,
        (None, Err(_)) => return Err(bad(format!("no group `{group}` in the image's /etc/group"))),
    };
    Ok(())
}

fn bad(reason: String) -> Error {
    Error::RuntimeConfig { reason }
}

/// Colon-separated records with at least `fields` fields (comments and short lines skipped).
fn records(text: &str, fields: usize) -> Vec<Vec<&str>> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| line.split(':').collect::<Vec<_>>())
        .filter(|record| record.len() >= fields)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn databases() -> Databases {
        Databases {
            passwd: "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"
                .to_string(),
            group: "root:x:0:\nstaff:x:50:user\nuser:x:1000:\n".to_string(),
        }
    }

    #[test]
    fn resolves_names_numbers_and_groups() {
        let db = databases();
        let user = resolve_user("user:staff", &db).unwrap();
        assert_eq!(
            (user.uid, user.gid, user.home.as_deref()),
            (1000, 50, Some("/home/user"))
        );
        let user = resolve_user("user", &db).unwrap();
        assert_eq!(
            (user.uid, user.gid, user.additional_gids),
            (1000, 1000, vec![50])
        );
        let user = resolve_user("4242:7", &db).unwrap();
        assert_eq!((user.uid, user.gid, user.home), (4242, 7, None));
        assert!(resolve_user("nobody", &db).is_err());
        assert!(resolve_user("user:nogroup", &db).is_err());
    }

    /// No `User` is uid 0 looked up in the image's passwd (runc, umoci, Docker): root's home
    /// and the groups that list root, the primary one included, as umoci writes them.
    #[test]
    fn no_user_is_root_with_its_home_and_groups() {
        let db = Databases {
            passwd: "root:x:0:0:root:/root:/bin/sh\n".to_string(),
            group: "root:x:0:root\nbin:x:1:root,bin\nwheel:x:10:root\nstaff:x:50:\n".to_string(),
        };
        let user = resolve_user("", &db).unwrap();
        assert_eq!(
            (
                user.uid,
                user.gid,
                user.home.as_deref(),
                user.additional_gids
            ),
            (0, 0, Some("/root"), vec![0, 1, 10])
        );
        // Without a passwd entry there is no home to give (runc picks `/` when it runs).
        let user = resolve_user("", &Databases::default()).unwrap();
        assert_eq!((user.uid, user.gid, user.home), (0, 0, None));
    }

    #[test]
    fn environment_overrides_defaults_and_adds_home() {
        let env = environment(
            &["PATH=/bin".to_string(), "A=1".to_string()],
            Some("/home/user"),
        );
        assert_eq!(
            env,
            vec!["PATH=/bin", "TERM=xterm", "A=1", "HOME=/home/user"]
        );
        // The image's own HOME wins, as in Docker.
        let env = environment(&["HOME=/srv".to_string()], Some("/root"));
        assert_eq!(env.last().map(String::as_str), Some("HOME=/srv"));
        assert!(!environment(&[], None)
            .iter()
            .any(|v| v.starts_with("HOME=")));
    }

    /// Issue 15 item 10: `..` in `WorkingDir` or a volume never leaves the container's root.
    #[test]
    fn config_paths_stay_inside_the_root() {
        assert_eq!(in_root("volume", "/../../etc").unwrap(), "/etc");
        assert_eq!(in_root("volume", "rel/./x/").unwrap(), "/rel/x");
        assert_eq!(in_root("WorkingDir", "../../w/..//app").unwrap(), "/app");
        assert_eq!(in_root("WorkingDir", "/").unwrap(), "/");
        assert!(in_root("volume", "/a\0b").is_err());
    }

    #[test]
    fn image_config_reads_the_spec_shapes_and_refuses_wrong_types() {
        let config: ImageConfig = serde_json::from_value(json!({
            "architecture": "riscv64", "os": "linux", "created": "2024-01-01T00:00:00Z",
            "rootfs": { "type": "layers", "diff_ids": [] },
            "config": {
                "ExposedPorts": { "443/tcp": {}, "80/tcp": {} }, "Volumes": null,
                "Entrypoint": ["/bin/app"], "Labels": { "a": "b" }, "Unknown": 1,
            },
        }))
        .unwrap();
        assert_eq!(config.architecture, "riscv64");
        let execution = config.config.unwrap();
        assert_eq!(execution.exposed_ports, ["443/tcp", "80/tcp"]);
        assert!(execution.volumes.is_empty());
        assert_eq!(execution.entrypoint.unwrap(), ["/bin/app"]);
        // The spec's REQUIRED fields, and the types of the fields read, are checked.
        let without_os = json!({ "architecture": "amd64" });
        assert!(serde_json::from_value::<ImageConfig>(without_os).is_err());
        let cmd_string =
            json!({ "architecture": "amd64", "os": "linux", "config": { "Cmd": "sh" } });
        assert!(serde_json::from_value::<ImageConfig>(cmd_string).is_err());
    }
}
