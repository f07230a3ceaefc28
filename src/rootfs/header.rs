//! Reading one tar header into what the applier acts on: the kind of entry it creates and the
//! validated metadata (mode, owner, times, PAX overrides, xattrs, device numbers). Kept apart
//! from the entry loop because this is where hostile header fields are refused, as GNU tar
//! and Go's `archive/tar` read them.

use std::io::Read;

use rustix::fs::{FileType, Timespec};

use super::entry::{parse_pax_time, Metadata};
use super::error::{display, Error};

/// The entry types the applier creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EntryKind {
    File,
    Directory,
    Symlink,
    Hardlink,
    Node(FileType),
    /// Global PAX headers: ignored.
    Ignored,
}

impl EntryKind {
    pub(super) fn of(
        header: &tar::Header,
        raw_name: &[u8],
        path: &[u8],
    ) -> Result<EntryKind, Error> {
        let kind = match header.entry_type() {
            // An old-style regular entry with a trailing slash is a directory (as in Go).
            tar::EntryType::Regular if header.as_bytes()[156] == 0 && raw_name.ends_with(b"/") => {
                EntryKind::Directory
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
            tar::EntryType::Directory => EntryKind::Directory,
            tar::EntryType::Symlink => EntryKind::Symlink,
            tar::EntryType::Link => EntryKind::Hardlink,
            tar::EntryType::Fifo => EntryKind::Node(FileType::Fifo),
            tar::EntryType::Char => EntryKind::Node(FileType::CharacterDevice),
            tar::EntryType::Block => EntryKind::Node(FileType::BlockDevice),
            tar::EntryType::XGlobalHeader => EntryKind::Ignored,
            other => {
                return Err(Error::Unsupported {
                    path: display(path),
                    what: format!("tar entry type {:?} (byte {:#04x})", other, other.as_byte()),
                })
            }
        };
        Ok(kind)
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            EntryKind::File => "regular file",
            EntryKind::Directory => "directory",
            EntryKind::Symlink => "symlink",
            EntryKind::Hardlink => "hardlink",
            EntryKind::Node(_) => "special file",
            EntryKind::Ignored => "global header",
        }
    }
}

/// The validated metadata of an entry, PAX overrides included.
pub(super) fn metadata<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    path: &[u8],
) -> Result<Metadata, Error> {
    let header = entry.header();
    let invalid = |field| Error::InvalidHeader {
        path: display(path),
        field,
    };
    let mode = header.mode().map_err(|_| invalid("mode"))? & 0o7777;
    let uid = u32::try_from(header.uid().map_err(|_| invalid("uid"))?)
        .ok()
        .filter(|&id| id != u32::MAX)
        .ok_or_else(|| invalid("uid"))?;
    let gid = u32::try_from(header.gid().map_err(|_| invalid("gid"))?)
        .ok()
        .filter(|&id| id != u32::MAX)
        .ok_or_else(|| invalid("gid"))?;
    let seconds = i64::try_from(header.mtime().map_err(|_| invalid("mtime"))?)
        .map_err(|_| invalid("mtime"))?;
    let mut meta = Metadata {
        mode,
        uid,
        gid,
        atime: Timespec {
            tv_sec: seconds,
            tv_nsec: 0,
        },
        mtime: Timespec {
            tv_sec: seconds,
            tv_nsec: 0,
        },
        xattrs: Vec::new(),
    };
    let mut atime = None;
    if let Some(extensions) = entry.pax_extensions().map_err(|_| invalid("PAX header"))? {
        for extension in extensions {
            let extension = extension.map_err(|_| invalid("PAX header"))?;
            let key = extension.key().map_err(|_| invalid("PAX key"))?;
            let value = extension.value_bytes();
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                meta.xattrs.push((name.to_string(), value.to_vec()));
            } else if key.starts_with("GNU.sparse.") {
                return Err(Error::Unsupported {
                    path: display(path),
                    what: "PAX sparse file".to_string(),
                });
            } else if key == "mtime" || key == "atime" {
                let time = std::str::from_utf8(value)
                    .ok()
                    .and_then(parse_pax_time)
                    .ok_or_else(|| invalid("PAX time"))?;
                if key == "mtime" {
                    meta.mtime = time
                } else {
                    atime = Some(time)
                }
            }
        }
    }
    meta.atime = atime.unwrap_or(meta.mtime);
    Ok(meta)
}

/// Major and minor numbers of a device entry; they must fit the kernel's 32 bits. A FIFO has
/// none (its fields are not read). Empty fields (NUL- or space-filled, as Python's `tarfile`
/// writes them) read as zero, as GNU tar and Go's `archive/tar` read them.
pub(super) fn device_numbers(
    header: &tar::Header,
    file_type: FileType,
    path: &[u8],
) -> Result<(u32, u32), Error> {
    if file_type == FileType::Fifo {
        return Ok((0, 0));
    }
    let fields = match (header.as_ustar(), header.as_gnu()) {
        (Some(ustar), _) => Some((&ustar.dev_major, &ustar.dev_minor)),
        (None, Some(gnu)) => Some((&gnu.dev_major, &gnu.dev_minor)),
        // A v7 header has no device fields.
        (None, None) => None,
    };
    let Some((major, minor)) = fields else {
        return Ok((0, 0));
    };
    let number = |field: &[u8; 8]| {
        numeric_field(field)
            .and_then(|value| u32::try_from(value).ok())
            .ok_or_else(|| Error::InvalidHeader {
                path: display(path),
                field: "device number",
            })
    };
    Ok((number(major)?, number(minor)?))
}

/// A tar numeric field: octal digits padded with NULs or spaces (empty reads as zero), or the
/// GNU base-256 form (high bit set; negative values refused).
fn numeric_field(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|byte| byte & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return None;
        }
        return field[1..]
            .iter()
            .try_fold(u64::from(field[0] & 0x3f), |value, &byte| {
                value.checked_mul(256).map(|value| value | u64::from(byte))
            });
    }
    let text = field
        .iter()
        .position(|&byte| byte != b' ' && byte != 0)
        .map_or(&field[..0], |start| &field[start..]);
    let end = text
        .iter()
        .position(|&byte| byte == b' ' || byte == 0)
        .unwrap_or(text.len());
    let (digits, rest) = text.split_at(end);
    if rest.iter().any(|&byte| byte != b' ' && byte != 0) {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &byte| match byte {
        b'0'..=b'7' => value
            .checked_mul(8)
            .map(|value| value + u64::from(byte - b'0')),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::numeric_field;

    #[test]
    fn numeric_fields_read_like_gnu_tar_and_go() {
        assert_eq!(numeric_field(&[0; 8]), Some(0));
        assert_eq!(numeric_field(b"        "), Some(0));
        assert_eq!(numeric_field(b"0000012\0"), Some(10));
        assert_eq!(numeric_field(b"  17 \0\0\0"), Some(15));
        assert_eq!(numeric_field(&[0x80, 0, 0, 0, 0, 0, 1, 0]), Some(256));
        assert_eq!(numeric_field(b"0008\0\0\0\0"), None);
        assert_eq!(numeric_field(b"12 34\0\0\0"), None);
        assert_eq!(numeric_field(&[0xff; 8]), None);
    }
}
