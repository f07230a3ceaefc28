//! Credentials from the ecosystem: Docker `config.json`, containers `auth.json`, credential
//! helpers (a fake one in `tests/fixtures-helpers/`), `--authfile`, and acrpull itself as
//! `docker-credential-acrpull` for skopeo. The registries are the real `docker-registry` with
//! htpasswd auth, and with token auth behind the loopback Azure fakes.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use acrpull_testenv::azure::{push_tiny_image, Endpoint, FakeAzure, TokenAuthRegistry};
use acrpull_testenv::registry::{seed, Registry, RegistryOptions};
use base64::Engine as _;

use crate::support::{acrpull, fails, ok, Scratch};

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-pw";
const WRONG: &str = "wrong-pw-Zq";

/// A private registry with `it/private:v1`, and a scratch area.
struct Case {
    registry: Registry,
    scratch: Scratch,
    pulls: std::cell::Cell<u32>,
}

impl Case {
    fn new() -> Self {
        let registry = Registry::start(RegistryOptions::anonymous().htpasswd(USER, PASSWORD))
            .expect("registry starts");
        seed(&registry, "simple", "it/private:v1").expect("seeded");
        Self {
            registry,
            scratch: Scratch::new(),
            pulls: std::cell::Cell::new(0),
        }
    }

    fn home(&self) -> PathBuf {
        self.scratch.home()
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.scratch.dir.path().join(relative)
    }

    /// `{"auths": {key: {"auth": base64(user:password)}}}` written to `path`.
    fn write_auth(&self, path: &Path, key: &str, password: &str) {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
        write(
            path,
            &format!(r#"{{"auths": {{"{key}": {{"auth": "{auth}"}}}}}}"#),
        );
    }

    /// `acrpull pull -v --format oci` of the private image with extra `envs` and `args`.
    fn pull(&self, envs: &[(&str, OsString)], args: &[&str], stdin: Option<&str>) -> Output {
        self.pulls.set(self.pulls.get() + 1);
        let dest = self.scratch.dest(&format!("pull-{}", self.pulls.get()));
        let image = format!("{}/it/private:v1", self.registry.host());
        let mut all = vec!["pull", "-v", "-q", "--format", "oci"];
        all.extend_from_slice(args);
        all.extend_from_slice(&[&image, dest.to_str().unwrap()]);
        run_with(&self.home(), envs, &all, stdin)
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn run_with(home: &Path, envs: &[(&str, OsString)], args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = acrpull(home);
    command.args(args);
    for (name, value) in envs {
        command.env(name, value);
    }
    finish(&mut command, stdin)
}

fn finish(command: &mut Command, stdin: Option<&str>) -> Output {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("command starts");
    let mut input = child.stdin.take().expect("stdin piped");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("stdin written");
    }
    drop(input);
    child.wait_with_output().expect("command finishes")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Succeeds, names `source` in the `-v` log, and never prints a password.
fn pulled_with(output: &Output, source: &str) {
    ok(output);
    let log = stderr(output);
    assert!(
        log.contains(source),
        "expected source `{source}` in:\n{log}"
    );
    assert!(!log.contains(PASSWORD) && !log.contains(WRONG), "{log}");
}

/// Refused by the registry (exit 3), without printing the password that was tried.
fn refused(output: &Output) {
    let log = fails(output, 3);
    assert!(!log.contains(PASSWORD) && !log.contains(WRONG), "{log}");
}

fn os(path: &Path) -> OsString {
    path.as_os_str().to_owned()
}

#[test]
fn docker_config_locations_and_precedence() {
    let case = Case::new();
    let host = case.registry.host();
    let docker_home = case.home().join(".docker/config.json");
    // The key form `http://HOST/v2/` matches the registry, scheme and path ignored.
    case.write_auth(&docker_home, &format!("http://{host}/v2/"), PASSWORD);
    pulled_with(&case.pull(&[], &[], None), ".docker/config.json");

    // DOCKER_CONFIG replaces ~/.docker.
    let docker_config = case.path("docker-config");
    case.write_auth(&docker_config.join("config.json"), &host, PASSWORD);
    case.write_auth(&docker_home, &host, WRONG);
    let envs = [("DOCKER_CONFIG", os(&docker_config))];
    pulled_with(&case.pull(&envs, &[], None), "docker-config/config.json");

    // Wrong credentials in the first source are used, not skipped for a later good one.
    case.write_auth(
        &case.home().join(".config/containers/auth.json"),
        &host,
        PASSWORD,
    );
    refused(&case.pull(&[], &[], None));

    // The command line beats every file.
    let output = case.pull(
        &[],
        &["--username", USER, "--password-stdin"],
        Some(PASSWORD),
    );
    pulled_with(&output, "command line");
}

#[test]
fn containers_auth_json_locations_and_authfile() {
    let case = Case::new();
    let host = case.registry.host();
    let config_auth = case.home().join(".config/containers/auth.json");
    case.write_auth(&config_auth, &host, PASSWORD);
    pulled_with(&case.pull(&[], &[], None), ".config/containers/auth.json");

    // $XDG_RUNTIME_DIR/containers/auth.json comes before ~/.config.
    let runtime = case.path("runtime");
    case.write_auth(&runtime.join("containers/auth.json"), &host, PASSWORD);
    case.write_auth(&config_auth, &host, WRONG);
    let envs = [("XDG_RUNTIME_DIR", os(&runtime))];
    pulled_with(&case.pull(&envs, &[], None), "runtime/containers/auth.json");

    // REGISTRY_AUTH_FILE replaces both.
    let named = case.path("named-auth.json");
    case.write_auth(&named, &format!("https://{host}"), PASSWORD);
    case.write_auth(&runtime.join("containers/auth.json"), &host, WRONG);
    let envs = [
        ("XDG_RUNTIME_DIR", os(&runtime)),
        ("REGISTRY_AUTH_FILE", os(&named)),
    ];
    pulled_with(&case.pull(&envs, &[], None), "named-auth.json");

    // Docker's config.json beats auth.json.
    case.write_auth(&named, &host, WRONG);
    case.write_auth(&case.home().join(".docker/config.json"), &host, PASSWORD);
    pulled_with(&case.pull(&envs, &[], None), ".docker/config.json");

    // --authfile is the only file read: the good docker config is ignored.
    let explicit = case.path("explicit.json");
    case.write_auth(&explicit, &host, WRONG);
    refused(&case.pull(&[], &["--authfile", explicit.to_str().unwrap()], None));
    case.write_auth(&explicit, &host, PASSWORD);
    case.write_auth(&case.home().join(".docker/config.json"), &host, WRONG);
    let output = case.pull(&[], &["--authfile", explicit.to_str().unwrap()], None);
    pulled_with(&output, "explicit.json");
    // A missing --authfile is an error naming it.
    let absent = case.path("absent.json");
    let output = case.pull(&[], &["--authfile", absent.to_str().unwrap()], None);
    let log = fails(&output, 3);
    assert!(log.contains("absent.json"), "{log}");
}

fn helpers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures-helpers")
}

#[test]
fn credential_helpers_from_config_files() {
    let case = Case::new();
    let host = case.registry.host();
    let store = case.path("helper-store");
    std::fs::create_dir_all(&store).unwrap();
    let path = std::env::join_paths([helpers_dir(), "/usr/bin".into(), "/bin".into()]).unwrap();
    let envs = [("PATH", path.clone()), ("FAKE_HELPER_STORE", os(&store))];
    let config = case.home().join(".docker/config.json");
    let stored = store.join(host.replace(':', "_"));

    // credHelpers: the helper gets the host on stdin and its answer is used.
    write(
        &config,
        &format!(r#"{{"auths": {{"{host}": {{}}}}, "credHelpers": {{"{host}": "fake"}}}}"#),
    );
    write(
        &stored,
        &format!(r#"{{"ServerURL": "{host}", "Username": "{USER}", "Secret": "{PASSWORD}"}}"#),
    );
    pulled_with(
        &case.pull(&envs, &[], None),
        "docker-credential-fake (credHelpers",
    );
    let requests = std::fs::read_to_string(store.join("requests.log")).unwrap();
    assert_eq!(requests.trim(), host);

    // The helper's wrong answer is used, not skipped.
    write(
        &stored,
        &format!(r#"{{"ServerURL": "{host}", "Username": "{USER}", "Secret": "{WRONG}"}}"#),
    );
    case.write_auth(
        &case.home().join(".config/containers/auth.json"),
        &host,
        PASSWORD,
    );
    refused(&case.pull(&envs, &[], None));

    // "credentials not found" falls through to the next source.
    std::fs::remove_file(&stored).unwrap();
    pulled_with(&case.pull(&envs, &[], None), ".config/containers/auth.json");

    // credsStore serves every registry.
    std::fs::remove_file(case.home().join(".config/containers/auth.json")).unwrap();
    write(&config, r#"{"credsStore": "fake"}"#);
    write(
        &stored,
        &format!(r#"{{"ServerURL": "{host}", "Username": "{USER}", "Secret": "{PASSWORD}"}}"#),
    );
    pulled_with(
        &case.pull(&envs, &[], None),
        "docker-credential-fake (credsStore",
    );

    // A helper that is not installed is an error naming it and the file.
    write(
        &config,
        &format!(r#"{{"credHelpers": {{"{host}": "missing"}}}}"#),
    );
    let log = fails(&case.pull(&envs, &[], None), 3);
    assert!(log.contains("docker-credential-missing"), "{log}");
    assert!(log.contains(".docker/config.json"), "{log}");
}

#[test]
fn malformed_files_are_errors_naming_the_file() {
    let scratch = Scratch::new();
    let home = scratch.home();
    let config = home.join(".docker/config.json");
    let dest = scratch.dest("never");
    let pull = || {
        run_with(
            &home,
            &[],
            &["pull", "127.0.0.1:9/it/x:v1", dest.to_str().unwrap()],
            None,
        )
    };
    write(&config, r#"{"auths": {"127.0.0.1:9": "#);
    let log = fails(&pull(), 3);
    assert!(log.contains(".docker/config.json"), "{log}");

    write(
        &config,
        r#"{"auths": {"127.0.0.1:9": {"identityToken": "hidden-token"}}}"#,
    );
    let log = fails(&pull(), 3);
    assert!(
        log.contains(".docker/config.json") && log.contains("identityToken"),
        "{log}"
    );
    assert!(!log.contains("hidden-token"), "{log}");

    write(&config, r#"{"auths": {"127.0.0.1:9": {"auth": "%%%"}}}"#);
    let log = fails(&pull(), 3);
    assert!(log.contains("`auth` value for `127.0.0.1:9`"), "{log}");
}

/// A directory holding `docker-credential-acrpull`, a symlink to the built binary.
fn helper_symlink_dir(scratch: &Scratch) -> PathBuf {
    let bin = scratch.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_acrpull"),
        bin.join("docker-credential-acrpull"),
    )
    .unwrap();
    bin
}

#[test]
fn acrpull_as_credential_helper_lets_skopeo_pull_with_managed_identity() {
    // The fakes run on the runtime's worker threads; this thread runs the processes.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (fake, registry) = runtime.block_on(async {
        let fake = FakeAzure::start().await.unwrap();
        let registry = TokenAuthRegistry::start(&fake.registry_auth_config())
            .await
            .unwrap();
        (fake, registry)
    });
    let push_token = fake
        .mint_registry_token("fixture-pusher", &[("app", &["pull", "push"])])
        .unwrap();
    let address = registry.address().to_string();
    let digest = push_tiny_image(&address, "app", "v1", &push_token)
        .unwrap_or_else(|error| panic!("{error:#}\nregistry log:\n{}", registry.log()));
    fake.set_system_identity(Some("vm"));
    fake.grant("vm", "app", &["pull"]);

    let scratch = Scratch::new();
    let home = scratch.home();
    let bin = helper_symlink_dir(&scratch);
    let fake_url = fake.url();
    let azure_env = ("AZURE_POD_IDENTITY_AUTHORITY_HOST", fake_url.as_str());
    // The helper serves only ACR login servers and the registries listed here: the loopback
    // registries stand in for ACR, so they are listed (the token registry, and the plain one
    // below, which then answers "not found" because it has no ACR token exchange).
    let plain = Registry::start(RegistryOptions::anonymous()).expect("registry starts");
    let listed = format!("{address},{}", plain.host());
    let listed_env = ("ACRPULL_AZURE_REGISTRIES", listed.as_str());

    // The protocol by hand, through the symlink (argv[0]) and through the subcommand.
    let helper = |args: &[&str], stdin: &str, via_symlink: bool| {
        let mut command = if via_symlink {
            let mut command = Command::new(bin.join("docker-credential-acrpull"));
            command.env_clear().env("HOME", &home);
            command
        } else {
            let mut command = acrpull(&home);
            command.arg("credential-helper");
            command
        };
        command
            .args(args)
            .env(azure_env.0, azure_env.1)
            .env(listed_env.0, listed_env.1);
        finish(&mut command, Some(stdin))
    };
    let stdout = ok(&helper(&["get"], &format!("{address}\n"), true));
    let answer: serde_json::Value = serde_json::from_str(&stdout).expect("JSON answer");
    assert_eq!(answer["ServerURL"], address.as_str());
    assert_eq!(answer["Username"], "00000000-0000-0000-0000-000000000000");
    assert!(answer["Secret"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(!ok(&helper(&["get"], &format!("http://{address}/v2/"), false)).is_empty());
    assert_eq!(ok(&helper(&["list"], "", false)).trim(), "{}");
    assert_eq!(ok(&helper(&["store"], r#"{"ServerURL":"x"}"#, true)), "");
    assert_eq!(ok(&helper(&["erase"], "x", false)), "");
    let unknown = helper(&["bogus"], "", true);
    assert!(!unknown.status.success());

    // skopeo, configured to ask docker-credential-acrpull for this registry, pulls.
    let docker_config = scratch.dir.path().join("docker-config");
    write(
        &docker_config.join("config.json"),
        &format!(r#"{{"credHelpers": {{"{address}": "acrpull"}}}}"#),
    );
    let path = std::env::join_paths([bin.clone(), "/usr/bin".into(), "/bin".into()]).unwrap();
    let skopeo = |layout: &Path, docker_config: &Path| {
        let mut command = Command::new("skopeo");
        command
            .env_clear()
            .env("PATH", &path)
            .env("HOME", &home)
            .env("DOCKER_CONFIG", docker_config)
            .env(azure_env.0, azure_env.1)
            .env(listed_env.0, listed_env.1)
            .args([
                "--insecure-policy",
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                &format!("docker://{address}/app:v1"),
                &format!("oci:{}:v1", layout.display()),
            ]);
        finish(&mut command, None)
    };
    let exchanges_before = fake.requests(Endpoint::Exchange);
    let layout = scratch.dest("skopeo-layout");
    let output = skopeo(&layout, &docker_config);
    assert!(
        output.status.success(),
        "skopeo failed:\n{}\nregistry log:\n{}",
        stderr(&output),
        registry.log()
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
    assert!(fake.requests(Endpoint::Exchange) > exchanges_before);

    // Without the helper entry skopeo is refused: the helper is what let it in.
    let empty_config = scratch.dir.path().join("empty-config");
    write(&empty_config.join("config.json"), "{}");
    let output = skopeo(&scratch.dest("refused-layout"), &empty_config);
    assert!(
        !output.status.success(),
        "anonymous skopeo should be refused"
    );

    // A registry without the ACR token exchange gets the protocol's "not found", so a
    // `credsStore: acrpull` setup still pulls public images anonymously.
    seed(&plain, "simple", "it/public:v1").expect("seeded");
    let not_found = helper(&["get"], &plain.host(), true);
    assert_eq!(not_found.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&not_found.stdout).trim(),
        "credentials not found in native keychain"
    );
    let store_config = scratch.dir.path().join("store-config");
    write(
        &store_config.join("config.json"),
        r#"{"credsStore": "acrpull"}"#,
    );
    let mut command = Command::new("skopeo");
    command
        .env_clear()
        .env("PATH", &path)
        .env("HOME", &home)
        .env("DOCKER_CONFIG", &store_config)
        .env(azure_env.0, azure_env.1)
        .env(listed_env.0, listed_env.1)
        .args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{}/it/public:v1", plain.host()),
            &format!("oci:{}:v1", scratch.dest("public-layout").display()),
        ]);
    let output = finish(&mut command, None);
    assert!(
        output.status.success(),
        "skopeo failed:\n{}",
        stderr(&output)
    );

    // With no identity the helper fails: exit 1, a one-line message on stdout (what docker
    // shows), the cause chain on stderr.
    fake.set_system_identity(None);
    let failed = helper(&["get"], &address, false);
    assert_eq!(failed.status.code(), Some(1));
    let message = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(stderr(&failed).contains("error:"), "{}", stderr(&failed));
    assert!(stderr(&failed).contains("Caused by"), "{}", stderr(&failed));
    drop(registry);
    drop(fake);
    drop(runtime);
}

#[test]
fn identity_tokens_and_the_null_guid_user_from_files_and_helpers() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (fake, registry) = runtime.block_on(async {
        let fake = FakeAzure::start().await.unwrap();
        let registry = TokenAuthRegistry::start(&fake.registry_auth_config())
            .await
            .unwrap();
        (fake, registry)
    });
    let push_token = fake
        .mint_registry_token("fixture-pusher", &[("app", &["pull", "push"])])
        .unwrap();
    let address = registry.address().to_string();
    push_tiny_image(&address, "app", "v1", &push_token)
        .unwrap_or_else(|error| panic!("{error:#}\nregistry log:\n{}", registry.log()));
    fake.set_system_identity(Some("vm"));
    fake.grant("vm", "app", &["pull"]);

    // An ACR refresh token, as `acrpull credential-helper get` mints it.
    let scratch = Scratch::new();
    let home = scratch.home();
    let mut command = acrpull(&home);
    command
        .args(["credential-helper", "get"])
        .env("AZURE_POD_IDENTITY_AUTHORITY_HOST", fake.url())
        // The loopback registry stands in for ACR: list it (the helper serves no other host).
        .env("ACRPULL_AZURE_REGISTRIES", &address);
    let answer: serde_json::Value =
        serde_json::from_str(&ok(&finish(&mut command, Some(&address)))).unwrap();
    let refresh = answer["Secret"].as_str().unwrap().to_string();

    // From here on acrpull has no Azure environment: only the files speak.
    let mut pulls = 0;
    let mut pull = |envs: &[(&str, OsString)]| {
        pulls += 1;
        let dest = scratch.dest(&format!("pull-{pulls}"));
        run_with(
            &home,
            envs,
            &[
                "pull",
                "-v",
                "-q",
                "--format",
                "oci",
                &format!("{address}/app:v1"),
                dest.to_str().unwrap(),
            ],
            None,
        )
    };
    let config = home.join(".docker/config.json");
    let no_secret = |output: &Output| {
        ok(output);
        assert!(!stderr(output).contains(&refresh), "{}", stderr(output));
    };

    // `identitytoken` is used as an OAuth2 refresh token.
    write(
        &config,
        &format!(r#"{{"auths": {{"{address}": {{"identitytoken": "{refresh}"}}}}}}"#),
    );
    no_secret(&pull(&[]));

    // The null-GUID user with the refresh token as password stays Basic; the token service
    // accepts it (docs/azure-auth.md 3.4).
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("00000000-0000-0000-0000-000000000000:{refresh}"));
    write(
        &config,
        &format!(r#"{{"auths": {{"{address}": {{"auth": "{auth}"}}}}}}"#),
    );
    no_secret(&pull(&[]));

    // A helper answering the `<token>` user hands over an identity token.
    let store = scratch.dir.path().join("helper-store");
    std::fs::create_dir_all(&store).unwrap();
    write(
        &store.join(address.replace(':', "_")),
        &format!(r#"{{"ServerURL": "{address}", "Username": "<token>", "Secret": "{refresh}"}}"#),
    );
    write(
        &config,
        &format!(r#"{{"credHelpers": {{"{address}": "fake"}}}}"#),
    );
    let path = std::env::join_paths([helpers_dir(), "/usr/bin".into(), "/bin".into()]).unwrap();
    let output = pull(&[("PATH", path), ("FAKE_HELPER_STORE", os(&store))]);
    no_secret(&output);
    assert!(
        stderr(&output).contains("identity token"),
        "{}",
        stderr(&output)
    );

    // A refresh token the service does not know is refused, not silently dropped.
    write(
        &config,
        &format!(r#"{{"auths": {{"{address}": {{"identitytoken": "not-a-token"}}}}}}"#),
    );
    fails(&pull(&[]), 3);
    drop(registry);
    drop(fake);
    drop(runtime);
}
