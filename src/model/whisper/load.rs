//! Whisper encoder weights: Hugging Face folders (`config.json` +
//! `model.safetensors`, encoder under `model.encoder.` or `encoder.`) and
//! CTranslate2's `model.bin`, which [`convert_ct2`] turns into such a folder
//! so that everything downstream reads one format.
//!
//! CTranslate2's file (binary version 6): `u32` version, the spec name and
//! `u32` revision, `u32` variable count, then per variable its name, `u8`
//! rank, `u32` dims, `u8` dtype (0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16),
//! `u32` byte count and the bytes; then aliases. Strings are a `u16` length
//! (with the terminating NUL) and the bytes. Attention's Q, K and V are one
//! fused `linear_0` (`[3d, d]`); K has no bias, stored as zeros.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::{WhisperConfig, WhisperEncoder};
use crate::model::weights::{RawTensor, Weights, WeightsError, read_checkpoint};
use crate::persist;

/// Prefixes under which HF checkpoints keep the encoder.
const ENCODER_PREFIXES: &[&str] = &["model.encoder.", "encoder."];

#[derive(Debug, thiserror::Error)]
pub enum WhisperLoadError {
    #[error("{}: cannot read: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {detail}", path.display())]
    Config { path: PathBuf, detail: String },
    #[error("{}: not a CTranslate2 model file: {detail}", path.display())]
    Ct2 { path: PathBuf, detail: String },
    #[error(transparent)]
    Weights(#[from] WeightsError),
}

/// The encoder's name for a stored HF tensor (`None`: the decoder or a head).
pub fn rename(stored: &str) -> Option<String> {
    ENCODER_PREFIXES
        .iter()
        .find_map(|prefix| stored.strip_prefix(prefix))
        .map(str::to_owned)
}

/// Reads an HF Whisper folder: the encoder and its configuration.
pub fn load(dir: &Path, device: &Device) -> Result<(WhisperEncoder, WhisperConfig), WhisperLoadError> {
    let config = read_config(dir)?;
    let weights_path = dir.join("model.safetensors");
    let tensors = read_checkpoint(&weights_path)?
        .into_iter()
        .filter_map(|(name, tensor)| rename(&name).map(|name| (name, tensor)))
        .collect();
    let weights = Weights::from_tensors(&weights_path, tensors, device);
    let encoder = WhisperEncoder::build(&config, &weights.root());
    weights.finish()?;
    Ok((encoder, config))
}

/// The checked `config.json` of an HF Whisper folder.
pub fn read_config(dir: &Path) -> Result<WhisperConfig, WhisperLoadError> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|source| WhisperLoadError::Io {
        path: config_path.clone(),
        source,
    })?;
    let config: WhisperConfig = serde_json::from_str(&text).map_err(|err| WhisperLoadError::Config {
        path: config_path.clone(),
        detail: err.to_string(),
    })?;
    config.validate().map_err(|detail| WhisperLoadError::Config {
        path: config_path.clone(),
        detail,
    })?;
    Ok(config)
}

/// A variable of a CTranslate2 file.
struct Ct2Variable {
    shape: Vec<usize>,
    dtype: u8,
    bytes: Vec<u8>,
}

/// Reads a CTranslate2 file front to back, naming the file in errors.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn error(&self, detail: String) -> WhisperLoadError {
        WhisperLoadError::Ct2 {
            path: self.path.to_owned(),
            detail,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WhisperLoadError> {
        let end = self
            .at
            .checked_add(n)
            .ok_or_else(|| self.error("size overflow".into()))?;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or_else(|| self.error(format!("truncated at byte {}", self.at)))?;
        self.at = end;
        Ok(slice)
    }

    fn u32(&mut self) -> Result<u32, WhisperLoadError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn string(&mut self) -> Result<String, WhisperLoadError> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")) as usize;
        let raw = self.take(len)?;
        let text = raw.strip_suffix(&[0]).unwrap_or(raw);
        String::from_utf8(text.to_vec()).map_err(|_| self.error("a name is not UTF-8".into()))
    }
}

/// Reads every variable of a CTranslate2 `model.bin`.
fn read_ct2(path: &Path) -> Result<BTreeMap<String, Ct2Variable>, WhisperLoadError> {
    let bytes = std::fs::read(path).map_err(|source| WhisperLoadError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut cursor = Cursor {
        bytes: &bytes,
        at: 0,
        path,
    };
    let version = cursor.u32()?;
    if version != 6 {
        return Err(cursor.error(format!("binary version {version}; this reader knows version 6")));
    }
    let spec = cursor.string()?;
    if spec != "WhisperSpec" {
        return Err(cursor.error(format!("a {spec} model, not Whisper")));
    }
    let _revision = cursor.u32()?;
    let count = cursor.u32()? as usize;
    let mut variables = BTreeMap::new();
    for _ in 0..count {
        let name = cursor.string()?;
        let rank = cursor.take(1)?[0] as usize;
        let shape = (0..rank)
            .map(|_| cursor.u32().map(|d| d as usize))
            .collect::<Result<Vec<_>, _>>()?;
        let dtype = cursor.take(1)?[0];
        let n_bytes = cursor.u32()? as usize;
        let bytes = cursor.take(n_bytes)?.to_vec();
        variables.insert(name, Ct2Variable { shape, dtype, bytes });
    }
    Ok(variables)
}

/// f32 values of a float variable (f32, f16 or bf16); an error for quantized ones.
fn floats(name: &str, variable: &Ct2Variable, path: &Path) -> Result<Vec<f32>, WhisperLoadError> {
    let expected: usize = variable.shape.iter().product();
    let values: Vec<f32> = match variable.dtype {
        0 => variable
            .bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect(),
        4 => variable
            .bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        5 => variable
            .bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        1..=3 => {
            return Err(WhisperLoadError::Ct2 {
                path: path.to_owned(),
                detail: format!("{name} is quantized to integers; convert the model with float16 or float32 weights"),
            });
        }
        other => {
            return Err(WhisperLoadError::Ct2 {
                path: path.to_owned(),
                detail: format!("{name} has unknown data type {other}"),
            });
        }
    };
    if values.len() != expected {
        return Err(WhisperLoadError::Ct2 {
            path: path.to_owned(),
            detail: format!("{name}: {} values for shape {:?}", values.len(), variable.shape),
        });
    }
    Ok(values)
}

/// The encoder of a CTranslate2 Whisper `model.bin` as HF-named tensors
/// (without the `model.encoder.` prefix), and its configuration.
pub fn read_ct2_encoder(path: &Path) -> Result<(WhisperConfig, BTreeMap<String, RawTensor>), WhisperLoadError> {
    let variables = read_ct2(path)?;
    let bad = |detail: String| WhisperLoadError::Ct2 {
        path: path.to_owned(),
        detail,
    };
    let get = |name: &str| variables.get(name).ok_or_else(|| bad(format!("no variable {name}")));
    let tensor = |name: &str| -> Result<RawTensor, WhisperLoadError> {
        let variable = get(name)?;
        Ok(RawTensor {
            shape: variable.shape.clone(),
            data: floats(name, variable, path)?,
        })
    };
    let conv1 = tensor("encoder/conv1/weight")?;
    let positions = tensor("encoder/position_encodings/encodings")?;
    let [d_model, num_mel_bins, _] = conv1.shape[..] else {
        return Err(bad(format!("encoder/conv1/weight has shape {:?}", conv1.shape)));
    };
    let heads = get("encoder/num_heads")?;
    let encoder_attention_heads = match (heads.dtype, heads.bytes.as_slice()) {
        (2, [a, b]) => i16::from_le_bytes([*a, *b]) as usize,
        (3, [a, b, c, d]) => i32::from_le_bytes([*a, *b, *c, *d]) as usize,
        _ => return Err(bad("encoder/num_heads is not an integer".into())),
    };
    let encoder_layers = (0..)
        .take_while(|i| variables.contains_key(&format!("encoder/layer_{i}/ffn/linear_0/weight")))
        .count();
    let ffn = tensor("encoder/layer_0/ffn/linear_0/weight")?;
    let config = WhisperConfig {
        d_model,
        encoder_layers,
        encoder_attention_heads,
        encoder_ffn_dim: ffn.shape[0],
        num_mel_bins,
        max_source_positions: positions.shape[0],
        activation_function: super::super::wav2vec2::Activation::Gelu,
    };
    config.validate().map_err(bad)?;
    let mut out = BTreeMap::new();
    out.insert("conv1.weight".into(), conv1);
    out.insert("conv1.bias".into(), tensor("encoder/conv1/bias")?);
    out.insert("conv2.weight".into(), tensor("encoder/conv2/weight")?);
    out.insert("conv2.bias".into(), tensor("encoder/conv2/bias")?);
    out.insert("embed_positions.weight".into(), positions);
    out.insert("layer_norm.weight".into(), tensor("encoder/layer_norm/gamma")?);
    out.insert("layer_norm.bias".into(), tensor("encoder/layer_norm/beta")?);
    for i in 0..encoder_layers {
        let (ct2, hf) = (format!("encoder/layer_{i}/"), format!("layers.{i}."));
        let qkv = tensor(&format!("{ct2}self_attention/linear_0/weight"))?;
        let qkv_bias = tensor(&format!("{ct2}self_attention/linear_0/bias"))?;
        if qkv.shape != [3 * d_model, d_model] || qkv_bias.shape != [3 * d_model] {
            return Err(bad(format!("{ct2}self_attention/linear_0 has shape {:?}", qkv.shape)));
        }
        let block = d_model * d_model;
        for (k, name) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
            out.insert(
                format!("{hf}self_attn.{name}.weight"),
                RawTensor {
                    shape: vec![d_model, d_model],
                    data: qkv.data[k * block..(k + 1) * block].to_vec(),
                },
            );
            let bias = &qkv_bias.data[k * d_model..(k + 1) * d_model];
            if *name == "k_proj" {
                // Whisper's key projection has no bias; CTranslate2 stores zeros.
                if let Some(v) = bias.iter().find(|v| **v != 0.0) {
                    return Err(bad(format!("{ct2}self_attention: the key bias is not zero ({v})")));
                }
            } else {
                out.insert(
                    format!("{hf}self_attn.{name}.bias"),
                    RawTensor {
                        shape: vec![d_model],
                        data: bias.to_vec(),
                    },
                );
            }
        }
        let pairs = [
            ("self_attention/linear_1/weight", "self_attn.out_proj.weight"),
            ("self_attention/linear_1/bias", "self_attn.out_proj.bias"),
            ("self_attention/layer_norm/gamma", "self_attn_layer_norm.weight"),
            ("self_attention/layer_norm/beta", "self_attn_layer_norm.bias"),
            ("ffn/linear_0/weight", "fc1.weight"),
            ("ffn/linear_0/bias", "fc1.bias"),
            ("ffn/linear_1/weight", "fc2.weight"),
            ("ffn/linear_1/bias", "fc2.bias"),
            ("ffn/layer_norm/gamma", "final_layer_norm.weight"),
            ("ffn/layer_norm/beta", "final_layer_norm.bias"),
        ];
        for (from, to) in pairs {
            out.insert(format!("{hf}{to}"), tensor(&format!("{ct2}{from}"))?);
        }
    }
    Ok((config, out))
}

/// Loads the encoder of a CTranslate2 `model.bin` directly.
pub fn load_ct2(path: &Path, device: &Device) -> Result<(WhisperEncoder, WhisperConfig), WhisperLoadError> {
    let (config, tensors) = read_ct2_encoder(path)?;
    let weights = Weights::from_tensors(path, tensors, device);
    let encoder = WhisperEncoder::build(&config, &weights.root());
    weights.finish()?;
    Ok((encoder, config))
}

/// Writes `out/config.json`, `out/preprocessor_config.json` and
/// `out/model.safetensors` (the encoder under `model.encoder.`, f32) from a
/// CTranslate2 `model.bin`.
pub fn convert_ct2(model_bin: &Path, out: &Path) -> Result<WhisperConfig, WhisperLoadError> {
    let (config, tensors) = read_ct2_encoder(model_bin)?;
    let write_error = |path: PathBuf| move |source| WhisperLoadError::Io { path, source };
    let mut named: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, t)| {
            (
                format!("model.encoder.{name}"),
                t.shape,
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let views: Vec<(String, safetensors::tensor::TensorView)> = named
        .iter()
        .map(|(name, shape, data)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .expect("shape and byte count agree: both come from the same tensor");
            (name.clone(), view)
        })
        .collect();
    let bytes = safetensors::serialize(views, None).map_err(|err| WhisperLoadError::Ct2 {
        path: model_bin.to_owned(),
        detail: err.to_string(),
    })?;
    let weights = out.join("model.safetensors");
    persist::write_atomic(&weights, &bytes).map_err(write_error(weights.clone()))?;
    let preprocessor = serde_json::json!({
        "feature_extractor_type": "WhisperFeatureExtractor",
        "feature_size": config.num_mel_bins,
        "sampling_rate": 16000,
        "hop_length": super::HOP_LENGTH,
        "n_fft": super::N_FFT,
        "chunk_length": 30,
    });
    let path = out.join("preprocessor_config.json");
    persist::write_atomic(&path, &serde_json::to_vec_pretty(&preprocessor).expect("JSON"))
        .map_err(write_error(path.clone()))?;
    let mut json = serde_json::to_value(&config).expect("a config serialises");
    json["model_type"] = "whisper".into();
    // Only the encoder is converted; decoder sizes mirror it so that
    // transformers' WhisperModel can still be built from this config.
    json["decoder_layers"] = config.encoder_layers.into();
    json["decoder_attention_heads"] = config.encoder_attention_heads.into();
    json["decoder_ffn_dim"] = config.encoder_ffn_dim.into();
    json["architectures"] = serde_json::json!(["WhisperModel"]);
    let path = out.join("config.json");
    persist::write_atomic(&path, &serde_json::to_vec_pretty(&json).expect("JSON"))
        .map_err(write_error(path.clone()))?;
    Ok(config)
}
