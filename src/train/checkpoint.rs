//! A run's files: the checkpoint (run state, weights, optimizer state and the
//! best weights so far, checksummed, written by rename so that a kill leaves
//! the previous one whole) and the epoch log.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::Module;
use serde::{Deserialize, Serialize};

use super::config::TrainingConfig;
use super::{EpochLog, TrainError};
use crate::model::fusion::EmotionModel;
use crate::persist;

/// File names inside a run directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.bin";
pub const LOG_FILE: &str = "train_log.jsonl";

/// Where training stands: what a checkpoint stores beside the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct RunState {
    pub(super) config: TrainingConfig,
    /// Epochs finished.
    pub(super) epoch: usize,
    /// Batches of epoch `epoch` already done (non-zero after an interruption mid-epoch).
    pub(super) batch: usize,
    /// Running loss sum of the current epoch's finished batches.
    pub(super) loss_sum: f64,
    pub(super) step: usize,
    pub(super) best_ua: Option<f64>,
    pub(super) best_epoch: usize,
    pub(super) epochs_since_best: usize,
    /// Plateau schedule: the current multiplier of the learning rate.
    pub(super) lr_scale: f64,
    pub(super) seconds: f64,
    pub(super) logs: Vec<EpochLog>,
    /// Clips of the current epoch whose audio could not be changed.
    #[serde(default)]
    pub(super) augment_failures: usize,
}

impl RunState {
    /// Before the first batch.
    pub(super) fn new(config: &TrainingConfig) -> RunState {
        RunState {
            config: config.clone(),
            epoch: 0,
            batch: 0,
            loss_sum: 0.0,
            step: 0,
            best_ua: None,
            best_epoch: 0,
            epochs_since_best: 0,
            lr_scale: 1.0,
            seconds: 0.0,
            logs: Vec::new(),
            augment_failures: 0,
        }
    }
}

pub(super) fn model_bytes(model: &EmotionModel) -> Result<Vec<u8>, TrainError> {
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| TrainError::Checkpoint {
            path: PathBuf::from("(in memory)"),
            detail: e.to_string(),
        })?;
    Ok(bytes.to_vec())
}

pub(super) fn write_log(run_dir: &Path, logs: &[EpochLog]) -> Result<(), TrainError> {
    let mut text = Vec::new();
    for log in logs {
        serde_json::to_writer(&mut text, log).expect("a log line serialises");
        text.write_all(b"\n").expect("writing to memory");
    }
    let path = run_dir.join(LOG_FILE);
    persist::write_atomic(&path, &text).map_err(|source| TrainError::Write { path, source })
}

/// One file holding the run state, the weights, the optimizer state and the
/// best weights so far, with a checksum; written by rename, so a kill
/// leaves the previous checkpoint whole.
pub(super) struct Checkpoint {
    pub(super) state: RunState,
    pub(super) model: Vec<u8>,
    pub(super) optimizer: Vec<u8>,
    pub(super) best: Option<Vec<u8>>,
}

const CHECKPOINT_MAGIC: &[u8; 8] = b"EMOCKPT1";

impl Checkpoint {
    pub(super) fn write(
        path: &Path,
        state: &RunState,
        model: &EmotionModel,
        optimizer: &burn::optim::ModuleOptimizer,
        best: Option<&[u8]>,
    ) -> Result<(), TrainError> {
        let optimizer_bytes = optimizer.to_record().into_bytes().map_err(|e| TrainError::Checkpoint {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        let parts: [&[u8]; 4] = [
            &serde_json::to_vec(state).expect("the run state serialises"),
            &model_bytes(model)?,
            &optimizer_bytes,
            best.unwrap_or(&[]),
        ];
        let mut bytes = CHECKPOINT_MAGIC.to_vec();
        for part in parts {
            bytes.extend_from_slice(&(part.len() as u64).to_le_bytes());
            bytes.extend_from_slice(part);
        }
        let checksum = blake3::hash(&bytes);
        bytes.extend_from_slice(checksum.as_bytes());
        persist::write_atomic(path, &bytes).map_err(|source| TrainError::Write {
            path: path.to_owned(),
            source,
        })
    }

    pub(super) fn read(path: &Path) -> Result<Checkpoint, TrainError> {
        let bytes = std::fs::read(path).map_err(|source| TrainError::Read {
            path: path.to_owned(),
            source,
        })?;
        let bad = |detail: &str| TrainError::Checkpoint {
            path: path.to_owned(),
            detail: detail.to_owned(),
        };
        let (body, checksum) = bytes
            .split_at_checked(bytes.len().saturating_sub(32))
            .ok_or_else(|| bad("too short"))?;
        if !body.starts_with(CHECKPOINT_MAGIC) || blake3::hash(body).as_bytes() != checksum {
            return Err(bad("checksum mismatch"));
        }
        let mut rest = &body[CHECKPOINT_MAGIC.len()..];
        let mut parts = Vec::new();
        for _ in 0..4 {
            let (len, tail) = rest.split_at_checked(8).ok_or_else(|| bad("truncated"))?;
            let len = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
            let (part, tail) = tail.split_at_checked(len).ok_or_else(|| bad("truncated"))?;
            parts.push(part.to_vec());
            rest = tail;
        }
        let best = parts.pop().filter(|b| !b.is_empty());
        let optimizer = parts.pop().expect("four parts");
        let model = parts.pop().expect("four parts");
        let state = serde_json::from_slice(&parts.pop().expect("four parts")).map_err(|e| bad(&e.to_string()))?;
        Ok(Checkpoint {
            state,
            model,
            optimizer,
            best,
        })
    }
}
