//! Single-file outputs for carrying images across an air gap: `oci-archive` (a tar of an OCI
//! layout, what `skopeo copy oci-archive:` and `podman load` read) and `docker-archive` (the
//! `docker save` format with `manifest.json` and `repositories`, what `docker load` and
//! `podman load` read). Both are built from a finished layout in a staging directory, written
//! to a file there, and put at the destination by [`crate::destination::Destination`].

use std::io::{Read, Write};
use std::path::Path;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::layout;
use crate::manifest::ImageManifest;
use crate::media_type::{layer_compression, LayerCompression};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write a tar with `contents` to the new file `path` (in the caller's staging directory; the
/// caller puts it at the destination), synced.
fn write_tar(
    path: &Path,
    contents: impl FnOnce(&mut tar::Builder<&mut std::io::BufWriter<std::fs::File>>) -> Result<()>,
) -> Result<()> {
    let file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io(path))?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
    {
        let mut builder = tar::Builder::new(&mut writer);
        builder.mode(tar::HeaderMode::Deterministic);
        contents(&mut builder)?;
        builder.finish().map_err(io(path))?;
    }
    writer.flush().map_err(io(path))?;
    writer.get_ref().sync_all().map_err(io(path))?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .map_err(io(path))?;
    Ok(())
}

fn append_file(
    builder: &mut tar::Builder<&mut std::io::BufWriter<std::fs::File>>,
    name: &str,
    path: &Path,
) -> Result<()> {
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    builder.append_file(name, &mut file).map_err(io(path))
}

fn append_bytes(
    builder: &mut tar::Builder<&mut std::io::BufWriter<std::fs::File>>,
    name: &str,
    bytes: &[u8],
) -> Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    builder
        .append_data(&mut header, name, bytes)
        .map_err(io(Path::new(name)))
}

/// Tar the OCI layout at `layout_dir` into `destination`.
pub fn write_oci_archive(layout_dir: &Path, destination: &Path) -> Result<()> {
    write_tar(destination, |builder| {
        builder
            .append_dir_all(".", layout_dir)
            .map_err(io(layout_dir))
    })
}

/// Write a `docker save`-style archive of one image from the layout at `layout_dir`: the config
/// as `<hex>.json`, each layer uncompressed as `<diff hex>/layer.tar`, and `manifest.json` +
/// `repositories` naming `repo_tag` (`registry/repository:tag`).
pub fn write_docker_archive(
    layout_dir: &Path,
    manifest: &ImageManifest,
    diff_ids: &[Digest],
    repo_tag: Option<&str>,
    destination: &Path,
) -> Result<()> {
    if diff_ids.len() != manifest.layers.len() {
        return Err(Error::Unsupported(format!(
            "the image config lists {} diff_ids for {} layers",
            diff_ids.len(),
            manifest.layers.len()
        )));
    }
    write_tar(destination, |builder| {
        let config_name = format!("{}.json", manifest.config.digest.hex());
        append_file(
            builder,
            &config_name,
            &layout::blob_path(layout_dir, &manifest.config.digest),
        )?;
        let mut layer_names = Vec::new();
        for (layer, diff_id) in manifest.layers.iter().zip(diff_ids) {
            let name = format!("{}/layer.tar", diff_id.hex());
            let path = layout::blob_path(layout_dir, &layer.digest);
            append_uncompressed(builder, &name, &path, &layer.media_type, diff_id)?;
            layer_names.push(name);
        }
        let mut entry = serde_json::json!({"Config": config_name, "Layers": layer_names});
        entry["RepoTags"] = serde_json::json!(repo_tag.map(|t| vec![t]).unwrap_or_default());
        let manifest_json = serde_json::to_vec(&serde_json::json!([entry]))
            .map_err(|e| Error::Unsupported(e.to_string()))?;
        append_bytes(builder, "manifest.json", &manifest_json)?;
        if let (Some(tag), Some(last)) = (repo_tag, diff_ids.last()) {
            if let Some((repository, tag)) = tag.rsplit_once(':') {
                let repositories = serde_json::json!({ repository: { tag: last.hex() } });
                let bytes = serde_json::to_vec(&repositories)
                    .map_err(|e| Error::Unsupported(e.to_string()))?;
                append_bytes(builder, "repositories", &bytes)?;
            }
        }
        Ok(())
    })
}

/// Append a layer blob decompressed, checking the uncompressed bytes against `diff_id`.
fn append_uncompressed(
    builder: &mut tar::Builder<&mut std::io::BufWriter<std::fs::File>>,
    name: &str,
    path: &Path,
    media_type: &str,
    diff_id: &Digest,
) -> Result<()> {
    let compression = layer_compression(media_type).ok_or_else(|| {
        Error::Unsupported(format!(
            "layer media type `{media_type}` cannot go into a docker-archive"
        ))
    })?;
    // First pass: the uncompressed size (a tar header needs it up front) and the diff_id.
    let mut hashing =
        crate::digest::HashingReader::new(open_layer(path, compression)?, diff_id.algorithm());
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(io(path))?;
    let (actual, size, _) = hashing.finish();
    if &actual != diff_id {
        return Err(Error::Integrity {
            what: "layer",
            digest: diff_id.clone(),
            expected: diff_id.to_string(),
            actual: actual.to_string(),
        });
    }
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    builder
        .append_data(&mut header, name, open_layer(path, compression)?.take(size))
        .map_err(io(path))
}

fn open_layer(path: &Path, compression: LayerCompression) -> Result<Box<dyn Read>> {
    let file =
        std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path).map_err(io(path))?);
    Ok(match compression {
        LayerCompression::None => Box::new(file),
        LayerCompression::Gzip => Box::new(crate::gzip::GzipMembers::new(file)),
        LayerCompression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(file).map_err(io(path))?)
        }
    })
}
