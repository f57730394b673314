//! What a training run computes: the model, the optimiser and its schedule,
//! class balancing, augmentation, distillation and the seed. Stored in every
//! checkpoint, so a run resumes only with the settings it started with.

use burn::optim::AdamWConfig;
use serde::{Deserialize, Serialize};

use crate::augment::Augment;
use crate::model::fusion::EmotionModelConfig;

/// Everything that decides what a training run computes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingConfig {
    pub model: EmotionModelConfig,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f32,
    /// Linear warm-up from 0, in epochs.
    pub warmup_epochs: f64,
    pub schedule: Schedule,
    pub balance: Balance,
    /// Gradients are clipped to this norm, parameter by parameter (burn's clipping).
    pub grad_clip_norm: Option<f32>,
    /// Stop after this many epochs without a better validation UA.
    pub patience: Option<usize>,
    pub augment: Augment,
    pub seed: u64,
    /// Soft targets from a teacher model mixed into the loss.
    #[serde(default)]
    pub distillation: Option<Distillation>,
}

/// Knowledge distillation (Hinton et al. 2015): the loss is
/// `(1 − weight) · CE(labels) + weight · T² · CE(teacher_T, student_T)`,
/// where `·_T` are softmaxes at temperature `T`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distillation {
    /// The teacher's model folder (provenance; its probabilities come with the data).
    pub teacher: String,
    pub weight: f64,
    pub temperature: f64,
}

/// How the learning rate moves after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Schedule {
    /// Cosine decay to 1 % of the peak at the last epoch.
    Cosine,
    /// Multiply by `factor` after `patience` epochs without a better validation UA.
    Plateau { patience: usize, factor: f64 },
}

/// A schedule as the user names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScheduleName {
    Cosine,
    /// Halve the learning rate after 3 epochs without a better validation UA.
    Plateau,
}

impl From<ScheduleName> for Schedule {
    fn from(name: ScheduleName) -> Schedule {
        match name {
            ScheduleName::Cosine => Schedule::Cosine,
            ScheduleName::Plateau => Schedule::Plateau {
                patience: 3,
                factor: 0.5,
            },
        }
    }
}

/// How unequal class sizes are compensated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    /// Loss weights inversely proportional to class frequency.
    ClassWeights,
    /// Each epoch draws as many clips per class (with replacement for small classes).
    Sampling,
    None,
}

impl TrainingConfig {
    /// AdamW with this run's weight decay and gradient clipping.
    pub(super) fn optimizer(&self) -> burn::optim::ModuleOptimizer {
        let mut adamw = AdamWConfig::new().with_weight_decay(self.weight_decay);
        if let Some(norm) = self.grad_clip_norm {
            adamw = adamw.with_grad_clipping(Some(burn::grad_clipping::GradientClippingConfig::Norm(norm)));
        }
        adamw.init()
    }

    /// The learning rate at optimiser step `step`: warm-up, then cosine decay
    /// or the plateau schedule's current multiplier `plateau_scale`.
    pub(super) fn learning_rate_at(&self, step: usize, plateau_scale: f64, batches_per_epoch: usize) -> f64 {
        let warmup = (self.warmup_epochs * batches_per_epoch as f64).max(1.0);
        let step = step as f64;
        if step < warmup {
            return self.learning_rate * (step + 1.0) / warmup;
        }
        match self.schedule {
            Schedule::Cosine => {
                let total = (self.epochs * batches_per_epoch) as f64;
                let progress = ((step - warmup) / (total - warmup).max(1.0)).min(1.0);
                let floor = 0.01 * self.learning_rate;
                floor + (self.learning_rate - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            Schedule::Plateau { .. } => self.learning_rate * plateau_scale,
        }
    }

    /// The configuration as it reads back from JSON: burn's config
    /// deserialiser rounds some floats, so a stored configuration is compared
    /// in this form.
    pub(super) fn canonical(&self) -> Option<serde_json::Value> {
        let value = serde_json::to_value(self).ok()?;
        let read_back: TrainingConfig = serde_json::from_value(value).ok()?;
        serde_json::to_value(read_back).ok()
    }
}
