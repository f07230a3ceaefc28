//! Command-line definitions (clap): what the user may type. `request` turns them into
//! library requests; `commands` runs them.
//!
//! This file holds the top level (the command list, `--version`, the `acrpull REF DEST`
//! shorthand and the names acrpull answers to); `subcommands` has each command's arguments,
//! `shared` the option groups and value parsers they share.

mod shared;
mod subcommands;

use clap::{Parser, Subcommand};

use super::suggest;

pub use shared::{ManifestFormatArg, RegistryArgs};
pub use subcommands::{
    CacheCommand, CatalogArgs, CredentialHelperArgs, DigestArgs, FormatArg, InspectArgs, ManArgs,
    PullArgs, PushArgs, TagsArgs, TokenArgs, VerifyCommandArgs,
};

const AFTER_HELP: &str = "\
Examples:
  # On an Azure VM with a managed identity (nothing else installed):
  acrpull myregistry.azurecr.io/aci-helloworld:v1 ./rootfs

  # Stage an image as an OCI layout for a disconnected site, then unpack it there:
  acrpull pull --format oci myregistry.azurecr.io/app:v1 ./app-layout
  acrpull pull oci:./app-layout:v1 ./rootfs

  # With one of several user-assigned managed identities:
  acrpull pull --client-id 11111111-2222-3333-4444-555555555555 myregistry.azurecr.io/app:v1 ./rootfs

  # Another platform, or every platform of an index:
  acrpull pull --platform linux/arm64 --format oci registry.example/app:v1 ./layout
  acrpull pull --platform all --format oci registry.example/app:v1 ./layout

  # What a tag points at (digest, platforms, layers), or the exact manifest or config:
  acrpull inspect myregistry.azurecr.io/app:v1
  acrpull inspect --raw --platform linux/arm64 myregistry.azurecr.io/app:v1

  # For scripts: a JSON summary, or JSON lines for every step, on stdout:
  acrpull pull --json myregistry.azurecr.io/app:v1 ./rootfs
  acrpull pull --json-events myregistry.azurecr.io/app:v1 ./rootfs

  # Basic credentials (the password is read from stdin, never from the command line):
  echo \"$PASSWORD\" | acrpull pull --username me --password-stdin registry.example/app:v1 ./out

  # Otherwise credentials come from Docker's config.json, containers' auth.json and the
  # credential helpers they name (or only from --authfile PATH); -v says which source answered.

  # Let docker, podman, skopeo, crictl, helm or oras pull from ACR with this machine's identity:
  ln -s \"$(command -v acrpull)\" /usr/local/bin/docker-credential-acrpull
  # and in ~/.docker/config.json: {\"credHelpers\": {\"myregistry.azurecr.io\": \"acrpull\"}}

Exit codes:
  0 success, 1 other failure (I/O, destination), 2 usage error or bad reference,
  3 authentication or permission, 4 not found (repository, tag, blob, platform),
  5 network failure after retries, 6 integrity failure, unsafe or unusable content,
  7 signature or policy verification refused the image (--verify)";

/// `--version`: the crate version and the git commit it was built from (see `build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("ACRPULL_GIT_COMMIT"),
    ")"
);

/// Pull container images without Docker.
#[derive(Debug, Parser)]
#[command(name = "acrpull", version = VERSION, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// The command (`pull` when omitted: `acrpull REF DEST`).
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pull an image into a root filesystem or an OCI image layout.
    Pull(PullArgs),
    /// Push an image (or a whole index) from an OCI layout to a registry:
    /// `acrpull push oci:./layout:v1 registry.example/app:v1`.
    Push(PushArgs),
    /// Copy an image between registries and OCI layouts (`oci:DIR[:TAG]`); between two
    /// registries blobs stream through without touching the disk.
    Copy(PushArgs),
    /// Print a registry token minted from the Azure identity, as `az acr login --expose-token`
    /// does: `{"loginServer": ..., "accessToken": <ACR refresh token>}`. Log in elsewhere with
    /// the user 00000000-0000-0000-0000-000000000000 and that token as the password.
    Token(TokenArgs),
    /// Speak the Docker credential-helper protocol (also run as `docker-credential-acrpull`,
    /// e.g. through a symlink): `get` reads a server URL on stdin and prints the null-GUID
    /// username with an ACR refresh token minted from the Azure identity. `store` and `erase`
    /// do nothing; `list` prints `{}`.
    CredentialHelper(CredentialHelperArgs),
    /// Answer the kubelet as an image credential provider (also run as
    /// `acrpull-credential-provider`): read a CredentialProviderRequest
    /// (credentialprovider.kubelet.k8s.io/v1 or v1beta1) on stdin and print a
    /// CredentialProviderResponse with the null-GUID user and an ACR refresh token from the
    /// node's Azure identity, for ACR hosts and ACRPULL_AZURE_REGISTRIES hosts only.
    KubeletCredentialProvider,
    /// Show what an image reference points at: manifest digest, media type, platforms of an
    /// index, config and layers (JSON on stdout), or the exact manifest (--raw) or config
    /// (--config) bytes.
    Inspect(InspectArgs),
    /// Verify an image's signatures without pulling it (no layer is downloaded):
    /// `acrpull verify --verify cosign --cosign-key cosign.pub IMAGE`. Exit 0 when accepted,
    /// 7 when refused.
    Verify(VerifyCommandArgs),
    /// List a repository's tags, one a line (`acrpull tags registry.example/app`), as
    /// `crane ls` and `skopeo list-tags` do; pages are followed.
    Tags(TagsArgs),
    /// Print the manifest digest an image reference resolves to, one line, as `crane digest`
    /// does (HEAD, else GET with the body's digest checked).
    Digest(DigestArgs),
    /// List the repositories of a registry, one a line (`/v2/_catalog`, where the registry
    /// allows it).
    Catalog(CatalogArgs),
    /// Show or trim the shared blob cache.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Print a shell completion script (e.g. `acrpull completions bash > /etc/bash_completion.d/acrpull`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff): `acrpull man` for acrpull(1), `acrpull man pull` for
    /// acrpull-pull(1); `acrpull man --dir /usr/local/share/man/man1` writes every page.
    Man(ManArgs),
}

/// Known subcommand names, for `acrpull REF DEST` shorthand.
pub const SUBCOMMANDS: &[&str] = &[
    "pull",
    "push",
    "copy",
    "token",
    "credential-helper",
    "kubelet-credential-provider",
    "inspect",
    "verify",
    "tags",
    "digest",
    "catalog",
    "cache",
    "completions",
    "man",
    "help",
];

/// The program name under which acrpull acts as a Docker credential helper.
const HELPER_PROGRAM: &str = "docker-credential-acrpull";
/// The program name under which acrpull acts as a kubelet image credential provider (not
/// `acr-credential-provider`, the name of cloud-provider-azure's, which takes other arguments).
const KUBELET_PROVIDER_PROGRAM: &str = "acrpull-credential-provider";

/// Parse the process arguments, inserting `pull` when no subcommand is named,
/// `credential-helper` when invoked as `docker-credential-acrpull`, and
/// `kubelet-credential-provider` when invoked as `acrpull-credential-provider`.
pub fn parse_args(args: Vec<std::ffi::OsString>) -> Result<Cli, clap::Error> {
    let mut args = args;
    let invoked_as = args
        .first()
        .and_then(|argv0| std::path::Path::new(argv0).file_name())
        .and_then(|name| name.to_str())
        .unwrap_or("");
    if invoked_as == HELPER_PROGRAM {
        args[0] = "acrpull".into();
        args.insert(1, "credential-helper".into());
        return Cli::try_parse_from(args);
    }
    if invoked_as == KUBELET_PROVIDER_PROGRAM {
        args[0] = "acrpull".into();
        args.insert(1, "kubelet-credential-provider".into());
        return Cli::try_parse_from(args);
    }
    let first = args.get(1).and_then(|a| a.to_str()).unwrap_or("");
    let is_top_level_flag = matches!(first, "-h" | "--help" | "-V" | "--version");
    if let Some(meant) = suggest::subcommand_typo(first, SUBCOMMANDS) {
        // `acrpull pul REF DEST` would pull an image called `pul` from Docker Hub.
        return Err(unknown_subcommand(first, meant));
    }
    if args.len() > 1 && !SUBCOMMANDS.contains(&first) && !is_top_level_flag {
        args.insert(1, "pull".into());
    }
    Cli::try_parse_from(args)
}

/// The usage error for a mistyped subcommand (exit 2, like every clap error).
fn unknown_subcommand(typed: &str, meant: &str) -> clap::Error {
    let mut command = <Cli as clap::CommandFactory>::command();
    command.error(
        clap::error::ErrorKind::InvalidSubcommand,
        format!(
            "unrecognized subcommand `{typed}`; did you mean `{meant}`?\n\n  \
             tip: to pull an image named `{typed}`, write `acrpull pull {typed} DEST`"
        ),
    )
}
