#!/usr/bin/env python3
"""Golden wav2vec 2.0 / HuBERT outputs for emofuse's parity tests (tests/golden/wav2vec2/).

Builds tiny random-initialised checkpoints with `transformers` (hidden 32, 2 layers),
saved exactly as users' checkpoints are laid out, and writes their outputs on two real
clips from ../shared/data and on a padded batch of both:

  w2v2_base_like     Wav2Vec2ForSequenceClassification (keys under `wav2vec2.`, plus the
                     classifier head), group-norm feature encoder, post-LN transformer,
                     model.safetensors, new weight-norm names (parametrizations.weight.original0/1),
                     preprocessor do_normalize=True
  w2v2_large_like    Wav2Vec2Model, layer-norm feature encoder with conv bias, pre-LN
                     ("stable layer norm") transformer, pytorch_model.bin (torch.save of the
                     state dict), old weight-norm names (weight_g/weight_v), do_normalize=True
  hubert             HubertModel, group norm, no feature-projection layer norm,
                     model.safetensors with old weight-norm names, do_normalize=False

Outputs per model and input (little-endian float32, shapes in index.json):
`last_hidden_state` and every entry of `hidden_states` (transformers 5:
the input of layer 0, then each layer's output). The padded batch is written for the
layer-norm variant only, run with an attention mask (return_attention_mask=True) as
transformers does for such checkpoints; group-norm models take no attention mask in
transformers, so padding changes their outputs there, and emofuse's batches are
checked against the single-clip outputs instead.

With --full-size DIR it also saves a random-initialised full wav2vec2-base (95M params,
not committed) and its outputs on one clip, for `scripts/check_wav2vec2_full.py`.

Dependencies: scripts/requirements-torch.txt
Run from the repository root: python3 scripts/golden_wav2vec2.py [--full-size DIR]
"""
import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import (
    HubertConfig,
    HubertModel,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2ForSequenceClassification,
    Wav2Vec2Model,
)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "tests" / "golden" / "wav2vec2"
CLIPS = {
    "ravdess": "ravdess/Audio_Speech_Actors_01-24/Actor_01/03-01-05-02-01-01-01.flac",
    "tess": "tess/TESS/YAF_fear/YAF_back_fear.flac",
}
TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    conv_dim=(32, 32, 32, 32, 32, 32, 32),
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
    layer_norm_eps=1e-5,
)


def old_weight_norm_names(state):
    """The names torch.nn.utils.weight_norm (pre-parametrization) gives, as older checkpoints have."""
    renamed = {}
    for key, value in state.items():
        key = key.replace("parametrizations.weight.original0", "weight_g")
        key = key.replace("parametrizations.weight.original1", "weight_v")
        renamed[key] = value.contiguous()
    return renamed


def build(name, seed):
    torch.manual_seed(seed)
    if name == "w2v2_base_like":
        config = Wav2Vec2Config(**TINY, feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False,
                                num_labels=4)
        model = Wav2Vec2ForSequenceClassification(config).eval()
        base = model.wav2vec2
        do_normalize, attention_mask = True, False
    elif name == "w2v2_large_like":
        config = Wav2Vec2Config(**TINY, feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
        model = base = Wav2Vec2Model(config).eval()
        do_normalize, attention_mask = True, True
    else:
        config = HubertConfig(**TINY, feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False,
                              feat_proj_layer_norm=False)
        model = base = HubertModel(config).eval()
        do_normalize, attention_mask = False, False
    # Random init leaves some parameters at 0/1 (norm affine, biases); perturb every
    # parameter so that a mix-up of any two tensors shows in the outputs.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                         do_normalize=do_normalize, return_attention_mask=attention_mask)
    return model, base, extractor


def save(name, model, extractor, directory):
    if directory.exists():
        shutil.rmtree(directory)
    model.save_pretrained(directory)
    extractor.save_pretrained(directory)
    if name == "w2v2_large_like":
        state = old_weight_norm_names(load_file(directory / "model.safetensors"))
        (directory / "model.safetensors").unlink()
        torch.save(state, directory / "pytorch_model.bin")
    elif name == "hubert":
        state = old_weight_norm_names(load_file(directory / "model.safetensors"))
        save_file(state, directory / "model.safetensors", metadata={"format": "pt"})


def write(array, path):
    array = np.ascontiguousarray(array, dtype="<f4")
    path.write_bytes(array.tobytes())
    return {"file": path.name, "shape": list(array.shape)}


def run(base, extractor, audio, directory, prefix):
    inputs = extractor(audio, sampling_rate=16000, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = base(inputs.input_values, attention_mask=inputs.get("attention_mask"), output_hidden_states=True)
    entry = {"batch": inputs.input_values.shape[0], "padded_samples": inputs.input_values.shape[1],
             "attention_mask": "attention_mask" in inputs}
    entry["last_hidden_state"] = write(out.last_hidden_state.numpy(), directory / f"{prefix}.last.f32")
    entry["hidden_states"] = [
        write(h.numpy(), directory / f"{prefix}.hidden{i}.f32") for i, h in enumerate(out.hidden_states)
    ]
    return entry


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-size", type=Path, help="also save a random full-size wav2vec2-base here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    clips = {key: sf.read(DATA / path, dtype="float32")[0] for key, path in CLIPS.items()}
    index = {
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "numpy": np.__version__},
        "clips": CLIPS,
        "models": {},
    }
    for seed, name in enumerate(["w2v2_base_like", "w2v2_large_like", "hubert"]):
        model, base, extractor = build(name, seed)
        directory = OUT / name
        save(name, model, extractor, directory)
        outputs = {key: run(base, extractor, [audio], directory, key) for key, audio in clips.items()}
        if extractor.return_attention_mask:
            outputs["batch"] = run(base, extractor, list(clips.values()), directory, "batch")
        index["models"][name] = {"dir": name, "class": type(model).__name__, "outputs": outputs}
    if args.full_size:
        torch.manual_seed(100)
        model = Wav2Vec2Model(Wav2Vec2Config()).eval()
        extractor = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False)
        save("full", model, extractor, args.full_size)
        full = {"ravdess": run(model, extractor, [clips["ravdess"]], args.full_size, "ravdess")}
        (args.full_size / "golden.json").write_text(json.dumps(full, indent=1))
    (OUT / "index.json").write_text(json.dumps(index, indent=1) + "\n")


if __name__ == "__main__":
    main()
