//! Mutation fuzzing of every parser of user input (issue 14): seeded byte-level and
//! structure-aware mutations of the committed fixtures and of small valid inputs written here,
//! fed to the public loaders. Every case must return `Ok` or `Err`; a panic fails the test,
//! naming the parser, the case, the mutation and the panic's location, and keeps the input under
//! `$TMPDIR/fuzz-repro/PARSER-CASE/` (with a `case.txt` saying how to replay it).
//!
//! One test per parser (`cargo test -p gs-lora-train --test fuzz -- NAME`):
//!
//! | test | input | through |
//! |---|---|---|
//! | `safetensors` | one `.safetensors` file | `CheckpointSource::open`, `read_tensor` and `ParamSource::tensor` on every tensor |
//! | `vit_config` | `config.json` (timm, HF ViT, DINOv2, face, gs-lora) + `preprocessor_config.json` | `VitConfig::from_file`, `checkpoint_preprocess` |
//! | `vit_pretrained` | `config.json` + `model.safetensors` | `VisionTransformer::from_pretrained`, then a forward pass |
//! | `vit_shards` | `config.json` + `model.safetensors.index.json` + its three shards | `VisionTransformer::from_pretrained` (`CheckpointSource` over the index), then a forward pass |
//! | `vit_pth` | `config.json` + a PyTorch `model.pth` (torchvision, both MLP names; the face ViT) | `VisionTransformer::from_pretrained` (`CheckpointSource` over `pytorch-reader`), then a forward pass |
//! | `detr_config` | DETR `config.json` | `DeformableDetrConfig::from_file` |
//! | `detr_pretrained` | DETR `config.json` + `model.safetensors` | `DeformableDetr::from_pretrained` |
//! | `adapters` | `adapter_config.json` + `adapter_model.safetensors` (ours, and PEFT's `peft_timm`) | `VisionTransformer::load_adapters`, then a forward pass |
//! | `gs_lora_json` | a model directory's `gs_lora.json` | `ClassifierDir::info`, then a batch with its preprocessing |
//! | `detector_dir` | `detector.json` + `model.safetensors` | `DetectorDir::info` and `DetectorDir::load` |
//! | `idx` | the four IDX files, plain or gzipped | `load_idx` |
//! | `zip` | a zip of an image folder | `Dataset::open` (`load_zip`) |
//! | `folder` | an image folder (tree mutations: renames, moves, splits, symlinks) | `Dataset::open` |
//! | `cub` | a CUB-200-2011 root | `load_cub` |
//! | `coco` | COCO `instances.json` + images | `CocoAnnotations::open`, `model_labels`, `load_samples` |
//! | `state_json` | a run's `state.json` | `RunDir::load_state` |
//!
//! The first cases of each parser are its seeds, unmutated, and must load (`Ok`); the others
//! stack one to five mutations: bit flips, bytes and words set to boundary values, numbers
//! written as ASCII digits, inserted, deleted, duplicated and truncated ranges, biased towards
//! the headers (safetensors header, zip central directory, PNG/IDX headers); JSON is also
//! mutated as a tree (numbers replaced by huge, negative, fractional and non-finite values, keys
//! dropped or added, types changed, values swapped, deep nesting), a safetensors header as JSON
//! (the length prefix kept right), PNG chunks with their CRC fixed, gzip and zip contents
//! inflated, mutated and packed again.
//!
//! Environment:
//! - `GS_LORA_FUZZ_CASES`: cases per parser (default 40);
//! - `GS_LORA_MAX_MEMORY`: the program's own memory limit (`gs_lora_core::Limits`); keep it
//!   below the `ulimit -v` the run has (2G in CI), or a size it allows aborts there;
//! - `GS_LORA_FUZZ_SEED`: the base seed (default 14); case `i` of parser `P` draws from its own
//!   ChaCha8 stream, so any case replays alone;
//! - `GS_LORA_FUZZ_CASE`: run only this case (a replay);
//! - `GS_LORA_FUZZ_REPRO`: where failing inputs are kept (default `$TMPDIR/fuzz-repro`);
//! - `GS_LORA_FUZZ_TIMEOUT`: seconds one case may take before the process exits, naming the case
//!   (default 300).
//!
//! The input of the case running is in `$TMPDIR/gs-lora-fuzz-PID-PARSER/` and described in
//! `$TMPDIR/gs-lora-fuzz-PID-PARSER.case`, so an abort (out of memory) can be traced.
//!
//! In `cargo test --workspace` each parser runs 40 cases; `.ci/run` runs 1000 under `ulimit -v`.
//! The documented run (`docs/reliability.md`): 10⁵ cases per parser under an 8 GB address-space
//! limit, with the project's crates optimised too (the dependencies already are in the dev
//! profile; overflow checks stay on), one process per parser so that an abort names its parser
//! and the others still run:
//!
//! ```sh
//! opt=(--config 'profile.dev.package.gs-lora-core.opt-level=3'
//!      --config 'profile.dev.package.gs-lora-models.opt-level=3'
//!      --config 'profile.dev.package.gs-lora-train.opt-level=3')
//! cargo test --workspace --test fuzz "${opt[@]}" --no-run
//! for parser in safetensors vit_config vit_pretrained detr_config detr_pretrained adapters \
//!     gs_lora_json detector_dir idx zip folder cub coco state_json; do
//!   ( ulimit -v 8000000; GS_LORA_MAX_MEMORY=2G GS_LORA_FUZZ_CASES=100000 \
//!     cargo test --workspace --test fuzz "${opt[@]}" -- --exact $parser --nocapture )
//! done
//! ```

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use burn::tensor::{Device, Tensor};
use gs_lora_core::LoraConfig;
use gs_lora_models::deformable::{DeformableDetr, DeformableDetrConfig};
use gs_lora_models::weights::{CheckpointSource, IdentityKeys, Init, ParamSource, read_tensor};
use gs_lora_models::{VisionTransformer, VitConfig};
use gs_lora_train::classification::checkpoint_preprocess;
use gs_lora_train::classification::data::{Dataset, ImageSet, LoadOptions, load_cub, load_idx};
use gs_lora_train::classification::make_batch;
use gs_lora_train::classification::{ClassifierDir, ClassifierInfo};
use gs_lora_train::detection::{CocoAnnotations, DetectorDir, DetectorInfo};
use gs_lora_train::image::Image;
use gs_lora_train::image::{Normalization, Preprocess};
use gs_lora_train::report::{EpochRecord, Machine};
use gs_lora_train::{RunDir, RunState, TaskResult};
use rand::seq::IndexedRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Inputs: a set of files (and folders, symlinks) relative to a scratch directory.

/// One entry of an input tree.
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    File(Vec<u8>),
    /// A symbolic link to this target (relative).
    Link(String),
    /// An empty folder.
    Dir,
}

/// An input: `/`-separated relative paths and what is there.
type Input = BTreeMap<String, Entry>;

fn files<'a>(entries: impl IntoIterator<Item = (&'a str, Vec<u8>)>) -> Input {
    entries
        .into_iter()
        .map(|(path, bytes)| (path.to_string(), Entry::File(bytes)))
        .collect()
}

/// Writes `input` into `dir`; only changed files are rewritten when the layout is the same.
struct Scratch {
    dir: PathBuf,
    written: Option<Input>,
}

impl Scratch {
    fn new(dir: PathBuf) -> Self {
        std::fs::remove_dir_all(&dir).ok();
        Self { dir, written: None }
    }

    fn write(&mut self, input: &Input) -> std::io::Result<()> {
        let same_layout = self.written.as_ref().is_some_and(|old| {
            old.len() == input.len()
                && old.iter().zip(input).all(|((a, x), (b, y))| {
                    a == b && matches!((x, y), (Entry::File(_), Entry::File(_)))
                })
        });
        if same_layout {
            let old = self.written.as_ref().expect("checked above");
            for ((path, new), old) in input.iter().zip(old.values()) {
                if new != old
                    && let Entry::File(bytes) = new
                {
                    std::fs::write(self.dir.join(path), bytes)?;
                }
            }
        } else {
            self.written = None;
            write_tree(&self.dir, input)?;
        }
        self.written = Some(input.clone());
        Ok(())
    }
}

/// Replaces `dir` with `input`.
fn write_tree(dir: &Path, input: &Input) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    std::fs::create_dir_all(dir)?;
    for (path, entry) in input {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match entry {
            Entry::File(bytes) => std::fs::write(&target, bytes)?,
            Entry::Dir => std::fs::create_dir_all(&target)?,
            Entry::Link(_) => {}
        }
    }
    // Links last, so that none points the writes above somewhere else.
    for (path, entry) in input {
        if let Entry::Link(to) = entry {
            #[cfg(unix)]
            std::os::unix::fs::symlink(to, dir.join(path))?;
            #[cfg(not(unix))]
            let _ = to;
        }
    }
    Ok(())
}

/// Drops entries that cannot coexist: anything below a file or a link.
fn normalize(input: &mut Input) {
    let blockers: Vec<String> = input
        .iter()
        .filter(|(_, entry)| !matches!(entry, Entry::Dir))
        .map(|(path, _)| format!("{path}/"))
        .collect();
    input.retain(|path, _| {
        !path.is_empty()
            && !blockers
                .iter()
                .any(|prefix| path.starts_with(prefix.as_str()))
    });
}

// ---------------------------------------------------------------------------------------------
// The driver.

/// Run settings from the environment.
struct Settings {
    cases: usize,
    seed: u64,
    only: Option<usize>,
    repro: PathBuf,
    timeout: Duration,
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, found `{value}`")),
    )
}

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| Settings {
        cases: env_number("GS_LORA_FUZZ_CASES").map_or(40, |n| n as usize),
        seed: env_number("GS_LORA_FUZZ_SEED").unwrap_or(14),
        only: env_number("GS_LORA_FUZZ_CASE").map(|n| n as usize),
        repro: std::env::var_os("GS_LORA_FUZZ_REPRO")
            .map_or_else(|| std::env::temp_dir().join("fuzz-repro"), PathBuf::from),
        timeout: Duration::from_secs(env_number("GS_LORA_FUZZ_TIMEOUT").unwrap_or(300)),
    })
}

/// Number of fuzz cases running now, in any test: while there are some, panics of unnamed
/// (worker) threads are recorded quietly instead of printed.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    /// Whether this thread is running a fuzz case.
    static IN_CASE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}
/// `(message, location)` of the panics seen while cases ran.
static PANICS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
/// The case each parser is running: `(parser, case, description, started, input)`.
type Active = (usize, String, Instant, Input);
static ACTIVE: Mutex<BTreeMap<String, Active>> = Mutex::new(BTreeMap::new());

fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-text payload".into())
}

/// Installs the quiet panic hook and the watchdog that ends the process when a case hangs.
fn install_hooks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            // A case's own thread, or a worker thread (unnamed, as rayon's) while cases run;
            // test threads are named after their test, so other tests' panics still print.
            let quiet = IN_CASE.get()
                || (RUNNING.load(Ordering::SeqCst) > 0 && std::thread::current().name().is_none());
            if quiet {
                let mut location = info
                    .location()
                    .map_or_else(|| "unknown location".into(), |l| l.to_string());
                if !location.contains("crates/") {
                    // In the standard library or a dependency: name the project's frame too.
                    let trace = std::backtrace::Backtrace::force_capture().to_string();
                    let lines: Vec<&str> = trace.lines().map(str::trim).collect();
                    if let Some(i) = lines.iter().position(|line| {
                        !line.starts_with("at ")
                            && line.contains("gs_lora_")
                            && !line.contains("fuzz::")
                    }) {
                        let symbol = lines[i].split_once(": ").map_or(lines[i], |(_, s)| s);
                        let at = lines.get(i + 1).filter(|line| line.starts_with("at "));
                        location = format!(
                            "{location} (from {symbol}{})",
                            at.map_or(String::new(), |at| format!(" {at}"))
                        );
                    }
                }
                if let Ok(mut panics) = PANICS.lock() {
                    panics.push((payload_message(info.payload()), location));
                }
            } else {
                default(info);
            }
        }));
        std::thread::spawn(|| {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let hung = ACTIVE.lock().ok().and_then(|active| {
                    active
                        .iter()
                        .find(|(_, (_, _, started, _))| started.elapsed() > settings().timeout)
                        .map(|(name, (case, what, _, input))| {
                            (name.clone(), *case, what.clone(), input.clone())
                        })
                });
                if let Some((name, case, what, input)) = hung {
                    let kept = keep_reproducer(&name, case, &what, "hang", &input);
                    eprintln!(
                        "fuzz {name}: case {case} ({what}) ran past {} s; input kept in {}",
                        settings().timeout.as_secs(),
                        kept.display()
                    );
                    std::process::exit(3);
                }
            }
        });
    });
}

/// Writes a failing input and how to replay it to `GS_LORA_FUZZ_REPRO/NAME-CASE`.
fn keep_reproducer(name: &str, case: usize, what: &str, failure: &str, input: &Input) -> PathBuf {
    let dir = settings().repro.join(format!("{name}-{case}"));
    if let Err(err) = write_tree(&dir, input) {
        eprintln!("could not keep the input in {}: {err}", dir.display());
    }
    let note = format!(
        "parser: {name}\nseed: {seed}\ncase: {case}\nmutation: {what}\nfailure: {failure}\n\
         replay: GS_LORA_FUZZ_SEED={seed} GS_LORA_FUZZ_CASE={case} cargo test --workspace \
         --test fuzz -- --exact {name} --nocapture\n",
        seed = settings().seed
    );
    std::fs::write(dir.with_extension("txt"), note).ok();
    dir
}

fn name_hash(name: &str) -> u64 {
    // FNV-1a: stable across runs and platforms.
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ byte as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Mutates a seed: returns the new input and what was done.
type Mutate = fn(&mut ChaCha8Rng, &Input) -> (Input, String);

/// Runs the cases of one parser: case `i < seeds.len()` is seed `i` unmutated (it must load),
/// every other case a seeded mutation of a seed; `parse` reads the scratch directory. Fails
/// listing every panic (and a rejected seed).
fn fuzz(name: &str, seeds: &[Input], mutate: Mutate, parse: impl Fn(&Path) -> Result<(), String>) {
    install_hooks();
    let settings = settings();
    let mut scratch = Scratch::new(
        std::env::temp_dir().join(format!("gs-lora-fuzz-{}-{name}", std::process::id())),
    );
    let case_file = scratch.dir.with_extension("case");
    let cases: Vec<usize> = match settings.only {
        Some(case) => vec![case],
        None => (0..settings.cases.max(seeds.len())).collect(),
    };
    let (mut ok, mut err, mut unwritable) = (0usize, 0usize, 0usize);
    let mut errors: HashMap<String, usize> = HashMap::new();
    let mut failures: Vec<String> = Vec::new();
    let mut failed_at: HashMap<String, usize> = HashMap::new();
    let started = Instant::now();
    for &case in &cases {
        let mut rng = ChaCha8Rng::seed_from_u64(settings.seed ^ name_hash(name));
        rng.set_stream(case as u64);
        let (input, what) = match seeds.get(case) {
            Some(seed) => (seed.clone(), format!("seed {case} unmutated")),
            None => {
                let seed = seeds.choose(&mut rng).expect("at least one seed");
                mutate(&mut rng, seed)
            }
        };
        std::fs::write(
            &case_file,
            format!("{name} seed {} case {case}: {what}\n", settings.seed),
        )
        .ok();
        if let Err(error) = scratch.write(&input) {
            unwritable += 1;
            eprintln!("fuzz {name}: case {case} could not be written ({error}); skipped");
            scratch.written = None;
            continue;
        }
        if let Ok(mut active) = ACTIVE.lock() {
            active.insert(
                name.to_string(),
                (case, what.clone(), Instant::now(), input.clone()),
            );
        }
        RUNNING.fetch_add(1, Ordering::SeqCst);
        IN_CASE.set(true);
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| parse(&scratch.dir)));
        IN_CASE.set(false);
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        if let Ok(mut active) = ACTIVE.lock() {
            active.remove(name);
        }
        match outcome {
            Ok(Ok(())) => ok += 1,
            Ok(Err(message)) => {
                err += 1;
                if case < seeds.len() {
                    failures.push(format!("seed {case} is rejected: {message}"));
                }
                let message = message.replace(&scratch.dir.display().to_string(), "DIR");
                let short: String = message.chars().take(90).collect();
                *errors.entry(short).or_default() += 1;
            }
            Err(payload) => {
                let message = payload_message(payload.as_ref());
                let location = PANICS
                    .lock()
                    .ok()
                    .and_then(|panics| {
                        panics
                            .iter()
                            .rev()
                            .find(|(m, _)| *m == message)
                            .map(|(_, l)| l.clone())
                    })
                    .unwrap_or_else(|| "unknown location".into());
                let key = format!("{message} at {location}");
                let count = failed_at.entry(key.clone()).or_default();
                *count += 1;
                if *count == 1 {
                    let kept = keep_reproducer(name, case, &what, &key, &input);
                    failures.push(format!(
                        "case {case} ({what}): panicked: {key}; input kept in {}",
                        kept.display()
                    ));
                }
            }
        }
    }
    scratch.written = None;
    std::fs::remove_dir_all(&scratch.dir).ok();
    std::fs::remove_file(&case_file).ok();
    let panics: usize = failed_at.values().sum();
    println!(
        "fuzz {name}: {} cases, {ok} Ok, {err} Err, {panics} panics{}, {:.1} s, peak RSS {} MB (process)",
        ok + err + panics,
        if unwritable > 0 {
            format!(", {unwritable} unwritable")
        } else {
            String::new()
        },
        started.elapsed().as_secs_f64(),
        peak_rss_mb()
    );
    let mut common: Vec<_> = errors.into_iter().collect();
    common.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for (message, count) in common.iter().take(8) {
        println!("    {count:>7} × {message}");
    }
    if !failures.is_empty() {
        for failure in &failures {
            eprintln!("fuzz {name}: {failure}");
        }
        for (key, count) in &failed_at {
            eprintln!("fuzz {name}: {count} case(s) panicked with {key}");
        }
        panic!(
            "fuzz {name}: {} failure(s) (seed {}), listed above",
            failures.len(),
            settings.seed
        );
    }
}

fn peak_rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

// ---------------------------------------------------------------------------------------------
// Byte-level mutation.

const INTERESTING_BYTES: [u8; 7] = [0, 1, 0x7f, 0x80, 0xfe, 0xff, b'-'];
const INTERESTING_WORDS: [u64; 22] = [
    0,
    1,
    2,
    3,
    8,
    16,
    255,
    256,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    600_000_000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
    u64::MAX - 7,
    1 << 40,
];
const ASCII_NUMBERS: [&str; 16] = [
    "0",
    "-1",
    "1",
    "600000000",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "1e309",
    "-1e309",
    "1e-400",
    "0.5",
    "NaN",
    "inf",
    "99999999999999999999999999",
    "-0",
];

/// A position in `0..len`: mostly inside `focus` (headers), sometimes near the end.
fn pick_pos(rng: &mut ChaCha8Rng, len: usize, focus: &[Range<usize>]) -> usize {
    if len == 0 {
        return 0;
    }
    let roll = rng.random_range(0..100);
    let range = if roll < 60 && !focus.is_empty() {
        let r = focus.choose(rng).expect("non-empty").clone();
        r.start.min(len - 1)..r.end.clamp(r.start.min(len - 1) + 1, len)
    } else if roll < 70 {
        len.saturating_sub(128)..len
    } else {
        0..len
    };
    rng.random_range(range)
}

/// One byte-level mutation of `bytes`; returns what it did.
fn mutate_bytes(rng: &mut ChaCha8Rng, bytes: &mut Vec<u8>, focus: &[Range<usize>]) -> String {
    let len = bytes.len();
    let pos = pick_pos(rng, len, focus);
    let span = |rng: &mut ChaCha8Rng| {
        let most = [1, 4, 16, 256][rng.random_range(0..4)];
        rng.random_range(1..=most)
    };
    match rng.random_range(0..11) {
        0 if len > 0 => {
            let bit = rng.random_range(0..8);
            bytes[pos] ^= 1 << bit;
            format!("flip bit {bit} at {pos}")
        }
        1 if len > 0 => {
            let value = if rng.random_bool(0.7) {
                *INTERESTING_BYTES.choose(rng).expect("non-empty")
            } else {
                rng.random()
            };
            bytes[pos] = value;
            format!("byte {value:#04x} at {pos}")
        }
        2 if len > 0 => {
            let width = *[2usize, 4, 8].choose(rng).expect("non-empty");
            let mut value = *INTERESTING_WORDS.choose(rng).expect("non-empty");
            if rng.random_bool(0.2) {
                value = value.wrapping_neg();
            }
            let big_endian = rng.random_bool(0.5);
            let all = if big_endian {
                value.to_be_bytes()
            } else {
                value.to_le_bytes()
            };
            let word = if big_endian {
                &all[8 - width..]
            } else {
                &all[..width]
            };
            let end = (pos + width).min(len);
            bytes[pos..end].copy_from_slice(&word[..end - pos]);
            format!(
                "{width}-byte {} word {value:#x} at {pos}",
                if big_endian { "BE" } else { "LE" }
            )
        }
        3 => {
            let number = *ASCII_NUMBERS.choose(rng).expect("non-empty");
            // Replace the number at or after `pos` (JSON, text), or write it there.
            let start = (pos..len.min(pos + 64)).find(|&i| bytes[i].is_ascii_digit());
            let (start, end) = match start {
                Some(start) => {
                    let start = if start > 0 && bytes[start - 1] == b'-' {
                        start - 1
                    } else {
                        start
                    };
                    let end = (start + 1..len)
                        .find(|&i| !matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+'))
                        .unwrap_or(len);
                    (start, end)
                }
                None => (pos, pos),
            };
            bytes.splice(start..end, number.bytes());
            format!("number `{number}` over {start}..{end}")
        }
        4 => {
            let count = span(rng);
            let mut new = vec![0u8; count];
            if rng.random_bool(0.5) {
                rng.fill_bytes(&mut new);
            } else {
                new.fill(*INTERESTING_BYTES.choose(rng).expect("non-empty"));
            }
            bytes.splice(pos..pos, new);
            format!("insert {count} bytes at {pos}")
        }
        5 if len > 0 => {
            let end = (pos + span(rng)).min(len);
            bytes.drain(pos..end);
            format!("delete {pos}..{end}")
        }
        6 => {
            bytes.truncate(pos);
            format!("truncate at {pos}")
        }
        7 if len > 0 => {
            let end = (pos + span(rng)).min(len);
            let copy = bytes[pos..end].to_vec();
            let at = pick_pos(rng, len, focus);
            let times = *[1usize, 2, 16].choose(rng).expect("non-empty");
            for _ in 0..times {
                bytes.splice(at..at, copy.iter().copied());
            }
            format!("duplicate {pos}..{end} {times}× at {at}")
        }
        8 if len > 0 => {
            let end = (pos + span(rng)).min(len);
            rng.fill_bytes(&mut bytes[pos..end]);
            format!("random bytes over {pos}..{end}")
        }
        9 if len > 0 => {
            let delta = *[1u8, 2, 16, 255, 254].choose(rng).expect("non-empty");
            bytes[pos] = bytes[pos].wrapping_add(delta);
            format!("add {delta} to byte {pos}")
        }
        _ if len > 1 => {
            let other = rng.random_range(0..len);
            bytes.swap(pos, other);
            format!("swap bytes {pos} and {other}")
        }
        _ => {
            bytes.push(rng.random());
            "append a byte".into()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON mutation.

const NAMES: [&str; 40] = [
    "",
    "0",
    "-1",
    "NaN",
    "vit",
    "dinov2",
    "vit_face",
    "deformable_detr",
    "vit_tiny_patch16_224",
    "token",
    "avg",
    "mean",
    "none",
    "Timm",
    "HfVit",
    "HfDinov2",
    "GsLoraFace",
    "Bicubic",
    "bilinear",
    "CosFace",
    "Linear",
    "F32",
    "F16",
    "BF16",
    "F64",
    "I64",
    "U8",
    "BOOL",
    "relu",
    "gelu",
    "sine",
    "resnet50",
    "train",
    "../",
    "a/b",
    "é🦀",
    "\u{0}",
    "LORA",
    "gs-lora++",
    "gs-lora",
];
const KEYS: [&str; 30] = [
    "format",
    "model_type",
    "architecture",
    "model_args",
    "hidden_size",
    "image_size",
    "patch_size",
    "num_classes",
    "num_labels",
    "num_channels",
    "r",
    "lora_alpha",
    "preprocess",
    "class_names",
    "forgotten",
    "crop_pct",
    "channels",
    "results",
    "curves",
    "__metadata__",
    "id2label",
    "data_offsets",
    "shape",
    "dtype",
    "iscrowd",
    "bbox",
    "width",
    "height",
    "attention_scale",
    "head",
];
const INTEGERS: [i128; 30] = [
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    15,
    16,
    31,
    32,
    33,
    48,
    64,
    255,
    1024,
    65535,
    100_000,
    600_000_000,
    2_147_483_647,
    2_147_483_648,
    4_294_967_296,
    9_007_199_254_740_993,
    i64::MAX as i128,
    u64::MAX as i128,
    -1,
    -2,
    -2_147_483_648,
    i64::MIN as i128,
    -600_000_000,
];
const FLOATS: [f64; 11] = [
    0.0,
    -0.0,
    0.5,
    1.5,
    -1.5,
    1e-300,
    1e300,
    -1e300,
    f64::MAX,
    f64::MIN_POSITIVE,
    1e-7,
];
/// Text no JSON value serialises to, put in place of a placeholder string.
const RAW: [&str; 8] = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-1e999",
    "1e-999",
    "123456789012345678901234567890",
    "00012",
];

fn integer(value: i128) -> Value {
    if value < 0 {
        json!(value as i64)
    } else {
        json!(value as u64)
    }
}

/// JSON pointers of every node of `value` (to depth 24) and every key seen.
fn walk_json(
    value: &Value,
    at: String,
    depth: usize,
    nodes: &mut Vec<String>,
    keys: &mut Vec<String>,
) {
    if depth > 24 {
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                keys.push(key.clone());
                let escaped = key.replace('~', "~0").replace('/', "~1");
                walk_json(child, format!("{at}/{escaped}"), depth + 1, nodes, keys);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate().take(64) {
                walk_json(child, format!("{at}/{i}"), depth + 1, nodes, keys);
            }
        }
        _ => {}
    }
    nodes.push(at);
}

/// A value to put somewhere: a boundary number, a name, a scalar of another type, or raw text.
fn some_value(rng: &mut ChaCha8Rng, keys: &[String], raw: &mut Vec<String>) -> Value {
    match rng.random_range(0..10) {
        0..=3 => integer(*INTEGERS.choose(rng).expect("non-empty")),
        4 => json!(*FLOATS.choose(rng).expect("non-empty")),
        5 => json!(*NAMES.choose(rng).expect("non-empty")),
        6 => match rng.random_range(0..4) {
            0 => Value::Null,
            1 => json!(rng.random_bool(0.5)),
            2 => json!([]),
            _ => json!({}),
        },
        7 => json!(keys.choose(rng).cloned().unwrap_or_default()),
        8 => json!("x".repeat(*[200usize, 5000].choose(rng).expect("non-empty"))),
        _ => placeholder(raw, RAW.choose(rng).expect("non-empty").to_string()),
    }
}

fn placeholder(raw: &mut Vec<String>, text: String) -> Value {
    raw.push(text);
    json!(format!("@@RAW{}@@", raw.len() - 1))
}

/// One tree mutation of `value`; returns what it did.
fn mutate_json(rng: &mut ChaCha8Rng, value: &mut Value, raw: &mut Vec<String>) -> String {
    let (mut nodes, mut keys) = (Vec::new(), Vec::new());
    walk_json(value, String::new(), 0, &mut nodes, &mut keys);
    keys.extend(KEYS.iter().map(|k| k.to_string()));
    // Leaves are the values validators look at: pick them more often.
    let leaves: Vec<&String> = nodes
        .iter()
        .filter(|p| {
            value
                .pointer(p)
                .is_some_and(|v| !v.is_object() && !v.is_array())
        })
        .collect();
    let at = match leaves.choose(rng) {
        Some(leaf) if rng.random_bool(0.7) => (*leaf).clone(),
        _ => nodes.choose(rng).cloned().unwrap_or_default(),
    };
    let other = nodes
        .choose(rng)
        .and_then(|p| value.pointer(p))
        .cloned()
        .unwrap_or(Value::Null);
    let Some(node) = value.pointer_mut(&at) else {
        return "nothing".into();
    };
    let show = |at: &str| {
        if at.is_empty() {
            "/".to_string()
        } else {
            at.to_string()
        }
    };
    match rng.random_range(0..12) {
        0..=2 => {
            let new = if rng.random_bool(0.75) {
                integer(*INTEGERS.choose(rng).expect("non-empty"))
            } else if rng.random_bool(0.5) {
                json!(*FLOATS.choose(rng).expect("non-empty"))
            } else {
                placeholder(raw, RAW.choose(rng).expect("non-empty").to_string())
            };
            *node = new;
            format!("{} = {}", show(&at), describe_value(node, raw))
        }
        3 => {
            // Near the old value: off by one, doubled, halved, negated, scaled.
            let old = node.as_f64().unwrap_or(1.0);
            let new = match rng.random_range(0..6) {
                0 => old + 1.0,
                1 => old - 1.0,
                2 => old * 2.0,
                3 => (old / 2.0).floor(),
                4 => -old,
                _ => old * 1000.0,
            };
            *node = if new.fract() == 0.0 && new.abs() < 9e15 {
                integer(new as i128)
            } else {
                json!(new)
            };
            format!("{} = {new} (was {old})", show(&at))
        }
        4 => {
            let old = node.take();
            *node = match rng.random_range(0..5) {
                0 => json!(old.to_string()),
                1 => Value::Null,
                2 => json!([old]),
                3 => json!({ "value": old }),
                _ => json!(true),
            };
            format!("{} retyped to {}", show(&at), kind(node))
        }
        5 | 6 => {
            // Drop this node from its parent.
            let (parent, last) = at.rsplit_once('/').unwrap_or(("", ""));
            let last = last.replace("~1", "/").replace("~0", "~");
            match value.pointer_mut(parent) {
                Some(Value::Object(map)) => {
                    map.remove(&last);
                    format!("remove {}", show(&at))
                }
                Some(Value::Array(items)) => {
                    if let Ok(i) = last.parse::<usize>()
                        && i < items.len()
                    {
                        items.remove(i);
                    }
                    format!("remove {}", show(&at))
                }
                _ => "nothing removed".into(),
            }
        }
        7 => {
            let key = keys.choose(rng).cloned().unwrap_or_default();
            let new = some_value(rng, &keys, raw);
            let text = describe_value(&new, raw);
            match node {
                Value::Object(map) => {
                    map.insert(key.clone(), new);
                    format!("{}/{key} = {text}", show(&at))
                }
                Value::Array(items) => {
                    items.push(new);
                    format!("push {text} onto {}", show(&at))
                }
                _ => {
                    *node = new;
                    format!("{} = {text}", show(&at))
                }
            }
        }
        8 => {
            *node = json!(*NAMES.choose(rng).expect("non-empty"));
            format!("{} = {}", show(&at), node)
        }
        9 => {
            let times = *[2usize, 10, 1000].choose(rng).expect("non-empty");
            match node {
                Value::Array(items) if !items.is_empty() => {
                    let item = items.choose(rng).cloned().unwrap_or_default();
                    items.extend(std::iter::repeat_n(item, times));
                    format!("repeat an item of {} {times}×", show(&at))
                }
                _ => {
                    let old = node.take();
                    *node = Value::Array(vec![old; times.min(10)]);
                    format!("{} = {}× itself in an array", show(&at), times.min(10))
                }
            }
        }
        10 => {
            let text = describe_value(&other, raw);
            *node = other;
            format!("{} = another node: {text}", show(&at))
        }
        _ => {
            let depth = *[64usize, 200, 5000].choose(rng).expect("non-empty");
            *node = placeholder(raw, format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
            format!("{} = arrays nested {depth} deep", show(&at))
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn describe_value(value: &Value, raw: &[String]) -> String {
    let text = value.to_string();
    let text = raw.iter().enumerate().fold(text, |text, (i, r)| {
        text.replace(&format!("\"@@RAW{i}@@\""), r)
    });
    if text.len() > 40 {
        format!(
            "{}… ({} chars)",
            text.chars().take(40).collect::<String>(),
            text.len()
        )
    } else {
        text
    }
}

/// Serialises `value` with the raw texts in place of their placeholders.
fn json_text(rng: &mut ChaCha8Rng, value: &Value, raw: &[String]) -> String {
    let text = if rng.random_bool(0.5) {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    }
    .expect("a JSON value serialises");
    raw.iter().enumerate().fold(text, |text, (i, r)| {
        text.replace(&format!("\"@@RAW{i}@@\""), r)
    })
}

/// One to three tree mutations of the JSON document `bytes`, or `None` when it is not JSON.
fn mutate_json_bytes(rng: &mut ChaCha8Rng, bytes: &[u8]) -> Option<(Vec<u8>, String)> {
    let mut value: Value = serde_json::from_slice(bytes).ok()?;
    let mut raw = Vec::new();
    let mut done = vec![mutate_json(rng, &mut value, &mut raw)];
    while done.len() < 3 && rng.random_bool(0.3) {
        done.push(mutate_json(rng, &mut value, &mut raw));
    }
    Some((json_text(rng, &value, &raw).into_bytes(), done.join(", ")))
}

// ---------------------------------------------------------------------------------------------
// Format-aware mutation.

/// The bytes of a safetensors file's header (length prefix included), if it has one.
fn safetensors_header(bytes: &[u8]) -> Option<Range<usize>> {
    let prefix: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    let end = 8usize.checked_add(usize::try_from(u64::from_le_bytes(prefix)).ok()?)?;
    (end <= bytes.len()).then_some(0..end)
}

/// Where byte mutations of the file `path` should mostly land (one or more ranges).
#[expect(
    clippy::single_range_in_vec_init,
    reason = "a list of ranges, often of one"
)]
fn focus(path: &str, bytes: &[u8]) -> Vec<Range<usize>> {
    let len = bytes.len();
    if path.ends_with(".safetensors") {
        vec![safetensors_header(bytes).unwrap_or(0..len.min(256))]
    } else if path.ends_with(".zip") {
        vec![0..64, len.saturating_sub(512)..len]
    } else if path.ends_with(".png") || path.ends_with(".gz") {
        vec![0..64]
    } else if path.ends_with(".jpg") {
        vec![0..700]
    } else if path.contains("-ubyte") {
        vec![0..16]
    } else {
        vec![0..len]
    }
}

/// A safetensors header mutated as JSON, the length prefix rewritten to match.
fn mutate_safetensors(rng: &mut ChaCha8Rng, bytes: &[u8]) -> Option<(Vec<u8>, String)> {
    let header = safetensors_header(bytes)?;
    let (text, what) = mutate_json_bytes(rng, &bytes[8..header.end])?;
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[header.end..]);
    Some((out, format!("header: {what}")))
}

/// A PNG chunk's data mutated and its CRC recomputed (so the decoder looks past it).
fn mutate_png(rng: &mut ChaCha8Rng, bytes: &[u8]) -> Option<(Vec<u8>, String)> {
    let mut chunks = Vec::new();
    let mut at = 8;
    while at + 12 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().ok()?) as usize;
        let end = at.checked_add(12)?.checked_add(len)?;
        if end > bytes.len() {
            break;
        }
        chunks.push(at..end);
        at = end;
    }
    // IHDR (sizes, depth, colour type) half the time.
    let chunk = if rng.random_bool(0.5) {
        chunks.first()?.clone()
    } else {
        chunks.choose(rng)?.clone()
    };
    let name = String::from_utf8_lossy(&bytes[chunk.start + 4..chunk.start + 8]).into_owned();
    let mut data = bytes[chunk.start + 8..chunk.end - 4].to_vec();
    let whole = 0..data.len();
    let what = mutate_bytes(rng, &mut data, &[whole]);
    let mut body = bytes[chunk.start + 4..chunk.start + 8].to_vec();
    body.extend_from_slice(&data);
    let mut crc = flate2::Crc::new();
    crc.update(&body);
    let mut out = bytes[..chunk.start].to_vec();
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc.sum().to_be_bytes());
    out.extend_from_slice(&bytes[chunk.end..]);
    Some((out, format!("{name} chunk (CRC fixed): {what}")))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

/// The inflated contents of a gzip file mutated, packed again.
#[expect(
    clippy::single_range_in_vec_init,
    reason = "a list of ranges, of one here"
)]
fn mutate_gzip(rng: &mut ChaCha8Rng, bytes: &[u8]) -> Option<(Vec<u8>, String)> {
    let mut inner = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut inner)
        .ok()?;
    let what = mutate_bytes(rng, &mut inner, &[0..16]);
    Some((gzip(&inner), format!("inflated: {what}")))
}

/// A zip archive's entries read, one renamed, dropped, copied or its contents mutated, and the
/// archive written again.
fn mutate_zip(rng: &mut ChaCha8Rng, bytes: &[u8]) -> Option<(Vec<u8>, String)> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).ok()?;
    let mut entries = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).ok()?;
        let mut data = Vec::new();
        entry.read_to_end(&mut data).ok()?;
        entries.push((entry.name().to_string(), data));
    }
    let mut input: Input = entries
        .into_iter()
        .map(|(name, data)| {
            if name.ends_with('/') {
                (name.trim_end_matches('/').to_string(), Entry::Dir)
            } else {
                (name, Entry::File(data))
            }
        })
        .collect();
    let what = mutate_tree_once(rng, &mut input);
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let method = if rng.random_bool(0.5) {
        zip::CompressionMethod::Stored
    } else {
        zip::CompressionMethod::Deflated
    };
    let options = zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, entry) in &input {
        match entry {
            Entry::File(data) => {
                writer.start_file(name.as_str(), options).ok()?;
                writer.write_all(data).ok()?;
            }
            Entry::Dir => writer.add_directory(name.as_str(), options).ok()?,
            Entry::Link(to) => writer
                .add_symlink(name.as_str(), to.as_str(), options)
                .ok()?,
        }
    }
    let out = writer.finish().ok()?.into_inner();
    Some((out, format!("entries ({method:?}): {what}")))
}

/// One content mutation of the file `path`, aware of its format half the time.
fn mutate_file(rng: &mut ChaCha8Rng, path: &str, bytes: &mut Vec<u8>) -> String {
    let aware = rng.random_bool(if path.ends_with(".json") { 0.65 } else { 0.5 });
    let structured = if !aware {
        None
    } else if path.ends_with(".json") {
        mutate_json_bytes(rng, bytes)
    } else if path.ends_with(".safetensors") {
        mutate_safetensors(rng, bytes)
    } else if path.ends_with(".png") {
        mutate_png(rng, bytes)
    } else if path.ends_with(".gz") {
        mutate_gzip(rng, bytes)
    } else if path.ends_with(".zip") || path.ends_with(".pth") {
        // `torch.save` writes a ZIP archive: its pickle and storages mutated as entries.
        mutate_zip(rng, bytes)
    } else {
        None
    };
    match structured {
        Some((new, what)) => {
            *bytes = new;
            format!("{path}: {what}")
        }
        None => {
            let focus = focus(path, bytes);
            format!("{path}: {}", mutate_bytes(rng, bytes, &focus))
        }
    }
}

/// How many mutations to stack: one, more with falling odds, at most five.
fn rounds(rng: &mut ChaCha8Rng) -> usize {
    let mut n = 1;
    while n < 5 && rng.random_bool(0.4) {
        n += 1;
    }
    n
}

/// Content mutations of the files of `seed` (names and layout kept).
fn mutate_contents(rng: &mut ChaCha8Rng, seed: &Input) -> (Input, String) {
    let mut input = seed.clone();
    let mut done = Vec::new();
    for _ in 0..rounds(rng) {
        let paths: Vec<String> = input
            .iter()
            .filter(|(_, e)| matches!(e, Entry::File(_)))
            .map(|(p, _)| p.clone())
            .collect();
        let Some(path) = paths.choose(rng) else { break };
        if let Some(Entry::File(bytes)) = input.get_mut(path) {
            done.push(mutate_file(rng, path, bytes));
        }
    }
    (input, done.join("; "))
}

const DIR_NAMES: [&str; 18] = [
    "train",
    "val",
    "valid",
    "test",
    "Train",
    ".hidden",
    "__MACOSX",
    "a b",
    "ü",
    "x.png",
    "cls",
    "cls2",
    "0",
    "-",
    "images",
    "images.txt",
    "train-images-idx3-ubyte",
    "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn",
];

/// One change of the tree: a rename, move, copy, removal, new folder, new file or symlink, or
/// a content mutation.
fn mutate_tree_once(rng: &mut ChaCha8Rng, input: &mut Input) -> String {
    let paths: Vec<String> = input.keys().cloned().collect();
    let Some(path) = paths.choose(rng).cloned() else {
        input.insert("a/0.png".into(), Entry::File(png(9, 3, 3)));
        return "add a/0.png to an empty tree".into();
    };
    let parts: Vec<&str> = path.split('/').collect();
    let pick = |rng: &mut ChaCha8Rng| *DIR_NAMES.choose(rng).expect("non-empty");
    let done = match rng.random_range(0..14) {
        0 | 1 => {
            // Rename one folder (or the file) of the path, for everything under it.
            let depth = rng.random_range(0..parts.len());
            let prefix = parts[..=depth].join("/");
            let mut renamed = parts[..depth].to_vec();
            let new = pick(rng);
            renamed.push(new);
            let renamed = renamed.join("/");
            let moved: Vec<(String, Entry)> = paths
                .iter()
                .filter(|p| **p == prefix || p.starts_with(&format!("{prefix}/")))
                .filter_map(|p| input.remove(p).map(|e| (p.clone(), e)))
                .collect();
            for (p, e) in moved {
                input.insert(format!("{renamed}{}", &p[prefix.len()..]), e);
            }
            format!("rename {prefix} to {renamed}")
        }
        2 => {
            input.remove(&path);
            format!("remove {path}")
        }
        3 => {
            let entry = input.remove(&path).expect("listed");
            let top = parts.last().copied().unwrap_or("x").to_string();
            input.insert(top.clone(), entry);
            format!("move {path} to the top as {top}")
        }
        4 => {
            let entry = input.remove(&path).expect("listed");
            let depth = rng.random_range(0..parts.len());
            let mut deeper = parts.clone();
            let new = pick(rng);
            deeper.insert(depth, new);
            let deeper = deeper.join("/");
            input.insert(deeper.clone(), entry);
            format!("move {path} to {deeper}")
        }
        5 => {
            let entry = input[&path].clone();
            let other = paths.choose(rng).cloned().unwrap_or_default();
            let dir = other.rsplit_once('/').map_or("", |(d, _)| d);
            let copy = format!("{dir}/copy-{}", parts.last().copied().unwrap_or("x"));
            input.insert(copy.trim_start_matches('/').to_string(), entry);
            format!("copy {path} to {copy}")
        }
        6 => {
            let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
            let new = format!("{dir}/{}", pick(rng))
                .trim_start_matches('/')
                .to_string();
            input.insert(new.clone(), Entry::Dir);
            format!("add empty folder {new}")
        }
        7 => {
            let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
            let (file, bytes) = match rng.random_range(0..5) {
                0 => ("notes.txt", b"not an image".to_vec()),
                1 => ("UPPER.PNG", png(77, 5, 4)),
                2 => ("empty.png", Vec::new()),
                3 => ("garbage.jpg", b"\xff\xd8\xff\xe0garbage".to_vec()),
                _ => ("big.png", png_sized(2000, 1)),
            };
            let new = format!("{dir}/{file}").trim_start_matches('/').to_string();
            input.insert(new.clone(), Entry::File(bytes));
            format!("add {new}")
        }
        8 => {
            let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
            // Inside the tree only: the folder itself or one of its ancestors, a sibling, or
            // nothing.
            let depth = if dir.is_empty() {
                0
            } else {
                dir.split('/').count()
            };
            let target = match rng.random_range(0..4) {
                0 | 1 => match rng.random_range(0..=depth) {
                    0 => ".".to_string(),
                    up => vec![".."; up].join("/"),
                },
                2 => "missing".to_string(),
                _ => "0.png".to_string(),
            };
            let link = format!("{dir}/link-{}", rng.random_range(0..4))
                .trim_start_matches('/')
                .to_string();
            input.insert(link.clone(), Entry::Link(target.clone()));
            format!("symlink {link} -> {target}")
        }
        9 => {
            let renamed = match path.rsplit_once('.') {
                Some((stem, "png")) => format!("{stem}.jpg"),
                Some((stem, _)) => format!("{stem}.png"),
                None => format!("{path}.png"),
            };
            let entry = input.remove(&path).expect("listed");
            input.insert(renamed.clone(), entry);
            format!("rename {path} to {renamed}")
        }
        _ => match input.get_mut(&path) {
            Some(Entry::File(bytes)) => mutate_file(rng, &path, bytes),
            _ => format!("{path} left as is"),
        },
    };
    normalize(input);
    done
}

/// Tree and content mutations of `seed`.
fn mutate_tree(rng: &mut ChaCha8Rng, seed: &Input) -> (Input, String) {
    let mut input = seed.clone();
    let done: Vec<String> = (0..rounds(rng))
        .map(|_| mutate_tree_once(rng, &mut input))
        .collect();
    (input, done.join("; "))
}

// ---------------------------------------------------------------------------------------------
// Seeds.

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../gs-lora-models/tests/fixtures")
        .join(name)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// A fresh directory to build seeds in.
/// A fresh scratch directory for making seeds; unique per call, since concurrent fuzz tests
/// build the same seeds (`vit_config` and `vit_pretrained` both save a ViT: one shared
/// directory let one test delete the other's files mid-write).
fn seed_dir(name: &str) -> PathBuf {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "gs-lora-fuzz-seed-{}-{call}-{name}",
        std::process::id()
    ));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).expect("seed dir");
    dir
}

fn encode(image: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, format).expect("encode");
    bytes.into_inner()
}

/// A `w × h` grey PNG of `level`.
fn png(level: u8, w: u32, h: u32) -> Vec<u8> {
    encode(
        image::GrayImage::from_pixel(w, h, image::Luma([level])).into(),
        image::ImageFormat::Png,
    )
}

fn png_sized(w: u32, h: u32) -> Vec<u8> {
    png(128, w, h)
}

/// A `w × h` RGB JPEG.
fn jpeg(level: u8, w: u32, h: u32) -> Vec<u8> {
    encode(
        image::RgbImage::from_pixel(w, h, image::Rgb([level, 255 - level, 7])).into(),
        image::ImageFormat::Jpeg,
    )
}

/// A small image folder: three classes (PNG grey, PNG RGB, JPEG), under `prefix`.
fn image_tree(prefix: &str, splits: bool) -> Input {
    let mut input = Input::new();
    for (c, class) in ["ant", "bee", "cat"].iter().enumerate() {
        for i in 0..3 {
            let split = match (splits, i) {
                (false, _) => String::new(),
                (true, 2) => "val/".into(),
                (true, _) => "train/".into(),
            };
            let (file, bytes) = match c {
                0 => (format!("{i}.png"), png(40 * i as u8, 4 + i as u32, 5)),
                1 => (
                    format!("{i}.png"),
                    encode(
                        image::RgbImage::from_pixel(5, 4, image::Rgb([9, 99, i as u8])).into(),
                        image::ImageFormat::Png,
                    ),
                ),
                _ => (format!("{i}.jpg"), jpeg(30 * i as u8, 8, 6)),
            };
            input.insert(format!("{prefix}{split}{class}/{file}"), Entry::File(bytes));
        }
    }
    input
}

fn zip_of(input: &Input, method: zip::CompressionMethod) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, entry) in input {
        if let Entry::File(bytes) = entry {
            writer
                .start_file(name.as_str(), options)
                .expect("zip entry");
            writer.write_all(bytes).expect("zip entry");
        }
    }
    writer.finish().expect("zip").into_inner()
}

/// An IDX array of unsigned bytes.
fn idx_array(shape: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 8, shape.len() as u8];
    for dim in shape {
        bytes.extend_from_slice(&dim.to_be_bytes());
    }
    bytes.extend_from_slice(payload);
    bytes
}

/// A model loaded from a fixture with fresh adapters.
fn fixture_vit(name: &str, lora: &LoraConfig) -> VisionTransformer {
    let dir = fixture(name);
    VisionTransformer::from_pretrained(
        dir.join("config.json"),
        dir.join("model.safetensors"),
        lora,
        3,
        &Device::default(),
    )
    .unwrap_or_else(|err| panic!("{name}: {err}"))
}

const VIT_FIXTURES: [&str; 6] = [
    "timm_token",
    "timm_avg_ls",
    "hf_vit_classifier",
    "hf_vit_pooler",
    "hf_dinov2",
    "gslora_face",
];
const DETR_FIXTURES: [&str; 6] = [
    "detr",
    "detr_refine",
    "detr_two_stage",
    "detr_tied",
    "detr_refine_tied",
    "detr_two_stage_tied",
];

/// Every ViT fixture's `config.json` and `model.safetensors`, and one saved by
/// `save_pretrained` (the gs-lora config format); HF ones with a `preprocessor_config.json`.
fn vit_seeds() -> Vec<Input> {
    let processor = br#"{"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "size": {"height": 32, "width": 32}}"#;
    let mut seeds: Vec<Input> = VIT_FIXTURES
        .iter()
        .map(|name| {
            let dir = fixture(name);
            let mut input = files([
                ("config.json", read(&dir.join("config.json"))),
                ("model.safetensors", read(&dir.join("model.safetensors"))),
            ]);
            if name.starts_with("hf_") {
                input.insert(
                    "preprocessor_config.json".into(),
                    Entry::File(processor.to_vec()),
                );
            }
            input
        })
        .collect();
    let saved = seed_dir("vit-saved");
    fixture_vit("timm_avg_ls", &LoraConfig::new())
        .save_pretrained(&saved)
        .expect("save_pretrained");
    seeds.push(files([
        ("config.json", read(&saved.join("config.json"))),
        ("model.safetensors", read(&saved.join("model.safetensors"))),
    ]));
    std::fs::remove_dir_all(&saved).ok();
    seeds
}

fn detr_seeds() -> Vec<Input> {
    DETR_FIXTURES
        .iter()
        .map(|name| {
            let dir = fixture(name);
            files([
                ("config.json", read(&dir.join("config.json"))),
                ("model.safetensors", read(&dir.join("model.safetensors"))),
            ])
        })
        .collect()
}

/// `seeds` without their weights, for the parsers that read configs only.
fn configs_only(mut seeds: Vec<Input>) -> Vec<Input> {
    for seed in &mut seeds {
        seed.retain(|path, _| path.ends_with(".json"));
    }
    seeds
}

fn text<E: std::fmt::Display>(err: E) -> String {
    err.to_string()
}

// ---------------------------------------------------------------------------------------------
// The parsers.

#[test]
fn safetensors() {
    // Every dtype the loaders read, a scalar and an empty tensor.
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    let tensors: [(&str, &str, Vec<usize>, usize); 6] = [
        ("f32", "F32", vec![2, 3], 4),
        ("f16", "F16", vec![3], 2),
        ("bf16", "BF16", vec![2, 2], 2),
        ("f64", "F64", vec![2], 8),
        ("scalar", "F32", vec![], 4),
        ("empty", "F32", vec![0, 4], 4),
    ];
    for (i, (name, dtype, shape, size)) in tensors.iter().enumerate() {
        let bytes = shape.iter().product::<usize>() * size;
        let start = data.len();
        data.extend((0..bytes).map(|b| (b * 7 + i) as u8 % 61));
        header.insert(
            name.to_string(),
            json!({"dtype": dtype, "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let header = serde_json::to_vec(&Value::Object(header)).expect("header");
    let mut mixed = (header.len() as u64).to_le_bytes().to_vec();
    mixed.extend_from_slice(&header);
    mixed.extend_from_slice(&data);
    let mut seeds = vec![files([("t.safetensors", mixed)])];
    for path in [
        "position.safetensors",
        "resample.safetensors",
        "deform_attention.safetensors",
        "hf_dinov2/input.safetensors",
        "hf_vit_pooler/input.safetensors",
    ] {
        seeds.push(files([("t.safetensors", read(&fixture(path)))]));
    }
    fuzz("safetensors", &seeds, mutate_contents, |dir| {
        let path = dir.join("t.safetensors");
        let mut source = CheckpointSource::open(&path, IdentityKeys).map_err(text)?;
        let names: Vec<String> = source.names().iter().cloned().collect();
        let mut first_error = None;
        for name in names {
            let read = read_tensor(&path, &name).and_then(|data| {
                let shape = data.shape().to_vec();
                // A checkpoint ignores the kind, which only a seeded initialiser reads.
                source.tensor(&name, &shape, Init::Linear)
            });
            if let Err(err) = read {
                first_error.get_or_insert(err.to_string());
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => source.finish().map_err(text),
        }
    });
}

#[test]
fn vit_config() {
    fuzz(
        "vit_config",
        &configs_only(vit_seeds()),
        mutate_contents,
        |dir| {
            let path = dir.join("config.json");
            let config = VitConfig::from_file(&path).map_err(text)?;
            let _ = (
                config.grid_size(),
                config.attention_scale(),
                config.num_prefix_tokens(),
            );
            checkpoint_preprocess(&path, None, None).map_err(text)?;
            Ok(())
        },
    );
}

#[test]
fn vit_pretrained() {
    fuzz("vit_pretrained", &vit_seeds(), mutate_contents, |dir| {
        load_and_run(dir, "model.safetensors")
    });
}

#[test]
fn vit_shards() {
    let dir = fixture("hf_dinov2_sharded");
    let mut seed = Input::new();
    for entry in std::fs::read_dir(&dir).expect("fixture") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        if name.starts_with("model") || name == "config.json" {
            seed.insert(name, Entry::File(read(&path)));
        }
    }
    fuzz("vit_shards", &[seed], mutate_contents, |dir| {
        load_and_run(dir, "model.safetensors.index.json")
    });
}

#[test]
fn vit_pth() {
    let seeds: Vec<Input> = [
        ("torchvision_vit", "model.pth"),
        ("torchvision_vit", "model_legacy.pth"),
        ("gslora_face", "model.pth"),
    ]
    .iter()
    .map(|(name, weights)| {
        let dir = fixture(name);
        files([
            ("config.json", read(&dir.join("config.json"))),
            ("model.pth", read(&dir.join(weights))),
        ])
    })
    .collect();
    fuzz("vit_pth", &seeds, mutate_contents, |dir| {
        load_and_run(dir, "model.pth")
    });
}

/// Loads `dir/config.json` with the weights `dir/weights` and runs a forward pass at the
/// stored size when it is small, as `gs-lora forward` does.
fn load_and_run(dir: &Path, weights: &str) -> Result<(), String> {
    let device = Device::default();
    let config = dir.join("config.json");
    let model = VisionTransformer::from_pretrained(
        &config,
        dir.join(weights),
        &LoraConfig::new(),
        0,
        &device,
    )
    .map_err(text)?;
    let config = VitConfig::from_file(&config).map_err(text)?;
    if config.image_size <= 64 && config.num_channels <= 4 {
        let (c, s) = (config.num_channels, config.image_size);
        let pixels = Tensor::<4>::zeros([1, c, s, s], &device);
        model.forward(pixels).map_err(text)?;
    }
    Ok(())
}

#[test]
fn detr_config() {
    fuzz(
        "detr_config",
        &configs_only(detr_seeds()),
        mutate_contents,
        |dir| {
            DeformableDetrConfig::from_file(dir.join("config.json")).map_err(text)?;
            Ok(())
        },
    );
}

#[test]
fn detr_pretrained() {
    let device = Device::default();
    fuzz("detr_pretrained", &detr_seeds(), mutate_contents, |dir| {
        DeformableDetr::from_pretrained(
            dir.join("config.json"),
            dir.join("model.safetensors"),
            &LoraConfig::new(),
            0,
            &device,
        )
        .map_err(text)?;
        Ok(())
    });
}

#[test]
fn adapters() {
    let base = fixture_vit("timm_token", &LoraConfig::new());
    let mut seeds: Vec<Input> = [8, 4]
        .into_iter()
        .map(|rank| {
            let dir = seed_dir(&format!("adapters-{rank}"));
            fixture_vit("timm_token", &LoraConfig::new().with_rank(rank))
                .save_adapters(&dir)
                .expect("save_adapters");
            let seed = files([
                (
                    "adapter_config.json",
                    read(&dir.join("adapter_config.json")),
                ),
                (
                    "adapter_model.safetensors",
                    read(&dir.join("adapter_model.safetensors")),
                ),
            ]);
            std::fs::remove_dir_all(&dir).ok();
            seed
        })
        .collect();
    // PEFT's own file (rank_pattern, every field PEFT 0.21 writes).
    let peft = fixture("peft_timm");
    seeds.push(files(
        ["adapter_config.json", "adapter_model.safetensors"]
            .map(|name| (name, read(&peft.join(name)))),
    ));
    let device = Device::default();
    fuzz("adapters", &seeds, mutate_contents, |dir| {
        let mut model = base.clone();
        model.load_adapters(dir).map_err(text)?;
        model
            .forward(Tensor::<4>::zeros([1, 3, 32, 32], &device))
            .map_err(text)?;
        Ok(())
    });
}

#[test]
fn gs_lora_json() {
    let infos = [
        ClassifierInfo {
            class_names: vec!["ant".into(), "bee".into(), "cat".into()],
            preprocess: Preprocess::new(32, 3, Normalization::IMAGENET),
            forgotten: vec![1],
            split_seed: 7,
            val_fraction: Some(0.25),
        },
        ClassifierInfo {
            class_names: (0..10).map(|c| format!("class {c}")).collect(),
            preprocess: Preprocess {
                crop_pct: 0.875,
                ..Preprocess::new(28, 1, Normalization::IMAGENET)
            },
            forgotten: vec![],
            split_seed: 0,
            val_fraction: None,
        },
    ];
    let seeds: Vec<Input> = infos
        .iter()
        .map(|info| {
            files([(
                "gs_lora.json",
                serde_json::to_vec_pretty(info).expect("json"),
            )])
        })
        .collect();
    let mut images = ImageSet::default();
    images.push(Image::new(5, 4, 3, vec![90; 60]).expect("image"), 0);
    let device = Device::default();
    fuzz("gs_lora_json", &seeds, mutate_contents, |dir| {
        let info = ClassifierDir::new(dir).info().map_err(text)?;
        // What `eval` does with it: one batch at the recorded preprocessing.
        let _ = make_batch(&images, &[0], &info.preprocess, None, &device);
        Ok(())
    });
}

#[test]
fn detector_dir() {
    let dir = fixture("detr");
    let config = DeformableDetrConfig::from_file(dir.join("config.json")).expect("config");
    let model = DeformableDetr::from_pretrained(
        dir.join("config.json"),
        dir.join("model.safetensors"),
        &LoraConfig::new(),
        0,
        &Device::default(),
    )
    .expect("detr fixture");
    let saved = seed_dir("detector");
    let info = DetectorInfo {
        class_names: (0..config.num_labels).map(|c| format!("c{c}")).collect(),
        config,
        preprocess: Preprocess::new(32, 3, Normalization::IMAGENET),
        forgotten: vec![0],
    };
    DetectorDir::new(&saved).save(&model, &info).expect("save");
    let seeds = vec![files([
        ("detector.json", read(&saved.join("detector.json"))),
        ("model.safetensors", read(&saved.join("model.safetensors"))),
    ])];
    std::fs::remove_dir_all(&saved).ok();
    let device = Device::default();
    fuzz("detector_dir", &seeds, mutate_contents, |dir| {
        let detector = DetectorDir::new(dir);
        detector.info().map_err(text)?;
        detector
            .load(&LoraConfig::new(), 0, &device)
            .map_err(text)?;
        Ok(())
    });
}

#[test]
fn idx() {
    let (rows, cols) = (4u32, 3u32);
    let image = |i: usize| -> Vec<u8> { (0..12).map(|p| (i * 13 + p) as u8).collect() };
    let split = |prefix: &str, count: usize| {
        let labels: Vec<u8> = (0..count).map(|i| (i % 3) as u8).collect();
        let pixels: Vec<u8> = (0..count).flat_map(image).collect();
        [
            (
                format!("{prefix}-images-idx3-ubyte"),
                idx_array(&[count as u32, rows, cols], &pixels),
            ),
            (
                format!("{prefix}-labels-idx1-ubyte"),
                idx_array(&[count as u32], &labels),
            ),
        ]
    };
    let plain: Input = split("train", 9)
        .into_iter()
        .chain(split("t10k", 3))
        .map(|(name, bytes)| (name, Entry::File(bytes)))
        .collect();
    let gzipped: Input = plain
        .iter()
        .map(|(name, entry)| match entry {
            Entry::File(bytes) => (format!("{name}.gz"), Entry::File(gzip(bytes))),
            other => (name.clone(), other.clone()),
        })
        .collect();
    fuzz("idx", &[plain, gzipped], mutate_contents, |dir| {
        load_idx(dir, &LoadOptions::default()).map_err(text)?;
        Ok(())
    });
}

#[test]
fn zip() {
    let seeds: Vec<Input> = [
        (image_tree("", false), zip::CompressionMethod::Deflated),
        (image_tree("top/", false), zip::CompressionMethod::Stored),
        (image_tree("top/", true), zip::CompressionMethod::Deflated),
    ]
    .iter()
    .map(|(tree, method)| files([("data.zip", zip_of(tree, *method))]))
    .collect();
    fuzz("zip", &seeds, mutate_contents, |dir| {
        Dataset::open(&dir.join("data.zip"), &LoadOptions::default()).map_err(text)?;
        Ok(())
    });
}

#[test]
fn folder() {
    let seeds = [
        image_tree("", false),
        image_tree("top/", false),
        image_tree("", true),
    ];
    fuzz("folder", &seeds, mutate_tree, |dir| {
        Dataset::open(dir, &LoadOptions::default()).map_err(text)?;
        Ok(())
    });
}

#[test]
fn cub() {
    let mut input = Input::new();
    let (mut images, mut labels, mut split) = (String::new(), String::new(), String::new());
    let classes = "1 001.Albatross\n2 002.Auklet\n";
    for id in 1..=6 {
        let class = 1 + (id - 1) / 3;
        let folder = ["001.Albatross", "002.Auklet"][class - 1];
        let file = format!(
            "{folder}/img_{id}.{}",
            if id % 2 == 0 { "jpg" } else { "png" }
        );
        images.push_str(&format!("{id} {file}\n"));
        labels.push_str(&format!("{id} {class}\n"));
        split.push_str(&format!("{id} {}\n", u8::from(id % 3 != 0)));
        let bytes = if id % 2 == 0 {
            jpeg(20 * id as u8, 7, 5)
        } else {
            png(20 * id as u8, 5, 7)
        };
        input.insert(format!("images/{file}"), Entry::File(bytes));
    }
    for (name, text) in [
        ("classes.txt", classes.to_string()),
        ("images.txt", images),
        ("image_class_labels.txt", labels),
        ("train_test_split.txt", split),
    ] {
        input.insert(name.into(), Entry::File(text.into_bytes()));
    }
    fuzz("cub", &[input], mutate_tree, |dir| {
        load_cub(dir, &LoadOptions::default()).map_err(text)?;
        Ok(())
    });
}

#[test]
fn coco() {
    let json = json!({
        "images": [
            {"id": 1, "file_name": "a.png", "width": 40, "height": 20},
            {"id": 2, "file_name": "b.jpg", "width": 10, "height": 30},
            {"id": 3, "file_name": "a.png", "width": 40, "height": 20}
        ],
        "annotations": [
            {"image_id": 1, "category_id": 18, "bbox": [0, 0, 20, 10]},
            {"image_id": 2, "category_id": 1, "bbox": [5, 15, 5, 15], "iscrowd": 0},
            {"image_id": 2, "category_id": 1, "bbox": [1, 1, 2, 2], "iscrowd": 1},
            {"image_id": 3, "category_id": 18, "bbox": [39, 19, 5, 5], "area": 1.0}
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]
    });
    let seed = files([
        (
            "instances.json",
            serde_json::to_vec_pretty(&json).expect("json"),
        ),
        (
            "a.png",
            encode(
                image::RgbImage::from_pixel(40, 20, image::Rgb([200, 10, 10])).into(),
                image::ImageFormat::Png,
            ),
        ),
        ("b.jpg", jpeg(50, 10, 30)),
    ]);
    fuzz("coco", &[seed], mutate_contents, |dir| {
        let path = dir.join("instances.json");
        let all = CocoAnnotations::open(&path, None).map_err(text)?;
        let names: Vec<String> = all.categories.iter().map(|(_, n)| n.clone()).collect();
        let labels = all.model_labels(&names).map_err(text)?;
        all.load_samples(dir, &labels, 16, Some(4)).map_err(text)?;
        CocoAnnotations::open(&path, Some(&[18])).map_err(text)?;
        Ok(())
    });
}

#[test]
fn state_json() {
    let result = |task: usize| TaskResult {
        task,
        forget_classes: vec![2 * task, 2 * task + 1],
        forget_before: 88.5,
        retain_before: 86.25,
        forget_after: 0.0,
        retain_after: 85.0,
        old_after: (task > 0).then_some(2.5),
        missing_after: (task > 0).then_some(84.0),
        retain_and_missing_before: (task > 0).then_some(86.0),
        retain_and_missing_after: (task > 0).then_some(85.0),
        h_mean: 86.7,
        group_norms: vec![0.5, 0.0, 1.25],
        zero_groups: vec![1],
        seconds: 12.5,
        mia: (task > 0).then_some(gs_lora_train::membership::MiaEfficacy {
            confidence: 97.5,
            entropy: 90.0,
            modified_entropy: 95.0,
            attack_accuracy: 61.5,
        }),
        trainable_params: 1234,
        peak_rss_mib: Some(512.5),
        machine: Some(Machine::detect(&[Device::default()])),
    };
    let record = |task: usize, epoch: usize| EpochRecord {
        task,
        epoch,
        lr: 1e-4,
        loss: 2.5,
        retain: 1.0,
        forget: 0.5,
        penalty: 0.25,
        prototype: 0.0,
    };
    let state = RunState {
        results: vec![result(0), result(1)],
        curves: vec![record(0, 0), record(0, 1), record(1, 0)],
    };
    let seeds = [
        files([(
            "state.json",
            serde_json::to_vec_pretty(&state).expect("json"),
        )]),
        files([(
            "state.json",
            serde_json::to_vec(&RunState::default()).expect("json"),
        )]),
    ];
    fuzz("state_json", &seeds, mutate_contents, |dir| {
        RunDir::new(dir).load_state().map_err(text)?;
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// What fuzzing found, as plain regression tests.

/// `fuzz coco` case 1812: a negative image width panicked in `f64::clamp` while boxes were
/// normalised; it is an error naming the image and the field now.
#[test]
fn coco_image_sizes_must_be_positive() {
    for (width, height) in [("-10", "20"), ("40", "0"), ("-1.5", "-1.5")] {
        let text = format!(
            r#"{{"images": [{{"id": 7, "file_name": "a.png", "width": {width}, "height": {height}}}],
                "annotations": [{{"image_id": 7, "category_id": 1, "bbox": [0, 0, 5, 5]}}],
                "categories": [{{"id": 1, "name": "dog"}}]}}"#
        );
        let err = CocoAnnotations::from_json(&text, None).expect_err("a size that is not positive");
        let message = err.to_string();
        assert!(
            message.contains("image 7") && message.contains("a.png"),
            "{message}"
        );
    }
}

/// Adapters whose `r` is zero, negative or fractional were loaded with `r` cast to an integer
/// (a fractional rank silently truncated, a zero rank giving an infinite scale); they are
/// errors naming `r` now.
#[test]
fn adapter_rank_must_be_a_positive_whole_number() {
    let dir = seed_dir("adapter-rank");
    let base = fixture_vit("timm_token", &LoraConfig::new());
    base.save_adapters(&dir).expect("save_adapters");
    let path = dir.join("adapter_config.json");
    let saved: Value = serde_json::from_slice(&read(&path)).expect("json");
    for (key, value) in [
        ("r", json!(0)),
        ("r", json!(-8)),
        ("r", json!(8.5)),
        ("r", json!("8")),
        ("lora_alpha", json!("1")),
        ("lora_alpha", Value::Null),
    ] {
        let mut config = saved.clone();
        config[key] = value.clone();
        std::fs::write(&path, config.to_string()).expect("write");
        let err = base
            .clone()
            .load_adapters(&dir)
            .expect_err("an invalid adapter config");
        let message = err.to_string();
        assert!(
            message.contains(&format!("`{key}`")) && message.contains("adapter_config.json"),
            "{key} = {value}: {message}"
        );
    }
    let mut config = saved.clone();
    config["r"] = json!(8.0);
    std::fs::write(&path, config.to_string()).expect("write");
    base.clone()
        .load_adapters(&dir)
        .expect("a whole rank written as a float");
    std::fs::remove_dir_all(&dir).ok();
}

/// An IDX header whose dimensions multiply past `usize` overflowed (a panic in debug builds);
/// a gzipped IDX file holding more than its header declares was inflated whole. Both are
/// errors now, and the inflation stops after the declared size.
#[test]
fn idx_sizes_are_checked_before_reading() {
    let dir = seed_dir("idx-sizes");
    let labels = idx_array(&[2], &[0, 1]);
    let images = idx_array(&[2, 2, 2], &[7; 8]);
    for name in ["t10k-labels-idx1-ubyte", "train-labels-idx1-ubyte"] {
        std::fs::write(dir.join(name), &labels).expect("write");
    }
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), &images).expect("write");
    let train = dir.join("train-images-idx3-ubyte");
    std::fs::write(&train, idx_array(&[u32::MAX; 3], &[7; 8])).expect("write");
    let err = load_idx(&dir, &LoadOptions::default()).expect_err("an absurd shape");
    assert!(err.to_string().contains("train-images-idx3-ubyte"), "{err}");

    // 64 MiB of zeros behind a header that declares 8 bytes.
    std::fs::remove_file(&train).expect("remove");
    let mut bomb = idx_array(&[2, 2, 2], &[7; 8]);
    bomb.resize(bomb.len() + (64 << 20), 0);
    std::fs::write(dir.join("train-images-idx3-ubyte.gz"), gzip(&bomb)).expect("write");
    let err = load_idx(&dir, &LoadOptions::default()).expect_err("trailing data");
    assert!(err.to_string().contains("more than 8"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
