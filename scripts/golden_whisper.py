#!/usr/bin/env python3
"""Golden Whisper encoder outputs for emofuse's parity tests (tests/golden/whisper/).

Builds a tiny random-initialised Whisper encoder with `transformers` (d_model 32, 2 layers,
80 mel bins, 1500 positions) and saves it twice, as users' files are laid out:

  hf/     config.json + preprocessor_config.json + model.safetensors with the encoder under
          `model.encoder.` (as WhisperForConditionalGeneration stores it)
  ct2/    model.bin in CTranslate2's format (binary version 6, "WhisperSpec", float16
          weights, fused QKV projections, decoder scalars and the alias table), written
          here with the layout of the real faster-whisper-base file

For two real clips from ../shared/data it writes, as little-endian float32:
  - the log-mel input of `WhisperFeatureExtractor` (30 s mode: padded to 3000 frames; only
    the clip's frames and 10 more are stored),
  - the encoder's `hidden_states` (transformers 5: the input of layer 0, each layer's
    output, the last one after the final layer norm) and `last_hidden_state` in 30 s mode (only the clip's frames + 5 stored),
  - the same in trimmed mode: log-mel of the clip alone (no 30 s padding) through the
    encoder's own modules with the position table sliced to the clip's frames,
  - 30 s mode outputs of the CTranslate2 copy (its float16-rounded weights).

With --real DIR (a folder made by scripts/get-whisper-base.sh / `emofuse backbone convert`)
it instead writes DIR/golden.json with transformers' outputs of the real converted weights on
the RAVDESS clip, for the ignored test `whisper_base_matches_transformers`.

Dependencies: scripts/requirements-torch.txt
Run from the repository root: python3 scripts/golden_whisper.py [--real DIR]
"""
import argparse
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "tests" / "golden" / "whisper"
CLIPS = {
    "ravdess": "ravdess/Audio_Speech_Actors_01-24/Actor_01/03-01-05-02-01-01-01.flac",
    "tess": "tess/TESS/YAF_fear/YAF_back_fear.flac",
}


def write(array, path):
    array = np.ascontiguousarray(np.asarray(array, dtype="<f4"))
    path.write_bytes(array.tobytes())
    return {"file": path.name, "shape": list(array.shape)}


def ct2_string(out, text):
    data = text.encode("utf-8")
    out.write(struct.pack("<H", len(data) + 1))
    out.write(data + b"\0")


def write_ct2(encoder, config, path):
    """CTranslate2 v6 model.bin with the encoder's variables (float16) and decoder scalars."""
    d = config.d_model
    state = {k: v.detach().float() for k, v in encoder.state_dict().items()}
    variables = []

    def tensor(name, value):
        variables.append((name, value.half().numpy(), 4))

    tensor("encoder/conv1/weight", state["conv1.weight"])
    tensor("encoder/conv1/bias", state["conv1.bias"])
    tensor("encoder/conv2/weight", state["conv2.weight"])
    tensor("encoder/conv2/bias", state["conv2.bias"])
    tensor("encoder/position_encodings/encodings", state["embed_positions.weight"])
    for i in range(config.encoder_layers):
        p = f"layers.{i}."
        q = f"encoder/layer_{i}/"
        qkv = torch.cat([state[p + "self_attn.q_proj.weight"], state[p + "self_attn.k_proj.weight"],
                         state[p + "self_attn.v_proj.weight"]])
        qkv_bias = torch.cat([state[p + "self_attn.q_proj.bias"], torch.zeros(d), state[p + "self_attn.v_proj.bias"]])
        tensor(q + "self_attention/linear_0/weight", qkv)
        tensor(q + "self_attention/linear_0/bias", qkv_bias)
        tensor(q + "self_attention/linear_1/weight", state[p + "self_attn.out_proj.weight"])
        tensor(q + "self_attention/linear_1/bias", state[p + "self_attn.out_proj.bias"])
        tensor(q + "self_attention/layer_norm/gamma", state[p + "self_attn_layer_norm.weight"])
        tensor(q + "self_attention/layer_norm/beta", state[p + "self_attn_layer_norm.bias"])
        tensor(q + "ffn/linear_0/weight", state[p + "fc1.weight"])
        tensor(q + "ffn/linear_0/bias", state[p + "fc1.bias"])
        tensor(q + "ffn/linear_1/weight", state[p + "fc2.weight"])
        tensor(q + "ffn/linear_1/bias", state[p + "fc2.bias"])
        tensor(q + "ffn/layer_norm/gamma", state[p + "final_layer_norm.weight"])
        tensor(q + "ffn/layer_norm/beta", state[p + "final_layer_norm.bias"])
    tensor("encoder/layer_norm/gamma", state["layer_norm.weight"])
    tensor("encoder/layer_norm/beta", state["layer_norm.bias"])
    variables.append(("encoder/num_heads", np.array(config.encoder_attention_heads, dtype="<i2"), 2))
    variables.append(("decoder/num_heads", np.array(config.decoder_attention_heads, dtype="<i2"), 2))
    variables.append(("decoder/activation", np.array(1, dtype="<i1"), 1))
    variables.sort(key=lambda v: v[0])
    with open(path, "wb") as out:
        out.write(struct.pack("<I", 6))
        ct2_string(out, "WhisperSpec")
        out.write(struct.pack("<I", 3))
        out.write(struct.pack("<I", len(variables)))
        for name, value, dtype in variables:
            ct2_string(out, name)
            out.write(struct.pack("<B", value.ndim))
            for dim in value.shape:
                out.write(struct.pack("<I", dim))
            out.write(struct.pack("<B", dtype))
            data = value.astype(value.dtype.newbyteorder("<")).tobytes()
            out.write(struct.pack("<I", len(data)))
            out.write(data)
        out.write(struct.pack("<I", 1))
        ct2_string(out, "decoder/projection/weight")
        ct2_string(out, "decoder/embeddings/weight")


def encode(encoder, features):
    """hidden_states and last_hidden_state through the encoder's own modules, for any length.
    As transformers 5 returns them, the last hidden state is the one after the final layer norm."""
    x = torch.nn.functional.gelu(encoder.conv1(features))
    x = torch.nn.functional.gelu(encoder.conv2(x)).permute(0, 2, 1)
    x = x + encoder.embed_positions.weight[: x.shape[1]]
    states = [x]
    for layer in encoder.layers:
        x = layer(x, None)
        x = x[0] if isinstance(x, tuple) else x
        states.append(x)
    last = encoder.layer_norm(x)
    states[-1] = last
    return states, last


def run(encoder, extractor, audio, prefix, directory, trimmed_too):
    entry = {"n_samples": len(audio)}
    full = extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    clip_frames = len(audio) // 160
    entry["log_mel"] = write(full[0, :, : clip_frames + 10].numpy(), directory / f"{prefix}.mel30.f32")
    with torch.no_grad():
        out = encoder(full, output_hidden_states=True)
        states, last = encode(encoder, full)
    assert torch.allclose(out.last_hidden_state, last, atol=1e-6), "the manual encoder is transformers' encoder"
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(out.hidden_states, states))
    keep = clip_frames // 2 + 5
    entry["mode30"] = {
        "hidden_states": [write(h[0, :keep].numpy(), directory / f"{prefix}.h30.{i}.f32")
                          for i, h in enumerate(out.hidden_states)],
        "last_hidden_state": write(out.last_hidden_state[0, :keep].numpy(), directory / f"{prefix}.last30.f32"),
    }
    if trimmed_too:
        trimmed = extractor(audio, sampling_rate=16000, padding="longest", return_tensors="pt").input_features
        entry["log_mel_trimmed"] = write(trimmed[0].numpy(), directory / f"{prefix}.mel.f32")
        with torch.no_grad():
            states, last = encode(encoder, trimmed)
        entry["trimmed"] = {
            "hidden_states": [write(h[0].numpy(), directory / f"{prefix}.h.{i}.f32") for i, h in enumerate(states)],
            "last_hidden_state": write(last[0].numpy(), directory / f"{prefix}.last.f32"),
        }
    return entry


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, help="a converted whisper-base folder to check instead")
    args = parser.parse_args()
    torch.set_num_threads(1)
    clips = {key: sf.read(DATA / path, dtype="float32")[0] for key, path in CLIPS.items()}
    extractor = WhisperFeatureExtractor(feature_size=80)
    if args.real:
        config = WhisperConfig.from_pretrained(args.real)
        model = WhisperModel(config).eval()
        state = load_file(args.real / "model.safetensors")
        missing = model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()}, strict=False)
        assert not missing.unexpected_keys, missing.unexpected_keys
        golden = {"ravdess": run(model.encoder, extractor, clips["ravdess"], "real", args.real, True)}
        (args.real / "golden.json").write_text(json.dumps(golden, indent=1))
        return
    torch.manual_seed(0)
    config = WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64,
                           decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=64, num_mel_bins=80,
                           max_source_positions=1500, vocab_size=64, max_target_positions=16,
                           pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    model = WhisperModel(config).eval()
    encoder = model.encoder
    with torch.no_grad():
        for name, parameter in encoder.named_parameters():
            if name != "embed_positions.weight":  # keep Whisper's sinusoidal table
                parameter.add_(0.05 * torch.randn_like(parameter))
    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "hf").mkdir(parents=True)
    (OUT / "ct2").mkdir()
    config.save_pretrained(OUT / "hf")
    extractor.save_pretrained(OUT / "hf")
    save_file({"model.encoder." + k: v.contiguous() for k, v in encoder.state_dict().items()},
              OUT / "hf" / "model.safetensors", metadata={"format": "pt"})
    write_ct2(encoder, config, OUT / "ct2" / "model.bin")
    index = {
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "clips": CLIPS,
        "hf": {key: run(encoder, extractor, audio, key, OUT / "hf", True) for key, audio in clips.items()},
    }
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.copy_(parameter.half().float())
    index["ct2"] = {"ravdess": run(encoder, extractor, clips["ravdess"], "ravdess", OUT / "ct2", False)}
    (OUT / "index.json").write_text(json.dumps(index, indent=1) + "\n")


if __name__ == "__main__":
    main()
