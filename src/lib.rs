//! emofuse: speech emotion recognition that holds up in real noise and says why.
//!
//! The data flow is the module order: [`audio`] turns any file into 16 kHz
//! mono samples, [`data`] reads the emotion corpora and makes
//! speaker-independent folds, [`features`] computes librosa's frame features.

pub mod audio;
pub mod augment;
pub mod bench;
pub mod data;
pub mod device;
pub mod eval;
pub mod experiment;
pub mod explain;
pub mod features;
pub mod infer;
pub mod model;
pub mod noise;
pub mod persist;
pub mod plot;
pub mod robustness;
pub mod serve;
pub mod train;
