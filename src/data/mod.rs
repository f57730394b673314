//! Emotion corpora read from their official release layouts.
//!
//! A corpus is a list of [`Clip`]s: where the audio is, who speaks, and which
//! emotion it carries, both as the corpus names it (`native_label`) and in
//! the one canonical set every model uses (`label`). Labels and speakers come
//! from file and folder names only; the audio is not opened here.

pub mod corpus;
pub mod crema_d;
pub mod emodb;
pub mod emovo;
pub mod folder;
pub mod folds;
pub mod inputs;
pub mod manifest;
pub mod ravdess;
pub mod savee;
pub mod summary;
pub mod tess;

use std::path::{Path, PathBuf};

use serde::Serialize;

/// The canonical emotion set. Names follow EmoBox's label maps in lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Emotion {
    Neutral,
    Calm,
    Happy,
    Sad,
    Angry,
    Fear,
    Disgust,
    Surprise,
}

impl Emotion {
    /// Every emotion, in the order class lists use.
    pub const ALL: [Emotion; 8] = [
        Emotion::Neutral,
        Emotion::Calm,
        Emotion::Happy,
        Emotion::Sad,
        Emotion::Angry,
        Emotion::Fear,
        Emotion::Disgust,
        Emotion::Surprise,
    ];

    /// The canonical name, as written in configs and outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            Emotion::Neutral => "neutral",
            Emotion::Calm => "calm",
            Emotion::Happy => "happy",
            Emotion::Sad => "sad",
            Emotion::Angry => "angry",
            Emotion::Fear => "fear",
            Emotion::Disgust => "disgust",
            Emotion::Surprise => "surprise",
        }
    }

    /// Recognises the usual English names and their common variants
    /// (case-insensitive), for folder and manifest labels.
    pub fn from_name(name: &str) -> Option<Emotion> {
        let name = name.trim().to_ascii_lowercase().replace([' ', '-'], "_");
        Some(match name.as_str() {
            "neutral" | "neu" => Emotion::Neutral,
            "calm" => Emotion::Calm,
            "happy" | "happiness" | "joy" | "hap" => Emotion::Happy,
            "sad" | "sadness" => Emotion::Sad,
            "angry" | "anger" | "ang" => Emotion::Angry,
            "fear" | "fearful" | "fea" => Emotion::Fear,
            "disgust" | "disgusted" | "dis" => Emotion::Disgust,
            "surprise" | "surprised" | "ps" | "pleasant_surprise" | "pleasant_surprised" => Emotion::Surprise,
            _ => return None,
        })
    }
}

/// A label as cross-corpus work scores it: calm counts as neutral (only
/// RAVDESS has calm, and it is closest to neutral), and a label outside the
/// canonical set (EmoDB's boredom) has no counterpart in other corpora, so
/// it is `None`: left out of training and scoring.
pub fn shared_label(label: &str) -> Option<&'static str> {
    match Emotion::from_name(label)? {
        Emotion::Calm => Some(Emotion::Neutral.as_str()),
        emotion => Some(emotion.as_str()),
    }
}

/// The layouts emofuse reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Corpus {
    Ravdess,
    Tess,
    Savee,
    CremaD,
    Emodb,
    Emovo,
    /// `<label>/<file>` or `<label>/<speaker>/<file>` under a root folder.
    Folder,
    /// A CSV or JSONL file with `path,label,speaker[,dataset]`.
    Manifest,
}

impl Corpus {
    /// The name used in speaker ids, outputs and `--dataset`.
    pub fn as_str(self) -> &'static str {
        match self {
            Corpus::Ravdess => "ravdess",
            Corpus::Tess => "tess",
            Corpus::Savee => "savee",
            Corpus::CremaD => "crema-d",
            Corpus::Emodb => "emodb",
            Corpus::Emovo => "emovo",
            Corpus::Folder => "folder",
            Corpus::Manifest => "manifest",
        }
    }
}

/// One labelled recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Clip {
    pub path: PathBuf,
    pub corpus: Corpus,
    /// Speaker id prefixed with its corpus (`"ravdess:07"`), so corpora can be pooled.
    /// `None` when the layout does not say who speaks.
    pub speaker: Option<String>,
    /// Canonical label: an [`Emotion`] name where the native label maps to one,
    /// otherwise the native label in lower case.
    pub label: String,
    /// The label as the corpus writes it (`"ps"`, `"FEA"`, `"06"`).
    pub native_label: String,
}

impl Clip {
    fn new(path: &Path, corpus: Corpus, speaker: Option<String>, label: &str, native: &str) -> Clip {
        Clip {
            path: path.to_owned(),
            corpus,
            speaker,
            label: label.to_owned(),
            native_label: native.to_owned(),
        }
    }

    /// The corpus this clip belongs to, by name: the prefix of its speaker id
    /// (a manifest's `dataset` column), else its layout's name.
    pub fn corpus_name(&self) -> &str {
        self.speaker
            .as_deref()
            .and_then(|speaker| speaker.split_once(':'))
            .map_or(self.corpus.as_str(), |(corpus, _)| corpus)
    }
}

/// A file that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub path: PathBuf,
    pub reason: String,
}

/// `path: reason`, the path once (most reasons name their file already).
impl std::fmt::Display for Problem {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.path.display().to_string();
        if self.reason.starts_with(&path) {
            write!(out, "{}", self.reason)
        } else {
            write!(out, "{path}: {}", self.reason)
        }
    }
}

/// A corpus as read from disk: the clips that parsed and the files that did not.
#[derive(Debug, Clone, Serialize)]
pub struct Dataset {
    pub corpus: Corpus,
    pub root: PathBuf,
    pub clips: Vec<Clip>,
    pub problems: Vec<Problem>,
}

/// Errors that stop a whole corpus from being read (single bad files are [`Problem`]s).
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: no such file or directory", path.display())]
    NotFound { path: PathBuf },
    #[error("{}: cannot read: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: no audio files found", path.display())]
    NoAudio { path: PathBuf },
    #[error("{}: {what} needs a directory", path.display())]
    NotADirectory { path: PathBuf, what: &'static str },
    #[error("{}: not a manifest (want a .csv or .jsonl file)", path.display())]
    NotAManifest { path: PathBuf },
    #[error("{}: line {line}: {reason}", path.display())]
    Manifest { path: PathBuf, line: usize, reason: String },
}

/// Which corpus to read, or `Auto` to recognise it from the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DatasetKind {
    #[default]
    Auto,
    Ravdess,
    Tess,
    Savee,
    CremaD,
    Emodb,
    Emovo,
    Folder,
    Manifest,
}

/// File extensions taken to be audio. Only used to decide which files of a
/// folder are candidates: the format itself is sniffed from the content.
pub const AUDIO_EXTENSIONS: &[&str] = &["wav", "flac", "mp3", "ogg", "oga", "aif", "aiff", "aifc"];

/// Reads the corpus at `root` (a directory, or a manifest file).
pub fn load(root: &Path, kind: DatasetKind) -> Result<Dataset, DataError> {
    if !root.exists() {
        return Err(DataError::NotFound { path: root.to_owned() });
    }
    let is_manifest_file = root.is_file();
    if kind == DatasetKind::Manifest || (kind == DatasetKind::Auto && is_manifest_file) {
        return manifest::load(root);
    }
    if is_manifest_file {
        return Err(DataError::NotADirectory {
            path: root.to_owned(),
            what: "this corpus layout",
        });
    }
    let files = audio_files(root)?;
    if files.is_empty() {
        return Err(DataError::NoAudio { path: root.to_owned() });
    }
    let corpus = match kind {
        DatasetKind::Auto => detect(root, &files),
        DatasetKind::Ravdess => Corpus::Ravdess,
        DatasetKind::Tess => Corpus::Tess,
        DatasetKind::Savee => Corpus::Savee,
        DatasetKind::CremaD => Corpus::CremaD,
        DatasetKind::Emodb => Corpus::Emodb,
        DatasetKind::Emovo => Corpus::Emovo,
        DatasetKind::Folder => Corpus::Folder,
        DatasetKind::Manifest => unreachable!("manifests returned above"),
    };
    let mut clips = Vec::with_capacity(files.len());
    let mut problems = Vec::new();
    for path in files {
        match parse(corpus, root, &path) {
            Ok(clip) => clips.push(clip),
            Err(reason) => problems.push(Problem { path, reason }),
        }
    }
    Ok(Dataset {
        corpus,
        root: root.to_owned(),
        clips,
        problems,
    })
}

/// Parses one file name with the corpus' own rules.
fn parse(corpus: Corpus, root: &Path, path: &Path) -> Result<Clip, String> {
    match corpus {
        Corpus::Ravdess => ravdess::parse(path),
        Corpus::Tess => tess::parse(path),
        Corpus::Savee => savee::parse(path),
        Corpus::CremaD => crema_d::parse(path),
        Corpus::Emodb => emodb::parse(path),
        Corpus::Emovo => emovo::parse(path),
        Corpus::Folder => folder::parse(root, path),
        Corpus::Manifest => unreachable!("manifest rows are parsed by manifest::load"),
    }
}

/// Picks the named corpus whose naming rules fit most files; a plain folder
/// layout when none fits at least half of them.
fn detect(root: &Path, files: &[PathBuf]) -> Corpus {
    let named = [
        Corpus::Ravdess,
        Corpus::Tess,
        Corpus::Savee,
        Corpus::CremaD,
        Corpus::Emodb,
        Corpus::Emovo,
    ];
    let (best, hits) = named
        .iter()
        .map(|&corpus| {
            let hits = files.iter().filter(|path| parse(corpus, root, path).is_ok()).count();
            (corpus, hits)
        })
        .max_by_key(|&(_, hits)| hits)
        .expect("the list of named corpora is not empty");
    if hits * 2 >= files.len() { best } else { Corpus::Folder }
}

/// Every file under `root` with an audio extension, sorted so that every
/// machine sees the same order.
pub fn audio_files(root: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(root).follow_links(true) {
        let entry = entry.map_err(|err| {
            let path = err.path().unwrap_or(root).to_owned();
            DataError::Io {
                path,
                source: err.into(),
            }
        })?;
        if entry.file_type().is_file() && has_audio_extension(entry.path()) {
            files.push(entry.into_path());
        }
    }
    files.sort();
    Ok(files)
}

fn has_audio_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| AUDIO_EXTENSIONS.iter().any(|known| ext.eq_ignore_ascii_case(known)))
}

/// `key: count` pairs separated by commas, for tables.
fn joined<K>(counts: &std::collections::BTreeMap<K, usize>, name: impl Fn(&K) -> String) -> String {
    counts
        .iter()
        .map(|(key, count)| format!("{}: {count}", name(key)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What `key` stands for in a corpus's table of codes.
fn look_up<K: PartialEq, V: Copy>(table: &[(K, V)], key: &K) -> Option<V> {
    table.iter().find(|(k, _)| k == key).map(|&(_, value)| value)
}

/// The file name without its extension, or an error naming the path.
fn file_stem(path: &Path) -> Result<&str, String> {
    path.file_stem()
        .and_then(|stem| stem.to_str())
        .ok_or_else(|| "file name is not UTF-8".to_owned())
}

/// The name of the folder holding `path`.
fn parent_name(path: &Path) -> Option<&str> {
    path.parent()?.file_name()?.to_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emotion_names_map_to_the_canonical_set() {
        assert_eq!(Emotion::from_name("Pleasant_surprised"), Some(Emotion::Surprise));
        assert_eq!(Emotion::from_name("FEARFUL"), Some(Emotion::Fear));
        assert_eq!(Emotion::from_name("excited"), None);
    }

    #[test]
    fn shared_labels_merge_calm_and_drop_boredom() {
        assert_eq!(shared_label("calm"), Some("neutral"));
        assert_eq!(shared_label("surprise"), Some("surprise"));
        assert_eq!(shared_label("boredom"), None);
    }
}
