//! Platforms (`os/arch[/variant]`) and choosing one entry of an index, with containerd's
//! normalisation (`aarch64` = `arm64` = `arm64/v8`, `x86_64` = `amd64`, `arm` = `arm/v7`).

use std::fmt;
use std::str::FromStr;

/// A platform to pull.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// Architecture, normalised, e.g. `amd64`.
    pub architecture: String,
    /// Variant, normalised, e.g. `v8` for arm64 (`None` where the architecture has none).
    pub variant: Option<String>,
}

/// Why a platform string is not valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid platform `{0}`: expected os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8")]
pub struct PlatformParseError(pub String);

impl Platform {
    /// A normalised platform.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        let (architecture, variant) = normalize_arch(architecture, variant.unwrap_or(""));
        Self {
            os: os.to_ascii_lowercase(),
            architecture,
            variant,
        }
    }

    /// The platform of the machine acrpull runs on (always `linux/...` on Linux).
    pub fn host() -> Self {
        let arch = std::env::consts::ARCH;
        let variant = if arch == "arm" { Some("v7") } else { None };
        Platform::new("linux", arch, variant)
    }

    /// Whether an index entry's platform satisfies this one (both normalised first).
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        let other = Platform::new(os, architecture, variant);
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant == other.variant
                || (self.variant.is_none() && other.variant.is_none()))
    }
}

/// containerd's `normalizeArch`.
fn normalize_arch(arch: &str, variant: &str) -> (String, Option<String>) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant.to_ascii_lowercase();
    let (a, v): (&str, &str) = match arch.as_str() {
        "i386" => ("386", ""),
        "x86_64" | "x86-64" | "amd64" => ("amd64", if variant == "v1" { "" } else { &variant }),
        "aarch64" | "arm64" => (
            "arm64",
            match variant.as_str() {
                "8" | "v8" | "" => "v8",
                _ => &variant,
            },
        ),
        "armhf" => ("arm", "v7"),
        "armel" => ("arm", "v6"),
        "arm" => (
            "arm",
            match variant.as_str() {
                "" | "7" => "v7",
                "5" | "6" | "8" => {
                    return ("arm".to_string(), Some(format!("v{variant}")));
                }
                _ => &variant,
            },
        ),
        _ => (&arch, &variant),
    };
    let v = if v.is_empty() {
        None
    } else {
        Some(v.to_string())
    };
    (a.to_string(), v)
}

impl FromStr for Platform {
    type Err = PlatformParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || p.contains(char::is_whitespace))
        {
            return Err(PlatformParseError(s.to_string()));
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] => Ok(Platform::new(os, arch, Some(variant))),
            _ => Err(PlatformParseError(s.to_string())),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_containerd() {
        let p: Platform = "linux/arm64".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!(p.matches("linux", "arm64", Some("v8")));
        assert!(p.matches("linux", "aarch64", None));
        let p: Platform = "linux/arm".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm/v7");
        assert!(!p.matches("linux", "arm", Some("v6")));
        let p: Platform = "linux/x86_64".parse().unwrap();
        assert_eq!(p.to_string(), "linux/amd64");
        assert!(p.matches("linux", "amd64", None));
        assert!(!p.matches("windows", "amd64", None));
    }

    #[test]
    fn rejects_malformed() {
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/ amd64"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
    }
}
