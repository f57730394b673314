//! A list of clips in a CSV (`path,label,speaker[,dataset]` header) or JSONL
//! file (one object per line with those keys). Relative paths are relative to
//! the manifest's own folder, so a manifest can travel with its audio.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Clip, Corpus, DataError, Dataset, Emotion, Problem};

/// One manifest row, as written by the user.
#[derive(Debug, Deserialize)]
struct Row {
    path: PathBuf,
    label: String,
    speaker: String,
    #[serde(default)]
    dataset: Option<String>,
}

/// A manifest row with its line number, or why it could not be read.
type NumberedRow = (usize, Result<Row, String>);

/// Reads a manifest. A row without a usable path or label is a [`Problem`];
/// a file that is not a manifest at all is an error.
pub fn load(path: &Path) -> Result<Dataset, DataError> {
    let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    let rows: Vec<NumberedRow> = match extension.as_deref() {
        Some("csv") => csv_rows(path, &text)?,
        Some("jsonl") => text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(i, line)| (i + 1, serde_json::from_str(line).map_err(|e| e.to_string())))
            .collect(),
        _ => return Err(DataError::NotAManifest { path: path.to_owned() }),
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut clips = Vec::new();
    let mut problems = Vec::new();
    for (line, row) in rows {
        match row.and_then(|row| clip(base, row)) {
            Ok(clip) => clips.push(clip),
            Err(reason) => problems.push(Problem {
                path: path.to_owned(),
                reason: format!("line {line}: {reason}"),
            }),
        }
    }
    Ok(Dataset {
        corpus: Corpus::Manifest,
        root: path.to_owned(),
        clips,
        problems,
    })
}

/// A reader of the CSV manifest `text` (at `path`), refused unless its header
/// has every `required` column; `want` ends the refusal's reason.
pub(super) fn csv_reader<'t>(
    path: &Path,
    text: &'t str,
    required: &[&str],
    want: &str,
) -> Result<csv::Reader<&'t [u8]>, DataError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let bad_header = |reason| DataError::Manifest {
        path: path.to_owned(),
        line: 1,
        reason,
    };
    let headers = reader.headers().map_err(|err| bad_header(err.to_string()))?;
    if let Some(column) = required.iter().find(|&&column| !headers.iter().any(|h| h == column)) {
        return Err(bad_header(format!("header has no '{column}' column{want}")));
    }
    Ok(reader)
}

fn csv_rows(path: &Path, text: &str) -> Result<Vec<NumberedRow>, DataError> {
    let mut reader = csv_reader(
        path,
        text,
        &["path", "label", "speaker"],
        " (want path,label,speaker[,dataset])",
    )?;
    Ok(reader
        .deserialize::<Row>()
        .map(|row| {
            let line = row
                .as_ref()
                .err()
                .and_then(|e| e.position())
                .map_or(0, |p| p.line() as usize);
            (line, row.map_err(|e| e.to_string()))
        })
        .enumerate()
        .map(|(i, (line, row))| (if line > 0 { line } else { i + 2 }, row))
        .collect())
}

fn clip(base: &Path, row: Row) -> Result<Clip, String> {
    if row.path.as_os_str().is_empty() {
        return Err("empty path".into());
    }
    if row.label.trim().is_empty() {
        return Err("empty label".into());
    }
    let path = if row.path.is_absolute() {
        row.path
    } else {
        base.join(row.path)
    };
    let label = match Emotion::from_name(&row.label) {
        Some(emotion) => emotion.as_str().to_owned(),
        None => row.label.trim().to_lowercase(),
    };
    let corpus = row
        .dataset
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .unwrap_or("manifest");
    let speaker = row.speaker.trim();
    let speaker = (!speaker.is_empty()).then(|| format!("{corpus}:{speaker}"));
    Ok(Clip {
        path,
        corpus: Corpus::Manifest,
        speaker,
        label,
        native_label: row.label,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_jsonl_agree() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("m.csv");
        std::fs::write(
            &csv,
            "path,label,speaker,dataset\na.wav,Angry,s1,mine\n,sad,s2,\nb.wav,bored,,\n",
        )
        .unwrap();
        let jsonl = dir.path().join("m.jsonl");
        std::fs::write(
            &jsonl,
            "{\"path\":\"a.wav\",\"label\":\"Angry\",\"speaker\":\"s1\",\"dataset\":\"mine\"}\n{\"path\":\"\",\"label\":\"sad\",\"speaker\":\"s2\"}\n{\"path\":\"b.wav\",\"label\":\"bored\",\"speaker\":\"\"}\n",
        )
        .unwrap();
        for (manifest, bad_line) in [(csv, 3), (jsonl, 2)] {
            let data = load(&manifest).unwrap();
            assert_eq!(data.clips.len(), 2, "{}", manifest.display());
            assert_eq!(data.clips[0].path, dir.path().join("a.wav"));
            assert_eq!(data.clips[0].label, "angry");
            assert_eq!(data.clips[0].speaker.as_deref(), Some("mine:s1"));
            assert_eq!(
                (data.clips[1].label.as_str(), data.clips[1].speaker.as_deref()),
                ("bored", None)
            );
            assert_eq!(data.problems.len(), 1);
            let want = format!("line {bad_line}: empty path");
            assert_eq!(data.problems[0].reason, want, "{}", manifest.display());
        }
    }

    #[test]
    fn csv_without_required_columns_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("m.csv");
        std::fs::write(&csv, "file,emotion\na.wav,angry\n").unwrap();
        let err = load(&csv).unwrap_err().to_string();
        assert!(err.contains("no 'path' column"), "{err}");
    }
}
