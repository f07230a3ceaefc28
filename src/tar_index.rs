//! The members of a tar file, found by reading its headers once (member data is skipped by
//! seeking), so an archive can serve any member as a byte range without being extracted.
//!
//! Every header is hostile: names must be relative without `..`, extension headers (PAX, GNU
//! long names) are capped, a name may appear only once, every member must lie inside the file,
//! and the member count is bounded. Our own small parser instead of the `tar` crate's, because
//! that one buffers extension headers without a cap.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};

/// At most this many members (a `docker save` of a large image has a few hundred).
pub const MAX_MEMBERS: usize = 100_000;
/// The largest extension header (PAX record set, GNU long name or link) we read.
const MAX_EXTENSION: u64 = 64 * 1024;
/// Symbolic and hard links followed to reach a member, at most.
const MAX_LINK_HOPS: usize = 16;
const BLOCK: u64 = 512;

/// What a member is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberKind {
    /// A regular file: its bytes are at `offset..offset + size`.
    File,
    /// A symbolic link to this (relative, normalised) member name.
    Symlink(String),
    /// A hard link to this member name.
    Hardlink(String),
}

/// One member of the tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Where its data starts in the file.
    pub offset: u64,
    /// Its data length.
    pub size: u64,
    /// File or link.
    pub kind: MemberKind,
}

/// Why a tar cannot be indexed or a member cannot be found.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// Reading the file failed.
    #[error("reading the archive failed")]
    Io(#[from] std::io::Error),
    /// The bytes are not a tar we accept.
    #[error("{0}")]
    Invalid(String),
}

/// The members of a tar, by normalised name (directories are left out).
#[derive(Debug, Default)]
pub struct TarIndex {
    members: HashMap<String, Member>,
}

/// Extension values announced for the next header (PAX `x`, GNU `L`/`K`).
#[derive(Default)]
struct Pending {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
}

impl TarIndex {
    /// Read every header of the tar in `file`, whose length is `length`.
    pub fn read<R: Read + Seek>(file: &mut R, length: u64) -> Result<Self, TarError> {
        let mut index = TarIndex::default();
        let mut position = 0u64;
        let mut pending = Pending::default();
        loop {
            if position + BLOCK > length {
                // A tar ends with zero blocks; some writers omit them. Anything else is cut.
                if position == length && pending.path.is_none() && pending.size.is_none() {
                    return Ok(index);
                }
                if position == 0 {
                    return Err(invalid(
                        "it is not a tar file (shorter than one tar header)".into(),
                    ));
                }
                return Err(invalid(format!(
                    "the archive ends inside a header at byte {position}: it is truncated"
                )));
            }
            let mut header = [0u8; BLOCK as usize];
            file.seek(SeekFrom::Start(position))?;
            file.read_exact(&mut header)?;
            if header.iter().all(|&b| b == 0) {
                return Ok(index);
            }
            check_checksum(&header, position)?;
            let header_size = number(&header[124..136]).ok_or_else(|| {
                invalid(format!("bad size field in the header at byte {position}"))
            })?;
            let kind = header[156];
            let size = match kind {
                // Only regular files carry a PAX size override that matters for skipping.
                b'0' | 0 | b'7' => pending.size.unwrap_or(header_size),
                _ => header_size,
            };
            let data = position + BLOCK;
            let padded = data
                .checked_add(size)
                .filter(|&end| end <= length)
                .map(|end| end.div_ceil(BLOCK).saturating_mul(BLOCK))
                .ok_or_else(|| {
                    invalid(format!(
                        "the member at byte {position} claims {size} bytes, more than the \
                         archive holds: it is truncated or corrupt"
                    ))
                })?;
            match kind {
                b'x' | b'L' | b'K' => {
                    if size > MAX_EXTENSION {
                        return Err(invalid(format!(
                            "an extension header at byte {position} is {size} bytes (the \
                             limit is {MAX_EXTENSION})"
                        )));
                    }
                    let mut bytes = vec![0u8; size as usize];
                    file.read_exact(&mut bytes)?;
                    match kind {
                        b'x' => apply_pax(&bytes, &mut pending, position)?,
                        b'L' => pending.path = Some(trim_nul(&bytes).to_vec()),
                        _ => pending.link = Some(trim_nul(&bytes).to_vec()),
                    }
                    position = padded;
                    continue;
                }
                // Global PAX headers and anything else without a name of ours: skipped.
                b'g' => {
                    position = padded;
                    continue;
                }
                _ => {}
            }
            let taken = std::mem::take(&mut pending);
            let raw_name = taken.path.unwrap_or_else(|| header_name(&header));
            let name = normalise(&raw_name)?;
            let member_kind = match kind {
                b'0' | 0 | b'7' => Some(MemberKind::File),
                b'2' | b'1' => {
                    let target = taken
                        .link
                        .unwrap_or_else(|| trim_nul(&header[157..257]).to_vec());
                    let text = utf8(&target)?;
                    Some(if kind == b'2' {
                        MemberKind::Symlink(text)
                    } else {
                        MemberKind::Hardlink(normalise(&target)?)
                    })
                }
                _ => None,
            };
            if let Some(member_kind) = member_kind {
                if name.is_empty() {
                    return Err(invalid("a file member has an empty name".into()));
                }
                if index.members.len() >= MAX_MEMBERS {
                    return Err(invalid(format!(
                        "the archive has more than {MAX_MEMBERS} members"
                    )));
                }
                let member = Member {
                    offset: data,
                    size: if member_kind == MemberKind::File {
                        size
                    } else {
                        0
                    },
                    kind: member_kind,
                };
                if index.members.insert(name.clone(), member).is_some() {
                    return Err(invalid(format!(
                        "the member `{name}` appears twice: which one is meant is ambiguous"
                    )));
                }
            }
            position = padded;
        }
    }

    /// Whether a member of this name exists (links not followed).
    pub fn contains(&self, name: &str) -> bool {
        self.members.contains_key(name)
    }

    /// The regular file `name` refers to (links inside the archive followed), if any.
    pub fn file(&self, name: &str) -> Result<Option<&Member>, TarError> {
        let mut name = normalise(name.as_bytes())?;
        for _ in 0..MAX_LINK_HOPS {
            let Some(member) = self.members.get(&name) else {
                return Ok(None);
            };
            name = match &member.kind {
                MemberKind::File => return Ok(Some(member)),
                MemberKind::Hardlink(target) => target.clone(),
                MemberKind::Symlink(target) => {
                    let base = name.rsplit_once('/').map_or("", |(dir, _)| dir);
                    if target.starts_with('/') {
                        return Err(invalid(format!(
                            "`{name}` links to the absolute path `{target}`"
                        )));
                    }
                    resolve_relative(base, target)
                        .ok_or_else(|| invalid(format!("`{name}` links outside the archive")))?
                }
            };
        }
        Err(invalid(format!(
            "`{name}`: more than {MAX_LINK_HOPS} links to follow"
        )))
    }
}

fn invalid(reason: String) -> TarError {
    TarError::Invalid(reason)
}

fn trim_nul(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

fn utf8(bytes: &[u8]) -> Result<String, TarError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        invalid(format!(
            "a member name is not UTF-8: {}",
            String::from_utf8_lossy(bytes)
        ))
    })
}

/// The name in a header: `prefix/name` for POSIX ustar, `name` otherwise.
fn header_name(header: &[u8; BLOCK as usize]) -> Vec<u8> {
    let name = trim_nul(&header[0..100]);
    let prefix = trim_nul(&header[345..500]);
    if &header[257..263] == b"ustar\0" && !prefix.is_empty() {
        let mut full = prefix.to_vec();
        full.push(b'/');
        full.extend_from_slice(name);
        full
    } else {
        name.to_vec()
    }
}

/// A member name made canonical: no `./`, no empty components, no trailing `/`. Absolute
/// names and `..` components are refused: nothing in an image archive needs them.
pub fn normalise(raw: &[u8]) -> Result<String, TarError> {
    let text = utf8(raw)?;
    if text.starts_with('/') {
        return Err(invalid(format!("the member name `{text}` is absolute")));
    }
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(invalid(format!("the member name `{text}` contains `..`"))),
            part => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

/// `target` taken relative to the directory `base`, if it stays inside the archive.
fn resolve_relative(base: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// A numeric header field: octal text (spaces and NULs around it), or GNU base-256.
fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut value: u64 = u64::from(field[0] & 0x3f);
        for &byte in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(byte))?;
        }
        return Some(value);
    }
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c| c == ' ' || c == '\0');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

fn check_checksum(header: &[u8; BLOCK as usize], position: u64) -> Result<(), TarError> {
    let stored = number(&header[148..156]);
    let unsigned: u64 = header
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    let signed: i64 = header
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                i64::from(b as i8)
            }
        })
        .sum();
    match stored {
        Some(sum) if sum == unsigned || i64::try_from(sum).ok() == Some(signed) => Ok(()),
        _ => Err(invalid(format!(
            "the header at byte {position} has a wrong checksum: this is not a tar file, or it \
             is corrupt"
        ))),
    }
}

/// Apply the records of a PAX extended header (`LEN key=value\n`...) to the next member.
fn apply_pax(bytes: &[u8], pending: &mut Pending, position: u64) -> Result<(), TarError> {
    let bad = || invalid(format!("malformed PAX header at byte {position}"));
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let space = rest.iter().position(|&b| b == b' ').ok_or_else(bad)?;
        let length: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&n| n > space + 1 && n <= rest.len())
            .ok_or_else(bad)?;
        let record = &rest[space + 1..length];
        let record = record.strip_suffix(b"\n").ok_or_else(bad)?;
        let equals = record.iter().position(|&b| b == b'=').ok_or_else(bad)?;
        let (key, value) = (&record[..equals], &record[equals + 1..]);
        match key {
            b"path" => pending.path = Some(value.to_vec()),
            b"linkpath" => pending.link = Some(value.to_vec()),
            b"size" => {
                pending.size = Some(
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(bad)?,
                )
            }
            _ => {}
        }
        rest = &rest[length..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        build(&mut builder);
        builder.into_inner().unwrap()
    }

    fn file(builder: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, data).unwrap();
    }

    fn index(bytes: &[u8]) -> Result<TarIndex, TarError> {
        TarIndex::read(&mut std::io::Cursor::new(bytes), bytes.len() as u64)
    }

    fn read_member(bytes: &[u8], member: &Member) -> Vec<u8> {
        bytes[member.offset as usize..(member.offset + member.size) as usize].to_vec()
    }

    #[test]
    fn finds_members_with_long_names_and_links() {
        let long = format!("{}/layer.tar", "d".repeat(150));
        let bytes = tar_of(|b| {
            file(b, "./manifest.json", b"[]");
            file(b, &long, b"layer bytes");
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            b.append_link(
                &mut header,
                "other/layer.tar",
                format!("../{}/layer.tar", "d".repeat(150)),
            )
            .unwrap();
        });
        let index = index(&bytes).unwrap();
        let manifest = index.file("manifest.json").unwrap().unwrap();
        assert_eq!(read_member(&bytes, manifest), b"[]");
        let linked = index.file("other/layer.tar").unwrap().unwrap();
        assert_eq!(read_member(&bytes, linked), b"layer bytes");
        assert!(index.file("absent").unwrap().is_none());
    }

    #[test]
    fn refuses_traversal_absolute_and_duplicate_names() {
        for name in ["../evil", "a/../../evil", "/etc/passwd"] {
            let mut bytes = tar_of(|b| file(b, "placeholder", b"x"));
            // Write the hostile name straight into the header (the tar crate refuses it).
            bytes[..100].fill(0);
            bytes[..name.len()].copy_from_slice(name.as_bytes());
            let mut header = tar::Header::from_byte_slice(&bytes[..512]).clone();
            header.set_cksum();
            bytes[..512].copy_from_slice(header.as_bytes());
            let error = index(&bytes).unwrap_err().to_string();
            assert!(error.contains(name), "{name}: {error}");
        }
        let bytes = tar_of(|b| {
            file(b, "manifest.json", b"[]");
            file(b, "./manifest.json", b"[1]");
        });
        assert!(index(&bytes).unwrap_err().to_string().contains("twice"));
    }

    #[test]
    fn refuses_links_that_leave_the_archive() {
        let bytes = tar_of(|b| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            b.append_link(&mut header, "a/layer.tar", "../../outside")
                .unwrap();
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            b.append_link(&mut header, "loop", "loop").unwrap();
        });
        let index = index(&bytes).unwrap();
        assert!(index.file("a/layer.tar").is_err());
        assert!(index
            .file("loop")
            .unwrap_err()
            .to_string()
            .contains("links"));
    }

    #[test]
    fn refuses_truncation_bad_checksums_and_huge_extension_headers() {
        let bytes = tar_of(|b| file(b, "blob", &[7u8; 2000]));
        assert!(index(&bytes[..1024])
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        let mut corrupt = bytes.clone();
        corrupt[10] ^= 0x55;
        assert!(index(&corrupt)
            .unwrap_err()
            .to_string()
            .contains("checksum"));
        assert!(index(b"not a tar at all, just some text").is_err());
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::GNULongName);
        header.set_size(1 << 30);
        header.set_cksum();
        let mut huge = header.as_bytes().to_vec();
        huge.resize(huge.len() + (1 << 20), 0);
        assert!(index(&huge).is_err());
    }

    #[test]
    fn reads_pax_paths_and_base256_sizes() {
        assert_eq!(number(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]), Some(256));
        assert_eq!(number(b"0000644\0"), Some(0o644));
        assert_eq!(number(&[0xff; 12]), None);
        let mut pending = Pending::default();
        apply_pax(b"30 path=blobs/sha256/abcdef01\n", &mut pending, 0).unwrap();
        assert_eq!(pending.path.as_deref(), Some(&b"blobs/sha256/abcdef01"[..]));
        assert!(apply_pax(b"999 path=x\n", &mut pending, 0).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000)) {
            let _ = index(&bytes);
        }
    }
}
