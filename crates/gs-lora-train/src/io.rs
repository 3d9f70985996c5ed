//! Files and directories written so that nothing of the user's is lost: atomic and durable
//! writes, directory replacement that only ever replaces what this program wrote, an exclusive
//! lock on a run directory, and the check that outputs never replace or sit inside inputs.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::error::{Result, TrainError, io_error};

/// Writes `contents` to `path` atomically and durably: a temporary file beside it, flushed to
/// disk, renamed over `path`, and the directory flushed so the rename survives a power cut.
/// The temporary name is this write's own (`.NAME.tmp-PID-N`), so writers that race on one
/// path (two comparisons of one directory, one per seed) each rename a whole file: the last
/// rename wins and no file is ever a mix.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let written = File::create(&tmp)
        .and_then(|mut file| file.write_all(contents).and_then(|()| file.sync_all()))
        .map_err(io_error("writing", &tmp))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(io_error("renaming into place", path)));
    if written.is_err() {
        std::fs::remove_file(&tmp).ok();
    }
    written.and_then(|()| sync_parent(path))
}

/// Serialises `value` as pretty JSON to `path`, atomically.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|err| TrainError::Format {
        path: path.to_path_buf(),
        message: err.to_string(),
    })?;
    write_atomic(path, text.as_bytes())
}

/// Flushes the directory holding `path`, so renames and creations in it are durable.
fn sync_parent(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    sync_dir(parent)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error("flushing", dir))
}

/// Removes the temporary files (`.NAME.tmp-PID-N`) that atomic writes of processes no longer
/// running left in `dir` when killed (not recursive; best effort where the system does not
/// tell which processes run).
pub(crate) fn remove_stale_tmp(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(io_error("listing", dir))?;
    for entry in entries {
        let path = entry.map_err(io_error("listing", dir))?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let writer = name
            .rsplit_once(".tmp-")
            .filter(|(stem, _)| stem.starts_with('.'))
            .and_then(|(_, id)| id.split_once('-'))
            .map(|(pid, _)| pid);
        if path.is_file() && writer.is_some_and(process_gone) {
            std::fs::remove_file(&path).map_err(io_error("removing", &path))?;
        }
    }
    Ok(())
}

/// Whether `pid` names a process that no longer runs; false where the system does not tell
/// (no `/proc`) or `pid` is not a number.
fn process_gone(pid: &str) -> bool {
    let proc = Path::new("/proc");
    pid.parse::<u32>().is_ok() && proc.join("self").exists() && !proc.join(pid).exists()
}

/// Writes the directory `target` as a whole: `write` fills a fresh hidden directory beside it,
/// whose files are flushed and which then takes `target`'s place. A directory already at
/// `target` is replaced only when it holds nothing but `files` (what this program writes
/// there); anything else is refused, and nothing of it is touched. The old directory stays
/// until the new one is complete: a kill at any moment leaves one of the two whole (the old
/// one, if the kill falls between the two renames, as `.NAME.old-PID` beside it, which the
/// next save puts back first).
pub(crate) fn replace_dir(
    target: &Path,
    files: &[&str],
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let (parent, name) = split_dir_path(target)?;
    std::fs::create_dir_all(&parent).map_err(io_error("creating", &parent))?;
    restore_interrupted(&parent, &name, target)?;
    ensure_replaceable(target, files)?;
    remove_abandoned(&parent, &name, files);

    let pid = std::process::id();
    let tmp = parent.join(format!(".{name}.tmp-{pid}"));
    if tmp.exists() {
        // Ours: the same process left it after a failed write.
        remove_listed(&tmp, files)?;
    }
    std::fs::create_dir(&tmp).map_err(io_error("creating", &tmp))?;
    let written = write(&tmp).and_then(|()| {
        ensure_replaceable(&tmp, files)?;
        for file in files {
            let path = tmp.join(file);
            if path.exists() {
                File::open(&path)
                    .and_then(|f| f.sync_all())
                    .map_err(io_error("flushing", &path))?;
            }
        }
        sync_dir(&tmp)
    });
    if let Err(err) = written {
        remove_listed(&tmp, files).ok();
        return Err(err);
    }

    let old = parent.join(format!(".{name}.old-{pid}"));
    let had_old = target.exists();
    if had_old {
        std::fs::rename(target, &old).map_err(io_error("moving aside", target))?;
    }
    std::fs::rename(&tmp, target).map_err(io_error("renaming into place", target))?;
    sync_dir(&parent)?;
    if had_old {
        remove_listed(&old, files)?;
    }
    Ok(())
}

/// The parent and file name of a directory path (`.` and `..` resolved against the current
/// directory first, so `--out .` names a real folder).
fn split_dir_path(target: &Path) -> Result<(PathBuf, String)> {
    let absolute = std::path::absolute(target).map_err(io_error("resolving", target))?;
    let normal = lexical_normal(&absolute);
    match (normal.parent(), normal.file_name()) {
        (Some(parent), Some(name)) => Ok((parent.to_path_buf(), name.to_string_lossy().into())),
        _ => Err(TrainError::InvalidSetting(format!(
            "{} cannot be an output directory (it is a file-system root)",
            target.display()
        ))),
    }
}

/// `path` with `.` and `..` components folded (no symlinks resolved).
fn lexical_normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Puts back a directory left aside by a save that was killed between its two renames.
fn restore_interrupted(parent: &Path, name: &str, target: &Path) -> Result<()> {
    if target.exists() {
        return Ok(());
    }
    let prefix = format!(".{name}.old-");
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Ok(());
    };
    let aside = entries
        .filter_map(|entry| entry.ok())
        .find(|entry| entry.file_name().to_string_lossy().starts_with(&prefix));
    if let Some(aside) = aside {
        std::fs::rename(aside.path(), target).map_err(io_error("restoring", target))?;
    }
    Ok(())
}

/// Removes `.NAME.tmp-PID` / `.NAME.old-PID` folders of processes that no longer run (a save
/// killed midway), where the system tells which processes run (`/proc`); best effort.
fn remove_abandoned(parent: &Path, name: &str, files: &[&str]) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.filter_map(|entry| entry.ok()) {
        let entry_name = entry.file_name().to_string_lossy().into_owned();
        let pid = [".tmp-", ".old-"]
            .iter()
            .find_map(|kind| entry_name.strip_prefix(&format!(".{name}{kind}")));
        if pid.is_some_and(process_gone) {
            remove_listed(&entry.path(), files).ok();
        }
    }
}

/// Refuses to replace `target` unless it is absent, or a directory holding only `files`.
pub(crate) fn ensure_replaceable(target: &Path, files: &[&str]) -> Result<()> {
    let metadata = match std::fs::symlink_metadata(target) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(io_error("inspecting", target)(err)),
    };
    if !metadata.is_dir() {
        return Err(TrainError::InvalidSetting(format!(
            "{} exists and is not a directory; refusing to replace it",
            target.display()
        )));
    }
    let entries = std::fs::read_dir(target).map_err(io_error("listing", target))?;
    for entry in entries {
        let entry = entry.map_err(io_error("listing", target))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if !(is_file && files.contains(&name.as_str())) {
            return Err(TrainError::InvalidSetting(format!(
                "{} already holds `{name}`, which this program did not write there (it writes \
                 only {}); refusing to replace it: choose a new or empty directory",
                target.display(),
                files.join(", ")
            )));
        }
    }
    Ok(())
}

/// Removes `dir`'s files named in `files`, then `dir` itself if that left it empty.
fn remove_listed(dir: &Path, files: &[&str]) -> Result<()> {
    for file in files {
        let path = dir.join(file);
        if path.is_file() {
            std::fs::remove_file(&path).map_err(io_error("removing", &path))?;
        }
    }
    std::fs::remove_dir(dir).map_err(io_error("removing", dir))
}

/// An exclusive lock on a run directory, held until dropped (`RUN/.lock`, which records the
/// holder's process id). The operating system releases it when the process ends, however it
/// ends.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Locks `dir` (created if missing).
    ///
    /// # Errors
    /// [`TrainError::InvalidSetting`] "RUN is in use by process PID" when another process holds
    /// it; file errors.
    pub fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
        let path = dir.join(".lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error("opening", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                file.read_to_string(&mut holder).ok();
                let holder = holder.trim();
                let holder = if holder.is_empty() { "?" } else { holder };
                return Err(TrainError::InvalidSetting(format!(
                    "{} is in use by process {holder}; wait for it to finish or choose another --out",
                    dir.display()
                )));
            }
            Err(std::fs::TryLockError::Error(err)) => return Err(io_error("locking", &path)(err)),
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| write!(file, "{}", std::process::id()))
            .map_err(io_error("writing", &path))?;
        Ok(Self { _file: file })
    }
}

/// A command-line path and the flag it came from, for [`ensure_disjoint`].
pub type NamedPath<'a> = (&'a str, &'a Path);

/// Refuses any output that is, contains or lies inside an input (paths compared after
/// resolving symlinks of their existing part), so that no run overwrites what it reads.
///
/// # Errors
/// [`TrainError::InvalidSetting`] naming both flags and paths.
pub fn ensure_disjoint(outputs: &[NamedPath], inputs: &[NamedPath]) -> Result<()> {
    for &(out_flag, out) in outputs {
        let out_real = resolve(out)?;
        for &(in_flag, input) in inputs {
            let in_real = resolve(input)?;
            let relation = if out_real == in_real {
                "is"
            } else if out_real.starts_with(&in_real) {
                "lies inside"
            } else if in_real.starts_with(&out_real) {
                "contains"
            } else {
                continue;
            };
            return Err(TrainError::InvalidSetting(format!(
                "{out_flag} {} {relation} {in_flag} {}; an output must not replace, contain or \
                 sit inside an input",
                out.display(),
                input.display()
            )));
        }
    }
    Ok(())
}

/// `path` made absolute with the symlinks of its longest existing prefix resolved.
fn resolve(path: &Path) -> Result<PathBuf> {
    let absolute = lexical_normal(&std::path::absolute(path).map_err(io_error("resolving", path))?);
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return Ok(rest.iter().rev().fold(real, |acc, part| acc.join(part)));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return Ok(absolute),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh temporary directory, removed when dropped.
    fn scratch(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("gs-lora-io-{name}-"))
            .tempdir()
            .expect("scratch")
    }

    fn write_model(dir: &Path, text: &str) -> Result<()> {
        std::fs::write(dir.join("a.json"), text).map_err(io_error("writing", dir))
    }

    #[test]
    fn a_directory_with_foreign_files_is_never_replaced() {
        let base_dir = scratch("foreign");
        let base = base_dir.path();
        let target = base.join("out");
        std::fs::create_dir_all(&target).expect("dir");
        std::fs::write(target.join("thesis.tex"), "precious").expect("file");
        let err =
            replace_dir(&target, &["a.json"], |dir| write_model(dir, "new")).expect_err("refused");
        assert!(err.to_string().contains("thesis.tex"), "{err}");
        assert_eq!(
            std::fs::read_to_string(target.join("thesis.tex")).expect("kept"),
            "precious"
        );
        // Nothing left beside it either.
        let names: Vec<_> = std::fs::read_dir(base)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out")]);
    }

    #[test]
    fn the_current_directory_is_never_emptied() {
        let base_dir = scratch("dot");
        let base = base_dir.path();
        std::fs::write(base.join("data.csv"), "1,2").expect("file");
        let dot = base.join(".");
        assert!(replace_dir(&dot, &["a.json"], |dir| write_model(dir, "x")).is_err());
        assert!(base.join("data.csv").is_file());
    }

    #[test]
    fn own_directories_are_replaced_and_failures_leave_the_old_one() {
        let base_dir = scratch("own");
        let base = base_dir.path();
        let target = base.join("model");
        replace_dir(&target, &["a.json"], |dir| write_model(dir, "one")).expect("first");
        replace_dir(&target, &["a.json"], |dir| write_model(dir, "two")).expect("second");
        assert_eq!(
            std::fs::read_to_string(target.join("a.json")).expect("a"),
            "two"
        );
        let failed = replace_dir(&target, &["a.json"], |_| {
            Err(TrainError::InvalidSetting("disk full".into()))
        });
        assert!(failed.is_err());
        assert_eq!(
            std::fs::read_to_string(target.join("a.json")).expect("a"),
            "two"
        );
        assert_eq!(std::fs::read_dir(base).expect("list").count(), 1);
    }

    #[test]
    fn a_save_killed_between_its_renames_is_restored() {
        // The state a kill after `target → .target.old-PID` and before `tmp → target` leaves.
        let base_dir = scratch("restore");
        let base = base_dir.path();
        let aside = base.join(".model.old-12345");
        std::fs::create_dir_all(&aside).expect("aside");
        std::fs::write(aside.join("a.json"), "previous").expect("file");
        restore_interrupted(base, "model", &base.join("model")).expect("restore");
        assert_eq!(
            std::fs::read_to_string(base.join("model/a.json")).expect("restored"),
            "previous"
        );
    }

    #[test]
    fn outputs_may_not_touch_inputs() {
        let base_dir = scratch("disjoint");
        let base = base_dir.path();
        let data = base.join("data");
        std::fs::create_dir_all(&data).expect("data");
        let cases = [
            (data.clone(), "is"),
            (data.join("run"), "lies inside"),
            (base.to_path_buf(), "contains"),
            (data.join("sub/../"), "is"),
        ];
        for (out, relation) in cases {
            let err =
                ensure_disjoint(&[("--out", &out)], &[("--data", &data)]).expect_err("refused");
            assert!(err.to_string().contains(relation), "{err}");
        }
        assert!(ensure_disjoint(&[("--out", &base.join("run"))], &[("--data", &data)]).is_ok());
        #[cfg(unix)]
        {
            // Through a symlink.
            let link = base.join("link");
            std::os::unix::fs::symlink(&data, &link).expect("symlink");
            assert!(ensure_disjoint(&[("--out", &link.join("x"))], &[("--data", &data)]).is_err());
        }
    }

    /// Eight threads write one path at once, 50 times each, every write a different length:
    /// every write succeeds, the file is always one write whole, and no temporary is left.
    /// With one temporary name per path (`NAME.tmp`) the writers truncate each other's file
    /// and rename it from under each other.
    #[test]
    fn racing_atomic_writes_each_land_whole() {
        let dir = scratch("race");
        let path = dir.path().join("comparison.json");
        std::thread::scope(|scope| {
            for writer in 0..8 {
                let path = &path;
                scope.spawn(move || {
                    for round in 0..50 {
                        let text = format!("{writer}:{round}:{}", "x".repeat(writer * 997));
                        write_atomic(path, text.as_bytes()).expect("a racing write");
                        let read = std::fs::read_to_string(path).expect("read");
                        let (who, rest) = read.split_once(':').expect("a whole write");
                        let writer: usize = who.parse().expect("a writer");
                        assert_eq!(
                            rest.len() - rest.find(':').expect("round") - 1,
                            writer * 997
                        );
                    }
                });
            }
        });
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(left, ["comparison.json"], "temporaries left behind");
    }

    /// A temporary of a process that no longer runs goes; one of a running process (this
    /// one) and files that only look alike stay.
    #[test]
    fn only_temporaries_of_gone_processes_are_removed() {
        let dir = scratch("stale");
        let gone = format!(".results.json.tmp-{}-3", u32::MAX);
        let live = format!(".results.json.tmp-{}-0", std::process::id());
        for name in [gone.as_str(), &live, "results.tmp", "notes.tmp-1-2"] {
            std::fs::write(dir.path().join(name), "x").expect("write");
        }
        remove_stale_tmp(dir.path()).expect("cleanup");
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .into_string()
                    .expect("utf-8")
            })
            .collect();
        left.sort();
        let mut expected = vec![live, "notes.tmp-1-2".into(), "results.tmp".into()];
        expected.sort();
        assert_eq!(left, expected);
    }

    #[test]
    fn a_second_lock_names_the_holder() {
        let base_dir = scratch("lock");
        let base = base_dir.path();
        let held = RunLock::acquire(base).expect("first");
        let err = RunLock::acquire(base).expect_err("second");
        assert!(
            err.to_string()
                .contains(&format!("in use by process {}", std::process::id())),
            "{err}"
        );
        drop(held);
        RunLock::acquire(base).expect("free again");
    }
}
