//! Batch jobs split over many processes (Slurm job arrays, Kubernetes Indexed
//! Jobs). Each process takes a stable shard of the sorted input files and
//! writes its results in chunks, each renamed into place when complete, so a
//! shard killed half-way loses at most its unfinished chunk and skips the
//! finished ones when rerun. [`merge`] joins the shards and checks that every
//! input is there exactly once.
//!
//! An output folder holds one `shard-IIII-of-NNNN/` folder per shard with its
//! `plan.json` (the job, the shard's files, a checksum of the whole input
//! list) and `chunk-KKKKK.jsonl` (predictions: one JSON object per file) or
//! `chunk-KKKKK.safetensors` (embeddings, the file → row index in the
//! header's metadata).

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::inputs::InputFiles;
use crate::persist;

/// Which shard of how many this process works on; `index` counts from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("--shard {0:?}: {1}")]
    ShardSpec(String, &'static str),
    #[error("--shard auto: {0}")]
    NoScheduler(String),
    #[error("{}: not a UTF-8 path (results name files in JSON)", .0.display())]
    NotUtf8(PathBuf),
    #[error(
        "{}: written by another job or input list ({what} differs); use another --out or remove that folder",
        dir.display()
    )]
    OtherJob { dir: PathBuf, what: &'static str },
    #[error("{}: no shard folders (shard-IIII-of-NNNN) to merge", .0.display())]
    NothingToMerge(PathBuf),
    #[error("{}: missing (that shard never started: run it)", .0.display())]
    MissingShard(PathBuf),
    #[error("{}: missing (that shard did not finish: rerun it)", .0.display())]
    MissingChunk(PathBuf),
    #[error("{}: damaged: {reason}", path.display())]
    Damaged { path: PathBuf, reason: String },
    #[error("{}: cannot read: {cause}", path.display())]
    Read { path: PathBuf, cause: std::io::Error },
    #[error(transparent)]
    Write(#[from] persist::WriteError),
}

impl FromStr for Shard {
    type Err = BatchError;

    /// `I/N`, as in `--shard 0/4` … `--shard 3/4`.
    fn from_str(spec: &str) -> Result<Shard, BatchError> {
        let bad = |why| BatchError::ShardSpec(spec.to_owned(), why);
        let (index, count) = spec.split_once('/').ok_or_else(|| bad("want I/N, e.g. 0/4"))?;
        let index = index.trim().parse().map_err(|_| bad("I is not a whole number"))?;
        let count = count.trim().parse().map_err(|_| bad("N is not a whole number"))?;
        Shard::new(index, count).ok_or_else(|| bad("want 0 <= I < N"))
    }
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    pub fn new(index: usize, count: usize) -> Option<Shard> {
        (index < count).then_some(Shard { index, count })
    }

    /// The shard a scheduler gave this process: a Slurm job array's task
    /// (`SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN` of
    /// `SLURM_ARRAY_TASK_COUNT`), or a Kubernetes Indexed Job's
    /// `JOB_COMPLETION_INDEX` of `count` (which Kubernetes does not tell pods).
    /// With `count` given, a Slurm array index is the shard index itself, so
    /// that `sbatch --array=2` reruns shard 2 alone.
    pub fn from_env(count: Option<usize>) -> Result<Shard, BatchError> {
        Self::from_vars(count, |name| std::env::var(name).ok())
    }

    fn from_vars(count: Option<usize>, var: impl Fn(&str) -> Option<String>) -> Result<Shard, BatchError> {
        let number = |name: &str| -> Result<Option<usize>, BatchError> {
            var(name)
                .map(|value| {
                    value
                        .trim()
                        .parse()
                        .map_err(|_| BatchError::NoScheduler(format!("{name}={value} is not a whole number")))
                })
                .transpose()
        };
        let unfit = |what: String| BatchError::NoScheduler(what);
        if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
            if let Some(count) = count {
                return Shard::new(id, count)
                    .ok_or_else(|| unfit(format!("array task {id} is not below --shard-count {count}")));
            }
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let count = number("SLURM_ARRAY_TASK_COUNT")?
                .ok_or_else(|| unfit("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not".into()))?;
            return id
                .checked_sub(min)
                .and_then(|index| Shard::new(index, count))
                .ok_or_else(|| unfit(format!("array task {id} (min {min}) is not one of {count} shards")));
        }
        if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let count = count.ok_or_else(|| unfit("a Kubernetes Indexed Job needs --shard-count N".into()))?;
            return Shard::new(index, count).ok_or_else(|| {
                unfit(format!(
                    "JOB_COMPLETION_INDEX={index} is not below --shard-count {count}"
                ))
            });
        }
        Err(unfit(
            "neither SLURM_ARRAY_TASK_ID (a Slurm job array) nor JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) is set"
                .into(),
        ))
    }

    /// This shard's part of `total` sorted files: contiguous, sizes differing by at most one.
    pub fn range(self, total: usize) -> Range<usize> {
        total * self.index / self.count..total * (self.index + 1) / self.count
    }

    fn folder_name(self) -> String {
        format!("shard-{:04}-of-{:04}", self.index, self.count)
    }

    fn from_folder_name(name: &str) -> Option<Shard> {
        let (index, count) = name.strip_prefix("shard-")?.split_once("-of-")?;
        Shard::new(index.parse().ok()?, count.parse().ok()?)
    }
}

/// What a job writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Predictions,
    Embeddings,
}

impl Kind {
    fn chunk_extension(self) -> &'static str {
        match self {
            Kind::Predictions => "jsonl",
            Kind::Embeddings => "safetensors",
        }
    }
}

/// A shard's `plan.json`: enough for [`merge`] to prove that the shards
/// together cover the input list exactly once, without the list itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Plan {
    kind: Kind,
    /// The command's settings (model, window, layer…): shards of different jobs never mix.
    job: String,
    shard: usize,
    count: usize,
    chunk_size: usize,
    inputs: usize,
    inputs_sha256: String,
    files: Vec<String>,
}

/// A file's result line in a predictions chunk when it could not be predicted.
#[derive(Debug, Serialize, Deserialize)]
struct Failure {
    path: String,
    error: String,
}

/// One shard of a job, writing into its folder.
pub struct ShardWriter {
    dir: PathBuf,
    plan: Plan,
    base: PathBuf,
}

/// What a shard run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSummary {
    pub files: usize,
    /// Files in chunks an earlier run had finished.
    pub skipped: usize,
    pub failed: usize,
}

impl ShardWriter {
    /// Opens (or reopens, to resume) `shard`'s folder under `out` for `job` over `inputs`.
    pub fn open(
        out: &Path,
        kind: Kind,
        job: &str,
        shard: Shard,
        inputs: &InputFiles,
        chunk_size: usize,
    ) -> Result<ShardWriter, BatchError> {
        let all = inputs
            .relative
            .iter()
            .map(|path| {
                path.to_str()
                    .map(str::to_owned)
                    .ok_or_else(|| BatchError::NotUtf8(path.clone()))
            })
            .collect::<Result<Vec<String>, _>>()?;
        let plan = Plan {
            kind,
            job: job.to_owned(),
            shard: shard.index,
            count: shard.count,
            chunk_size: chunk_size.max(1),
            inputs: all.len(),
            inputs_sha256: list_checksum(&all),
            files: all[shard.range(all.len())].to_vec(),
        };
        if let Some(other) = shard_folders(out).into_iter().find(|other| other.count != shard.count) {
            return Err(BatchError::OtherJob {
                dir: out.join(other.folder_name()),
                what: "the shard count",
            });
        }
        let dir = out.join(shard.folder_name());
        let plan_path = dir.join("plan.json");
        match read_plan(&plan_path) {
            Ok(Some(found)) => {
                let files_differ = (found.files != plan.files).then_some("the shard's files");
                if let Some(what) = job_difference(&found, &plan).or(files_differ) {
                    return Err(BatchError::OtherJob { dir, what });
                }
                persist::remove_stale_temporaries(&dir);
            }
            Ok(None) => {
                let json = serde_json::to_vec_pretty(&plan).expect("a plan serialises");
                persist::write_file(&plan_path, &json)?;
            }
            Err(err) => return Err(err),
        }
        Ok(ShardWriter {
            dir,
            plan,
            base: inputs.base.clone(),
        })
    }

    /// How many files this shard holds.
    pub fn len(&self) -> usize {
        self.plan.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.plan.files.is_empty()
    }

    /// Predicts every file of the unfinished chunks: `predict` gets the
    /// file's path here and its name in the results, and returns its JSON
    /// object (which must name it as `path`) or why it failed.
    pub fn predictions(
        &self,
        mut predict: impl FnMut(&Path, &str) -> Result<String, String>,
        on_file: impl FnMut(),
    ) -> Result<ShardSummary, BatchError> {
        let mut failed = 0;
        let summary = self.chunks(
            |file, name| match predict(file, name) {
                Ok(line) => line,
                Err(error) => {
                    failed += 1;
                    let failure = Failure {
                        path: name.to_owned(),
                        error,
                    };
                    serde_json::to_string(&failure).expect("a failure serialises")
                }
            },
            |lines| {
                lines
                    .iter()
                    .flat_map(|line| [line.as_bytes(), b"\n"])
                    .flatten()
                    .copied()
                    .collect()
            },
            on_file,
        )?;
        Ok(ShardSummary { failed, ..summary })
    }

    /// Embeds every file of the unfinished chunks: `embed` returns the
    /// file's array (shape, values) or why it failed.
    pub fn embeddings(
        &self,
        mut embed: impl FnMut(&Path, &str) -> Embedded,
        on_file: impl FnMut(),
    ) -> Result<ShardSummary, BatchError> {
        let mut failed = 0;
        let summary = self.chunks(
            |file, name| {
                let embedded = embed(file, name);
                failed += usize::from(embedded.is_err());
                (name.to_owned(), embedded)
            },
            embedding_chunk,
            on_file,
        )?;
        Ok(ShardSummary { failed, ..summary })
    }

    fn chunks<T>(
        &self,
        mut item: impl FnMut(&Path, &str) -> T,
        encode: impl Fn(&[T]) -> Vec<u8>,
        mut on_file: impl FnMut(),
    ) -> Result<ShardSummary, BatchError> {
        let mut skipped = 0;
        for (k, names) in self.plan.files.chunks(self.plan.chunk_size).enumerate() {
            let chunk = self.dir.join(chunk_name(k, self.plan.kind));
            if chunk.is_file() {
                skipped += names.len();
                names.iter().for_each(|_| on_file());
                continue;
            }
            let items: Vec<T> = names
                .iter()
                .map(|name| {
                    let result = item(&self.base.join(name), name);
                    on_file();
                    result
                })
                .collect();
            persist::write_file(&chunk, &encode(&items))?;
        }
        Ok(ShardSummary {
            files: self.len(),
            skipped,
            failed: 0,
        })
    }
}

/// One file's embedding, `(shape, values)`, or why it has none.
type Embedded = Result<(Vec<u64>, Vec<f32>), String>;

/// One embeddings chunk: the arrays stacked as `embeddings` [rows, …] when
/// they share a shape (pooled embeddings), else one tensor per row named by
/// its number; the header's metadata `index` says which file is which row.
fn embedding_chunk(items: &[(String, Embedded)]) -> Vec<u8> {
    let arrays: Vec<&(Vec<u64>, Vec<f32>)> = items.iter().filter_map(|(_, r)| r.as_ref().ok()).collect();
    let stacked = arrays.windows(2).all(|pair| pair[0].0 == pair[1].0);
    let mut index = Vec::with_capacity(items.len());
    let mut row = 0;
    for (name, result) in items {
        index.push(match result {
            Ok(_) => {
                row += 1;
                IndexEntry::row(name, stacked, row - 1)
            }
            Err(error) => IndexEntry::failure(name, error),
        });
    }
    let bytes: Vec<Vec<u8>> = arrays
        .iter()
        .map(|(_, values)| values.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = if stacked && !arrays.is_empty() {
        let mut shape = vec![arrays.len()];
        shape.extend(arrays[0].0.iter().map(|&d| d as usize));
        vec![("embeddings".to_owned(), shape, bytes.concat())]
    } else {
        arrays
            .iter()
            .zip(bytes)
            .enumerate()
            .map(|(row, ((shape, _), bytes))| (row.to_string(), shape.iter().map(|&d| d as usize).collect(), bytes))
            .collect()
    };
    let views = tensors.iter().map(|(name, shape, bytes)| {
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
            .expect("shape and byte count agree: both come from the same array");
        (name.clone(), view)
    });
    let index = serde_json::to_string(&index).expect("an index serialises");
    let metadata = HashMap::from([("index".to_owned(), index)]);
    safetensors::serialize(views, Some(metadata)).expect("f32 tensors with matching shapes serialise")
}

/// Where one file's embedding is: a chunk's `tensor`, at `row` when stacked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct IndexEntry {
    path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chunk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tensor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    row: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl IndexEntry {
    fn row(name: &str, stacked: bool, row: usize) -> IndexEntry {
        let (tensor, row) = if stacked {
            ("embeddings".to_owned(), Some(row))
        } else {
            (row.to_string(), None)
        };
        IndexEntry {
            path: name.to_owned(),
            chunk: None,
            tensor: Some(tensor),
            row,
            error: None,
        }
    }

    fn failure(name: &str, error: &str) -> IndexEntry {
        IndexEntry {
            path: name.to_owned(),
            chunk: None,
            tensor: None,
            row: None,
            error: Some(error.to_owned()),
        }
    }
}

/// What [`merge`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub kind: Kind,
    pub shards: usize,
    pub files: usize,
    pub failed: usize,
    pub written: PathBuf,
}

/// Joins the shards under `out` into `predictions.jsonl` (every file's line,
/// in input order) or `embeddings.jsonl` (every file's chunk, tensor and
/// row), after checking that all shards of one job are there, complete,
/// readable, and cover every input exactly once.
pub fn merge(out: &Path) -> Result<Merged, BatchError> {
    let plans = shard_plans(out)?;
    let first = &plans[0].1;
    let mut names: Vec<&str> = Vec::with_capacity(first.inputs);
    for (dir, plan) in &plans {
        if let Some(what) = job_difference(plan, first) {
            return Err(BatchError::OtherJob { dir: dir.clone(), what });
        }
        let shard = Shard::new(plan.shard, plan.count).expect("shard folders parse to valid shards");
        if plan.files.len() != shard.range(plan.inputs).len() {
            return Err(damaged(
                &dir.join("plan.json"),
                "its file count does not fit its shard".into(),
            ));
        }
        names.extend(plan.files.iter().map(String::as_str));
    }
    if list_checksum(&names) != first.inputs_sha256 {
        return Err(damaged(
            out,
            "the shards' files are not the job's input list (a file is missing or twice)".into(),
        ));
    }
    let mut merged = Vec::new();
    let mut failed = 0;
    for (dir, plan) in &plans {
        for (k, expected) in plan.files.chunks(plan.chunk_size).enumerate() {
            let name = chunk_name(k, plan.kind);
            let chunk = dir.join(&name);
            let bytes = match std::fs::read(&chunk) {
                Ok(bytes) => bytes,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Err(BatchError::MissingChunk(chunk)),
                Err(cause) => return Err(BatchError::Read { path: chunk, cause }),
            };
            let relative = format!("{}/{name}", dir.file_name().unwrap_or_default().to_string_lossy());
            failed += match plan.kind {
                Kind::Predictions => merge_predictions(&chunk, &bytes, expected, &mut merged)?,
                Kind::Embeddings => merge_index(&chunk, &relative, &bytes, expected, &mut merged)?,
            };
        }
    }
    let written = out.join(match first.kind {
        Kind::Predictions => "predictions.jsonl",
        Kind::Embeddings => "embeddings.jsonl",
    });
    persist::write_file(&written, &merged)?;
    Ok(Merged {
        kind: first.kind,
        shards: plans.len(),
        files: first.inputs,
        failed,
        written,
    })
}

/// Every shard's folder and plan, in shard order; all of one count, none missing.
fn shard_plans(out: &Path) -> Result<Vec<(PathBuf, Plan)>, BatchError> {
    if let Err(cause) = std::fs::read_dir(out) {
        return Err(BatchError::Read {
            path: out.to_owned(),
            cause,
        });
    }
    let shards = shard_folders(out);
    let count = match (shards.first(), shards.last()) {
        (Some(first), Some(last)) if first.count == last.count => first.count,
        (Some(first), Some(last)) => {
            return Err(damaged(
                out,
                format!(
                    "holds shards of {} and of {} (two jobs in one folder)",
                    first.count, last.count
                ),
            ));
        }
        _ => return Err(BatchError::NothingToMerge(out.to_owned())),
    };
    (0..count)
        .map(|index| {
            let dir = out.join(Shard { index, count }.folder_name());
            match read_plan(&dir.join("plan.json"))? {
                Some(plan) if plan.shard == index && plan.count == count => Ok((dir, plan)),
                Some(_) => Err(damaged(&dir.join("plan.json"), "names another shard".into())),
                None => Err(BatchError::MissingShard(dir)),
            }
        })
        .collect()
}

/// The shards with a folder under `out`, by count and index.
fn shard_folders(out: &Path) -> Vec<Shard> {
    let mut shards: Vec<Shard> = std::fs::read_dir(out)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| Shard::from_folder_name(&entry.file_name().to_string_lossy()))
        .collect();
    shards.sort_by_key(|shard| (shard.count, shard.index));
    shards
}

fn merge_predictions(
    chunk: &Path,
    bytes: &[u8],
    expected: &[String],
    merged: &mut Vec<u8>,
) -> Result<usize, BatchError> {
    let text = std::str::from_utf8(bytes).map_err(|_| damaged(chunk, "not UTF-8".into()))?;
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() != expected.len() || !text.ends_with('\n') {
        let reason = format!("{} lines, expected {}", lines.len(), expected.len());
        return Err(damaged(chunk, reason));
    }
    let mut failed = 0;
    for (number, (line, name)) in lines.iter().zip(expected).enumerate() {
        #[derive(Deserialize)]
        struct Named {
            path: String,
            error: Option<String>,
        }
        let named: Named =
            serde_json::from_str(line).map_err(|err| damaged(chunk, format!("line {}: {err}", number + 1)))?;
        if named.path != *name {
            return Err(damaged(
                chunk,
                format!("line {} is {}, expected {name}", number + 1, named.path),
            ));
        }
        failed += usize::from(named.error.is_some());
        merged.extend_from_slice(line.as_bytes());
        merged.push(b'\n');
    }
    Ok(failed)
}

fn merge_index(
    chunk: &Path,
    relative: &str,
    bytes: &[u8],
    expected: &[String],
    merged: &mut Vec<u8>,
) -> Result<usize, BatchError> {
    // The header alone: it is checked against the file's length, and holds the index and the shapes.
    let (_, metadata) =
        safetensors::SafeTensors::read_metadata(bytes).map_err(|err| damaged(chunk, err.to_string()))?;
    let tensors = metadata.tensors();
    let index = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get("index"))
        .ok_or_else(|| damaged(chunk, "no index in its metadata".into()))?;
    let entries: Vec<IndexEntry> = serde_json::from_str(index).map_err(|err| damaged(chunk, err.to_string()))?;
    if entries.len() != expected.len() {
        let reason = format!("{} index entries, expected {}", entries.len(), expected.len());
        return Err(damaged(chunk, reason));
    }
    let mut failed = 0;
    for (mut entry, name) in entries.into_iter().zip(expected) {
        if entry.path != *name {
            return Err(damaged(chunk, format!("indexes {}, expected {name}", entry.path)));
        }
        if let Some(tensor) = &entry.tensor {
            let shape = &tensors
                .get(tensor)
                .ok_or_else(|| damaged(chunk, format!("no tensor {tensor}")))?
                .shape;
            if entry
                .row
                .is_some_and(|row| shape.first().is_none_or(|&rows| row >= rows))
            {
                return Err(damaged(chunk, format!("{name}'s row is outside {tensor}")));
            }
            entry.chunk = Some(relative.to_owned());
        }
        failed += usize::from(entry.error.is_some());
        serde_json::to_writer(&mut *merged, &entry).expect("an index entry serialises");
        merged.push(b'\n');
    }
    Ok(failed)
}

fn chunk_name(k: usize, kind: Kind) -> String {
    format!("chunk-{k:05}.{}", kind.chunk_extension())
}

fn read_plan(path: &Path) -> Result<Option<Plan>, BatchError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|err| damaged(path, err.to_string())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(cause) => Err(BatchError::Read {
            path: path.to_owned(),
            cause,
        }),
    }
}

/// Which setting of the job two plans disagree on, if any (their shards' own files aside).
fn job_difference(found: &Plan, wanted: &Plan) -> Option<&'static str> {
    [
        (found.kind != wanted.kind, "the kind of result"),
        (found.job != wanted.job, "the command's settings"),
        (found.count != wanted.count, "the shard count"),
        (found.chunk_size != wanted.chunk_size, "--chunk-size"),
        (
            found.inputs != wanted.inputs || found.inputs_sha256 != wanted.inputs_sha256,
            "the input list",
        ),
    ]
    .into_iter()
    .find_map(|(differs, what)| differs.then_some(what))
}

/// A checksum of a sorted file list (names joined by NUL bytes, which paths cannot hold).
fn list_checksum(names: &[impl AsRef<str>]) -> String {
    let mut hash = Sha256::new();
    for name in names {
        hash.update(name.as_ref().as_bytes());
        hash.update([0]);
    }
    format!("{:x}", hash.finalize())
}

fn damaged(path: &Path, reason: String) -> BatchError {
    BatchError::Damaged {
        path: path.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(n: usize) -> InputFiles {
        InputFiles {
            base: PathBuf::from("/audio"),
            relative: (0..n).map(|i| PathBuf::from(format!("clip-{i:03}.wav"))).collect(),
        }
    }

    /// A fake prediction: the file's name and its length.
    fn predict(_: &Path, name: &str) -> Result<String, String> {
        if name.ends_with("3.wav") {
            return Err("cannot decode".into());
        }
        Ok(format!("{{\"path\":\"{name}\",\"len\":{}}}", name.len()))
    }

    fn run_all(out: &Path, count: usize, files: &InputFiles) {
        for index in 0..count {
            let writer = ShardWriter::open(out, Kind::Predictions, "job", Shard { index, count }, files, 4).unwrap();
            writer.predictions(predict, || ()).unwrap();
        }
    }

    #[test]
    fn shards_split_the_list_contiguously_and_completely() {
        for total in [0, 1, 7, 100] {
            for count in 1..6 {
                let ranges: Vec<Range<usize>> = (0..count).map(|index| Shard { index, count }.range(total)).collect();
                assert_eq!(ranges[0].start, 0);
                assert_eq!(ranges[count - 1].end, total);
                assert!(ranges.windows(2).all(|pair| pair[0].end == pair[1].start));
                assert!(
                    ranges
                        .iter()
                        .all(|r| r.len() >= total / count && r.len() <= total / count + 1)
                );
            }
        }
    }

    #[test]
    fn shard_specs_and_scheduler_variables() {
        assert_eq!("2/4".parse::<Shard>().unwrap(), Shard { index: 2, count: 4 });
        for bad in ["4/4", "2", "a/4", "1/0"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let slurm = |name: &str| match name {
            "SLURM_ARRAY_TASK_ID" => Some("7".to_owned()),
            "SLURM_ARRAY_TASK_MIN" => Some("5".to_owned()),
            "SLURM_ARRAY_TASK_COUNT" => Some("4".to_owned()),
            _ => None,
        };
        assert_eq!(Shard::from_vars(None, slurm).unwrap(), Shard { index: 2, count: 4 });
        assert_eq!(Shard::from_vars(Some(8), slurm).unwrap(), Shard { index: 7, count: 8 });
        assert!(Shard::from_vars(Some(7), slurm).is_err());
        let k8s = |name: &str| (name == "JOB_COMPLETION_INDEX").then(|| "3".to_owned());
        assert_eq!(Shard::from_vars(Some(5), k8s).unwrap(), Shard { index: 3, count: 5 });
        assert!(
            Shard::from_vars(None, k8s)
                .unwrap_err()
                .to_string()
                .contains("--shard-count")
        );
        assert!(Shard::from_vars(Some(3), k8s).is_err());
        assert!(
            Shard::from_vars(None, |_| None)
                .unwrap_err()
                .to_string()
                .contains("SLURM_ARRAY_TASK_ID")
        );
    }

    #[test]
    fn merged_shards_equal_one_process_and_failures_are_lines() {
        let dir = tempfile::tempdir().unwrap();
        let files = inputs(23);
        run_all(&dir.path().join("one"), 1, &files);
        run_all(&dir.path().join("four"), 4, &files);
        let one = merge(&dir.path().join("one")).unwrap();
        let four = merge(&dir.path().join("four")).unwrap();
        assert_eq!((four.shards, four.files, four.failed), (4, 23, 2));
        let bytes = std::fs::read(&four.written).unwrap();
        assert_eq!(bytes, std::fs::read(&one.written).unwrap());
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(text.lines().count(), 23);
        assert!(text.lines().nth(3).unwrap().contains("\"error\":\"cannot decode\""));
    }

    #[test]
    fn a_rerun_skips_finished_chunks_and_merge_names_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let files = inputs(23);
        run_all(out, 4, &files);
        let shard = Shard { index: 1, count: 4 };
        let lost = out.join("shard-0001-of-0004/chunk-00001.jsonl");
        std::fs::remove_file(&lost).unwrap();
        assert!(matches!(merge(out), Err(BatchError::MissingChunk(path)) if path == lost));
        let writer = ShardWriter::open(out, Kind::Predictions, "job", shard, &files, 4).unwrap();
        let mut predicted = 0;
        let summary = writer
            .predictions(
                |file, name| {
                    predicted += 1;
                    predict(file, name)
                },
                || (),
            )
            .unwrap();
        assert_eq!((summary.files, summary.skipped, predicted), (6, 4, 2));
        merge(out).unwrap();

        let other = ShardWriter::open(out, Kind::Predictions, "another job", shard, &files, 4);
        assert!(matches!(
            other,
            Err(BatchError::OtherJob {
                what: "the command's settings",
                ..
            })
        ));
        let other = ShardWriter::open(out, Kind::Predictions, "job", Shard { index: 1, count: 3 }, &files, 4);
        assert!(matches!(
            other,
            Err(BatchError::OtherJob {
                what: "the shard count",
                ..
            })
        ));
        let missing = out.join("shard-0002-of-0004");
        std::fs::remove_dir_all(&missing).unwrap();
        assert!(matches!(merge(out), Err(BatchError::MissingShard(path)) if path == missing));
    }

    #[test]
    fn merge_refuses_damaged_chunks_and_plans() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        run_all(out, 2, &inputs(10));
        let chunk = out.join("shard-0000-of-0002/chunk-00000.jsonl");
        let good = std::fs::read_to_string(&chunk).unwrap();
        std::fs::write(&chunk, good.replace("clip-001", "clip-101")).unwrap();
        let err = merge(out).unwrap_err().to_string();
        assert!(
            err.contains("chunk-00000.jsonl: damaged: line 2 is clip-101.wav"),
            "{err}"
        );
        std::fs::write(&chunk, &good[..good.len() - 5]).unwrap();
        assert!(
            merge(out)
                .unwrap_err()
                .to_string()
                .contains("chunk-00000.jsonl: damaged")
        );
        std::fs::write(&chunk, good).unwrap();

        let plan = out.join("shard-0001-of-0002/plan.json");
        let text = std::fs::read_to_string(&plan).unwrap();
        std::fs::write(&plan, text.replace("clip-009", "clip-003")).unwrap();
        let err = merge(out).unwrap_err().to_string();
        assert!(err.contains("not the job's input list"), "{err}");
    }

    #[test]
    fn embeddings_are_stacked_rows_with_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let files = inputs(5);
        let writer = ShardWriter::open(dir.path(), Kind::Embeddings, "job", Shard::WHOLE, &files, 4).unwrap();
        let embed = |_: &Path, name: &str| {
            let value = name.len() as f32;
            if name.ends_with("1.wav") {
                Err("too short".to_owned())
            } else {
                Ok((vec![2], vec![value, -value]))
            }
        };
        assert_eq!(writer.embeddings(embed, || ()).unwrap().failed, 1);
        let merged = merge(dir.path()).unwrap();
        let index: Vec<IndexEntry> = std::fs::read_to_string(merged.written)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(index.len(), 5);
        assert_eq!(index[1].error.as_deref(), Some("too short"));
        let third = &index[2];
        assert_eq!((third.tensor.as_deref(), third.row), (Some("embeddings"), Some(1)));
        let bytes = std::fs::read(dir.path().join(third.chunk.as_ref().unwrap())).unwrap();
        let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let stacked = tensors.tensor("embeddings").unwrap();
        assert_eq!(stacked.shape(), [3, 2]);
        let second_row = &stacked.data()[8..16];
        assert_eq!(second_row, [12f32.to_le_bytes(), (-12f32).to_le_bytes()].concat());
    }
}
