//! Client certificates the containers way (`certs.d/<host:port>/`, `--cert-dir`) and the
//! containerd way (`hosts.toml` `client`, `ca`), against a real TLS `docker-registry` that
//! requires a client certificate (`http.tls.clientcas`), with certificates made in the test.

use std::path::{Path, PathBuf};

use acrpull_testenv::registry::{seed_with, Registry, RegistryOptions};

use crate::support::{fails, ok, run, Scratch};

/// A `certs.d`-style directory for `registry`: its server certificate as `ca.crt`, the client
/// certificate as `client.cert` + `client.key`.
fn certs_dir(registry: &Registry, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(registry.ca_cert().unwrap(), dir.join("ca.crt")).unwrap();
    let (cert, key) = registry.client_certificate().unwrap();
    std::fs::copy(cert, dir.join("client.cert")).unwrap();
    std::fs::copy(key, dir.join("client.key")).unwrap();
    dir.to_path_buf()
}

fn pull(scratch: &Scratch, args: &[&str], dest: &str) -> std::process::Output {
    let dest = scratch.dest(dest);
    let mut all = vec!["pull", "--format", "oci", "-q", "--retries", "0"];
    all.extend_from_slice(args);
    all.push(dest.to_str().unwrap());
    run(&scratch.home(), &all, None)
}

#[test]
fn client_certificates_from_cert_dirs_and_hosts_toml() {
    let registry = Registry::start(RegistryOptions::anonymous().require_client_certs())
        .expect("mutual-TLS registry");
    let scratch = Scratch::new();
    // skopeo reads the same layout (`--dest-cert-dir`): the registry gets its image that way.
    let seed_certs = certs_dir(&registry, &scratch.dir.path().join("seed-certs"));
    seed_with(
        &registry,
        "simple",
        "team/app:v1",
        &["--dest-cert-dir", seed_certs.to_str().unwrap()],
    )
    .expect("seeded with a client certificate");
    let image = format!("{}/team/app:v1", registry.host());
    let ca = registry.ca_cert().unwrap();

    // Trusted server, no client certificate: the registry refuses the handshake.
    let stderr = fails(
        &pull(
            &scratch,
            &["--ca-file", ca.to_str().unwrap(), &image],
            "none",
        ),
        5,
    );
    assert!(
        stderr.to_lowercase().contains("tls") && stderr.contains("--cert-dir"),
        "{stderr}"
    );

    // --cert-dir, as skopeo's.
    let explicit = certs_dir(&registry, &scratch.dir.path().join("explicit"));
    ok(&pull(
        &scratch,
        &["--cert-dir", explicit.to_str().unwrap(), &image],
        "cert-dir",
    ));

    // The user's containers certs.d, found by host:port without any flag.
    let per_host = scratch
        .home()
        .join(".config/containers/certs.d")
        .join(registry.host());
    certs_dir(&registry, &per_host);
    ok(&pull(&scratch, &[&image], "certs-d"));

    // A client certificate without its key: exit 2, naming the missing key, nothing pulled.
    std::fs::remove_file(per_host.join("client.key")).unwrap();
    let dest = scratch.dest("no-key");
    let stderr = fails(&pull(&scratch, &[&image], "no-key"), 2);
    assert!(stderr.contains("client.key"), "{stderr}");
    assert!(!dest.exists());
    std::fs::remove_dir_all(&per_host).unwrap();

    // containerd's hosts.toml: `ca` and a `client` pair, relative to the host directory.
    let hosts = scratch.dir.path().join("containerd-certs.d");
    let host_dir = hosts.join(registry.host());
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::copy(&ca, host_dir.join("registry-ca.pem")).unwrap();
    let (cert, key) = registry.client_certificate().unwrap();
    std::fs::copy(cert, host_dir.join("me.cert")).unwrap();
    std::fs::copy(key, host_dir.join("me.key")).unwrap();
    std::fs::write(
        host_dir.join("hosts.toml"),
        format!(
            "server = \"{}\"\nca = \"registry-ca.pem\"\nclient = [[\"me.cert\", \"me.key\"]]\n",
            registry.url()
        ),
    )
    .unwrap();
    ok(&pull(
        &scratch,
        &["--hosts-dir", hosts.to_str().unwrap(), &image],
        "hosts-toml",
    ));
}

/// A CA file that is missing or not PEM stops the pull before any request with a message
/// that names the file (not a made-up path) and a hint, exit 1, nothing at the destination.
#[test]
fn an_unusable_ca_file_is_named_and_nothing_is_written() {
    let scratch = Scratch::new();
    let missing = scratch.dir.path().join("no-such-ca.pem");
    let not_pem = scratch.dir.path().join("not-pem.crt");
    std::fs::write(&not_pem, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n").unwrap();
    for (file, says) in [(&missing, "reading CA file"), (&not_pem, "is not PEM")] {
        let dest = scratch.dest("out");
        let output = pull(
            &scratch,
            &["--ca-file", file.to_str().unwrap(), "127.0.0.1:1/app:v1"],
            "out",
        );
        let stderr = fails(&output, 1);
        assert!(stderr.contains(says), "{stderr}");
        assert!(stderr.contains(file.to_str().unwrap()), "{stderr}");
        assert!(!stderr.contains("<CA files>"), "{stderr}");
        assert!(stderr.contains("readable PEM bundle"), "{stderr}");
        assert!(!dest.exists());
    }
}
