//! Named tensors from a checkpoint file (safetensors or PyTorch `.bin`), handed
//! to model builders by name, the way candle's `VarBuilder` does: a builder asks
//! for `scope.at("layers").at(i).linear("q_proj", …)` and the Rust struct tree
//! mirrors the PyTorch module tree.
//!
//! Building never stops at the first problem: a missing or mis-shaped tensor
//! is recorded (and zeros stand in), so that [`Weights::finish`] can report
//! every missing, mis-shaped and unexpected tensor in one error.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig1d};
use burn::tensor::{Device, Tensor, TensorData};

/// A tensor as stored: shape and row-major f32 values (f16/bf16/f64 widened or narrowed).
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Why a checkpoint could not be read or did not fit the model.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{}: cannot read: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a safetensors or PyTorch checkpoint: {detail}", path.display())]
    Format { path: PathBuf, detail: String },
    #[error("{}: tensor {name} has unsupported element type {dtype}", path.display())]
    DType { path: PathBuf, name: String, dtype: String },
    #[error("{}: the checkpoint does not fit the model ({})", path.display(), describe(missing, mis_shaped, unexpected))]
    Mismatch {
        path: PathBuf,
        missing: Vec<String>,
        mis_shaped: Vec<String>,
        unexpected: Vec<String>,
    },
}

fn describe(missing: &[String], mis_shaped: &[String], unexpected: &[String]) -> String {
    let list = |what: &str, names: &[String]| {
        (!names.is_empty()).then(|| {
            let shown: Vec<&str> = names.iter().take(8).map(String::as_str).collect();
            let more = names.len().saturating_sub(shown.len());
            let tail = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            format!("{what} {}: {}{tail}", names.len(), shown.join(", "))
        })
    };
    [
        list("missing", missing),
        list("wrong shape", mis_shaped),
        list("unexpected", unexpected),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join("; ")
}

/// Every tensor of one checkpoint, by (remapped) name.
pub struct Weights {
    path: PathBuf,
    /// No checkpoint: builders keep burn's random initialisation.
    random: bool,
    tensors: BTreeMap<String, RawTensor>,
    device: Device,
    used: RefCell<BTreeSet<String>>,
    missing: RefCell<Vec<String>>,
    mis_shaped: RefCell<Vec<String>>,
}

impl Weights {
    /// Reads `path`: safetensors, or a PyTorch zip/legacy pickle (`pytorch_model.bin`),
    /// recognised by content. `rename` maps each stored name to the model's
    /// name, or to `None` for tensors the model does not use (task heads).
    pub fn open(path: &Path, device: &Device, rename: impl Fn(&str) -> Option<String>) -> Result<Self, WeightsError> {
        let raw = read_checkpoint(path)?;
        let tensors = raw
            .into_iter()
            .filter_map(|(name, tensor)| rename(&name).map(|name| (name, tensor)))
            .collect();
        Ok(Self::from_tensors(path, tensors, device))
    }

    /// Weights from tensors already in memory (converted formats, tests).
    pub fn from_tensors(path: &Path, tensors: BTreeMap<String, RawTensor>, device: &Device) -> Self {
        Self {
            path: path.to_owned(),
            random: false,
            tensors,
            device: device.clone(),
            used: RefCell::default(),
            missing: RefCell::default(),
            mis_shaped: RefCell::default(),
        }
    }

    /// No checkpoint at all: every builder returns a randomly initialised
    /// module (training from scratch through the same construction code).
    pub fn random(device: &Device) -> Self {
        Self {
            random: true,
            ..Self::from_tensors(Path::new("(random initialisation)"), BTreeMap::new(), device)
        }
    }

    /// The whole checkpoint as a scope with no prefix.
    pub fn root(&self) -> Scope<'_> {
        Scope {
            weights: self,
            prefix: String::new(),
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The stored tensor `name` with its expected `shape`, marked as used; a
    /// missing or mis-shaped tensor is recorded and read as `None`.
    pub fn raw(&self, name: &str, shape: &[usize]) -> Option<&RawTensor> {
        let Some(tensor) = self.tensors.get(name) else {
            self.missing.borrow_mut().push(name.to_owned());
            return None;
        };
        self.used.borrow_mut().insert(name.to_owned());
        if tensor.shape != shape {
            self.mis_shaped
                .borrow_mut()
                .push(format!("{name} (is {:?}, model needs {shape:?})", tensor.shape));
            return None;
        }
        Some(tensor)
    }

    /// Whether the checkpoint has `name` (for optional tensors such as biases).
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Succeeds when every tensor the model asked for was there with its shape,
    /// and every stored tensor was used.
    pub fn finish(self) -> Result<(), WeightsError> {
        let used = self.used.into_inner();
        let unexpected: Vec<String> = self
            .tensors
            .keys()
            .filter(|name| !used.contains(*name))
            .cloned()
            .collect();
        let (missing, mis_shaped) = (self.missing.into_inner(), self.mis_shaped.into_inner());
        if missing.is_empty() && mis_shaped.is_empty() && unexpected.is_empty() {
            Ok(())
        } else {
            Err(WeightsError::Mismatch {
                path: self.path,
                missing,
                mis_shaped,
                unexpected,
            })
        }
    }
}

/// A dotted path into [`Weights`], like a PyTorch submodule.
#[derive(Clone)]
pub struct Scope<'a> {
    weights: &'a Weights,
    prefix: String,
}

impl<'a> Scope<'a> {
    /// The submodule `name` (a field name or a list index).
    pub fn at(&self, name: impl std::fmt::Display) -> Scope<'a> {
        let prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        Scope {
            weights: self.weights,
            prefix,
        }
    }

    pub fn name(&self, tensor: &str) -> String {
        self.at(tensor).prefix
    }

    pub fn device(&self) -> &Device {
        &self.weights.device
    }

    pub fn contains(&self, tensor: &str) -> bool {
        self.weights.contains(&self.name(tensor))
    }

    /// The tensor `name` of this scope with `shape`; zeros when it is missing
    /// or mis-shaped (recorded for [`Weights::finish`]).
    pub fn tensor<const D: usize>(&self, name: &str, shape: [usize; D]) -> Tensor<D> {
        let values = match self.weights.raw(&self.name(name), &shape) {
            Some(raw) => raw.data.clone(),
            None => vec![0.0; shape.iter().product()],
        };
        Tensor::from_data(TensorData::new(values, shape), self.device())
    }

    /// `nn.Linear(d_in, d_out)`: PyTorch stores `[d_out, d_in]`, burn `[d_in, d_out]`.
    /// The transpose is done here, on the values: a transposed tensor view
    /// would be copied to contiguous memory by every matmul that reads it.
    pub fn linear(&self, name: &str, d_in: usize, d_out: usize, bias: bool) -> Linear {
        let scope = self.at(name);
        let mut linear = LinearConfig::new(d_in, d_out).with_bias(bias).init(self.device());
        if self.weights.random {
            return linear;
        }
        let stored = match self.weights.raw(&scope.name("weight"), &[d_out, d_in]) {
            Some(raw) => raw.data.as_slice(),
            None => &[],
        };
        let mut values = vec![0.0f32; d_in * d_out];
        if !stored.is_empty() {
            for (o, row) in stored.chunks_exact(d_in).enumerate() {
                for (i, &w) in row.iter().enumerate() {
                    values[i * d_out + o] = w;
                }
            }
        }
        linear.weight = Param::from_tensor(Tensor::from_data(TensorData::new(values, [d_in, d_out]), self.device()));
        if bias {
            linear.bias = Some(Param::from_tensor(scope.tensor("bias", [d_out])));
        }
        linear
    }

    /// `nn.Conv1d`; the bias is loaded when the config says there is one.
    pub fn conv1d(&self, name: &str, config: Conv1dConfig) -> Conv1d {
        let scope = self.at(name);
        let shape = [
            config.channels_out,
            config.channels_in / config.groups,
            config.kernel_size,
        ];
        let mut conv = config.init(self.device());
        if self.weights.random {
            return conv;
        }
        conv.weight = Param::from_tensor(scope.tensor("weight", shape));
        if conv.bias.is_some() {
            conv.bias = Some(Param::from_tensor(scope.tensor("bias", [shape[0]])));
        }
        conv
    }

    /// `nn.LayerNorm(d, eps)` with PyTorch's `weight`/`bias` names.
    pub fn layer_norm(&self, name: &str, d: usize, epsilon: f64) -> LayerNorm {
        let scope = self.at(name);
        let mut norm = LayerNormConfig::new(d).with_epsilon(epsilon).init(self.device());
        if self.weights.random {
            return norm;
        }
        norm.gamma = Param::from_tensor(scope.tensor("weight", [d]));
        norm.beta = Some(Param::from_tensor(scope.tensor("bias", [d])));
        norm
    }

    /// `nn.GroupNorm(groups, channels, affine=True)`.
    pub fn group_norm(&self, name: &str, groups: usize, channels: usize, epsilon: f64) -> GroupNorm {
        let scope = self.at(name);
        let mut norm = GroupNormConfig::new(groups, channels)
            .with_epsilon(epsilon)
            .init(self.device());
        if self.weights.random {
            return norm;
        }
        norm.gamma = Some(Param::from_tensor(scope.tensor("weight", [channels])));
        norm.beta = Some(Param::from_tensor(scope.tensor("bias", [channels])));
        norm
    }
}

/// `Conv1dConfig` with PyTorch's `padding=p` (both sides).
pub fn conv1d_config(
    channels_in: usize,
    channels_out: usize,
    kernel_size: usize,
    stride: usize,
    padding: usize,
    groups: usize,
    bias: bool,
) -> Conv1dConfig {
    Conv1dConfig::new(channels_in, channels_out, kernel_size)
        .with_stride(stride)
        .with_padding(PaddingConfig1d::Explicit(padding, padding))
        .with_groups(groups)
        .with_bias(bias)
}

/// Every tensor of a safetensors or PyTorch file, as f32.
pub fn read_checkpoint(path: &Path) -> Result<BTreeMap<String, RawTensor>, WeightsError> {
    let io = |source| WeightsError::Io {
        path: path.to_owned(),
        source,
    };
    let format = |detail: String| WeightsError::Format {
        path: path.to_owned(),
        detail,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let mut head = Vec::with_capacity(9);
    std::io::Read::read_to_end(&mut std::io::Read::take(&mut file, 9), &mut head).map_err(io)?;
    // PyTorch ≥ 1.6 writes a zip ("PK"); older versions a raw pickle (0x80
    // protocol byte). A safetensors file starts with its header's length,
    // whose low byte is 0x80 in one file of 256: its header, not its first
    // byte, says what it is.
    if !is_safetensors(&head, size) && (head.starts_with(b"PK") || head.first() == Some(&0x80)) {
        return read_pytorch(path);
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let file = safetensors::SafeTensors::deserialize(&bytes).map_err(|err| format(err.to_string()))?;
    let mut out = BTreeMap::new();
    for (name, view) in file.tensors() {
        use safetensors::Dtype;
        let data = match view.dtype() {
            Dtype::F32 => f32_values(view.data(), 4, |b| f32::from_le_bytes(b.try_into().expect("4 bytes"))),
            Dtype::F16 => f32_values(view.data(), 2, |b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
            Dtype::BF16 => f32_values(view.data(), 2, |b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            Dtype::F64 => f32_values(view.data(), 8, |b| {
                f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32
            }),
            other => {
                return Err(WeightsError::DType {
                    path: path.to_owned(),
                    name,
                    dtype: format!("{other:?}"),
                });
            }
        };
        out.insert(
            name,
            RawTensor {
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok(out)
}

/// Whether a file of `size` bytes opening with `head` opens as safetensors
/// do: a little-endian u64 header length that fits the file, then a JSON object.
fn is_safetensors(head: &[u8], size: u64) -> bool {
    let Some((length, rest)) = head.split_first_chunk::<8>() else {
        return false;
    };
    let length = u64::from_le_bytes(*length);
    length >= 2 && length <= size - 8 && rest.first() == Some(&b'{')
}

fn read_pytorch(path: &Path) -> Result<BTreeMap<String, RawTensor>, WeightsError> {
    use pytorch_reader::DType;
    let reader = pytorch_reader::PytorchReader::new(path).map_err(|err| WeightsError::Format {
        path: path.to_owned(),
        detail: err.to_string(),
    })?;
    let mut out = BTreeMap::new();
    for (name, tensor) in reader.into_tensors() {
        let bytes = tensor.read().map_err(|source| WeightsError::Io {
            path: path.to_owned(),
            source,
        })?;
        // The reader returns native-endian bytes.
        let data = match tensor.dtype() {
            DType::F32 => f32_values(&bytes, 4, |b| f32::from_ne_bytes(b.try_into().expect("4 bytes"))),
            DType::F16 => f32_values(&bytes, 2, |b| half::f16::from_ne_bytes([b[0], b[1]]).to_f32()),
            DType::BF16 => f32_values(&bytes, 2, |b| half::bf16::from_ne_bytes([b[0], b[1]]).to_f32()),
            DType::F64 => f32_values(&bytes, 8, |b| f64::from_ne_bytes(b.try_into().expect("8 bytes")) as f32),
            // Integer buffers (e.g. BatchNorm's num_batches_tracked) are not weights.
            _ => continue,
        };
        out.insert(
            name,
            RawTensor {
                shape: tensor.shape().to_vec(),
                data,
            },
        );
    }
    Ok(out)
}

fn f32_values(bytes: &[u8], width: usize, convert: impl Fn(&[u8]) -> f32) -> Vec<f32> {
    bytes.chunks_exact(width).map(convert).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 18: a header length whose low byte is 0x80 (a pickle's first
    /// byte) sent safetensors files to the PyTorch reader, which refused them.
    #[test]
    fn a_safetensors_header_length_ending_in_0x80_is_still_safetensors() {
        let values: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2], &values).unwrap();
        // Metadata padding moves the header length until its low byte is 0x80.
        let bytes = (0..256)
            .find_map(|pad| {
                let metadata = std::collections::HashMap::from([("pad".to_owned(), "x".repeat(pad))]);
                let bytes = safetensors::serialize([("w", view.clone())], Some(metadata)).unwrap();
                (bytes[0] == 0x80).then_some(bytes)
            })
            .expect("some padding gives a header length ending in 0x80");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, bytes).unwrap();
        let tensors = read_checkpoint(&path).unwrap();
        assert_eq!(tensors["w"].data, vec![1.5, -2.0]);
        assert_eq!(tensors["w"].shape, vec![2]);
    }
}
