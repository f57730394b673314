//! The files a batch command works on: a corpus folder, a manifest (CSV or
//! JSONL with a `path` column; labels and speakers optional), a plain list of
//! paths (`.txt`, `.lst`, `.list`: one per line, `#` comments), or the files
//! named on the command line.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{DataError, audio_files, manifest};

/// Extensions read as a plain list of paths.
const LIST_EXTENSIONS: &[&str] = &["txt", "lst", "list"];

/// Input files as paths relative to `base`, sorted by their bytes and without
/// repeats, so every machine and every shard sees the same order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFiles {
    pub base: PathBuf,
    pub relative: Vec<PathBuf>,
}

impl InputFiles {
    /// Files named one by one, relative to the working directory.
    pub fn named(files: &[PathBuf]) -> InputFiles {
        Self::sorted(PathBuf::new(), files.to_vec())
    }

    /// The files of `args` when it names one folder, manifest or list.
    pub fn listed(args: &[PathBuf]) -> Result<Option<InputFiles>, DataError> {
        let [single] = args else { return Ok(None) };
        if single.is_dir() {
            return Self::folder(single).map(Some);
        }
        let extension = extension(single).unwrap_or_default();
        if ["csv", "jsonl"].contains(&extension.as_str()) || LIST_EXTENSIONS.contains(&extension.as_str()) {
            return Self::list(single).map(Some);
        }
        Ok(None)
    }

    /// Every file's path on this machine.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.relative.iter().map(|name| self.path(name)).collect()
    }

    /// Where the file at `relative` is on this machine.
    pub fn path(&self, relative: &Path) -> PathBuf {
        self.base.join(relative)
    }

    fn folder(root: &Path) -> Result<InputFiles, DataError> {
        let files = audio_files(root)?;
        if files.is_empty() {
            return Err(DataError::NoAudio { path: root.to_owned() });
        }
        let relative = files
            .into_iter()
            .map(|file| file.strip_prefix(root).map(Path::to_owned).unwrap_or(file))
            .collect();
        Ok(Self::sorted(root.to_owned(), relative))
    }

    /// Paths in a list are relative to the list's folder, as in manifests.
    fn list(list: &Path) -> Result<InputFiles, DataError> {
        let text = std::fs::read_to_string(list).map_err(|source| DataError::Io {
            path: list.to_owned(),
            source,
        })?;
        let paths = match extension(list).as_deref() {
            Some("csv") => csv_paths(list, &text)?,
            Some("jsonl") => jsonl_paths(list, &text)?,
            _ => text
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .map(PathBuf::from)
                .collect(),
        };
        if paths.is_empty() {
            return Err(DataError::NoAudio { path: list.to_owned() });
        }
        let base = list.parent().unwrap_or(Path::new("")).to_owned();
        Ok(Self::sorted(base, paths))
    }

    fn sorted(base: PathBuf, mut relative: Vec<PathBuf>) -> InputFiles {
        relative.sort_by(|a, b| a.as_os_str().as_encoded_bytes().cmp(b.as_os_str().as_encoded_bytes()));
        relative.dedup();
        InputFiles { base, relative }
    }
}

/// A manifest row when only the path is needed.
#[derive(Debug, Deserialize)]
struct PathRow {
    path: PathBuf,
}

fn csv_paths(manifest: &Path, text: &str) -> Result<Vec<PathBuf>, DataError> {
    let mut reader = manifest::csv_reader(manifest, text, &["path"], "")?;
    let bad = |line: usize, reason: String| DataError::Manifest {
        path: manifest.to_owned(),
        line,
        reason,
    };
    reader
        .deserialize::<PathRow>()
        .enumerate()
        .map(|(i, row)| row.map(|row| row.path).map_err(|err| bad(i + 2, err.to_string())))
        .filter(|path| !matches!(path, Ok(path) if path.as_os_str().is_empty()))
        .collect()
}

fn jsonl_paths(manifest: &Path, text: &str) -> Result<Vec<PathBuf>, DataError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str::<PathRow>(line)
                .map(|row| row.path)
                .map_err(|err| DataError::Manifest {
                    path: manifest.to_owned(),
                    line: i + 1,
                    reason: err.to_string(),
                })
        })
        .collect()
}

fn extension(path: &Path) -> Option<String> {
    path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_manifests_and_lists_give_the_same_sorted_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b/2.wav", "a.wav", "b/10.wav"] {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"").unwrap();
        }
        let want: Vec<PathBuf> = ["a.wav", "b/10.wav", "b/2.wav"].iter().map(PathBuf::from).collect();
        let folder = InputFiles::listed(&[dir.path().to_owned()]).unwrap().unwrap();
        assert_eq!((folder.base.as_path(), &folder.relative), (dir.path(), &want));

        let csv = dir.path().join("m.csv");
        std::fs::write(&csv, "path,label\nb/2.wav,\nb/10.wav,angry\na.wav,\nb/2.wav,\n").unwrap();
        let jsonl = dir.path().join("m.jsonl");
        std::fs::write(
            &jsonl,
            "{\"path\":\"b/2.wav\"}\n\n{\"path\":\"a.wav\"}\n{\"path\":\"b/10.wav\"}\n",
        )
        .unwrap();
        let txt = dir.path().join("m.txt");
        std::fs::write(&txt, "# mine\nb/10.wav\n a.wav \nb/2.wav\n").unwrap();
        for list in [csv, jsonl, txt] {
            let files = InputFiles::listed(std::slice::from_ref(&list)).unwrap().unwrap();
            assert_eq!(files.relative, want, "{}", list.display());
            assert_eq!(files.path(&files.relative[0]), dir.path().join("a.wav"));
        }
    }

    #[test]
    fn a_manifest_without_paths_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("m.jsonl");
        std::fs::write(&jsonl, "{\"path\":\"a.wav\"}\n{\"file\":\"b.wav\"}\n").unwrap();
        let err = InputFiles::listed(&[jsonl]).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("path"), "{err}");
    }
}
