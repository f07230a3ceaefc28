//! Catching command-line slips before they cost a network round trip: a mistyped subcommand
//! (which the `acrpull IMAGE DEST` shorthand would otherwise take for an image on Docker Hub),
//! a pasted URL, and IMAGE and DEST given the wrong way round.

use std::path::Path;

/// The subcommand `word` was probably meant to be, when it is a near miss of one and cannot
/// be an image reference of its own.
///
/// A word with `/`, `:`, `@` or `.` names a registry, a tag, a digest or a path, so it is
/// taken as a reference. Otherwise it is a near miss when its edit distance (transpositions
/// count once) to a subcommand is at most 1 for names of up to five letters (`pul`, `pulll`,
/// `cahce`) and at most 2 for longer ones (`inspcet`, `completion`). Short official images
/// stay pullable: `perl` is two edits from `pull`, `caddy` two from `cache`.
pub fn subcommand_typo<'a>(word: &str, subcommands: &[&'a str]) -> Option<&'a str> {
    if word.is_empty()
        || word.starts_with('-')
        || word.contains(['/', ':', '@', '.'])
        || subcommands.contains(&word)
    {
        return None;
    }
    let word = word.to_ascii_lowercase();
    subcommands
        .iter()
        .map(|name| (edit_distance(&word, name), *name))
        .filter(|(distance, name)| {
            let allowed = if name.len() <= 5 { 1 } else { 2 };
            *distance <= allowed
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
/// neighbouring characters each cost one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j]: distance between a[..i] and b[..j].
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let substitution = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + substitution);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// A suggestion for an image argument pasted as a URL (`https://host/repo:tag`,
/// `docker://host/repo:tag`): the reference without its scheme.
pub fn pasted_url(image: &str) -> Option<String> {
    let (scheme, rest) = image.split_once("://")?;
    let rest = rest.trim_end_matches('/');
    let plain_http = if scheme.eq_ignore_ascii_case("http") {
        " with --plain-http (the registry speaks plain HTTP)"
    } else {
        ""
    };
    // `https://host/v2/repo/manifests/tag`, as copied from a log.
    let rest = match rest.split_once("/v2/") {
        Some((host, path)) => match path.rsplit_once("/manifests/") {
            Some((repository, tag)) if tag.starts_with("sha256:") => {
                format!("{host}/{repository}@{tag}")
            }
            Some((repository, tag)) => format!("{host}/{repository}:{tag}"),
            None => format!("{host}/{path}"),
        },
        None => rest.to_string(),
    };
    Some(format!(
        "`{image}` is a URL; images are named without a scheme: `{rest}`{plain_http}"
    ))
}

/// A suggestion when IMAGE and DEST look swapped: IMAGE is an existing directory and DEST
/// names an image with a registry, a tag or a digest (a bare word could be either, so it is
/// not enough).
pub fn swapped_arguments(image: &str, destination: &Path) -> Option<String> {
    let destination_text = destination.to_str()?;
    let names_an_image = {
        let first = destination_text.split('/').next().unwrap_or("");
        let has_registry =
            destination_text.contains('/') && (first.contains(['.', ':']) || first == "localhost");
        (has_registry || destination_text.contains([':', '@']))
            && !destination_text.starts_with(['.', '/', '~'])
            && destination_text.parse::<acrpull::Reference>().is_ok()
    };
    (Path::new(image).is_dir() && !image.starts_with("oci:") && names_an_image).then(|| {
        format!(
            "`{image}` is an existing directory and `{destination_text}` looks like an image: \
             the image comes first: acrpull pull {destination_text} {image}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cli::args::SUBCOMMANDS as COMMANDS;

    #[test]
    fn near_misses_of_subcommands_are_caught() {
        for (typo, meant) in [
            ("pul", "pull"),
            ("pulll", "pull"),
            ("plul", "pull"),
            ("Pull", "pull"),
            ("inspcet", "inspect"),
            ("insepct", "inspect"),
            ("cahce", "cache"),
            ("completion", "completions"),
            ("credential-helpr", "credential-helper"),
            ("tokn", "token"),
        ] {
            assert_eq!(subcommand_typo(typo, COMMANDS), Some(meant), "{typo}");
        }
    }

    #[test]
    fn plausible_images_are_left_alone() {
        for word in [
            "alpine",
            "perl",
            "caddy",
            "nginx",
            "busybox",
            "pul:1",
            "pul.example/app",
            "library/pul",
            "pul@sha256:00",
            "-q",
            "",
        ] {
            assert_eq!(subcommand_typo(word, COMMANDS), None, "{word}");
        }
        // The commands themselves are not near misses of each other (`pull` and `push`).
        for word in COMMANDS {
            assert_eq!(subcommand_typo(word, COMMANDS), None, "{word}");
        }
    }

    #[test]
    fn distance_counts_a_swap_once() {
        assert_eq!(edit_distance("pull", "pull"), 0);
        assert_eq!(edit_distance("plul", "pull"), 1);
        assert_eq!(edit_distance("perl", "pull"), 2);
        assert_eq!(edit_distance("", "man"), 3);
    }

    #[test]
    fn pasted_urls_become_references() {
        assert_eq!(
            pasted_url("https://registry.example/app:v1").as_deref(),
            Some("`https://registry.example/app:v1` is a URL; images are named without a scheme: `registry.example/app:v1`")
        );
        assert!(pasted_url("http://localhost:5000/app:v1")
            .unwrap()
            .ends_with(
                "`localhost:5000/app:v1` with --plain-http (the registry speaks plain HTTP)"
            ));
        assert!(pasted_url("https://r.example/v2/team/app/manifests/v1")
            .unwrap()
            .contains("`r.example/team/app:v1`"));
        assert_eq!(pasted_url("registry.example/app:v1"), None);
    }

    #[test]
    fn swapped_arguments_need_a_directory_and_an_image_with_a_registry_or_tag() {
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().to_str().unwrap();
        assert!(swapped_arguments(existing, Path::new("registry.example/app:v1")).is_some());
        assert!(swapped_arguments(existing, Path::new("alpine:3")).is_some());
        // A bare word could be a new directory's name.
        assert!(swapped_arguments(existing, Path::new("rootfs")).is_none());
        assert!(swapped_arguments(existing, Path::new("./out:1")).is_none());
        assert!(
            swapped_arguments("/nonexistent/acrpull", Path::new("alpine:3")).is_none(),
            "IMAGE is not a directory"
        );
    }
}
