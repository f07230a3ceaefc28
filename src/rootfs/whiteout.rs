//! Pure functions over layer entry names: normalisation and whiteout classification.
//!
//! Everything here is lexical and host-independent, so it is table-tested. Names are sanitised
//! before anything touches the file system (docs/unpack.md 3.2 class 13): a whiteout whose parent
//! contains `..` never reaches the removal code.

/// Longest path component Linux accepts (NAME_MAX).
const NAME_MAX: usize = 255;
/// Deepest entry path accepted; bounds recursion and open directory descriptors.
pub(crate) const MAX_DEPTH: usize = 256;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";
const AUFS_META_PREFIX: &[u8] = b".wh..wh.";

/// Normalise an entry name (or hardlink target): strip leading `/`, drop empty and `.`
/// components, reject `..`, NUL and over-long components. The result has no leading or
/// trailing `/`; the root is the empty string.
pub(crate) fn normalize(name: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::with_capacity(name.len());
    let mut depth = 0;
    for component in name.split(|&byte| byte == b'/') {
        match component {
            b"" | b"." => continue,
            b".." => return Err("`..` components are not allowed"),
            _ if component.contains(&0) => return Err("NUL byte in name"),
            _ if component.len() > NAME_MAX => return Err("component longer than 255 bytes"),
            _ => {}
        }
        depth += 1;
        if depth > MAX_DEPTH {
            return Err("path is too deep");
        }
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(component);
    }
    Ok(out)
}

/// Split a normalised path into (parent, basename). The root has an empty basename.
pub(crate) fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&byte| byte == b'/') {
        Some(index) => (&path[..index], &path[index + 1..]),
        None => (&[], path),
    }
}

/// Join a normalised parent and a component.
pub(crate) fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parent.len() + name.len() + 1);
    out.extend_from_slice(parent);
    if !parent.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// The components of a normalised path.
pub(crate) fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&byte| byte == b'/')
        .filter(|component| !component.is_empty())
}

/// The normalised path and each of its ancestors (excluding the root).
pub(crate) fn with_ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    let ends = path
        .iter()
        .enumerate()
        .filter(|(_, &byte)| byte == b'/')
        .map(|(index, _)| index);
    ends.chain(std::iter::once(path.len()))
        .filter(|&end| end > 0)
        .map(move |end| &path[..end])
}

/// What an entry name means for the changeset.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Kind<'a> {
    /// An ordinary entry to create.
    Plain,
    /// `.wh..wh..opq`: clear the parent's lower content.
    Opaque,
    /// `.wh.NAME`: remove `NAME` from lower layers.
    Whiteout(&'a [u8]),
    /// AUFS metadata (`.wh..wh.*`, or anything under it): skipped.
    AufsMetadata,
}

/// Classify a normalised entry path. Errors on whiteouts whose target is empty, `.` or `..`,
/// and on `.wh.` directories that would be materialised as parents.
pub(crate) fn classify(path: &[u8]) -> Result<Kind<'_>, ()> {
    let (parent, base) = split(path);
    for component in components(parent) {
        if component.starts_with(AUFS_META_PREFIX) {
            return Ok(Kind::AufsMetadata);
        }
        if component.starts_with(WHITEOUT_PREFIX) {
            return Err(());
        }
    }
    if base == OPAQUE {
        return Ok(Kind::Opaque);
    }
    if base.starts_with(AUFS_META_PREFIX) {
        return Ok(Kind::AufsMetadata);
    }
    match base.strip_prefix(WHITEOUT_PREFIX) {
        None => Ok(Kind::Plain),
        Some(b"" | b"." | b"..") => Err(()),
        Some(target) => Ok(Kind::Whiteout(target)),
    }
}

/// True when a normalised hardlink target points into AUFS metadata (`.wh..wh.plnk/...`).
pub(crate) fn is_aufs_path(path: &[u8]) -> bool {
    components(path).any(|component| component.starts_with(AUFS_META_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_strips_slashes_and_dots() {
        assert_eq!(normalize(b"/a//b/./c/").unwrap(), b"a/b/c");
        assert_eq!(normalize(b"./").unwrap(), b"");
        assert_eq!(normalize(b"/").unwrap(), b"");
        assert_eq!(normalize(b"x").unwrap(), b"x");
    }

    #[test]
    fn normalize_rejects_dotdot_nul_and_long_components() {
        assert!(normalize(b"../x").is_err());
        assert!(normalize(b"a/../../x").is_err());
        assert!(normalize(b"a/..").is_err());
        assert!(normalize(b"a\0b").is_err());
        assert!(normalize(&[b'a'; 256]).is_err());
        assert!(normalize(&[b'a'; 255]).is_ok());
        let deep = "d/".repeat(MAX_DEPTH + 1);
        assert!(normalize(deep.as_bytes()).is_err());
    }

    #[test]
    fn split_join_and_ancestors() {
        assert_eq!(split(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split(b"c"), (&b""[..], &b"c"[..]));
        assert_eq!(join(b"", b"c"), b"c");
        assert_eq!(join(b"a/b", b"c"), b"a/b/c");
        let ancestors: Vec<&[u8]> = with_ancestors(b"a/b/c").collect();
        assert_eq!(ancestors, vec![&b"a"[..], b"a/b", b"a/b/c"]);
        assert_eq!(with_ancestors(b"").count(), 0);
    }

    #[test]
    fn classify_whiteouts() {
        assert_eq!(classify(b"a/b").unwrap(), Kind::Plain);
        assert_eq!(classify(b"a/.wh.b").unwrap(), Kind::Whiteout(b"b"));
        assert_eq!(classify(b".wh..b").unwrap(), Kind::Whiteout(b".b"));
        assert_eq!(classify(b"d/.wh..wh..opq").unwrap(), Kind::Opaque);
        assert_eq!(classify(b".wh..wh.aufs").unwrap(), Kind::AufsMetadata);
        assert_eq!(classify(b".wh..wh.plnk/1.2").unwrap(), Kind::AufsMetadata);
        assert_eq!(classify(b"x.wh.y").unwrap(), Kind::Plain);
    }

    #[test]
    fn classify_rejects_dot_targets_and_whiteout_parents() {
        for bad in [&b".wh."[..], b".wh..", b".wh...", b"sub/.wh...", b".wh.d/x"] {
            assert!(classify(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(is_aufs_path(b".wh..wh.plnk/123.4"));
        assert!(!is_aufs_path(b"usr/bin"));
    }
}
