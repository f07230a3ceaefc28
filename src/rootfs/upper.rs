//! The paths one layer wrote, with their ancestors, kept in bounded memory.
//!
//! Whiteouts and opaque markers remove only *lower* content: what the same layer wrote (and
//! the directories above it) survives them, wherever the whiteout sits in the layer (OCI image
//! spec, "Whiteouts"). So the applier remembers every path it wrote until the layer ends. A
//! layer may hold millions of entries, so [`UpperPaths`] keeps at most a byte budget of paths
//! in memory (default [`DEFAULT_MEMORY_BUDGET`], 8 MiB: about 80 000 short paths) and writes
//! the rest as sorted, deduplicated *runs* to two unnamed files in the spill directory
//! ([`super::ApplyOptions::spill_dir`]: the pull's staging directory beside the destination;
//! without one, `O_TMPFILE`s in the root directory itself, and the system's temporary
//! directory, which may be memory, only where that fails). Disk use is about the paths' bytes plus 12 bytes each, twice during a merge
//! (without hole punching, the files keep every merged-away run too).
//!
//! Insertion stays in memory: the in-memory part is closed under ancestors (every path goes in
//! with its whole chain, and a spill empties it), so inserting stops at the first ancestor
//! already there. Lookups, needed only for whiteouts, check memory and then binary-search each
//! run with positioned reads through a small page cache (the top of every search and the
//! neighbourhood of the previous one stay cached, which keeps an opaque directory's sweep over
//! its children cheap). Runs are merged [`MERGE_FAN_IN`] of a size at a time, and all at once
//! past [`MAX_RUNS`], so there are few of them. A spill file that fails is an error of the
//! layer, never a "not written by this layer" answer (which would delete this layer's files).

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;

use rustix::fs::{self as rfs, FallocateFlags, Mode, OFlags};

use super::whiteout::with_ancestors;

/// Bytes of paths (with [`PER_PATH_OVERHEAD`] each) held in memory before a spill.
pub(crate) const DEFAULT_MEMORY_BUDGET: usize = 8 << 20;
/// What one path costs in memory besides its bytes: the hash table slot and control byte at
/// its load factor, the allocation's header and rounding, and the `Vec` moved out to sort it.
const PER_PATH_OVERHEAD: usize = 80;
/// Runs of one level merged into one of the next level.
const MERGE_FAN_IN: usize = 4;
/// Past this many runs, all are merged into one.
const MAX_RUNS: usize = 12;
/// Bytes per cached page of a spill file.
const PAGE: usize = 4096;
/// Pages cached (direct-mapped): 1 MiB.
const CACHE_PAGES: usize = 256;

/// Where spill files are created.
pub(crate) enum SpillPlace {
    /// An unnamed file in this directory.
    Dir(PathBuf),
    /// An unnamed (`O_TMPFILE`) file in the root directory, opened through its descriptor.
    Root(OwnedFd),
}

impl SpillPlace {
    fn create(&self) -> io::Result<File> {
        match self {
            SpillPlace::Dir(dir) => tempfile::tempfile_in(dir),
            SpillPlace::Root(root) => {
                let flags = OFlags::RDWR | OFlags::TMPFILE | OFlags::CLOEXEC;
                match rfs::openat(root, ".", flags, Mode::from_raw_mode(0o600)) {
                    Ok(fd) => Ok(File::from(fd)),
                    // No O_TMPFILE here (or no write access to the root): the system's
                    // temporary directory is the last resort.
                    Err(errno) => tempfile::tempfile().map_err(|_| io::Error::from(errno)),
                }
            }
        }
    }
}

impl fmt::Display for SpillPlace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpillPlace::Dir(dir) => write!(f, "in `{}`", dir.display()),
            SpillPlace::Root(_) => f.write_str("in the root directory"),
        }
    }
}

/// A set of normalised paths, each inserted with its ancestors; see the module docs.
pub(crate) struct UpperPaths {
    memory: HashSet<Vec<u8>>,
    /// What `memory` is counted to cost.
    memory_bytes: usize,
    budget: usize,
    /// Spilled runs; levels never increase towards the end.
    runs: Vec<Run>,
    place: SpillPlace,
    /// Created at the first spill.
    files: Option<SpillFiles>,
    cache: PageCache,
    /// The key read at each probe of a binary search.
    probe: Vec<u8>,
    /// Paths written by spills (merges not counted).
    spilled: u64,
}

impl UpperPaths {
    /// An empty set holding up to `budget` bytes in memory, spilling to files `place` makes.
    pub(crate) fn new(budget: usize, place: SpillPlace) -> Self {
        UpperPaths {
            memory: HashSet::new(),
            memory_bytes: 0,
            budget,
            runs: Vec::new(),
            place,
            files: None,
            cache: PageCache::default(),
            probe: Vec::new(),
            spilled: 0,
        }
    }

    /// Add the normalised `path` and all its ancestors. Touches the disk only to spill, when
    /// the in-memory part has outgrown its budget.
    pub(crate) fn insert_with_ancestors(&mut self, path: &[u8]) -> io::Result<()> {
        // Deepest first: the in-memory part is closed under ancestors, so once an ancestor is
        // there, all of its own ancestors are too.
        let chain: Vec<&[u8]> = with_ancestors(path).collect();
        for ancestor in chain.into_iter().rev() {
            if self.memory.contains(ancestor) {
                break;
            }
            self.memory_bytes += ancestor.len() + PER_PATH_OVERHEAD;
            self.memory.insert(ancestor.to_vec());
        }
        // Only between whole chains, so the in-memory part stays closed under ancestors.
        if self.memory_bytes > self.budget {
            self.spill().map_err(|error| context(&self.place, error))?;
        }
        Ok(())
    }

    /// Whether `path` was inserted (itself or as an ancestor of an inserted path).
    pub(crate) fn contains(&mut self, path: &[u8]) -> io::Result<bool> {
        if self.memory.contains(path) {
            return Ok(true);
        }
        let Some(files) = &self.files else {
            return Ok(false);
        };
        for run in self.runs.iter().rev() {
            let found = run
                .contains(files, path, &mut self.cache, &mut self.probe)
                .map_err(|error| context(&self.place, error))?;
            if found {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Paths written to disk by spills so far.
    pub(crate) fn spilled(&self) -> u64 {
        self.spilled
    }

    /// Write the in-memory part as a new run, then merge runs while a level is full.
    fn spill(&mut self) -> io::Result<()> {
        let files = match &mut self.files {
            Some(files) => files,
            files @ None => files.insert(SpillFiles {
                records: SpillFile::new(RECORDS, self.place.create()?),
                offsets: SpillFile::new(OFFSETS, self.place.create()?),
            }),
        };
        let mut keys: Vec<Vec<u8>> = self.memory.drain().collect();
        self.memory_bytes = 0;
        keys.sort_unstable();
        let mut writer = RunWriter::new(files)?;
        for key in &keys {
            writer.push(key)?;
        }
        drop(keys);
        let run = writer.finish(0)?;
        files.extend_over(&run);
        self.spilled += run.count;
        self.runs.push(run);
        loop {
            let level = self.runs.last().map_or(0, |run| run.level);
            let same = self
                .runs
                .iter()
                .rev()
                .take_while(|run| run.level == level)
                .count();
            if same >= MERGE_FAN_IN {
                self.merge_last(same, level + 1)?;
            } else if self.runs.len() > MAX_RUNS {
                let top = self.runs.iter().map(|run| run.level).max().unwrap_or(0);
                self.merge_last(self.runs.len(), top + 1)?;
            } else {
                return Ok(());
            }
        }
    }

    /// Replace the last `count` runs with one run of `level` holding their union, appended to
    /// the spill files; the inputs' space is given back to the file system.
    fn merge_last(&mut self, count: usize, level: u32) -> io::Result<()> {
        let files = self.files.as_mut().ok_or_else(corrupt)?;
        let inputs = self.runs.split_off(self.runs.len() - count);
        let mut readers = inputs
            .iter()
            .map(|run| RunReader::new(&files.records.file, run))
            .collect::<Vec<_>>();
        for reader in &mut readers {
            reader.advance()?;
        }
        let mut writer = RunWriter::new(files)?;
        loop {
            let smallest = readers
                .iter()
                .enumerate()
                .filter(|(_, reader)| reader.current)
                .min_by(|(_, left), (_, right)| left.key.cmp(&right.key))
                .map(|(index, _)| index);
            let Some(smallest) = smallest else {
                break;
            };
            writer.push(&readers[smallest].key)?;
            readers[smallest].advance()?;
        }
        drop(readers);
        let merged = writer.finish(level)?;
        files.extend_over(&merged);
        for run in &inputs {
            files.records.release(run.records_start, run.records_len);
            files.offsets.release(run.offsets_start, run.count * 8);
        }
        self.runs.push(merged);
        Ok(())
    }

    #[cfg(test)]
    fn run_count(&self) -> usize {
        self.runs.len()
    }
}

fn context(place: &SpillPlace, error: io::Error) -> io::Error {
    io::Error::new(
        error.kind(),
        format!("the spill file of the paths this layer wrote ({place}): {error}"),
    )
}

/// Page cache keys of the two spill files.
const RECORDS: u8 = 0;
const OFFSETS: u8 = 1;

/// The two append-only files that hold every run (a merge appends its output and punches
/// holes where its inputs were). Two files for the whole layer rather than two per run, so no
/// file is deleted while the layer creates its own: on a journal-less ext4 the inode allocator
/// checks recently deleted inodes again at every creation (`recently_deleted()`), and a first
/// version deleting its merged runs' files applied a million-file layer markedly slower.
struct SpillFiles {
    records: SpillFile,
    offsets: SpillFile,
}

impl SpillFiles {
    /// Count the just written `run` in the files' lengths.
    fn extend_over(&mut self, run: &Run) {
        self.records.len += run.records_len;
        self.offsets.len += run.count * 8;
    }
}

/// One spill file and how far it is written.
struct SpillFile {
    id: u8,
    file: File,
    len: u64,
}

impl SpillFile {
    fn new(id: u8, file: File) -> Self {
        SpillFile { id, file, len: 0 }
    }

    /// Give the blocks of a region no run refers to any more back to the file system. Only
    /// space is at stake: where holes cannot be punched, the file keeps them.
    fn release(&self, start: u64, len: u64) {
        let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        let _ = rfs::fallocate(&self.file, flags, start, len);
    }
}

/// A sorted, deduplicated run of paths: in the records file, from `records_start`, each path
/// as a little-endian `u32` length and its bytes; in the offsets file, from `offsets_start`,
/// the little-endian `u64` start of each record. Record `i` is found with positioned reads,
/// and nothing per path stays in memory.
struct Run {
    records_start: u64,
    records_len: u64,
    offsets_start: u64,
    count: u64,
    level: u32,
}

impl Run {
    fn contains(
        &self,
        files: &SpillFiles,
        key: &[u8],
        cache: &mut PageCache,
        probe: &mut Vec<u8>,
    ) -> io::Result<bool> {
        let (mut low, mut high) = (0, self.count);
        while low < high {
            let middle = low + (high - low) / 2;
            self.read_key(files, middle, cache, probe)?;
            match probe.as_slice().cmp(key) {
                Ordering::Less => low = middle + 1,
                Ordering::Greater => high = middle,
                Ordering::Equal => return Ok(true),
            }
        }
        Ok(false)
    }

    fn read_key(
        &self,
        files: &SpillFiles,
        index: u64,
        cache: &mut PageCache,
        key: &mut Vec<u8>,
    ) -> io::Result<()> {
        let mut offset = [0; 8];
        cache.read_exact_at(&files.offsets, self.offsets_start + index * 8, &mut offset)?;
        let start = u64::from_le_bytes(offset);
        let mut length = [0; 4];
        cache.read_exact_at(&files.records, start, &mut length)?;
        let length = u32::from_le_bytes(length);
        if start + 4 + u64::from(length) > self.records_start + self.records_len {
            return Err(corrupt());
        }
        key.resize(length as usize, 0);
        cache.read_exact_at(&files.records, start + 4, key)
    }
}

fn corrupt() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "record past the end of its run")
}

/// Appends a run to the spill files from keys given in ascending order, dropping repeats.
struct RunWriter<'a> {
    records: BufWriter<&'a File>,
    offsets: BufWriter<&'a File>,
    records_start: u64,
    offsets_start: u64,
    written: u64,
    count: u64,
    last: Vec<u8>,
}

impl<'a> RunWriter<'a> {
    fn new(files: &'a SpillFiles) -> io::Result<Self> {
        let (mut records, mut offsets) = (&files.records.file, &files.offsets.file);
        records.seek(SeekFrom::Start(files.records.len))?;
        offsets.seek(SeekFrom::Start(files.offsets.len))?;
        Ok(RunWriter {
            records: BufWriter::with_capacity(64 << 10, records),
            offsets: BufWriter::with_capacity(16 << 10, offsets),
            records_start: files.records.len,
            offsets_start: files.offsets.len,
            written: 0,
            count: 0,
            last: Vec::new(),
        })
    }

    fn push(&mut self, key: &[u8]) -> io::Result<()> {
        if self.count > 0 && key == self.last.as_slice() {
            return Ok(());
        }
        let length = u32::try_from(key.len()).map_err(|_| io::Error::other("path too long"))?;
        let start = self.records_start + self.written;
        self.offsets.write_all(&start.to_le_bytes())?;
        self.records.write_all(&length.to_le_bytes())?;
        self.records.write_all(key)?;
        self.written += 4 + u64::from(length);
        self.count += 1;
        self.last.clear();
        self.last.extend_from_slice(key);
        Ok(())
    }

    /// Flush the run (then [`SpillFiles::extend_over`] it).
    fn finish(self, level: u32) -> io::Result<Run> {
        self.records
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        self.offsets
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        Ok(Run {
            records_start: self.records_start,
            records_len: self.written,
            offsets_start: self.offsets_start,
            count: self.count,
            level,
        })
    }
}

/// Positioned reads over one region of a file, so a merge can read runs while it appends.
struct Region<'a> {
    file: &'a File,
    next: u64,
    end: u64,
}

impl Read for Region<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let wanted = buffer.len().min((self.end - self.next) as usize);
        let read = self.file.read_at(&mut buffer[..wanted], self.next)?;
        self.next += read as u64;
        Ok(read)
    }
}

/// Reads a run's keys in order (for a merge).
struct RunReader<'a> {
    reader: BufReader<Region<'a>>,
    remaining: u64,
    key: Vec<u8>,
    /// `key` holds the current key (false: the run is exhausted).
    current: bool,
}

impl<'a> RunReader<'a> {
    fn new(records: &'a File, run: &Run) -> Self {
        let region = Region {
            file: records,
            next: run.records_start,
            end: run.records_start + run.records_len,
        };
        RunReader {
            reader: BufReader::with_capacity(64 << 10, region),
            remaining: run.count,
            key: Vec::new(),
            current: false,
        }
    }

    fn advance(&mut self) -> io::Result<()> {
        self.current = self.remaining > 0;
        if !self.current {
            return Ok(());
        }
        self.remaining -= 1;
        let mut length = [0; 4];
        self.reader.read_exact(&mut length)?;
        self.key.resize(u32::from_le_bytes(length) as usize, 0);
        self.reader.read_exact(&mut self.key)
    }
}

/// A direct-mapped cache of spill file pages, so that binary searches mostly avoid system
/// calls: their first probes are the same for every lookup in a run.
#[derive(Default)]
struct PageCache {
    slots: Vec<Option<CachedPage>>,
}

struct CachedPage {
    file: u8,
    page: u64,
    data: Box<[u8]>,
    /// Bytes of the page that were written when it was read: a page at the end of a file is
    /// read again once the file has grown past it.
    len: usize,
}

impl PageCache {
    fn read_exact_at(&mut self, file: &SpillFile, offset: u64, out: &mut [u8]) -> io::Result<()> {
        if offset + out.len() as u64 > file.len {
            return Err(corrupt());
        }
        let mut done = 0;
        while done < out.len() {
            let at = offset + done as u64;
            let within = (at % PAGE as u64) as usize;
            let page = self.page(file, at / PAGE as u64)?;
            let count = page
                .len()
                .checked_sub(within)
                .filter(|&count| count > 0)
                .ok_or_else(corrupt)?
                .min(out.len() - done);
            out[done..done + count].copy_from_slice(&page[within..within + count]);
            done += count;
        }
        Ok(())
    }

    fn page(&mut self, file: &SpillFile, page: u64) -> io::Result<&[u8]> {
        if self.slots.is_empty() {
            self.slots.resize_with(CACHE_PAGES, || None);
        }
        const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
        let hash = (page ^ u64::from(file.id).wrapping_mul(GOLDEN)).wrapping_mul(GOLDEN);
        let slot = &mut self.slots[(hash >> 56) as usize % CACHE_PAGES];
        let start = page * PAGE as u64;
        let len = file.len.saturating_sub(start).min(PAGE as u64) as usize;
        let hit = matches!(slot, Some(cached)
            if cached.file == file.id && cached.page == page && cached.len == len);
        if !hit {
            let mut data = match slot.take() {
                Some(cached) => cached.data,
                None => vec![0; PAGE].into_boxed_slice(),
            };
            file.file.read_exact_at(&mut data[..len], start)?;
            *slot = Some(CachedPage {
                file: file.id,
                page,
                data,
                len,
            });
        }
        match slot {
            Some(cached) => Ok(&cached.data[..cached.len]),
            None => Err(corrupt()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::{SpillPlace, UpperPaths, MAX_RUNS};
    use crate::rootfs::whiteout::with_ancestors;

    /// Names whose bytes sort just before and after `/`, so runs' byte order is tested where
    /// it differs from component order.
    const NAMES: [&str; 6] = ["a", "a.", "a0", "a-b", "b", "ab"];

    fn paths() -> impl Strategy<Value = Vec<Vec<u8>>> {
        let path = proptest::collection::vec(0..NAMES.len(), 1..5).prop_map(|components| {
            let names: Vec<&str> = components.iter().map(|&index| NAMES[index]).collect();
            names.join("/").into_bytes()
        });
        proptest::collection::vec(path, 1..200)
    }

    /// Inserted paths, their ancestors, absent siblings, extensions and byte prefixes.
    fn queries(inserted: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut queries = Vec::new();
        for path in inserted {
            for end in 0..=path.len() {
                queries.push(path[..end].to_vec());
            }
            for suffix in ["/a", "0", ".", "/", "/b/a"] {
                let mut longer = path.clone();
                longer.extend_from_slice(suffix.as_bytes());
                queries.push(longer);
            }
            let parent_end = path
                .iter()
                .rposition(|&byte| byte == b'/')
                .map_or(0, |i| i + 1);
            for name in NAMES.iter().chain(&["zz", "-", ""]) {
                let mut sibling = path[..parent_end].to_vec();
                sibling.extend_from_slice(name.as_bytes());
                queries.push(sibling);
            }
        }
        queries
    }

    fn spill_dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    /// Insert `paths` with a `budget`, then compare every query with a `HashSet` of the
    /// paths and their ancestors.
    fn check_against_model(paths: &[Vec<u8>], budget: usize) -> UpperPaths {
        let dir = spill_dir();
        let mut set = UpperPaths::new(budget, SpillPlace::Dir(dir.path().to_path_buf()));
        let mut model = HashSet::new();
        for path in paths {
            set.insert_with_ancestors(path).unwrap();
            model.extend(with_ancestors(path).map(<[u8]>::to_vec));
            assert!(set.run_count() <= MAX_RUNS);
        }
        for query in queries(paths) {
            assert_eq!(
                set.contains(&query).unwrap(),
                model.contains(&query),
                "{}",
                String::from_utf8_lossy(&query)
            );
        }
        set
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn membership_equals_a_hash_set_whatever_the_spills(
            paths in paths(),
            budget in prop_oneof![Just(0usize), 0..2000usize, Just(1 << 20)],
        ) {
            check_against_model(&paths, budget);
        }
    }

    #[test]
    fn many_spills_merge_into_few_runs_and_stay_exact() {
        // A seeded walk over 20 000 paths in 500 directories, with a budget of about 10 paths:
        // ~2 000 spills and merges across several levels.
        let mut rng = fastrand::Rng::with_seed(19);
        let paths: Vec<Vec<u8>> = (0..20_000)
            .map(|_| {
                let dir = rng.u32(0..500);
                let file = rng.u32(0..1_000_000);
                format!("usr/d{dir}/f{file}").into_bytes()
            })
            .collect();
        let set = check_against_model(&paths, 1000);
        assert!(set.spilled() > 20_000, "spilled {}", set.spilled());
        assert!(
            set.runs.iter().any(|run| run.level >= 3),
            "merged across levels"
        );
        assert!(set.run_count() <= MAX_RUNS);
    }

    #[test]
    fn in_budget_nothing_touches_the_disk() {
        let missing = std::path::PathBuf::from("/nonexistent/acrpull-spill");
        let mut set = UpperPaths::new(1 << 20, SpillPlace::Dir(missing));
        set.insert_with_ancestors(b"a/b/c").unwrap();
        assert!(set.contains(b"a/b").unwrap());
        assert!(!set.contains(b"a/c").unwrap());
        assert_eq!((set.spilled(), set.run_count()), (0, 0));
    }

    #[test]
    fn a_spill_that_cannot_be_written_is_an_error_naming_the_spill_directory() {
        let missing = std::path::PathBuf::from("/nonexistent/acrpull-spill");
        let mut set = UpperPaths::new(0, SpillPlace::Dir(missing));
        let error = set.insert_with_ancestors(b"a/b").unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("spill file") && message.contains("/nonexistent/acrpull-spill"),
            "{message}"
        );
    }
}
