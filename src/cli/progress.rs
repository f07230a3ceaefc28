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
    /// `TERM=dumb`: the terminal cannot move the cursor, so bars cannot redraw in place.
    /// (`NO_COLOR` is not looked at: it removes colour, not progress, and bars have none.)
    pub dumb: bool,
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
            dumb: std::env::var_os("TERM").is_some_and(|t| t == "dumb"),
            no_progress_env: set("ACRPULL_NO_PROGRESS"),
        }
    }
}

/// Decide how progress looks. `quiet` wins; then the mode; bars need a terminal that is not
/// `TERM=dumb`, and `ACRPULL_NO_PROGRESS` always turns bars off. `NO_COLOR` changes nothing
/// here (the convention is about colour only).
pub fn choose(mode: ProgressMode, quiet: bool, terminal: Terminal) -> Style {
    let bars_possible = terminal.stderr_is_tty && !terminal.dumb && !terminal.no_progress_env;
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

/// `bytes` in its binary unit: the value and the unit's power of 1024 (0 for bytes, at most
/// 4 for TiB).
pub fn scaled(bytes: u64) -> (f64, usize) {
    #[allow(clippy::cast_precision_loss)] // display only
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < 4 {
        value /= 1024.0;
        unit += 1;
    }
    (value, unit)
}

/// Bytes as a short human string.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (value, unit) = scaled(bytes);
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

/// Prints warnings only (`--progress none`, and `auto` off a terminal): what needs attention,
/// such as waiting for another pull to the same destination, is never silent.
#[derive(Debug, Default)]
pub struct WarningsReporter;

impl Reporter for WarningsReporter {
    fn on_warning(&self, message: &str) {
        line(&format!("warning: {message}"));
    }
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

/// What the overall line shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Phase {
    /// Before the reference resolves: a spinner and the reference.
    #[default]
    Resolving,
    /// Bytes, rate and time left of every download.
    Downloading,
    /// Every download finished and layers are still being applied: which one (a frozen
    /// `eta 0s` would say nothing).
    Applying,
}

#[derive(Debug, Default)]
struct BarsState {
    blobs: HashMap<Digest, (BlobKind, u64, Option<ProgressBar>)>,
    totals: Totals,
    apply: Option<ProgressBar>,
    /// The layer being applied (0-based) and the number of layers.
    applying: Option<(usize, usize)>,
    resolved: bool,
    phase: Phase,
}

/// indicatif bars on stderr, sized to the terminal's width when they are created (see
/// [`super::bar_layout`]).
#[derive(Debug)]
pub struct BarsReporter {
    multi: MultiProgress,
    overall: ProgressBar,
    state: Mutex<BarsState>,
    width: usize,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// Longest text behind the overall line's fields (`12/34 blobs (5 exist)`).
const OVERALL_TAIL: usize = 22;

impl BarsReporter {
    /// Bars drawing to stderr at most [`REFRESH_HZ`] times a second, as wide as stderr.
    pub fn new(reference: &str) -> Self {
        Self::with_target(
            reference,
            ProgressDrawTarget::stderr_with_hz(REFRESH_HZ),
            super::bar_layout::stderr_width(),
        )
    }

    /// Bars drawing to `target`, laid out for `width` columns.
    pub fn with_target(reference: &str, target: ProgressDrawTarget, width: usize) -> Self {
        let multi = MultiProgress::with_draw_target(target);
        let overall = multi.add(ProgressBar::new(0));
        // No sizes are known until the reference resolves.
        overall.set_style(style("{spinner} {wide_msg}"));
        overall.set_message(format!("resolving {reference}"));
        overall.enable_steady_tick(Duration::from_millis(120));
        Self {
            multi,
            overall,
            state: Mutex::new(BarsState::default()),
            width,
        }
    }

    fn println(&self, full: &str, short: &str) {
        let _ = self
            .multi
            .println(super::bar_layout::fit_either(full, short, self.width));
    }

    /// Put the overall line in the phase the state calls for, with its message.
    fn update_overall(&self, state: &mut BarsState) {
        let downloading = state.blobs.values().any(|(_, _, bar)| bar.is_some());
        let phase = match (state.resolved, state.applying) {
            (false, _) => Phase::Resolving,
            (true, Some(_)) if !downloading => Phase::Applying,
            (true, _) => Phase::Downloading,
        };
        let style = (phase != state.phase).then(|| match phase {
            Phase::Resolving | Phase::Applying => style("{spinner} {wide_msg}"),
            Phase::Downloading => {
                super::bar_layout::Fields::for_width(self.width, 2, false, OVERALL_TAIL)
                    .style("{spinner} ", " {msg}")
            }
        });
        state.phase = phase;
        let totals = &state.totals;
        let mut blobs = format!("{}/{} blobs", totals.done, totals.started);
        if totals.cached > 0 {
            blobs.push_str(&format!(" ({} exist)", totals.cached));
        }
        let message = match (phase, state.applying) {
            (Phase::Applying, Some((index, count))) => {
                format!("applying layer {}/{count}, downloads done", index + 1)
            }
            _ => blobs,
        };
        self.overall.set_length(totals.bytes_total);
        self.overall.set_message(message);
        if let Some(style) = style {
            // After the message: a redraw with the new style must not show the old one.
            self.overall.set_style(style);
        }
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
        self.println(
            &format!("{reference}: resolved to {digest}{platform}"),
            &format!("{reference}: resolved to {}{platform}", short(digest)),
        );
        if let Ok(mut state) = self.state.lock() {
            state.resolved = true;
            self.update_overall(&mut state);
        }
    }

    fn on_blob_start(&self, digest: &Digest, kind: BlobKind, size: u64, cached: bool) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let fields = super::bar_layout::Fields::for_width(self.width, 2, true, 0);
        state.totals.started += 1;
        let bar = if cached {
            state.totals.cached += 1;
            self.println(
                &format!(
                    "  {} {:<8} exists      {}",
                    short(digest),
                    kind_name(kind),
                    human_bytes(size)
                ),
                &format!("  {} {} exists", fields.digest(digest), kind_name(kind)),
            );
            None
        } else {
            state.totals.bytes_total += size;
            let bar = self
                .multi
                .insert_before(&self.overall, ProgressBar::new(size));
            bar.set_style(fields.style("  {prefix} ", ""));
            bar.set_prefix(if fields.kind {
                format!("{} {:<8}", fields.digest(digest), kind_name(kind))
            } else {
                fields.digest(digest).to_string()
            });
            Some(bar)
        };
        state.blobs.insert(digest.clone(), (kind, size, bar));
        self.update_overall(&mut state);
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
        let line = format!(
            "  {} retrying at {}: {reason}",
            short(digest),
            human_bytes(offset)
        );
        self.println(&line, &line);
    }

    fn on_blob_done(&self, digest: &Digest) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.totals.done += 1;
        let mut finished = None;
        if let Some((kind, size, bar)) = state.blobs.get_mut(digest) {
            if let Some(bar) = bar.take() {
                bar.finish_and_clear();
                self.multi.remove(&bar);
                finished = Some((*kind, *size));
            }
        }
        if let Some((kind, size)) = finished {
            let fields = super::bar_layout::Fields::for_width(self.width, 2, true, 0);
            self.println(
                &format!(
                    "  {} {:<8} downloaded  {}",
                    short(digest),
                    kind_name(kind),
                    human_bytes(size)
                ),
                &format!(
                    "  {} {} {}",
                    fields.digest(digest),
                    kind_name(kind),
                    human_bytes(size)
                ),
            );
        }
        self.update_overall(&mut state);
    }

    fn on_layer_apply_start(&self, _digest: &Digest, index: usize, count: usize) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if state.apply.is_none() {
            let bar = self.multi.insert_before(
                &self.overall,
                ProgressBar::new(u64::try_from(count).unwrap_or(u64::MAX)),
            );
            bar.set_style(style("  applying layers [{wide_bar}] {pos}/{len}"));
            state.apply = Some(bar);
        }
        state.applying = Some((index, count));
        self.update_overall(&mut state);
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
                state.applying = None;
                let _ = self.multi.println(format!("  applied {count} layer(s)"));
            }
        }
        self.update_overall(&mut state);
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
        dumb: false,
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
        let dumb = Terminal { dumb: true, ..TTY };
        assert_eq!(choose(ProgressMode::Auto, false, dumb), Style::Final);
        assert_eq!(choose(ProgressMode::Bars, false, dumb), Style::Plain);
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

    /// Marks the start of a redraw in [`Screen`]'s lines.
    const FRAME: &str = "--frame--";

    /// A terminal `width` columns wide that keeps every line drawn.
    #[derive(Debug, Clone)]
    struct Screen {
        width: u16,
        lines: std::sync::Arc<Mutex<Vec<String>>>,
    }

    impl Screen {
        fn new(width: u16) -> Self {
            Self {
                width,
                lines: std::sync::Arc::default(),
            }
        }

        /// Every line drawn (frame marks left out).
        fn lines(&self) -> Vec<String> {
            let lines = self.lines.lock().unwrap();
            lines.iter().filter(|l| *l != FRAME).cloned().collect()
        }

        /// The lines of the last redraw.
        fn last_frame(&self) -> Vec<String> {
            let lines = self.lines.lock().unwrap();
            let start = lines.iter().rposition(|l| l == FRAME).map_or(0, |i| i + 1);
            lines[start..].to_vec()
        }
    }

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            self.width
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            // A redraw starts by going back over the previous frame.
            self.lines.lock().unwrap().push(FRAME.into());
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, line: &str) -> std::io::Result<()> {
            self.write_str(line)
        }
        fn write_str(&self, text: &str) -> std::io::Result<()> {
            let mut lines = self.lines.lock().unwrap();
            lines.extend(text.split('\n').filter(|l| !l.is_empty()).map(String::from));
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn digest(n: u8) -> Digest {
        format!("sha256:{}", hex_of(n)).parse().unwrap()
    }

    fn hex_of(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    /// A pull of a config and two layers drawn on `screen`: resolved, downloads under way.
    fn drawn(screen: &Screen) -> BarsReporter {
        let target = ProgressDrawTarget::term_like_with_hz(Box::new(screen.clone()), 100);
        let bars = BarsReporter::with_target(
            "myregistry.azurecr.io/team/application:v1.2.3",
            target,
            usize::from(screen.width),
        );
        bars.on_resolved(
            "myregistry.azurecr.io/team/application:v1.2.3",
            &digest(0xee),
            Some("linux/amd64"),
        );
        bars.on_blob_start(&digest(1), BlobKind::Config, 1_536, true);
        bars.on_blob_start(&digest(2), BlobKind::Layer, 48 << 20, false);
        bars.on_blob_start(&digest(3), BlobKind::Layer, 700 << 20, false);
        bars.on_blob_progress(&digest(2), 12 << 20);
        bars.on_blob_progress(&digest(3), 1 << 20);
        redraw(&bars);
        bars
    }

    /// Render every bar afresh: redraws are rate-limited, so wait until the limiter has
    /// room, then tick each bar once.
    fn redraw(bars: &BarsReporter) {
        std::thread::sleep(Duration::from_millis(300));
        let state = bars.state.lock().unwrap();
        for (_, _, bar) in state.blobs.values() {
            if let Some(bar) = bar {
                bar.tick();
            }
        }
        if let Some(apply) = &state.apply {
            apply.tick();
        }
        bars.overall.tick();
    }

    #[test]
    fn every_drawn_line_fits_the_terminal() {
        for width in [40u16, 60, 80, 100, 120] {
            let screen = Screen::new(width);
            let bars = drawn(&screen);
            std::thread::sleep(Duration::from_millis(150));
            bars.on_blob_progress(&digest(2), 1 << 20);
            bars.on_blob_done(&digest(2));
            bars.finish();
            let lines = screen.lines();
            assert!(
                lines.iter().any(|l| l.contains(" [")),
                "{width}: {lines:#?}"
            );
            for line in &lines {
                assert!(
                    line.chars().count() <= usize::from(width),
                    "{width}: {line:?} ({} columns)",
                    line.chars().count()
                );
            }
        }
    }

    #[test]
    fn narrow_lines_shorten_digests_first() {
        let at = |width: u16| {
            let screen = Screen::new(width);
            let bars = drawn(&screen);
            bars.on_blob_progress(&digest(2), 1);
            bars.finish();
            screen.lines()
        };
        let wide = at(120).join("\n");
        assert!(wide.contains(&hex_of(2)[..12]), "{wide}");
        assert!(wide.contains("MiB/s"), "long rates at 120 columns: {wide}");
        let narrow = at(80).join("\n");
        assert!(!narrow.contains(&hex_of(2)[..12]), "{narrow}");
        assert!(
            narrow.contains(&format!("{} layer", &hex_of(2)[..7])),
            "{narrow}"
        );
        assert!(
            narrow.contains("M/s"),
            "short rates stay at 80 columns: {narrow}"
        );
    }

    /// `lines` with what depends on timing masked (the spinner, rates and times left), each
    /// followed by `|` to show where it ends.
    fn masked(lines: &[String]) -> String {
        let rate = regex::Regex::new(r" +[0-9.]+ ?[BKMGT]?(iB)?/s").unwrap();
        let left = regex::Regex::new(r" +(eta )?\b[0-9]+[smhd]\b").unwrap();
        lines
            .iter()
            .map(|line| line.trim_end())
            .filter(|line| !line.is_empty())
            .map(|line| {
                let line = line.replacen(|c: char| !c.is_ascii(), "*", 1);
                let line = rate.replace_all(&line, " [RATE]");
                format!("{}|", left.replace_all(&line, " [LEFT]"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn bars_at_60_80_and_120_columns() {
        let frames: Vec<String> = [60u16, 80, 120]
            .into_iter()
            .map(|width| {
                let screen = Screen::new(width);
                let bars = drawn(&screen);
                let frame = masked(&screen.last_frame());
                bars.finish();
                format!("{width} columns:\n{frame}")
            })
            .collect();
        insta::assert_snapshot!(frames.join("\n\n"));
    }

    #[test]
    fn after_the_downloads_the_overall_line_names_the_layer_being_applied() {
        let screen = Screen::new(80);
        let bars = drawn(&screen);
        bars.on_layer_apply_start(&digest(2), 0, 2);
        assert_eq!(
            bars.state.lock().unwrap().phase,
            Phase::Downloading,
            "downloads are still under way"
        );
        bars.on_blob_progress(&digest(2), 36 << 20);
        bars.on_blob_done(&digest(2));
        bars.on_blob_progress(&digest(3), 699 << 20);
        bars.on_blob_done(&digest(3));
        bars.on_layer_applied(&digest(2), 0, 2);
        bars.on_layer_apply_start(&digest(3), 1, 2);
        assert_eq!(bars.state.lock().unwrap().phase, Phase::Applying);
        assert_eq!(bars.overall.message(), "applying layer 2/2, downloads done");
        redraw(&bars);
        let frame = masked(&screen.last_frame());
        assert!(
            !frame.contains("LEFT"),
            "no time left once downloads are done: {frame}"
        );
        insta::assert_snapshot!(frame);
        bars.finish();
    }

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
    }
}
