//! The `--verify` family of flags, shared by `pull`, `copy`, `push` and `verify`: the scheme,
//! and each scheme's key, identity, trust configuration or policy.

use std::path::PathBuf;

use clap::Args;

/// Signature verification (`--verify` and the flags of each scheme), shared by `pull`,
/// `copy`, `push` and `verify`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Verification")]
pub struct VerifyArgs {
    /// Refuse the image unless it satisfies SCHEME, checked after its manifest is resolved
    /// and before any layer is downloaded (exit 7 otherwise): `cosign` (a signature by
    /// --cosign-key, or keyless by --certificate-identity), `policy` (the containers policy.json, as skopeo and podman apply it),
    /// `notation` (Notary Project signatures under Notation's trust policy), or `none`.
    #[arg(long = "verify", value_name = "SCHEME", default_value = "none", value_parser = parse_scheme)]
    pub scheme: acrpull::verify::Scheme,
    /// With --verify cosign: the signer's public key, PEM (`cosign.pub`: ECDSA P-256 or
    /// P-384, RSA, Ed25519).
    #[arg(long, value_name = "PEM")]
    pub cosign_key: Option<PathBuf>,
    /// With --verify cosign, keyless: the signer's identity, exactly as the Fulcio
    /// certificate's SAN (an email or a URI) carries it.
    #[arg(long, value_name = "SAN")]
    pub certificate_identity: Option<String>,
    /// Keyless: a regular expression the SAN must match (matched anywhere, as cosign does:
    /// anchor it with ^...$ to pin the whole value).
    #[arg(long, value_name = "REGEX")]
    pub certificate_identity_regexp: Option<String>,
    /// Keyless: the OIDC issuer the certificate names, exactly (e.g.
    /// https://token.actions.githubusercontent.com).
    #[arg(long, value_name = "URL")]
    pub certificate_oidc_issuer: Option<String>,
    /// Keyless: a regular expression the OIDC issuer must match (anywhere, as cosign does).
    #[arg(long, value_name = "REGEX")]
    pub certificate_oidc_issuer_regexp: Option<String>,
    /// Keyless: sigstore's trusted_root.json (Fulcio CAs, Rekor and CT log keys); the
    /// verification is offline and fetches no TUF root.
    #[arg(long, value_name = "FILE")]
    pub trusted_root: Option<PathBuf>,
    /// With --verify policy: the containers policy.json (default
    /// /etc/containers/policy.json).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// With --verify notation: Notation's configuration directory (trustpolicy.oci.json or
    /// trustpolicy.json, truststore/x509/); default as the notation CLI finds it:
    /// $NOTATION_CONFIG, else $XDG_CONFIG_HOME/notation, else ~/.config/notation.
    #[arg(long, value_name = "DIR")]
    pub notation_config: Option<PathBuf>,
    /// With --verify notation: check the signing chain for revocation by downloading the
    /// CRLs its certificates name (http:// only, 5 s and 32 MiB per CRL). Off by default, for
    /// air-gapped machines: the result then says revocation was not checked. A revoked
    /// certificate, or a status that cannot be determined, fails as the trust policy's level
    /// says (enforced at strict, logged at permissive and audit). OCSP is not queried.
    #[arg(long)]
    pub revocation_check: bool,
}

fn parse_scheme(text: &str) -> Result<acrpull::verify::Scheme, String> {
    text.parse()
}

impl VerifyArgs {
    /// The library's options.
    pub fn options(&self) -> acrpull::verify::VerifyOptions {
        acrpull::verify::VerifyOptions {
            scheme: self.scheme,
            cosign: acrpull::verify::cosign::Options {
                key: self.cosign_key.clone(),
                certificate_identity: self.certificate_identity.clone(),
                certificate_identity_regexp: self.certificate_identity_regexp.clone(),
                certificate_oidc_issuer: self.certificate_oidc_issuer.clone(),
                certificate_oidc_issuer_regexp: self.certificate_oidc_issuer_regexp.clone(),
                trusted_root: self.trusted_root.clone(),
            },
            policy: self.policy.clone(),
            notation: self
                .notation_config
                .clone()
                .or_else(|| acrpull::verify::notation::config_dir(|name| std::env::var(name).ok())),
            revocation_check: self.revocation_check,
        }
    }
}
