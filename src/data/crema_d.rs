//! CREMA-D (Cao et al., 2014): `AudioWAV/1001_DFA_ANG_XX.wav`.
//!
//! Fields: actor (1001–1091), sentence code, emotion code, intensity
//! (LO, MD, HI, XX = unspecified).

use std::path::Path;

use super::{Clip, Corpus, Emotion, file_stem, look_up};

/// CREMA-D emotion codes.
const EMOTIONS: [(&str, Emotion); 6] = [
    ("ANG", Emotion::Angry),
    ("DIS", Emotion::Disgust),
    ("FEA", Emotion::Fear),
    ("HAP", Emotion::Happy),
    ("NEU", Emotion::Neutral),
    ("SAD", Emotion::Sad),
];

const INTENSITIES: [&str; 4] = ["LO", "MD", "HI", "XX"];

/// Parses a CREMA-D file name.
pub fn parse(path: &Path) -> Result<Clip, String> {
    let stem = file_stem(path)?;
    let fields: Vec<&str> = stem.split('_').collect();
    let [actor, sentence, code, intensity] = fields[..] else {
        return Err("not a CREMA-D name (want <actor>_<sentence>_<emotion>_<intensity>)".into());
    };
    let actor_number: u32 = actor
        .parse()
        .map_err(|_| format!("not a CREMA-D name: actor '{actor}' is not a number"))?;
    if !(1001..=1091).contains(&actor_number) {
        return Err(format!("CREMA-D actor {actor} is outside 1001..1091"));
    }
    if sentence.len() != 3 || !sentence.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!("not a CREMA-D name: sentence code '{sentence}'"));
    }
    if !INTENSITIES.contains(&intensity) {
        return Err(format!("unknown CREMA-D intensity '{intensity}'"));
    }
    let emotion = look_up(&EMOTIONS, &code).ok_or_else(|| format!("unknown CREMA-D emotion code '{code}'"))?;
    Ok(Clip::new(
        path,
        Corpus::CremaD,
        Some(format!("crema-d:{actor}")),
        emotion.as_str(),
        code,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_official_names() {
        let clip = parse(Path::new("AudioWAV/1091_WSI_FEA_HI.wav")).unwrap();
        assert_eq!(clip.label, "fear");
        assert_eq!(clip.speaker.as_deref(), Some("crema-d:1091"));
    }

    #[test]
    fn refuses_other_names() {
        assert!(parse(Path::new("1000_DFA_ANG_XX.wav")).unwrap_err().contains("outside"));
        assert!(parse(Path::new("1001_DFA_SUR_XX.wav")).unwrap_err().contains("emotion"));
        assert!(
            parse(Path::new("1001_DFA_ANG_ZZ.wav"))
                .unwrap_err()
                .contains("intensity")
        );
        assert!(parse(Path::new("1001_DFA_ANG.wav")).is_err());
    }
}
