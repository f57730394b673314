//! Where models run: `cpu` (burn's flex backend: the default, and what is
//! tested and shipped) or `gpu[:N]` (the N-th discrete GPU through Vulkan,
//! in a build with the `gpu` cargo feature). The command line parses
//! `--device` once into a [`DeviceChoice`] and hands the [`Device`] it opens
//! down to every library call; [`DeviceChoice::open`] is the one place that
//! names a concrete device.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

/// A device as the user names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    #[default]
    Cpu,
    /// The discrete GPU with this index (0 = the first).
    Gpu(usize),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceError {
    #[error("{0:?} is not a device: want cpu, gpu or gpu:N")]
    Parse(String),
    #[error("this emofuse was built without GPU support (build it with the `gpu` cargo feature)")]
    NoGpuSupport,
    #[error("no GPU {index}: {detail}")]
    NoGpu { index: usize, detail: String },
}

impl FromStr for DeviceChoice {
    type Err = DeviceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || DeviceError::Parse(text.to_owned());
        match text.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceChoice::Cpu),
            "gpu" => Ok(DeviceChoice::Gpu(0)),
            other => {
                let index = other.strip_prefix("gpu:").ok_or_else(bad)?;
                index.parse().map(DeviceChoice::Gpu).map_err(|_| bad())
            }
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Cpu => write!(f, "cpu"),
            DeviceChoice::Gpu(index) => write!(f, "gpu:{index}"),
        }
    }
}

impl DeviceChoice {
    /// The device, checked to exist (a GPU is opened, which takes a moment).
    pub fn open(self) -> Result<Device, DeviceError> {
        match self {
            DeviceChoice::Cpu => Ok(Device::flex()),
            DeviceChoice::Gpu(index) => gpu(index),
        }
    }
}

#[cfg(feature = "gpu")]
fn gpu(index: usize) -> Result<Device, DeviceError> {
    let device = Device::vulkan(burn::tensor::DeviceKind::DiscreteGpu(index));
    // The device is opened lazily, and opening one that is not there panics
    // inside the runtime: opening it here, quietly, turns that into an error.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let identity = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| device.identity()));
    std::panic::set_hook(hook);
    let no_gpu = |detail: String| DeviceError::NoGpu { index, detail };
    match identity {
        Ok(Some(identity)) if identity.physical.is_some() => Ok(device),
        Ok(Some(identity)) => Err(no_gpu(format!("{} is a software rasteriser, not a GPU", identity.name))),
        // The runtime logs its reason (a warning); its panic says only that a channel closed.
        Ok(None) | Err(_) => Err(no_gpu(
            "the Vulkan runtime finds no such adapter (is the GPU's Vulkan driver installed?)".into(),
        )),
    }
}

#[cfg(not(feature = "gpu"))]
fn gpu(_index: usize) -> Result<Device, DeviceError> {
    Err(DeviceError::NoGpuSupport)
}

/// The name the device gives itself (`NVIDIA H200`), or `cpu`.
#[cfg(feature = "gpu")]
pub fn describe(device: &Device) -> String {
    device.identity().map_or_else(|| "cpu".into(), |identity| identity.name)
}

/// The name the device gives itself: `cpu` in a build without GPU support.
#[cfg(not(feature = "gpu"))]
pub fn describe(_device: &Device) -> String {
    "cpu".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse() {
        assert_eq!("cpu".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("GPU".parse(), Ok(DeviceChoice::Gpu(0)));
        assert_eq!("gpu:2".parse(), Ok(DeviceChoice::Gpu(2)));
        for bad in ["", "cuda", "gpu:", "gpu:-1", "gpu:x"] {
            assert!(bad.parse::<DeviceChoice>().is_err(), "{bad:?}");
        }
        assert_eq!(DeviceChoice::Gpu(1).to_string(), "gpu:1");
    }
}
