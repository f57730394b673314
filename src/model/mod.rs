//! The models: each in its own file (a folder for a big one), built from a
//! serde config (`init`) or from a checkpoint, with a forward pass that reads
//! top-down. [`weights`] hands checkpoint tensors to the builders by name.

pub mod fused;
pub mod fusion;
pub mod input;
pub mod pooling;
pub mod saved;
pub mod spectral_cnn;
pub mod temporal;
pub mod wav2vec2;
pub mod weights;
pub mod whisper;
