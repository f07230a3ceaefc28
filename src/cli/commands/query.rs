//! `acrpull tags`, `acrpull digest`, `acrpull catalog`: one answer a line on stdout (or JSON),
//! from `acrpull::query`.

use std::process::ExitCode;

use crate::cli::args::{CatalogArgs, DigestArgs, TagsArgs};
use crate::cli::stdout;

/// A registry reference argument (a layout or archive has no tags to list).
fn registry_reference(text: &str) -> anyhow::Result<acrpull::Reference> {
    match crate::cli::request::parse_image(text)? {
        acrpull::SourceSpec::Registry(reference) => Ok(reference),
        _ => Err(acrpull::Error::Usage(format!(
            "`{text}` is not a registry reference (REGISTRY/REPOSITORY[:TAG])"
        ))
        .into()),
    }
}

/// `lines` one a line, or `json` pretty-printed.
fn print(lines: &[String], json: Option<serde_json::Value>) -> anyhow::Result<()> {
    match json {
        Some(value) => stdout::json_pretty(&value),
        None => {
            let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
            stdout::write(text.as_bytes())
        }
    }
}

pub async fn tags(args: TagsArgs) -> anyhow::Result<ExitCode> {
    let reference = registry_reference(&args.repository)?;
    let credential = args.registry.credential_for(reference.registry())?;
    let tags = acrpull::query::tags(
        &reference,
        credential,
        &args.registry.client_options(),
        args.page_size,
    )
    .await?;
    let json = args.json.then(|| {
        serde_json::json!({
            "repository": format!("{}/{}", reference.registry(), reference.repository()),
            "tags": tags,
        })
    });
    print(&tags, json)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn digest(args: DigestArgs) -> anyhow::Result<ExitCode> {
    let reference = registry_reference(&args.image)?;
    let credential = args.registry.credential_for(reference.registry())?;
    let digest =
        acrpull::query::digest(&reference, credential, &args.registry.client_options()).await?;
    let json = args.json.then(|| {
        serde_json::json!({
            "reference": reference.to_string(),
            "digest": digest,
        })
    });
    print(&[digest.to_string()], json)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn catalog(args: CatalogArgs) -> anyhow::Result<ExitCode> {
    let registry = args.registry_host.trim_end_matches('/');
    // Validated (and Docker Hub named) as in image references.
    let reference = registry_reference(&format!("{registry}/catalog"))?;
    let credential = args.registry.credential_for(reference.registry())?;
    let repositories = acrpull::query::catalog(
        reference.registry(),
        credential,
        &args.registry.client_options(),
        args.page_size,
    )
    .await?;
    let json = args.json.then(|| {
        serde_json::json!({
            "registry": reference.registry(),
            "repositories": repositories,
        })
    });
    print(&repositories, json)?;
    Ok(ExitCode::SUCCESS)
}
