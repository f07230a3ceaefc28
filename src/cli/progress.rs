//! Progress for people, on stderr. Library users get the events through
//! [`acrpull::Reporter`]; only the binary decides how they look:
//!
//! - [`BarsReporter`]: indicatif bars on a terminal, one per active download plus an
//!   "applying" bar and one overall line. Finished bars collapse into a single printed line
//!   each, so only `--jobs` bars (plus two) are ever live, and redraws are capped at
//!   [`REFRESH_HZ`] by indicatif's draw target, however many layers the image has.
//! - [`PlainReporter`]: one line per event, for CI logs (`--progress=plain`).
//! - nothing but the final line (the default off a terminal), or nothing at all (`-q`).
//!
//! [`choose`] is the pure decision between them, so the rules are unit-tested.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use acrpull::report::{BlobKind, Reporter};
use acrpull::Digest;
use clap::ValueEnum;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Redraws per second at most, for all bars together.
pub const REFRESH_HZ: u8 = 8;

/// `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ProgressMode {
    /// Bars on a terminal; elsewhere only the final line.
    #[default]
    Auto,
    /// One line per event (for CI logs).
    Plain,
    /// Bars (falls back to plain lines when stderr is not a terminal).
    Bars,
    /// No progress; the final line is still printed (use -q to drop it).
    None,
}

/// What is actually drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// indicatif bars.
    Bars,
    /// Line per event, then the final line.
    Plain,
    /// Only the final line.
    Final,
    /// Nothing (errors still go to stderr).
    Silent,
}

/// The environment facts [`choose`] looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Terminal {
    /// stderr is a terminal.
    pub stderr_is_tty: bool,
    /// `NO_COLOR` is set (to anything) or `TERM=dumb`.
    pub plain_terminal: bool,
    /// `ACRPULL_NO_PROGRESS` is set to something other than empty or `0`.
    pub no_progress_env: bool,
}

impl Terminal {
    /// Read the facts from this process.
    pub fn detect() -> Self {
        use std::io::IsTerminal as _;
        let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0");
        Self {
            stderr_is_tty: std::io::stderr().is_terminal(),
            plain_terminal: std::env::var_os("NO_COLOR").is_some()
                || std::env::var_os("TERM").is_some_and(|t| t == "dumb"),
            no_progress_env: set("ACRPULL_NO_PROGRESS"),
        }
    }
}

/// Decide how progress looks. `quiet` wins; then the mode; bars need a terminal that is
/// neither `NO_COLOR` nor `TERM=dumb`, and `ACRPULL_NO_PROGRESS` always turns bars off.
pub fn choose(mode: ProgressMode, quiet: bool, terminal: Terminal) -> Style {
    let bars_possible =
        terminal.stderr_is_tty && !terminal.plain_terminal && !terminal.no_progress_env;
    match (quiet, mode) {
        (true, _) => Style::Silent,
        (false, ProgressMode::None) => Style::Final,
        (false, ProgressMode::Plain) => Style::Plain,
        (false, ProgressMode::Bars) if bars_possible => Style::Bars,
        (false, ProgressMode::Bars) => Style::Plain,
        (false, ProgressMode::Auto) if bars_possible => Style::Bars,
        (false, ProgressMode::Auto) => Style::Final,
    }
}

fn short(digest: &Digest) -> &str {
    let hex = digest.hex();
    &hex[..hex.len().min(12)]
}

fn kind_name(kind: BlobKind) -> &'static str {
    match kind {
        BlobKind::Config => "config",
        BlobKind::Layer => "layer",
        BlobKind::Manifest => "manifest",
    }
}

/// Bytes as a short human string.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    #[allow(clippy::cast_precision_loss)] // display only
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn line(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{text}");
}

/// Prints one line per resolved image, blob and applied layer to stderr.
#[derive(Debug, Default)]
pub struct PlainReporter {
    sizes: Mutex<HashMap<Digest, (BlobKind, u64)>>,
}

impl Reporter for PlainReporter {
    fn on_resolved(&self, reference: &str, digest: &Digest, platform: Option<&str>) {
        let platform = platform.map(|p| format!(" ({p})")).unwrap_or_default();
        line(&format!("{reference}: resolved to {digest}{platform}"));
    }

    fn on_blob_start(&self, digest: &Digest, kind: BlobKind, size: u64, cached: bool) {
        if cached {
            // Announced now; `on_blob_done` stays silent for it.
            line(&format!("{} {}: exists", short(digest), kind_name(kind)));
        } else if let Ok(mut sizes) = self.sizes.lock() {
            sizes.insert(digest.clone(), (kind, size));
        }
    }

    fn on_blob_retry(&self, digest: &Digest, offset: u64, reason: &str) {
        line(&format!(
            "{}: {reason}; resuming at {}",
            short(digest),
            human_bytes(offset)
        ));
    }

    fn on_blob_done(&self, digest: &Digest) {
        let entry = self.sizes.lock().ok().and_then(|mut s| s.remove(digest));
        if let Some((kind, size)) = entry {
            line(&format!(
                "{} {}: downloaded {}",
                short(digest),
                kind_name(kind),
                human_bytes(size)
            ));
        }
    }

    fn on_layer_applied(&self, digest: &Digest, index: usize, count: usize) {
        line(&format!(
            "{}: applied layer {}/{count}",
            short(digest),
            index + 1
        ));
    }

    fn on_warning(&self, message: &str) {
        line(&format!("warning: {message}"));
    }
}

/// Counters behind the overall line.
#[derive(Debug, Default)]
struct Totals {
    started: usize,
    done: usize,
    cached: usize,
    bytes_total: u64,
}

#[derive(Debug, Default)]
struct BarsState {
    blobs: HashMap<Digest, (BlobKind, u64, Option<ProgressBar>)>,
    totals: Totals,
    apply: Option<ProgressBar>,
}

/// indicatif bars on stderr.
#[derive(Debug)]
pub struct BarsReporter {
    multi: MultiProgress,
    overall: ProgressBar,
    state: Mutex<BarsState>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl BarsReporter {
    /// Bars drawing to stderr at most [`REFRESH_HZ`] times a second.
    pub fn new(reference: &str) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(REFRESH_HZ));
        let overall = multi.add(ProgressBar::new(0));
        // No sizes are known until the reference resolves.
        overall.set_style(style("{spinner} {prefix} {msg}"));
        overall.set_prefix(reference.to_string());
        overall.set_message("resolving");
        overall.enable_steady_tick(Duration::from_millis(120));
        Self {
            multi,
            overall,
            state: Mutex::new(BarsState::default()),
        }
    }

    fn update_overall(&self, totals: &Totals) {
        let mut message = format!("{}/{} blobs", totals.done, totals.started);
        if totals.cached > 0 {
            message.push_str(&format!(" ({} exist)", totals.cached));
        }
        self.overall.set_length(totals.bytes_total);
        self.overall.set_message(message);
    }

    /// Clear every bar (before the final line is printed).
    pub fn finish(&self) {
        if let Ok(mut state) = self.state.lock() {
            for (_, _, bar) in state.blobs.values() {
                if let Some(bar) = bar {
                    bar.finish_and_clear();
                }
            }
            if let Some(apply) = state.apply.take() {
                apply.finish_and_clear();
            }
        }
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
    }
}

impl Reporter for BarsReporter {
    fn on_resolved(&self, reference: &str, digest: &Digest, platform: Option<&str>) {
        let platform = platform.map(|p| format!(" ({p})")).unwrap_or_default();
        let _ = self
            .multi
            .println(format!("{reference}: resolved to {digest}{platform}"));
        self.overall.set_style(style(
            "{spinner} {prefix} [{bar:25}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
        ));
        self.overall.set_message("downloading");
    }

    fn on_blob_start(&self, digest: &Digest, kind: BlobKind, size: u64, cached: bool) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.totals.started += 1;
        let bar = if cached {
            state.totals.cached += 1;
            let _ = self.multi.println(format!(
                "  {} {:<8} exists      {}",
                short(digest),
                kind_name(kind),
                human_bytes(size)
            ));
            None
        } else {
            state.totals.bytes_total += size;
            let bar = self
                .multi
                .insert_before(&self.overall, ProgressBar::new(size));
            bar.set_style(style(
                "  {prefix} [{bar:25}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            ));
            bar.set_prefix(format!("{} {:<8}", short(digest), kind_name(kind)));
            Some(bar)
        };
        state.blobs.insert(digest.clone(), (kind, size, bar));
        self.update_overall(&state.totals);
    }

    fn on_blob_progress(&self, digest: &Digest, bytes: u64) {
        self.overall.inc(bytes);
        if let Ok(state) = self.state.lock() {
            if let Some((_, _, Some(bar))) = state.blobs.get(digest) {
                bar.inc(bytes);
            }
        }
    }

    fn on_blob_retry(&self, digest: &Digest, offset: u64, reason: &str) {
        if let Ok(state) = self.state.lock() {
            if let Some((_, _, Some(bar))) = state.blobs.get(digest) {
                // Bytes past `offset` will arrive again.
                let lost = bar.position().saturating_sub(offset);
                self.overall
                    .set_position(self.overall.position().saturating_sub(lost));
                bar.set_position(offset);
            }
        }
        let _ = self.multi.println(format!(
            "  {} retrying at {}: {reason}",
            short(digest),
            human_bytes(offset)
        ));
    }

    fn on_blob_done(&self, digest: &Digest) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.totals.done += 1;
        if let Some((kind, size, bar)) = state.blobs.get_mut(digest) {
            if let Some(bar) = bar.take() {
                bar.finish_and_clear();
                self.multi.remove(&bar);
                let _ = self.multi.println(format!(
                    "  {} {:<8} downloaded  {}",
                    short(digest),
                    kind_name(*kind),
                    human_bytes(*size)
                ));
            }
        }
        self.update_overall(&state.totals);
    }

    fn on_layer_apply_start(&self, digest: &Digest, index: usize, count: usize) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let apply = state.apply.get_or_insert_with(|| {
            let bar = self.multi.insert_before(
                &self.overall,
                ProgressBar::new(u64::try_from(count).unwrap_or(u64::MAX)),
            );
            bar.set_style(style("  applying layers [{bar:25}] {pos}/{len} {msg}"));
            bar
        });
        apply.set_message(format!("layer {}/{count} {}", index + 1, short(digest)));
    }

    fn on_layer_applied(&self, _digest: &Digest, index: usize, count: usize) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if let Some(apply) = &state.apply {
            apply.inc(1);
            if index + 1 == count {
                apply.finish_and_clear();
                self.multi.remove(apply);
                state.apply = None;
                let _ = self.multi.println(format!("  applied {count} layer(s)"));
            }
        }
    }

    fn on_warning(&self, message: &str) {
        let _ = self.multi.println(format!("warning: {message}"));
    }
}

/// Fans events out to several reporters (e.g. bars on stderr and JSON events on stdout).
pub struct Tee(pub Vec<std::sync::Arc<dyn Reporter>>);

impl Reporter for Tee {
    fn on_resolved(&self, reference: &str, digest: &Digest, platform: Option<&str>) {
        self.0
            .iter()
            .for_each(|r| r.on_resolved(reference, digest, platform));
    }
    fn on_blob_start(&self, digest: &Digest, kind: BlobKind, size: u64, cached: bool) {
        self.0
            .iter()
            .for_each(|r| r.on_blob_start(digest, kind, size, cached));
    }
    fn on_blob_progress(&self, digest: &Digest, bytes: u64) {
        self.0
            .iter()
            .for_each(|r| r.on_blob_progress(digest, bytes));
    }
    fn on_blob_retry(&self, digest: &Digest, offset: u64, reason: &str) {
        self.0
            .iter()
            .for_each(|r| r.on_blob_retry(digest, offset, reason));
    }
    fn on_blob_done(&self, digest: &Digest) {
        self.0.iter().for_each(|r| r.on_blob_done(digest));
    }
    fn on_layer_apply_start(&self, digest: &Digest, index: usize, count: usize) {
        self.0
            .iter()
            .for_each(|r| r.on_layer_apply_start(digest, index, count));
    }
    fn on_layer_applied(&self, digest: &Digest, index: usize, count: usize) {
        self.0
            .iter()
            .for_each(|r| r.on_layer_applied(digest, index, count));
    }
    fn on_warning(&self, message: &str) {
        self.0.iter().for_each(|r| r.on_warning(message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTY: Terminal = Terminal {
        stderr_is_tty: true,
        plain_terminal: false,
        no_progress_env: false,
    };

    #[test]
    fn auto_draws_bars_only_on_a_capable_terminal() {
        assert_eq!(choose(ProgressMode::Auto, false, TTY), Style::Bars);
        let pipe = Terminal {
            stderr_is_tty: false,
            ..TTY
        };
        assert_eq!(choose(ProgressMode::Auto, false, pipe), Style::Final);
        let dumb = Terminal {
            plain_terminal: true,
            ..TTY
        };
        assert_eq!(choose(ProgressMode::Auto, false, dumb), Style::Final);
        let env = Terminal {
            no_progress_env: true,
            ..TTY
        };
        assert_eq!(choose(ProgressMode::Auto, false, env), Style::Final);
        assert_eq!(choose(ProgressMode::Bars, false, env), Style::Plain);
    }

    #[test]
    fn quiet_wins_and_explicit_modes_are_kept() {
        for mode in [
            ProgressMode::Auto,
            ProgressMode::Plain,
            ProgressMode::Bars,
            ProgressMode::None,
        ] {
            assert_eq!(choose(mode, true, TTY), Style::Silent);
        }
        assert_eq!(choose(ProgressMode::Plain, false, TTY), Style::Plain);
        assert_eq!(choose(ProgressMode::None, false, TTY), Style::Final);
        assert_eq!(
            choose(ProgressMode::Bars, false, Terminal::default()),
            Style::Plain
        );
    }

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
    }
}
