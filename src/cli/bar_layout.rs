//! How wide each part of a progress line is, so bars fit the terminal instead of wrapping
//! (a wrapped line breaks indicatif's redraw-in-place). Every field has a fixed width, and
//! the bar itself takes what is left (`{wide_bar}`); as the terminal narrows, digests and
//! sizes and rates switch to their short forms first, then the rate and the ETA go.
//! Pure functions: the choices are unit-tested for every width.

use std::time::Duration;

use indicatif::{ProgressState, ProgressStyle};

/// The narrowest bar worth drawing; fields are dropped before the bar gets narrower.
pub const MIN_BAR: usize = 10;
/// Width assumed when stderr's size is unknown.
pub const DEFAULT_WIDTH: usize = 80;

/// Long or short forms of the numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `12.3 MiB/45.6 MiB`, `1.5 MiB/s`, `eta 12s`.
    Long,
    /// `12M/46M`, `1.5M/s`, `12s`.
    Short,
}

/// Which fields a line carries at a given width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    /// Hex digits of digests shown (12 or 7).
    pub digest: usize,
    /// The blob kind column (`config`, `layer`, `manifest`).
    pub kind: bool,
    /// Number forms.
    pub form: Form,
    /// Bytes done and total.
    pub sizes: bool,
    /// Transfer rate.
    pub rate: bool,
    /// Time left.
    pub eta: bool,
    /// The narrowest bar this tier accepts (a long line with a stub of a bar is worse
    /// than short numbers).
    pub bar: usize,
}

/// One row of [`TIERS`].
#[allow(clippy::fn_params_excessive_bools)] // a table row
const fn tier(digest: usize, kind: bool, form: Form, rate: bool, eta: bool, sizes: bool) -> Fields {
    Fields {
        digest,
        kind,
        form,
        sizes,
        rate,
        eta,
        bar: if matches!(form, Form::Long) {
            20
        } else {
            MIN_BAR
        },
    }
}

/// From the richest to the barest: digest digits, kind column, number form, rate, ETA, sizes.
const TIERS: [Fields; 6] = [
    tier(12, true, Form::Long, true, true, true),
    tier(7, true, Form::Short, true, true, true),
    tier(7, true, Form::Short, false, true, true),
    tier(7, true, Form::Short, false, false, true),
    tier(7, false, Form::Short, false, false, true),
    tier(7, false, Form::Short, false, false, false),
];

/// Widest outputs of each formatter (checked by the tests).
const KIND_WIDTH: usize = 8;
const fn sizes_width(form: Form) -> usize {
    match form {
        Form::Long => 21,
        Form::Short => 11,
    }
}
const fn rate_width(form: Form) -> usize {
    match form {
        Form::Long => 12,
        Form::Short => 7,
    }
}
const fn eta_width(form: Form) -> usize {
    match form {
        Form::Long => 8,
        Form::Short => 4,
    }
}

impl Fields {
    /// Columns taken by everything but the bar, for a line starting with `lead` columns
    /// (indent, spinner) and showing `digest`s or not.
    fn fixed(&self, lead: usize, with_digest: bool) -> usize {
        let mut width = lead + 2; // `[` and `]`
        if with_digest {
            width += self.digest + 1;
            if self.kind {
                width += KIND_WIDTH + 1;
            }
        }
        if self.sizes {
            width += 1 + sizes_width(self.form);
        }
        if self.rate {
            width += 1 + rate_width(self.form);
        }
        if self.eta {
            width += 1 + eta_width(self.form);
        }
        width
    }

    /// The richest fields that leave the tier's narrowest bar room after `tail` columns of
    /// text behind the fields (the barest fields otherwise).
    pub fn for_width(width: usize, lead: usize, with_digest: bool, tail: usize) -> Self {
        TIERS
            .into_iter()
            .find(|tier| tier.fixed(lead, with_digest) + tail + tier.bar <= width)
            .unwrap_or(TIERS[TIERS.len() - 1])
    }

    /// The short form of `digest` these fields show.
    pub fn digest<'a>(&self, digest: &'a acrpull::Digest) -> &'a str {
        let hex = digest.hex();
        &hex[..hex.len().min(self.digest)]
    }

    /// An indicatif style: `lead_template` (literal text and keys such as `{spinner}` or
    /// `{prefix}`), the bar, then the chosen fields, then `tail_template`.
    pub fn style(&self, lead_template: &str, tail_template: &str) -> ProgressStyle {
        let mut template = format!("{lead_template}[{{wide_bar}}]");
        if self.sizes {
            template.push_str(" {sizes}");
        }
        if self.rate {
            template.push_str(" {rate}");
        }
        if self.eta {
            template.push_str(" {left}");
        }
        template.push_str(tail_template);
        let form = self.form;
        ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ")
            .with_key(
                "sizes",
                move |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                    let text = format!(
                        "{}/{}",
                        bytes(state.pos(), form),
                        bytes(state.len().unwrap_or(0), form)
                    );
                    let _ = write!(out, "{text:>width$}", width = sizes_width(form));
                },
            )
            .with_key(
                "rate",
                move |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                    let text = rate(state.per_sec(), form);
                    let _ = write!(out, "{text:>width$}", width = rate_width(form));
                },
            )
            .with_key(
                "left",
                move |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                    let text = eta(state.eta(), form);
                    let _ = write!(out, "{text:>width$}", width = eta_width(form));
                },
            )
    }
}

/// Bytes in the chosen form: `1023 B`/`12.3 MiB` (at most 10 columns), `1023B`/`9.9M`/`46M`
/// (at most 5).
pub fn bytes(n: u64, form: Form) -> String {
    match form {
        Form::Long => super::progress::human_bytes(n),
        Form::Short => {
            const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
            let (value, unit) = super::progress::scaled(n);
            if unit == 0 {
                format!("{n}B")
            } else if value < 9.95 {
                format!("{value:.1}{}", UNITS[unit])
            } else {
                format!("{value:.0}{}", UNITS[unit])
            }
        }
    }
}

fn rate(per_sec: f64, form: Form) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // display only
    let per_sec = if per_sec.is_finite() && per_sec > 0.0 {
        per_sec.min(1e15) as u64
    } else {
        0
    };
    format!("{}/s", bytes(per_sec, form))
}

/// Time left, at most 3 characters (`59s`, `59m`, `23h`, `99d`), `eta ` in front in the
/// long form.
fn eta(left: Duration, form: Form) -> String {
    let seconds = left.as_secs();
    let short = match seconds {
        0..=59 => format!("{seconds}s"),
        60..=3599 => format!("{}m", seconds / 60),
        3600..=86_399 => format!("{}h", seconds / 3600),
        _ => format!("{}d", (seconds / 86_400).min(99)),
    };
    match form {
        Form::Long => format!("eta {short}"),
        Form::Short => short,
    }
}

/// `text` cut to `width` columns with an ellipsis (for lines printed above the bars).
pub fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width || width == 0 {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// Lines printed above the bars: `full` when it fits, else `short`, cut to fit.
pub fn fit_either(full: &str, short: &str, width: usize) -> String {
    if full.chars().count() <= width {
        full.to_string()
    } else {
        fit(short, width)
    }
}

/// Columns of stderr's terminal ([`DEFAULT_WIDTH`] when it is not one).
pub fn stderr_width() -> usize {
    rustix::termios::tcgetwinsize(std::io::stderr())
        .ok()
        .map(|size| usize::from(size.ws_col))
        .filter(|columns| *columns > 0)
        .unwrap_or(DEFAULT_WIDTH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatters_stay_within_their_columns() {
        let samples = [
            0,
            1,
            999,
            1023,
            1024,
            10 * 1024 - 1,
            1_048_575,
            1_048_576,
            999 << 20,
            1023 << 20,
            (1 << 30) - 1,
            999 << 40,
        ];
        for n in samples {
            for form in [Form::Long, Form::Short] {
                let pair = format!("{}/{}", bytes(n, form), bytes(n, form));
                assert!(pair.chars().count() <= sizes_width(form), "{pair}");
                #[allow(clippy::cast_precision_loss)]
                let r = rate(n as f64, form);
                assert!(r.chars().count() <= rate_width(form), "{r}");
            }
        }
        for seconds in [0, 59, 60, 3599, 3600, 86_399, 86_400, u64::MAX / 2] {
            for form in [Form::Long, Form::Short] {
                let e = eta(Duration::from_secs(seconds), form);
                assert!(e.chars().count() <= eta_width(form), "{e}");
            }
        }
        assert_eq!(rate(f64::NAN, Form::Short), "0B/s");
        assert_eq!(bytes(46 << 20, Form::Short), "46M");
        assert_eq!(bytes(1536, Form::Short), "1.5K");
    }

    #[test]
    fn narrower_terminals_shorten_digests_and_numbers_first() {
        let at = |width| Fields::for_width(width, 2, true, 0);
        assert_eq!(at(120), TIERS[0]);
        assert_eq!(at(80), TIERS[1], "digests and numbers shorten first");
        assert_eq!(at(60), TIERS[1]);
        assert_eq!(at(50), TIERS[2], "then the rate goes");
        assert_eq!(at(45), TIERS[3], "then the ETA");
        for width in 22..=200 {
            let fields = at(width);
            assert!(
                fields.fixed(2, true) + fields.bar <= width,
                "{width}: {fields:?}"
            );
        }
    }

    #[test]
    fn fitted_lines_are_cut_with_an_ellipsis() {
        assert_eq!(fit("abcdef", 10), "abcdef");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit_either("long one", "short", 6), "short");
        assert_eq!(fit_either("long one", "shorter!", 6), "short…");
    }
}
