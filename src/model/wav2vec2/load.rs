//! Hugging Face wav2vec 2.0 / HuBERT checkpoint folders → [`Wav2Vec2`].
//!
//! A folder holds `config.json`, `model.safetensors` or `pytorch_model.bin`,
//! and usually `preprocessor_config.json`. Stored names differ from the
//! module tree in two ways only, both handled in [`rename`]; the weight-norm
//! pair of the positional convolution is folded into one weight by
//! [`fold_weight_norm`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::{ConfigError, Preprocessor, Wav2Vec2, Wav2Vec2Config};
use crate::model::weights::{RawTensor, Weights, WeightsError, read_checkpoint};

/// Task models (`Wav2Vec2ForSequenceClassification`, `…ForCTC`, `HubertFor…`)
/// keep the encoder under one of these prefixes; bare models have none.
const TASK_PREFIXES: &[&str] = &["wav2vec2.", "hubert."];
/// `torch.nn.utils.weight_norm` names its pair `weight_g`/`weight_v`; its
/// newer parametrization, `parametrizations.weight.original0/1`.
const WEIGHT_NORM_NAMES: &[(&str, &str)] = &[
    ("parametrizations.weight.original0", "weight_g"),
    ("parametrizations.weight.original1", "weight_v"),
];
/// The encoder's own tensors. Anything else in a checkpoint (classifier or
/// CTC heads, the pre-training quantizer, `masked_spec_embed` for SpecAugment)
/// is not part of the encoder and is left out.
const ENCODER_PARTS: &[&str] = &["feature_extractor.", "feature_projection.", "encoder."];
/// The weight-normed convolution.
const POS_CONV: &str = "encoder.pos_conv_embed.conv";

/// Why a checkpoint folder could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: cannot read: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not valid JSON for this model: {source}", path.display())]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{}: {source}", path.display())]
    Config { path: PathBuf, source: ConfigError },
    #[error("{}: no model.safetensors or pytorch_model.bin (sharded checkpoints are not supported)", path.display())]
    NoWeights { path: PathBuf },
    #[error("{}: sampling_rate is {rate} Hz; emofuse feeds 16000 Hz audio", path.display())]
    SampleRate { path: PathBuf, rate: u32 },
    #[error(transparent)]
    Weights(#[from] WeightsError),
}

/// The model's name for a stored tensor, or `None` when it is not part of the encoder.
pub fn rename(stored: &str) -> Option<String> {
    let bare = TASK_PREFIXES
        .iter()
        .find_map(|prefix| stored.strip_prefix(prefix))
        .unwrap_or(stored);
    if !ENCODER_PARTS.iter().any(|part| bare.starts_with(part)) {
        return None;
    }
    let renamed = WEIGHT_NORM_NAMES
        .iter()
        .fold(bare.to_owned(), |name, (new, old)| name.replace(new, old));
    Some(renamed)
}

/// Replaces `{conv}.weight_g` (`[1, 1, k]`) and `{conv}.weight_v`
/// (`[out, in/groups, k]`) by `{conv}.weight = g · v / ‖v‖`, the norm taken
/// over all but the kernel axis (`weight_norm(dim=2)`). Left as is when the
/// pair is absent, so that the missing tensors are reported by name.
pub fn fold_weight_norm(tensors: &mut BTreeMap<String, RawTensor>, conv: &str) {
    let (g_name, v_name) = (format!("{conv}.weight_g"), format!("{conv}.weight_v"));
    let (Some(g), Some(v)) = (tensors.get(&g_name), tensors.get(&v_name)) else {
        return;
    };
    let &[.., k] = v.shape.as_slice() else { return };
    if g.data.len() != k || v.shape.len() != 3 {
        return; // Wrong shapes: keep both, and the shape check names them.
    }
    let mut norms = vec![0.0f64; k];
    for (i, &value) in v.data.iter().enumerate() {
        norms[i % k] += f64::from(value) * f64::from(value);
    }
    let data = v
        .data
        .iter()
        .enumerate()
        .map(|(i, &value)| (f64::from(g.data[i % k]) * f64::from(value) / norms[i % k].sqrt()) as f32)
        .collect();
    let weight = RawTensor {
        shape: v.shape.clone(),
        data,
    };
    tensors.remove(&g_name);
    tensors.remove(&v_name);
    tensors.insert(format!("{conv}.weight"), weight);
}

/// Loads the checkpoint folder `dir`: the encoder and its input normalisation.
pub fn load(dir: &Path, device: &Device) -> Result<(Wav2Vec2, Preprocessor), LoadError> {
    let config = Wav2Vec2Config::from_file(&dir.join("config.json"))?;
    let preprocessor = read_preprocessor(&dir.join("preprocessor_config.json"))?;
    let weights_path = ["model.safetensors", "pytorch_model.bin"]
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| LoadError::NoWeights { path: dir.to_owned() })?;
    let mut tensors: BTreeMap<String, RawTensor> = read_checkpoint(&weights_path)?
        .into_iter()
        .filter_map(|(name, tensor)| rename(&name).map(|name| (name, tensor)))
        .collect();
    fold_weight_norm(&mut tensors, POS_CONV);
    let weights = Weights::from_tensors(&weights_path, tensors, device);
    let model = Wav2Vec2::build(&config, &weights.root());
    weights.finish()?;
    Ok((model, preprocessor))
}

/// `preprocessor_config.json`, or HF's defaults when the folder has none.
pub fn read_preprocessor(path: &Path) -> Result<Preprocessor, LoadError> {
    if !path.is_file() {
        return Ok(Preprocessor::default());
    }
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_owned(),
        source,
    })?;
    let preprocessor: Preprocessor = serde_json::from_str(&text).map_err(|source| LoadError::Json {
        path: path.to_owned(),
        source,
    })?;
    if preprocessor.sampling_rate != crate::audio::SAMPLE_RATE {
        return Err(LoadError::SampleRate {
            path: path.to_owned(),
            rate: preprocessor.sampling_rate,
        });
    }
    Ok(preprocessor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_map_to_the_module_tree() {
        assert_eq!(
            rename("wav2vec2.encoder.pos_conv_embed.conv.parametrizations.weight.original1").as_deref(),
            Some("encoder.pos_conv_embed.conv.weight_v")
        );
        assert_eq!(
            rename("hubert.feature_extractor.conv_layers.0.conv.weight").as_deref(),
            Some("feature_extractor.conv_layers.0.conv.weight")
        );
        assert_eq!(
            rename("encoder.layers.3.attention.q_proj.bias").as_deref(),
            Some("encoder.layers.3.attention.q_proj.bias")
        );
        for head in [
            "classifier.weight",
            "projector.bias",
            "lm_head.weight",
            "masked_spec_embed",
            "quantizer.codevectors",
        ] {
            assert_eq!(rename(head), None, "{head}");
        }
    }

    #[test]
    fn weight_norm_is_folded_per_kernel_tap() {
        let mut tensors = BTreeMap::new();
        // v: [2, 1, 2]; taps 0 and 1 have norms 5 and 1.
        tensors.insert(
            "c.weight_v".into(),
            RawTensor {
                shape: vec![2, 1, 2],
                data: vec![3.0, 0.0, 4.0, 1.0],
            },
        );
        tensors.insert(
            "c.weight_g".into(),
            RawTensor {
                shape: vec![1, 1, 2],
                data: vec![10.0, 2.0],
            },
        );
        fold_weight_norm(&mut tensors, "c");
        assert_eq!(tensors.len(), 1);
        assert_eq!(tensors["c.weight"].data, vec![6.0, 0.0, 8.0, 2.0]);
    }
}
