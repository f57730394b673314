//! Speaker-independent cross-validation folds.
//!
//! Every fold is checked before it is returned: train and test never share a
//! speaker (a [`FoldError::SpeakerLeak`], not a debug assertion), and each
//! fold's train and test sets together cover every clip exactly once.
//!
//! EmoBox protocol (Ma et al., 2024; fold files in the EmoBox repository):
//! RAVDESS 6 folds of 4 actors, SAVEE and EMOVO leave-one-speaker-out in
//! EmoBox's fold order. EmoBox's TESS, CREMA-D (one fold each) and EmoDB
//! (five folds) splits are file-level random splits that put every speaker
//! on both sides; they are reproduced from EmoBox's test lists only when
//! speaker overlap is explicitly allowed. EmoDB's speaker-independent
//! default is five folds of one female and one male speaker.
//!
//! Leave-one-corpus-out tests on each corpus in turn, training on the others.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Clip, Corpus, Dataset, Problem, emodb, joined};

/// Actors in each RAVDESS test fold of EmoBox (`data/ravdess/fold_{1..6}`).
const EMOBOX_RAVDESS: [[&str; 4]; 6] = [
    ["01", "11", "20", "21"],
    ["04", "10", "12", "14"],
    ["08", "09", "19", "23"],
    ["03", "05", "07", "24"],
    ["02", "15", "16", "18"],
    ["06", "13", "17", "22"],
];

/// SAVEE test speakers of EmoBox's folds 1–4.
const EMOBOX_SAVEE: [&str; 4] = ["JE", "KL", "DC", "JK"];

/// EMOVO test actors of EmoBox's folds 1–6 (`data/emovo/fold_{1..6}`).
const EMOBOX_EMOVO: [&str; 6] = ["f2", "m3", "m2", "f3", "f1", "m1"];

/// File stems of EmoBox's five EmoDB test folds (107 clips each).
const EMOBOX_EMODB_TEST: [&str; 5] = [
    include_str!("emobox/emodb_test_fold_1.txt"),
    include_str!("emobox/emodb_test_fold_2.txt"),
    include_str!("emobox/emodb_test_fold_3.txt"),
    include_str!("emobox/emodb_test_fold_4.txt"),
    include_str!("emobox/emodb_test_fold_5.txt"),
];

/// File stems of EmoBox's TESS test fold (700 of 2800 clips).
const EMOBOX_TESS_TEST: &str = include_str!("emobox/tess_test_fold_1.txt");
/// File stems of EmoBox's CREMA-D test fold (1856 of 7442 clips).
const EMOBOX_CREMA_D_TEST: &str = include_str!("emobox/crema_d_test_fold_1.txt");

/// How clips are split into folds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "name")]
pub enum Protocol {
    /// EmoBox's published folds for the corpus.
    Emobox,
    /// `k` folds of whole speakers, assigned after a seeded shuffle.
    Kfold { k: usize },
    /// One fold per speaker (leave one speaker out).
    Loso,
    /// EmoDB: five folds, each one male and one female speaker.
    SpeakerPairs,
    /// One fold per corpus: test on it, train on the others.
    LeaveOneCorpusOut,
}

/// A protocol as the user names it (its parameters given apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtocolName {
    /// EmoBox's published folds (RAVDESS, SAVEE, EMOVO; TESS, CREMA-D and EmoDB need speaker overlap allowed).
    Emobox,
    /// k folds of whole speakers, shuffled by the seed.
    Kfold,
    /// Leave one speaker out.
    Loso,
    /// EmoDB's speaker-independent folds: one male and one female speaker each.
    SpeakerPairs,
    /// Test on each corpus in turn, train on the others (give several --data).
    LeaveOneCorpusOut,
}

impl Protocol {
    /// The protocol `name` with `k` folds (used by `kfold` only).
    pub fn from_name(name: ProtocolName, k: usize) -> Protocol {
        match name {
            ProtocolName::Emobox => Protocol::Emobox,
            ProtocolName::Kfold => Protocol::Kfold { k },
            ProtocolName::Loso => Protocol::Loso,
            ProtocolName::SpeakerPairs => Protocol::SpeakerPairs,
            ProtocolName::LeaveOneCorpusOut => Protocol::LeaveOneCorpusOut,
        }
    }

    /// The usual speaker-independent folds of `corpus`: EmoBox's, except
    /// for EmoDB, whose EmoBox folds share speakers.
    pub fn default_for(corpus: Corpus) -> Protocol {
        match corpus {
            Corpus::Emodb => Protocol::SpeakerPairs,
            _ => Protocol::Emobox,
        }
    }

    /// The short name that split names and reports use: `emobox`, `kfold`, `loso`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Emobox => "emobox",
            Protocol::Kfold { .. } => "kfold",
            Protocol::Loso => "loso",
            Protocol::SpeakerPairs => "speaker-pairs",
            Protocol::LeaveOneCorpusOut => "leave-one-corpus-out",
        }
    }

    /// A longer name for tables: `speaker 5-fold`, `leave-one-speaker-out`.
    pub fn description(self) -> String {
        match self {
            Protocol::Emobox => "emobox".into(),
            Protocol::Kfold { k } => format!("speaker {k}-fold"),
            Protocol::Loso => "leave-one-speaker-out".into(),
            Protocol::SpeakerPairs => "speaker pairs (one female, one male)".into(),
            Protocol::LeaveOneCorpusOut => "leave-one-corpus-out".into(),
        }
    }
}

/// One train/test split, as indices into the clip list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fold {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
    pub test_speakers: Vec<String>,
}

/// Why no folds could be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FoldError {
    #[error(
        "{count} clips have no speaker (first: {first}); speaker-independent folds need one for every clip (use <label>/<speaker>/<file> or a manifest)"
    )]
    NoSpeaker { count: usize, first: String },
    #[error("k = {k} folds need between 2 and the number of speakers ({speakers})")]
    BadK { k: usize, speakers: usize },
    #[error("fold {fold}: speaker {speaker} is in both train and test")]
    SpeakerLeak { fold: usize, speaker: String },
    #[error("fold {fold}: clip {clip} is in train and test, or in neither")]
    Coverage { fold: usize, clip: String },
    #[error("fold {fold} has no test clips ({detail})")]
    EmptyTest { fold: usize, detail: String },
    #[error("fold {fold} has no training clips")]
    EmptyTrain { fold: usize },
    #[error("EmoBox defines folds for ravdess, savee, emovo, tess, crema-d and emodb, not {corpus}")]
    NoEmoboxFolds { corpus: &'static str },
    #[error(
        "EmoBox's {corpus} split is file-level: every speaker is in both train and test; use leave-one-speaker-out folds for a cross-speaker split, or allow speaker overlap to reproduce EmoBox"
    )]
    EmoboxSpeakerDependent { corpus: &'static str },
    #[error("fewer than 2 speakers ({speakers}): no speaker-independent split exists")]
    TooFewSpeakers { speakers: usize },
    #[error(
        "{protocol} folds are per corpus, and these clips pool {corpora}; pooled corpora need leave-one-corpus-out, k-fold or leave-one-speaker-out folds"
    )]
    PerCorpus { protocol: &'static str, corpora: usize },
    #[error("speaker pairs are defined for EmoDB (one female and one male speaker per fold), not {corpus}")]
    NoSpeakerPairs { corpus: &'static str },
    #[error("leave-one-corpus-out needs at least 2 corpora, and these clips are all from {corpus}")]
    OneCorpus { corpus: String },
    #[error("no clips to split")]
    NoClips,
    #[error("there is no fold {fold}: there are {count} folds (numbered from 1)")]
    NoSuchFold { fold: usize, count: usize },
    #[error("{}: {detail}", path.display())]
    FoldFile { path: PathBuf, detail: String },
}

/// Options of [`make_folds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoldOptions {
    pub protocol: Protocol,
    pub seed: u64,
    /// Permits EmoBox's speaker-dependent TESS, CREMA-D and EmoDB splits; the leak
    /// check then only checks that no clip is on both sides.
    pub allow_speaker_overlap: bool,
}

/// Splits `clips` (all of one `corpus`) into checked folds.
pub fn make_folds(clips: &[Clip], corpus: Corpus, options: &FoldOptions) -> Result<Vec<Fold>, FoldError> {
    let speaker_dependent =
        matches!(options.protocol, Protocol::Emobox) && matches!(corpus, Corpus::Tess | Corpus::CremaD | Corpus::Emodb);
    if speaker_dependent && !options.allow_speaker_overlap {
        return Err(FoldError::EmoboxSpeakerDependent {
            corpus: corpus.as_str(),
        });
    }
    let test_sets: Vec<Vec<usize>> = match options.protocol {
        Protocol::Emobox => emobox_test_sets(clips, corpus)?,
        Protocol::Kfold { k } => kfold_test_sets(clips, k, options.seed)?,
        Protocol::Loso => {
            let by_speaker = group_by_speaker(clips)?;
            if by_speaker.len() < 2 {
                return Err(FoldError::TooFewSpeakers {
                    speakers: by_speaker.len(),
                });
            }
            by_speaker.into_values().collect()
        }
        Protocol::SpeakerPairs => speaker_pair_test_sets(clips, corpus)?,
        Protocol::LeaveOneCorpusOut => corpus_test_sets(clips)?,
    };
    let folds: Vec<Fold> = test_sets.into_iter().map(|test| complete_fold(clips, test)).collect();
    for (index, fold) in folds.iter().enumerate() {
        check_fold(clips, fold, index + 1, !speaker_dependent)?;
    }
    Ok(folds)
}

/// [`make_folds`] of clips that may pool several corpora (EmoBox's folds,
/// being per corpus, need a single one; leave-one-corpus-out needs several).
pub fn make_pooled_folds(clips: &[Clip], options: &FoldOptions) -> Result<Vec<Fold>, FoldError> {
    let corpora: BTreeSet<Corpus> = clips.iter().map(|c| c.corpus).collect();
    if matches!(options.protocol, Protocol::Emobox | Protocol::SpeakerPairs) && corpora.len() > 1 {
        return Err(FoldError::PerCorpus {
            protocol: options.protocol.as_str(),
            corpora: corpora.len(),
        });
    }
    let corpus = *corpora.first().ok_or(FoldError::NoClips)?;
    make_folds(clips, corpus, options)
}

/// The test fold of a run: fold `fold` (from 1) of a protocol, or of a folds
/// file written by [`FoldsReport`].
#[derive(Debug, Clone, PartialEq)]
pub struct TestFold {
    pub source: FoldSource,
    pub fold: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FoldSource {
    Protocol(FoldOptions),
    File(PathBuf),
}

impl TestFold {
    /// Whether the fold is one of leave-one-corpus-out (whose labels follow
    /// the cross-corpus policy).
    pub fn is_cross_corpus(&self) -> bool {
        matches!(&self.source, FoldSource::Protocol(options) if options.protocol == Protocol::LeaveOneCorpusOut)
    }

    /// The split's name, as results and provenance record it: `emobox fold 3`,
    /// `folds.json fold 2`.
    pub fn name(&self) -> String {
        match &self.source {
            FoldSource::Protocol(options) => format!("{} fold {}", options.protocol.as_str(), self.fold),
            FoldSource::File(path) => format!("{} fold {}", path.display(), self.fold),
        }
    }

    /// `(train, test)` indices into `clips`.
    pub fn split(&self, clips: &[Clip]) -> Result<(Vec<usize>, Vec<usize>), FoldError> {
        match &self.source {
            FoldSource::Protocol(options) => {
                let folds = make_pooled_folds(clips, options)?;
                let fold = folds.get(self.fold.wrapping_sub(1)).ok_or(FoldError::NoSuchFold {
                    fold: self.fold,
                    count: folds.len(),
                })?;
                Ok((fold.train.clone(), fold.test.clone()))
            }
            FoldSource::File(path) => read_fold_file(path, self.fold, clips),
        }
    }
}

/// What `emofuse data folds --json` writes: every clip's speaker and label,
/// and every fold by file path, with its test speakers and class balance.
/// [`read_fold_file`] reads it back.
#[derive(Debug, Clone, Serialize)]
pub struct FoldsReport {
    pub dataset: &'static str,
    pub protocol: Protocol,
    pub seed: u64,
    pub speaker_independent: bool,
    pub clips: Vec<ClipReport>,
    pub folds: Vec<FoldReport>,
    pub problems: Vec<Problem>,
}

/// A clip as other tools need it to group and score (e.g. an inner
/// speaker-grouped cross-validation in Python).
#[derive(Debug, Clone, Serialize)]
pub struct ClipReport {
    pub path: String,
    pub speaker: Option<String>,
    pub label: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FoldReport {
    pub train: Vec<String>,
    pub test: Vec<String>,
    pub test_speakers: Vec<String>,
    pub train_labels: BTreeMap<String, usize>,
    pub test_labels: BTreeMap<String, usize>,
}

impl FoldsReport {
    /// The folds of `dataset` made with `options`.
    pub fn new(dataset: &Dataset, options: &FoldOptions) -> Result<FoldsReport, FoldError> {
        let clips = &dataset.clips;
        let folds = make_folds(clips, dataset.corpus, options)?;
        let speaker_independent = folds
            .iter()
            .enumerate()
            .all(|(i, fold)| check_fold(clips, fold, i + 1, true).is_ok());
        let paths = |indices: &[usize]| indices.iter().map(|&i| clips[i].path.display().to_string()).collect();
        Ok(FoldsReport {
            dataset: dataset.corpus.as_str(),
            protocol: options.protocol,
            seed: options.seed,
            speaker_independent,
            clips: clips
                .iter()
                .map(|clip| ClipReport {
                    path: clip.path.display().to_string(),
                    speaker: clip.speaker.clone(),
                    label: clip.label.clone(),
                })
                .collect(),
            folds: folds
                .iter()
                .map(|fold| FoldReport {
                    train: paths(&fold.train),
                    test: paths(&fold.test),
                    test_speakers: fold.test_speakers.clone(),
                    train_labels: class_balance(clips, &fold.train),
                    test_labels: class_balance(clips, &fold.test),
                })
                .collect(),
            problems: dataset.problems.clone(),
        })
    }
}

/// The folds as a table for people: sizes, test speakers and labels.
impl fmt::Display for FoldsReport {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            out,
            "{} folds of {} ({}, seed {}), {}",
            self.folds.len(),
            self.dataset,
            self.protocol.description(),
            self.seed,
            if self.speaker_independent {
                "speaker-independent"
            } else {
                "SPEAKERS SHARED between train and test"
            }
        )?;
        writeln!(
            out,
            "{:<5} {:>6} {:>6}  {:<24} test labels",
            "fold", "train", "test", "test speakers"
        )?;
        for (i, fold) in self.folds.iter().enumerate() {
            // The corpus prefix is the same on every id: the table shows the bare ids.
            let speakers = if fold.test_speakers.len() > 8 {
                format!("{} speakers", fold.test_speakers.len())
            } else {
                let bare = fold
                    .test_speakers
                    .iter()
                    .map(|s| s.split_once(':').map_or(s.as_str(), |(_, id)| id));
                bare.collect::<Vec<_>>().join(",")
            };
            let labels = joined(&fold.test_labels, |label| label.clone());
            writeln!(
                out,
                "{:<5} {:>6} {:>6}  {:<24} {}",
                i + 1,
                fold.train.len(),
                fold.test.len(),
                speakers,
                labels
            )?;
        }
        Ok(())
    }
}

/// The part of a folds file that [`read_fold_file`] needs.
#[derive(Deserialize)]
struct FoldsFile {
    folds: Vec<FoldFileEntry>,
}

#[derive(Deserialize)]
struct FoldFileEntry {
    test: Vec<PathBuf>,
}

/// `(train, test)` indices into `clips` of fold `fold` (from 1) of a folds
/// file: its test files are the test set, every other clip trains. Paths
/// are compared as the files they name (`./a.wav` and `/data/a.wav` match).
pub fn read_fold_file(path: &Path, fold: usize, clips: &[Clip]) -> Result<(Vec<usize>, Vec<usize>), FoldError> {
    let bad = |detail: String| FoldError::FoldFile {
        path: path.to_owned(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let file: FoldsFile =
        serde_json::from_str(&text).map_err(|e| bad(format!("not a folds file as `data folds` writes it: {e}")))?;
    let count = file.folds.len();
    let entry = file
        .folds
        .get(fold.wrapping_sub(1))
        .ok_or_else(|| bad(format!("no fold {fold}: it has {count} folds")))?;
    let same_file = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    let test_files: HashSet<PathBuf> = entry.test.iter().map(|p| same_file(p)).collect();
    let (test, train): (Vec<usize>, Vec<usize>) =
        (0..clips.len()).partition(|&i| test_files.contains(&same_file(&clips[i].path)));
    if test.is_empty() {
        return Err(bad(format!("none of fold {fold}'s test files is among the clips")));
    }
    Ok((train, test))
}

/// Verifies one fold (numbered from 1 in messages): every clip on exactly one
/// side, both sides non-empty, and — when asked — no speaker on both sides.
pub fn check_fold(clips: &[Clip], fold: &Fold, number: usize, speaker_independent: bool) -> Result<(), FoldError> {
    let mut seen = vec![0u8; clips.len()];
    for &i in fold.train.iter().chain(&fold.test) {
        seen[i] += 1;
    }
    if let Some(i) = seen.iter().position(|&n| n != 1) {
        return Err(FoldError::Coverage {
            fold: number,
            clip: clips[i].path.display().to_string(),
        });
    }
    if fold.test.is_empty() {
        return Err(FoldError::EmptyTest {
            fold: number,
            detail: "no clip matched".into(),
        });
    }
    if fold.train.is_empty() {
        return Err(FoldError::EmptyTrain { fold: number });
    }
    if speaker_independent {
        let test_speakers: HashSet<&str> = fold.test.iter().filter_map(|&i| clips[i].speaker.as_deref()).collect();
        if let Some(speaker) = fold
            .train
            .iter()
            .filter_map(|&i| clips[i].speaker.as_deref())
            .find(|s| test_speakers.contains(s))
        {
            return Err(FoldError::SpeakerLeak {
                fold: number,
                speaker: speaker.to_owned(),
            });
        }
    }
    Ok(())
}

/// A validation set carved from a fold's training clips.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidationSplit {
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
    /// Which speakers were held out, or why the split is not by speaker.
    pub description: String,
}

/// Holds out about `fraction` of the training *speakers* (at least one,
/// never all) for validation, chosen by a seeded shuffle, so that model
/// selection never sees the test speakers and, where there are enough
/// speakers, not the training speakers either. With a single training
/// speaker (TESS's cross-speaker split) it falls back to every
/// `1/fraction`-th clip of each label, and says so.
pub fn validation_split(clips: &[Clip], train: &[usize], fraction: f64, seed: u64) -> ValidationSplit {
    let mut by_speaker: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for &i in train {
        by_speaker
            .entry(clips[i].speaker.as_deref().unwrap_or(""))
            .or_default()
            .push(i);
    }
    if by_speaker.len() >= 2 {
        let mut speakers: Vec<&str> = by_speaker.keys().copied().collect();
        speakers.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let n_validation = ((speakers.len() as f64 * fraction).round() as usize).clamp(1, speakers.len() - 1);
        let mut held_out: Vec<&str> = speakers[..n_validation].to_vec();
        held_out.sort_unstable();
        let held: HashSet<&str> = held_out.iter().copied().collect();
        let (validation, train): (Vec<usize>, Vec<usize>) = train
            .iter()
            .partition(|&&i| held.contains(clips[i].speaker.as_deref().unwrap_or("")));
        return ValidationSplit {
            train,
            validation,
            description: format!("speakers {}", held_out.join(", ")),
        };
    }
    let every = (1.0 / fraction.max(1e-3)).round().max(2.0) as usize;
    let mut seen_per_label: BTreeMap<&str, usize> = BTreeMap::new();
    let (validation, train): (Vec<usize>, Vec<usize>) = train.iter().partition(|&&i| {
        let seen = seen_per_label.entry(clips[i].label.as_str()).or_insert(0);
        *seen += 1;
        (*seen).is_multiple_of(every)
    });
    ValidationSplit {
        train,
        validation,
        description: format!(
            "every {every}th clip per label of the only training speaker (not speaker-independent: model selection on it is optimistic)"
        ),
    }
}

/// Clip counts per label on each side of a fold.
pub fn class_balance(clips: &[Clip], indices: &[usize]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for &i in indices {
        *counts.entry(clips[i].label.clone()).or_insert(0) += 1;
    }
    counts
}

fn complete_fold(clips: &[Clip], mut test: Vec<usize>) -> Fold {
    test.sort_unstable();
    let in_test: HashSet<usize> = test.iter().copied().collect();
    let train = (0..clips.len()).filter(|i| !in_test.contains(i)).collect();
    let test_speakers: BTreeSet<String> = test.iter().filter_map(|&i| clips[i].speaker.clone()).collect();
    Fold {
        train,
        test,
        test_speakers: test_speakers.into_iter().collect(),
    }
}

/// Clip indices per speaker, speakers in sorted order.
fn group_by_speaker(clips: &[Clip]) -> Result<BTreeMap<&str, Vec<usize>>, FoldError> {
    let missing: Vec<&Clip> = clips.iter().filter(|clip| clip.speaker.is_none()).collect();
    if let Some(first) = missing.first() {
        return Err(FoldError::NoSpeaker {
            count: missing.len(),
            first: first.path.display().to_string(),
        });
    }
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, clip) in clips.iter().enumerate() {
        groups
            .entry(clip.speaker.as_deref().expect("checked above"))
            .or_default()
            .push(i);
    }
    Ok(groups)
}

/// Shuffles speakers with the seed, then gives each to the fold with the
/// fewest clips so far: folds stay balanced when speakers differ in size.
fn kfold_test_sets(clips: &[Clip], k: usize, seed: u64) -> Result<Vec<Vec<usize>>, FoldError> {
    let groups = group_by_speaker(clips)?;
    if k < 2 || k > groups.len() {
        return Err(FoldError::BadK {
            k,
            speakers: groups.len(),
        });
    }
    let mut speakers: Vec<Vec<usize>> = groups.into_values().collect();
    speakers.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut folds: Vec<Vec<usize>> = vec![Vec::new(); k];
    for speaker in speakers {
        let smallest = (0..k).min_by_key(|&f| (folds[f].len(), f)).expect("k >= 2");
        folds[smallest].extend(speaker);
    }
    Ok(folds)
}

/// One test set per group of speakers (ids as `corpus:id`).
fn by_speakers(clips: &[Clip], corpus: Corpus, groups: &[&[&str]]) -> Vec<Vec<usize>> {
    groups
        .iter()
        .map(|group| {
            let speakers: Vec<String> = group.iter().map(|id| format!("{}:{id}", corpus.as_str())).collect();
            (0..clips.len())
                .filter(|&i| clips[i].speaker.as_ref().is_some_and(|s| speakers.contains(s)))
                .collect()
        })
        .collect()
}

/// One test set per list of file stems (one stem per line).
fn by_stems(clips: &[Clip], lists: &[&str]) -> Vec<Vec<usize>> {
    lists
        .iter()
        .map(|list| {
            let stems: HashSet<&str> = list.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            (0..clips.len())
                .filter(|&i| {
                    clips[i]
                        .path
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .is_some_and(|s| stems.contains(s))
                })
                .collect()
        })
        .collect()
}

/// EmoDB's speaker pairs: the male and female speakers, each in ascending
/// order, zipped (03+08, 10+09, 11+13, 12+14, 15+16).
fn speaker_pair_test_sets(clips: &[Clip], corpus: Corpus) -> Result<Vec<Vec<usize>>, FoldError> {
    if corpus != Corpus::Emodb {
        return Err(FoldError::NoSpeakerPairs {
            corpus: corpus.as_str(),
        });
    }
    let male = emodb::SPEAKERS.iter().filter(|s| !emodb::FEMALE_SPEAKERS.contains(s));
    let pairs: Vec<[&str; 2]> = male.zip(&emodb::FEMALE_SPEAKERS).map(|(m, f)| [*m, *f]).collect();
    let groups: Vec<&[&str]> = pairs.iter().map(|pair| &pair[..]).collect();
    Ok(by_speakers(clips, corpus, &groups))
}

/// One test set per corpus (told apart by name, see [`Clip::corpus_name`]),
/// in the order the corpora first appear.
fn corpus_test_sets(clips: &[Clip]) -> Result<Vec<Vec<usize>>, FoldError> {
    let mut order: Vec<&str> = Vec::new();
    let mut sets: Vec<Vec<usize>> = Vec::new();
    for (i, clip) in clips.iter().enumerate() {
        let name = clip.corpus_name();
        match order.iter().position(|&seen| seen == name) {
            Some(k) => sets[k].push(i),
            None => {
                order.push(name);
                sets.push(vec![i]);
            }
        }
    }
    match order[..] {
        [] => Err(FoldError::NoClips),
        [only] => Err(FoldError::OneCorpus {
            corpus: only.to_owned(),
        }),
        _ => Ok(sets),
    }
}

fn emobox_test_sets(clips: &[Clip], corpus: Corpus) -> Result<Vec<Vec<usize>>, FoldError> {
    Ok(match corpus {
        Corpus::Ravdess => {
            let groups: Vec<&[&str]> = EMOBOX_RAVDESS.iter().map(|actors| &actors[..]).collect();
            by_speakers(clips, corpus, &groups)
        }
        Corpus::Savee => {
            let groups: Vec<&[&str]> = EMOBOX_SAVEE.iter().map(std::slice::from_ref).collect();
            by_speakers(clips, corpus, &groups)
        }
        Corpus::Emovo => {
            let groups: Vec<&[&str]> = EMOBOX_EMOVO.iter().map(std::slice::from_ref).collect();
            by_speakers(clips, corpus, &groups)
        }
        Corpus::Tess => by_stems(clips, &[EMOBOX_TESS_TEST]),
        Corpus::CremaD => by_stems(clips, &[EMOBOX_CREMA_D_TEST]),
        Corpus::Emodb => by_stems(clips, &EMOBOX_EMODB_TEST),
        Corpus::Folder | Corpus::Manifest => {
            return Err(FoldError::NoEmoboxFolds {
                corpus: corpus.as_str(),
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Emotion;
    use std::path::PathBuf;

    fn clip(speaker: &str, n: usize) -> Clip {
        Clip {
            path: PathBuf::from(format!("{speaker}/{n}.wav")),
            corpus: Corpus::Folder,
            speaker: Some(format!("folder:{speaker}")),
            label: Emotion::Happy.as_str().into(),
            native_label: "happy".into(),
        }
    }

    fn corpus(speakers: usize, per_speaker: usize) -> Vec<Clip> {
        (0..speakers)
            .flat_map(|s| (0..per_speaker).map(move |n| clip(&format!("s{s}"), n)))
            .collect()
    }

    #[test]
    fn kfold_is_seeded_and_balanced() {
        let clips = corpus(10, 3);
        let options = FoldOptions {
            protocol: Protocol::Kfold { k: 5 },
            seed: 7,
            allow_speaker_overlap: false,
        };
        let a = make_folds(&clips, Corpus::Folder, &options).unwrap();
        let b = make_folds(&clips, Corpus::Folder, &options).unwrap();
        assert_eq!(a, b);
        assert!(
            a.iter()
                .all(|fold| fold.test.len() == 6 && fold.test_speakers.len() == 2)
        );
        let other = make_folds(&clips, Corpus::Folder, &FoldOptions { seed: 8, ..options }).unwrap();
        assert_ne!(a, other, "another seed should give other folds");
    }

    #[test]
    fn a_leaking_fold_is_refused() {
        let clips = corpus(3, 2);
        let fold = Fold {
            train: vec![0, 2, 3, 4, 5],
            test: vec![1],
            test_speakers: vec!["folder:s0".into()],
        };
        assert_eq!(
            check_fold(&clips, &fold, 1, true),
            Err(FoldError::SpeakerLeak {
                fold: 1,
                speaker: "folder:s0".into()
            })
        );
        let fold = Fold {
            train: vec![0, 1, 2],
            test: vec![2, 3, 4, 5],
            test_speakers: vec![],
        };
        assert!(matches!(
            check_fold(&clips, &fold, 2, true),
            Err(FoldError::Coverage { fold: 2, .. })
        ));
    }

    #[test]
    fn bad_k_and_missing_speakers() {
        let clips = corpus(3, 2);
        let options = FoldOptions {
            protocol: Protocol::Kfold { k: 4 },
            seed: 0,
            allow_speaker_overlap: false,
        };
        assert_eq!(
            make_folds(&clips, Corpus::Folder, &options),
            Err(FoldError::BadK { k: 4, speakers: 3 })
        );
        let mut clips = clips;
        clips[0].speaker = None;
        let loso = FoldOptions {
            protocol: Protocol::Loso,
            ..options
        };
        assert!(matches!(
            make_folds(&clips, Corpus::Folder, &loso),
            Err(FoldError::NoSpeaker { count: 1, .. })
        ));
    }

    #[test]
    fn emobox_lists_have_the_published_sizes() {
        assert_eq!(EMOBOX_TESS_TEST.lines().count(), 700);
        assert_eq!(EMOBOX_CREMA_D_TEST.lines().count(), 1856);
        let emodb: BTreeSet<&str> = EMOBOX_EMODB_TEST.iter().flat_map(|list| list.lines()).collect();
        assert_eq!(emodb.len(), 535);
        let actors: BTreeSet<&str> = EMOBOX_RAVDESS.iter().flatten().copied().collect();
        assert_eq!(actors.len(), 24);
    }
}
