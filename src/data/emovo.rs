//! EMOVO (Costantini et al., 2014): `EMOVO/<actor>/<emotion>-<actor>-<sentence>.wav`.
//!
//! Six actors (f1–f3, m1–m3), seven emotions named in Italian, fourteen
//! sentences (b1–b3, d1–d2, l1–l4, n1–n5). The actor folder, where there is
//! one, must agree with the file name.

use std::path::Path;

use super::{Clip, Corpus, Emotion, file_stem, look_up, parent_name};

/// EMOVO emotion codes.
const EMOTIONS: [(&str, Emotion); 7] = [
    ("dis", Emotion::Disgust),  // disgusto
    ("gio", Emotion::Happy),    // gioia
    ("neu", Emotion::Neutral),  // neutro
    ("pau", Emotion::Fear),     // paura
    ("rab", Emotion::Angry),    // rabbia
    ("sor", Emotion::Surprise), // sorpresa
    ("tri", Emotion::Sad),      // tristezza
];

const ACTORS: [&str; 6] = ["f1", "f2", "f3", "m1", "m2", "m3"];

/// Parses an EMOVO file name.
pub fn parse(path: &Path) -> Result<Clip, String> {
    let stem = file_stem(path)?;
    let [code, actor, sentence] = stem.split('-').collect::<Vec<_>>()[..] else {
        return Err("not an EMOVO name (want <emotion>-<actor>-<sentence>)".into());
    };
    let emotion = look_up(&EMOTIONS, &code).ok_or_else(|| format!("unknown EMOVO emotion '{code}'"))?;
    if !ACTORS.contains(&actor) {
        return Err(format!("unknown EMOVO actor '{actor}'"));
    }
    let known_sentence = sentence.len() == 2
        && matches!(&sentence[..1], "b" | "d" | "l" | "n")
        && sentence.as_bytes()[1].is_ascii_digit();
    if !known_sentence {
        return Err(format!("unknown EMOVO sentence '{sentence}'"));
    }
    if let Some(folder) = parent_name(path).filter(|folder| ACTORS.contains(folder))
        && folder != actor
    {
        return Err(format!("file says actor '{actor}' but its folder is '{folder}'"));
    }
    Ok(Clip::new(
        path,
        Corpus::Emovo,
        Some(format!("emovo:{actor}")),
        emotion.as_str(),
        code,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_actor_and_emotion() {
        let clip = parse(Path::new("EMOVO/f2/gio-f2-b2.flac")).unwrap();
        assert_eq!((clip.label.as_str(), clip.native_label.as_str()), ("happy", "gio"));
        assert_eq!(clip.speaker.as_deref(), Some("emovo:f2"));
        assert_eq!(parse(Path::new("pau-m3-n5.wav")).unwrap().label, "fear");
    }

    #[test]
    fn refuses_other_names() {
        assert!(
            parse(Path::new("EMOVO/f1/gio-f2-b2.wav"))
                .unwrap_err()
                .contains("folder")
        );
        assert!(parse(Path::new("xyz-f2-b2.wav")).unwrap_err().contains("emotion"));
        assert!(parse(Path::new("gio-x9-b2.wav")).unwrap_err().contains("actor"));
        assert!(parse(Path::new("gio-f2-q2.wav")).unwrap_err().contains("sentence"));
        assert!(parse(Path::new("gio-f2.wav")).is_err());
    }
}
