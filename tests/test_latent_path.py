"""The mission's latent path end to end, offline, through the command line: `prepare` a tiny captioned
image folder (random-init f8 VAE and CLIP text tower, tokens stored), `run` one cell of every backbone
on those latents with the caption tokens, score with random-init CLIP and Inception weights given by
path, and `leaderboard`. Random weights: it proves the plumbing, not any number."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ablate  # noqa: F401  (torchvision fix first)
from ablate.cli import main
from ablate.data.fashion_mnist import EMBEDDED_DIR
from ablate.results import ResultsStore

CLIP = "tiny-clip-latent-path"
TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
CLASSES = ("sneaker", "bag", "ankle_boot")  # class folders; captions "a photo of a <class>"
PER_CLASS = 14  # 42 images: a holdout of 4 (prepare allows a tenth)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import open_clip
    import torch_fidelity.feature_extractor_inceptionv3 as fe
    from diffusers import AutoencoderKL

    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  block_out_channels=(8, 8, 8, 8), layers_per_block=1, latent_channels=4, norm_num_groups=4,
                  sample_size=32).save_pretrained(root / "vae")
    (root / f"{CLIP}.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(root / f"{CLIP}.json")  # the clip scorers find the architecture by name
    torch.save(open_clip.create_model(CLIP, pretrained=None).state_dict(), root / "clip.pt")
    with pytest.MonkeyPatch.context() as mp:  # torch-fidelity's Inception, built without its download
        mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, strict=True: None)
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(net.state_dict(), root / "weights-inception-2015-12-05-6726825d.pth")
    return {"vae": root / "vae", "clip_config": root / f"{CLIP}.json", "clip": root / "clip.pt",
            "inception": root / "weights-inception-2015-12-05-6726825d.pth"}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, weights: dict[str, Path]) -> Path:
    raw = np.frombuffer(gzip.decompress((EMBEDDED_DIR / "t10k-images-idx3-ubyte.gz").read_bytes()), np.uint8,
                        offset=16).reshape(-1, 28, 28)
    folder = tmp_path_factory.mktemp("images") / "train"
    for c, name in enumerate(CLASSES):
        (folder / name).mkdir(parents=True)
        for i in range(PER_CLASS):
            Image.fromarray(raw[c * PER_CLASS + i]).save(folder / name / f"{i}.png")
    out = tmp_path_factory.mktemp("data") / "imagenet-tiny"
    assert main(["prepare", "imagenet", "--root", str(folder), "--out", str(out), "--resolution", "32",
                 "--vae", str(weights["vae"]), "--text-model", str(weights["clip_config"]), "--text-pretrained",
                 "none", "--text-weights", str(weights["clip"]), "--shard-size", "16", "--holdout", "4",
                 "--gpus", "cpu", "--workers", "0", "--batch-size", "8"]) == 0
    return out


def test_prepare_run_score_leaderboard_every_backbone(tmp_path: Path, prepared: Path, weights: dict[str, Path]) -> None:
    clip = {"model": CLIP, "pretrained": "none", "clip_weights": str(weights["clip"])}
    grid = {
        "name": "latent-path", "variants": ["rf/lognorm(0.00, 1.00)"], "backbones": ["dit", "mmdit", "crossdit", "uvit"],
        "datasets": ["imagenet"], "seeds": [0],
        "data": {"resolution": 4, "data_dir": str(prepared), "val_size": 4, "conditioning": "caption"},
        "model": {"patch_size": 2, "hidden_size": 32, "depth": 2, "num_heads": 2},
        "train": {"max_steps": 4, "batch_size": 8, "warmup_steps": 1, "val_every": 2, "ema": {"every": 1}},
        "eval": {"num_samples": 6, "batch_size": 6, "weights": ["ema"], "settings": [{"steps": 2, "cfg": 2.0}],
                 "scorers": ["clip", "fid_clip", "fid_inception"],
                 "scorer_options": {"clip": clip, "fid_clip": clip,
                                    "fid_inception": {"inception_weights": str(weights["inception"])}}},
    }
    path = tmp_path / "latent-path.yaml"
    path.write_text(json.dumps(grid))  # JSON is YAML
    results = tmp_path / "results"
    assert main(["run", str(path), "--results", str(results), "--cache-dir", str(tmp_path / "cache"),
                 "--no-leaderboard", "--workers", "1"]) == 0  # in this process, where the tiny CLIP is registered
    frame = ResultsStore(results).frame("latent-path")
    assert sorted(frame["backbone"]) == ["crossdit", "dit", "mmdit", "uvit"]
    for column in ("clip", "fid_clip", "fid_inception"):
        assert frame[column].notna().all(), column
    by_backbone = frame.set_index("backbone")
    # stored caption tokens (8 x 32 from the text tower) reached the token-attending backbones
    assert by_backbone.loc["mmdit", "train_num_params"] > by_backbone.loc["dit", "train_num_params"]
    assert all(r["dataset_provenance"]["text_encoder"]["tokens"]["shape"] == [8, 32] for r in frame["record"])
    out = tmp_path / "board"
    assert main(["leaderboard", "--results", str(results), "--grid", "latent-path", "--out", str(out),
                 "--replicates", "20"]) == 0
    text = (out / "latent-path.md").read_text()
    assert "rf/lognorm(0.00, 1.00) @ mmdit" in text and "Backbones: final values" in text
    assert (out / "latent-path-backbones.png").is_file()


def test_an_undersized_reference_split_is_refused_before_training(tmp_path: Path, prepared: Path,
                                                                   weights: dict[str, Path]) -> None:
    """A Frechet reference of one image cannot have a covariance: said before any cell trains (it used to
    train every cell, then fail each one in evaluation)."""
    grid = {"name": "tiny-reference", "variants": ["rf"], "datasets": ["imagenet"],
            "data": {"resolution": 4, "data_dir": str(prepared), "val_size": 4, "conditioning": "caption"},
            "model": {"patch_size": 2, "hidden_size": 32, "depth": 1, "num_heads": 2},
            "train": {"max_steps": 2, "batch_size": 8, "warmup_steps": 1, "val_every": 2},
            "eval": {"num_samples": 4, "batch_size": 4, "weights": ["ema"], "settings": [{"steps": 2, "cfg": 1.0}],
                     "scorers": ["fid_inception"], "scorer_options": {"fid_inception": {
                         "inception_weights": str(weights["inception"]), "reference_count": 1}}}}
    path = tmp_path / "tiny-reference.yaml"
    path.write_text(json.dumps(grid))
    results = tmp_path / "results"
    try:
        code = main(["run", str(path), "--results", str(results), "--cache-dir", str(tmp_path / "cache")])
    except ablate.errors.AblateError as err:
        code, message = 1, str(err)
        assert "at least 2" in message
    assert code != 0
    assert not list(results.rglob("*.ckpt"))
