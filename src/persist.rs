//! Crash-safe file writes, shared by the feature cache and every result file:
//! a reader sees the old file or the complete new one, never a partial one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where emofuse keeps caches and downloaded backbones: `$EMOFUSE_CACHE`,
/// else `~/.cache/emofuse`.
pub fn cache_root() -> PathBuf {
    std::env::var_os("EMOFUSE_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join(".cache").join("emofuse")
    })
}

/// A result file that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot write: {source}", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// [`write_atomic`], with an error that names the file.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    write_atomic(path, bytes).map_err(|source| WriteError {
        path: path.to_owned(),
        source,
    })
}

/// Writes `bytes` to a unique temporary file beside `path`, flushes it to
/// disk, then renames it over `path` (atomic on POSIX file systems). On
/// failure the previous content of `path`, if any, is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, bytes, true)
}

/// [`write_atomic`] without the flush to disk: a killed process still never
/// leaves a partial file, but after a power loss the new file may be empty
/// or garbage. For caches whose entries carry their own checksum.
pub fn write_atomic_unsynced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, bytes, false)
}

fn write_atomic_with(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.{}.{unique}.tmp", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&temp)?;
        file.write_all(bytes)?;
        if sync {
            file.sync_all()?;
        }
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        // Best effort: a leftover temp file is harmless, only untidy.
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Removes the temporary files that processes killed in [`write_atomic`] left
/// in `dir` (their names cannot clash with results, so nothing else goes).
pub fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") {
            // Best effort, like the clean-up in `write_atomic_with`.
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// An append-only record of a batch job's finished items, one JSON line each,
/// so that a killed job continues where it stopped. The first line names the
/// job; a journal of another job is started afresh, and a last line cut short
/// by a kill is dropped.
pub struct Journal {
    path: PathBuf,
    file: fs::File,
}

impl Journal {
    /// Opens the journal at `path` for the job `key`, with the items it
    /// already holds (none when it is new or was written for another job).
    pub fn open<T: serde::de::DeserializeOwned>(
        path: &Path,
        key: &serde_json::Value,
    ) -> std::io::Result<(Journal, Vec<T>)> {
        let header = serde_json::to_string(&serde_json::json!({ "journal": key })).expect("JSON values serialise");
        let text = fs::read(path).unwrap_or_default();
        let mut lines = text.split_inclusive(|&b| b == b'\n');
        let mut kept = Vec::new();
        let mut items = Vec::new();
        if lines
            .next()
            .is_some_and(|first| first.strip_suffix(b"\n") == Some(header.as_bytes()))
        {
            for line in lines {
                // A line without its newline was cut short by a kill.
                let Some(complete) = line.strip_suffix(b"\n") else {
                    break;
                };
                let Ok(item) = serde_json::from_slice(complete) else {
                    break;
                };
                items.push(item);
                kept.extend_from_slice(line);
            }
        }
        let mut content = format!("{header}\n").into_bytes();
        content.extend_from_slice(&kept);
        write_atomic(path, &content)?;
        let file = fs::OpenOptions::new().append(true).open(path)?;
        Ok((
            Journal {
                path: path.to_owned(),
                file,
            },
            items,
        ))
    }

    /// Records one finished item (on disk before this returns).
    pub fn append<T: serde::Serialize>(&mut self, item: &T) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(item).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()
    }

    /// The job is done and its results are written: the journal goes.
    pub fn finish(self) -> std::io::Result<()> {
        fs::remove_file(&self.path)
    }
}

/// Writes a float32 `.npy` array of `shape` (C order) atomically.
pub fn write_npy(path: &Path, shape: &[u64], data: &[f32]) -> std::io::Result<()> {
    use npyz::WriterBuilder;
    let mut bytes = Vec::with_capacity(128 + 4 * data.len());
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut bytes)
        .begin_nd()?;
    writer.extend(data.iter().copied())?;
    writer.finish()?;
    write_atomic(path, &bytes)
}

/// Where the `.npy` arrays of several inputs go: one file for a single
/// input, else `<input stem>.npy` in a folder.
pub enum NpyTarget {
    File(PathBuf),
    Folder(PathBuf),
}

impl NpyTarget {
    /// Where the arrays of `inputs` go (`out` ending in `.npy` is a file);
    /// two inputs may not share an output file.
    pub fn new(out: &Path, inputs: &[PathBuf]) -> Result<Self, String> {
        let is_npy = out.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("npy"));
        let target = match (is_npy, inputs.len()) {
            (true, 1) => NpyTarget::File(out.to_owned()),
            (true, n) => {
                return Err(format!(
                    "{}: one .npy file cannot hold {n} inputs; give a folder",
                    out.display()
                ));
            }
            (false, _) => NpyTarget::Folder(out.to_owned()),
        };
        let mut seen = std::collections::HashMap::new();
        for input in inputs {
            if let Some(first) = seen.insert(target.path_for(input), input) {
                return Err(format!(
                    "{} and {} would both be written to {}",
                    first.display(),
                    input.display(),
                    target.path_for(input).display()
                ));
            }
        }
        Ok(target)
    }

    pub fn path_for(&self, input: &Path) -> PathBuf {
        match self {
            NpyTarget::File(file) => file.clone(),
            NpyTarget::Folder(dir) => {
                let stem = input
                    .file_stem()
                    .map_or_else(|| "audio".into(), |s| s.to_string_lossy());
                dir.join(format!("{stem}.npy"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_keeps_complete_lines_of_its_own_job() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.journal");
        let key = serde_json::json!({"snrs": [0, 5]});
        let (mut journal, done) = Journal::open::<u32>(&path, &key).unwrap();
        assert!(done.is_empty());
        journal.append(&1u32).unwrap();
        journal.append(&2u32).unwrap();
        drop(journal);
        // A kill in the middle of a line leaves it without its newline.
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"3")
            .unwrap();
        let (mut journal, done) = Journal::open::<u32>(&path, &key).unwrap();
        assert_eq!(done, vec![1, 2]);
        journal.append(&4u32).unwrap();
        drop(journal);
        let (_, done) = Journal::open::<u32>(&path, &key).unwrap();
        assert_eq!(done, vec![1, 2, 4]);
        // Another job's journal is not this job's work.
        let (journal, done) = Journal::open::<u32>(&path, &serde_json::json!({"snrs": [10]})).unwrap();
        assert!(done.is_empty());
        journal.finish().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn replaces_whole_files_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("result.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second, longer").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second, longer");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("taken");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), b"x").unwrap();
        assert!(
            write_atomic(&path, b"new").is_err(),
            "cannot rename a file over a non-empty directory"
        );
        assert_eq!(fs::read(path.join("inside")).unwrap(), b"x");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "the temporary file is removed"
        );
    }
}
