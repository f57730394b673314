//! On-disk cache of frame features, keyed by (audio file content, feature
//! configuration), so training never recomputes them.
//!
//! An entry is written to a temporary file in the same folder and renamed
//! into place: a reader sees either no entry or a complete one, whatever
//! happens to the writer (killed, disk full) and however many write at once.
//! Entries also carry a checksum, so a damaged file is treated as missing
//! and recomputed, never read back.

use std::fs;
use std::path::{Path, PathBuf};

use super::{FeatureConfig, FrameFeatures};
use crate::persist;

/// Bumped whenever decoding, resampling or feature code changes its output,
/// so old entries stop matching.
const PIPELINE_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"EMOFEAT1";
/// magic, n_features, n_frames, checksum.
const HEADER_LEN: usize = 8 + 4 + 4 + 32;

/// A folder of cached [`FrameFeatures`].
#[derive(Debug, Clone)]
pub struct FeatureCache {
    dir: PathBuf,
    config_hash: blake3::Hash,
}

/// Why the cache could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{}: cannot use as feature cache: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

impl FeatureCache {
    /// Opens (creating) the cache in `dir` for features made with `config`.
    pub fn open(dir: impl Into<PathBuf>, config: &FeatureConfig) -> Result<Self, CacheError> {
        Self::open_keyed(dir, &serde_json::to_string(config).expect("a config serialises"))
    }

    /// Opens (creating) a cache in `dir` for arrays made by `producer` (any
    /// text that changes whenever the arrays would: a backbone's identity).
    /// Entries are f32 matrices stored as [`FrameFeatures`].
    pub fn open_keyed(dir: impl Into<PathBuf>, producer: &str) -> Result<Self, CacheError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| CacheError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut hasher = blake3::Hasher::new();
        hasher.update(&PIPELINE_VERSION.to_le_bytes());
        hasher.update(producer.as_bytes());
        Ok(Self {
            dir,
            config_hash: hasher.finalize(),
        })
    }

    /// The content hash of an audio file, streamed (the file is not held in memory).
    pub fn content_hash(path: &Path) -> std::io::Result<blake3::Hash> {
        let mut hasher = blake3::Hasher::new();
        hasher.update_reader(fs::File::open(path)?)?;
        Ok(hasher.finalize())
    }

    /// Where the entry for audio whose file has hash `content` lives.
    pub fn entry_path(&self, content: &blake3::Hash) -> PathBuf {
        let mut hasher = blake3::Hasher::new();
        hasher.update(self.config_hash.as_bytes());
        hasher.update(content.as_bytes());
        let key = hasher.finalize().to_hex();
        self.dir.join(&key[..2]).join(format!("{key}.feat"))
    }

    /// The cached features for the file with hash `content`, if a complete,
    /// intact entry exists.
    pub fn get(&self, content: &blake3::Hash) -> Option<FrameFeatures> {
        let bytes = fs::read(self.entry_path(content)).ok()?;
        decode(&bytes)
    }

    /// Stores `features` for the file with hash `content`, atomically.
    pub fn put(&self, content: &blake3::Hash, features: &FrameFeatures) -> Result<(), CacheError> {
        let path = self.entry_path(content);
        persist::write_atomic_unsynced(&path, &encode(features)).map_err(|source| CacheError::Io { path, source })
    }
}

fn encode(features: &FrameFeatures) -> Vec<u8> {
    let payload: Vec<u8> = features.data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(features.n_features as u32).to_le_bytes());
    out.extend_from_slice(&(features.n_frames as u32).to_le_bytes());
    out.extend_from_slice(blake3::hash(&payload).as_bytes());
    out.extend_from_slice(&payload);
    out
}

fn decode(bytes: &[u8]) -> Option<FrameFeatures> {
    let (header, payload) = bytes.split_at_checked(HEADER_LEN)?;
    if &header[..8] != MAGIC {
        return None;
    }
    let n_features = u32::from_le_bytes(header[8..12].try_into().ok()?) as usize;
    let n_frames = u32::from_le_bytes(header[12..16].try_into().ok()?) as usize;
    if payload.len() != n_features.checked_mul(n_frames)?.checked_mul(4)?
        || blake3::hash(payload).as_bytes() != &header[16..48]
    {
        return None;
    }
    let data = payload
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("chunks of 4")))
        .collect();
    Some(FrameFeatures {
        n_features,
        n_frames,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features() -> FrameFeatures {
        FrameFeatures {
            n_features: 2,
            n_frames: 3,
            data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        }
    }

    #[test]
    fn round_trip_and_key_depends_on_config() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FeatureCache::open(dir.path(), &FeatureConfig::default()).unwrap();
        let (audio, other_audio) = (blake3::hash(b"audio"), blake3::hash(b"other audio"));
        assert_eq!(cache.get(&audio), None);
        cache.put(&audio, &features()).unwrap();
        assert_eq!(cache.get(&audio), Some(features()));
        assert_eq!(cache.get(&other_audio), None);
        let other = FeatureCache::open(
            dir.path(),
            &FeatureConfig {
                n_mfcc: 20,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(other.get(&audio), None, "another configuration must not see this entry");
    }

    #[test]
    fn damaged_entries_read_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FeatureCache::open(dir.path(), &FeatureConfig::default()).unwrap();
        let audio = blake3::hash(b"audio");
        cache.put(&audio, &features()).unwrap();
        let path = cache.entry_path(&audio);
        let good = fs::read(&path).unwrap();
        for cut in [0, 10, HEADER_LEN, good.len() - 1] {
            fs::write(&path, &good[..cut]).unwrap();
            assert_eq!(cache.get(&audio), None, "truncated to {cut} bytes");
        }
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        fs::write(&path, &flipped).unwrap();
        assert_eq!(cache.get(&audio), None, "a flipped bit is caught by the checksum");
    }
}
