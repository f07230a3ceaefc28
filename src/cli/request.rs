//! Arguments resolved into library requests, once: the image and platform parsed, the
//! credentials and connection settings built, the destination and cache chosen. Commands
//! (`commands/`) only run what this module hands them.

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};

use acrpull::azure::UserAssignedId;
use acrpull::credential::{Credential, CredentialOptions};
use acrpull::registry::retry::RetryPolicy;
use acrpull::registry::ClientOptions;
use acrpull::secret::Secret;
use acrpull::{OutputFormat, Platform, PlatformChoice, PullOptions, SourceSpec};

use super::args::{FormatArg, InspectArgs, ManifestFormatArg, PullArgs, PushArgs, RegistryArgs};
use super::commands::inspect;
use super::suggest;

/// An image argument: a reference or `oci:PATH[:TAG|@DIGEST]`; a pasted URL is refused with
/// the reference it names.
pub fn parse_image(text: &str) -> Result<SourceSpec, acrpull::Error> {
    if let Some(suggestion) = suggest::pasted_url(text) {
        return Err(acrpull::Error::Usage(suggestion));
    }
    Ok(text.parse()?)
}

/// A `--platform` naming one platform (`os/arch[/variant]`).
pub fn parse_platform(text: &str) -> Result<Platform, acrpull::Error> {
    text.parse()
        .map_err(|e: acrpull::platform::PlatformParseError| acrpull::Error::Usage(e.to_string()))
}

/// A `--platform` that may also be `all`; `default` when none is given.
pub fn platform_choice(
    text: Option<&str>,
    default: PlatformChoice,
) -> Result<PlatformChoice, acrpull::Error> {
    Ok(match text {
        None => default,
        Some("all") => PlatformChoice::All,
        Some(p) => PlatformChoice::One(parse_platform(p)?),
    })
}

/// The registries besides ACR login servers that may be offered the Azure identity without
/// `--identity`: `ACRPULL_AZURE_REGISTRIES=host[:port],...` (the library reads no variables).
pub fn azure_registries() -> Result<acrpull::azure::AzureRegistries, acrpull::Error> {
    let list = std::env::var(acrpull::azure::AZURE_REGISTRIES_VAR).unwrap_or_default();
    acrpull::azure::AzureRegistries::parse(&list).map_err(|e| acrpull::Error::Usage(e.to_string()))
}

/// What a credential helper (Docker's or the kubelet's) works from: the request it read on
/// standard input, the Azure variables, the registries listed as Azure, connection settings.
pub struct HelperInput {
    pub request: Vec<u8>,
    pub env: acrpull::azure::Env,
    pub registries: acrpull::azure::AzureRegistries,
    pub options: ClientOptions,
}

impl HelperInput {
    /// Read standard input to its end and snapshot the environment.
    pub fn read() -> anyhow::Result<Self> {
        let mut request = Vec::new();
        std::io::stdin()
            .read_to_end(&mut request)
            .map_err(|e| anyhow::anyhow!(e).context("reading standard input"))?;
        Ok(Self {
            request,
            env: acrpull::azure::Env::from_process(),
            registries: azure_registries()?,
            options: with_environment(ClientOptions::default()),
        })
    }
}

/// What the environment adds to connection settings (the library reads no variable itself):
/// `SSL_CERT_FILE` is one more CA file, as for OpenSSL and curl; `ACRPULL_PARALLEL_RANGES=0`
/// turns parallel range downloads off, any other value forces them (loopback registries too).
pub fn with_environment(mut options: ClientOptions) -> ClientOptions {
    let var = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    options
        .ca_files
        .extend(var("SSL_CERT_FILE").map(PathBuf::from));
    if let Some(value) = var("ACRPULL_PARALLEL_RANGES") {
        options.parallel_ranges = Some(value != "0");
    }
    options
}

/// `ACRPULL_INFLATE_AHEAD=N`: how many layers may inflate ahead of the one being applied
/// (0: none; unset or not a number: the library's default, cores − 1).
fn inflate_ahead_from_environment() -> Option<usize> {
    std::env::var("ACRPULL_INFLATE_AHEAD")
        .ok()
        .and_then(|value| value.trim().parse().ok())
}

/// `HOME`, when set and not empty.
fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
}

impl RegistryArgs {
    /// Connection settings.
    pub fn client_options(&self) -> ClientOptions {
        with_environment(ClientOptions {
            plain_http: self.plain_http,
            insecure: self.insecure,
            ca_files: self.ca_file.clone(),
            client_certificate: None,
            cert_dirs: match &self.cert_dir {
                Some(dir) => acrpull::http::CertDirs {
                    cert_dir: Some(dir.clone()),
                    per_host_roots: Vec::new(),
                },
                None => acrpull::http::CertDirs::containers(home().as_deref()),
            },
            retry: RetryPolicy {
                retries: self.retries,
                ..RetryPolicy::default()
            },
            read_timeout: Some(Duration::from_secs(self.timeout.max(1))),
            http_fallback: false,
            pace: acrpull::http::Pace {
                min_bytes_per_second: self.speed_limit,
                window: Duration::from_secs(self.speed_time.max(1)),
                deadline: self
                    .deadline
                    .map(|seconds| tokio::time::Instant::now() + Duration::from_secs(seconds)),
            },
            parallel_ranges: None,
            shared_clients: None,
        })
    }

    /// The credential options given on the command line (reads stdin for the password).
    pub fn credential_options(&self) -> anyhow::Result<CredentialOptions> {
        let basic = match &self.username {
            None => None,
            Some(username) => {
                let mut password = String::new();
                std::io::stdin()
                    .read_to_string(&mut password)
                    .context("reading the password from standard input")?;
                let password = password.trim_end_matches(['\n', '\r']).to_string();
                if password.is_empty() {
                    bail!("--password-stdin: standard input was empty");
                }
                Some((username.clone(), Secret::new(password)))
            }
        };
        let user_assigned = if let Some(id) = &self.client_id {
            Some(UserAssignedId::ClientId(id.clone()))
        } else if let Some(id) = &self.object_id {
            Some(UserAssignedId::ObjectId(id.clone()))
        } else {
            self.resource_id.clone().map(UserAssignedId::ResourceId)
        };
        Ok(CredentialOptions {
            basic,
            identity: self.identity,
            user_assigned,
            audience: Some(self.azure_audience.clone()),
            authfile: self.authfile.clone(),
            files: acrpull::credential::ConfigFiles::from_process(),
            azure_registries: azure_registries()?,
        })
    }

    /// The credential for `source`: as [`Self::credential_for`] for a registry, none for a
    /// layout or an archive.
    pub fn credential_for_source(&self, source: &SourceSpec) -> anyhow::Result<Credential> {
        match source {
            SourceSpec::Registry(reference) => self.credential_for(reference.registry()),
            SourceSpec::Layout { .. } | SourceSpec::Archive { .. } => Ok(Credential::Anonymous),
        }
    }

    /// The credential for `registry`, resolved from the command line, the environment and
    /// the registry's kind; logs which source answered (never the secret).
    pub fn credential_for(&self, registry: &str) -> anyhow::Result<Credential> {
        let options = self.credential_options()?;
        let env = acrpull::azure::Env::from_process();
        let resolved =
            acrpull::credential::resolve(registry, &options, &env).map_err(acrpull::Error::from)?;
        tracing::info!(
            registry,
            source = %resolved.source,
            kind = %resolved.credential.kind(),
            "credentials"
        );
        Ok(resolved.credential)
    }
}

impl InspectArgs {
    /// The source, the platform asked for, and what to print.
    pub fn to_request(
        &self,
    ) -> Result<(SourceSpec, Option<Platform>, inspect::Output), acrpull::Error> {
        let source = parse_image(&self.image)?;
        let platform = self.platform.as_deref().map(parse_platform).transpose()?;
        let output = if self.raw {
            inspect::Output::RawManifest
        } else if self.config {
            inspect::Output::Config
        } else {
            inspect::Output::Summary
        };
        Ok((source, platform, output))
    }
}

impl PullArgs {
    /// The destination: the second positional argument, or the only one with `-f`.
    pub fn destination(&self) -> Result<PathBuf, acrpull::Error> {
        match (&self.from_file, &self.destination) {
            (None, Some(destination)) => Ok(destination.clone()),
            (Some(_), None) => Ok(PathBuf::from(&self.image)),
            (None, None) => Err(acrpull::Error::Usage(
                "missing DEST: acrpull pull IMAGE DEST".into(),
            )),
            (Some(_), Some(_)) => Err(acrpull::Error::Usage(
                "with -f, give only the destination layout: acrpull pull --format oci -f refs.txt DEST".into(),
            )),
        }
    }

    /// The references listed in `-f FILE`.
    pub fn listed_references(&self) -> anyhow::Result<Vec<SourceSpec>> {
        let Some(file) = &self.from_file else {
            return Ok(Vec::new());
        };
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading the reference list {}", file.display()))?;
        let mut references = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let spec: SourceSpec = line.parse().map_err(|e| {
                anyhow::Error::new(acrpull::Error::from(e)).context(format!(
                    "{}:{}",
                    file.display(),
                    number + 1
                ))
            })?;
            references.push(spec);
        }
        if references.is_empty() {
            bail!("{} lists no references", file.display());
        }
        Ok(references)
    }

    /// Mirrors for `reference` from `--mirror`, registries.conf and hosts.toml, each with its credential
    /// (`origin` for the registry itself); empty when there are none.
    pub fn mirrors(
        &self,
        reference: &acrpull::Reference,
        origin: &Credential,
    ) -> Result<Vec<(acrpull::mirror::Endpoint, Credential)>, acrpull::Error> {
        use acrpull::mirror::registries_conf::ConfFiles;
        use acrpull::mirror::{ConfigFiles, HostsDir, MirrorConfig};
        let files = ConfigFiles {
            registries_conf: ConfFiles::locate(
                self.registries_conf.as_deref(),
                std::env::var_os("CONTAINERS_REGISTRIES_CONF")
                    .filter(|path| !path.is_empty())
                    .map(PathBuf::from),
                home().as_deref(),
                std::path::Path::new("/etc/containers"),
            ),
            hosts_dir: match &self.hosts_dir {
                Some(dir) if !dir.is_dir() => {
                    return Err(acrpull::Error::Usage(format!(
                        "--hosts-dir {}: not a directory",
                        dir.display()
                    )))
                }
                Some(dir) => Some(HostsDir::new(dir)),
                None => HostsDir::system(),
            },
        };
        let config = MirrorConfig::load(&files)?;
        let endpoints = config.endpoints(reference, &self.mirror)?;
        if endpoints.len() == 1 && endpoints[0].is_plain_origin_of(reference) {
            return Ok(Vec::new());
        }
        let env = acrpull::azure::Env::from_process();
        let options = CredentialOptions {
            files: acrpull::credential::ConfigFiles::from_process(),
            ..CredentialOptions::default()
        };
        endpoints
            .into_iter()
            .map(|endpoint| {
                let credential = if endpoint.host == reference.registry() {
                    origin.clone()
                } else {
                    acrpull::credential::resolve(&endpoint.host, &options, &env)?.credential
                };
                tracing::info!(endpoint = %endpoint.host, repository = %endpoint.repository, "endpoint");
                Ok((endpoint, credential))
            })
            .collect()
    }

    /// The blob cache to use, if any. A cache that cannot be used is skipped with a warning:
    /// the pull works without it.
    pub fn cache(&self) -> Option<acrpull::cache::BlobCache> {
        if self.no_cache {
            return None;
        }
        let dir = self
            .cache_dir
            .clone()
            .or_else(|| acrpull::cache::BlobCache::default_dir(|name| std::env::var_os(name)))?;
        match acrpull::cache::BlobCache::open(&dir) {
            Ok(cache) => Some(cache),
            Err(e) => {
                tracing::warn!("not using the blob cache: {e}");
                None
            }
        }
    }

    /// The validated request: source, destination and options.
    pub fn to_request(&self) -> Result<(SourceSpec, PullOptions), acrpull::Error> {
        let source: SourceSpec = if self.from_file.is_some() {
            // Placeholder until the listed references are pulled one by one.
            SourceSpec::Layout {
                path: PathBuf::from(&self.image),
                reference: String::new(),
            }
        } else {
            if let Some(swapped) = self
                .destination
                .as_deref()
                .and_then(|destination| suggest::swapped_arguments(&self.image, destination))
            {
                return Err(acrpull::Error::Usage(swapped));
            }
            parse_image(&self.image)?
        };
        self.destination()?;
        let platform = platform_choice(self.platform.as_deref(), PlatformChoice::Host)?;
        let format = match self.format {
            FormatArg::Rootfs => OutputFormat::Rootfs,
            FormatArg::Oci => OutputFormat::Oci,
            FormatArg::OciArchive => OutputFormat::OciArchive,
            FormatArg::DockerArchive => OutputFormat::DockerArchive,
        };
        Ok((
            source,
            PullOptions {
                format,
                platform,
                jobs: usize::from(self.jobs),
                force: self.force,
                bundle: self.bundle,
                client: self.registry.client_options(),
                layout_tag: None,
                sync: !self.no_sync,
                mirrors: Vec::new(),
                cache: self.cache(),
                referrers: self.referrers,
                convert_to_oci: self.manifest_format == ManifestFormatArg::Oci,
                cancel: acrpull::cancel::Cancel::default(),
                layer_limits: acrpull::pull::LayerLimits {
                    max_uncompressed_bytes: self.max_layer_size,
                    max_entries: self.max_layer_entries,
                    inflate_ahead: inflate_ahead_from_environment(),
                },
                verify: self.verify.options(),
                resolved_ahead: None,
                fetched_ahead: None,
            },
        ))
    }
}

impl PushArgs {
    /// The platforms to copy: every one unless `--platform` names one.
    pub fn platform(&self) -> Result<PlatformChoice, acrpull::Error> {
        platform_choice(self.platform.as_deref(), PlatformChoice::All)
    }
}

/// The credential a copy's source is read with: the default chain (config files, the Azure
/// identity for ACR hosts), none for a layout or an archive. The command-line credentials
/// are the destination's.
pub fn copy_source_credential(source: &SourceSpec) -> anyhow::Result<Credential> {
    Ok(match source {
        SourceSpec::Registry(r) => {
            acrpull::credential::resolve(
                r.registry(),
                &CredentialOptions {
                    files: acrpull::credential::ConfigFiles::from_process(),
                    ..CredentialOptions::default()
                },
                &acrpull::azure::Env::from_process(),
            )
            .map_err(acrpull::Error::from)?
            .credential
        }
        SourceSpec::Layout { .. } | SourceSpec::Archive { .. } => Credential::Anonymous,
    })
}
