//! emofuse: speech emotion recognition that holds up in real noise and says why.
//!
//! The data flow, one module per step: [`audio`] turns any file into 16 kHz
//! mono samples; [`features`] computes librosa's frame features (MFCC, ZCR,
//! RMS); [`model::input`] turns both into a model's input; the models of
//! [`model`] (spectral CNN, wav2vec 2.0 / Whisper temporal stream, fusion)
//! give logits; [`infer`] is the one door to a trained model (the saved
//! folder or the built-in one → probabilities); [`explain`] says why.
//!
//! Around it: [`data`] reads the corpora and makes speaker-independent folds,
//! [`noise`] mixes real noise at exact SNRs, [`augment`] changes training
//! clips, [`train`] runs the training loop, [`experiment`] trains and tests
//! splits and cross-validations, [`eval`] and [`robustness`] score models
//! (clean and under noise), [`serve`] puts a model behind HTTP, [`batch`]
//! splits predictions and embeddings over scheduler shards and merges them.
//! [`export`] writes a spectral model as ONNX. [`device`] is the one place
//! that names where tensors live.

pub mod audio;
pub mod augment;
pub mod batch;
pub mod bench;
pub mod data;
pub mod device;
pub mod eval;
pub mod experiment;
pub mod explain;
pub mod export;
pub mod features;
pub mod infer;
pub mod model;
pub mod noise;
pub mod persist;
pub mod plot;
pub mod robustness;
pub mod serve;
pub mod train;
