"""The real scorers (clip, fid_clip, fid_inception) on random-init networks of their real architectures.

No downloaded weights: random networks are saved to files and given to the scorers the way a user
gives real weights (the ``clip_weights`` / ``inception_weights`` options or ``--weights-dir``), so the
whole path from weights lookup to metric runs. Frechet-distance math is tested in test_frechet.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

import ablate  # noqa: F401  (fixes torchvision before open_clip / torch_fidelity import it)
from ablate.data.base import DatasetInfo, LatentSplit
from ablate.data.decode import to_uint8
from ablate.errors import ConfigError, ScorerUnavailableError
from ablate.scorers.base import ScoreContext, get_scorer
from ablate.weights import WeightsRequest, locate_weights

REQUIRED_PROVENANCE = {"model", "pretrained", "feature_layer", "num_samples", "reference_set", "resolution", "scale"}
TINY = "ablate-test-tiny-clip"
TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
CAPTIONS = ["a photo of a dress", "a photo of a boot", "a photo of a bag", "a photo of a shirt", "a photo of a coat"]


def _info(name: str = "toy") -> DatasetInfo:
    return DatasetInfo(
        name=name, channels=3, resolution=16, num_classes=5, class_names=list("abcde"),
        autoencoder="identity", caption=lambda i, g=None: CAPTIONS[i],
    )


def _ctx(tmp_path: Path, weights_dir: Path | None = None, **options) -> ScoreContext:
    return ScoreContext(dataset=_info(), cache_dir=tmp_path / "cache", weights_dir=weights_dir, options=options)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    """A ~3M-parameter open_clip model of a custom config, random-init, saved as a weights file."""
    import open_clip

    folder = tmp_path_factory.mktemp("clip")
    (folder / f"{TINY}.json").write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(folder / f"{TINY}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(TINY, pretrained=None).eval()
    torch.save(model.state_dict(), folder / "tiny.pt")
    return model, folder / "tiny.pt"


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """torch-fidelity's inception-v3-compat with random weights, saved under its canonical file name."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    with pytest.MonkeyPatch.context() as mp:  # build it once without its (downloaded) weights
        mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, strict=True: None)
        torch.manual_seed(0)
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path = tmp_path_factory.mktemp("weights") / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(net.state_dict(), path)
    return path


def _tiny_scorer(name: str, tmp_path: Path, weights: Path, **options):
    return get_scorer(name, _ctx(tmp_path, model=TINY, pretrained=None, clip_weights=str(weights), **options))


# --- clip ------------------------------------------------------------------------------------------

def test_clip_scorer_follows_the_models_own_preprocessing_and_tokenizer(tiny_clip, tmp_path: Path) -> None:
    import open_clip
    import torchvision.transforms.functional as TF

    model, weights = tiny_clip
    torch.manual_seed(1)
    samples = torch.rand(5, 3, 20, 24) * 2 - 1  # non-square: shortest side resized, then center-cropped
    scorer = _tiny_scorer("clip", tmp_path, weights, batch_size=2)
    scorer.check_available()
    result = scorer.score(samples, torch.arange(5), CAPTIONS)
    assert set(result) == {"clip"} and isinstance(result["clip"], float)

    # the documented pipeline, written out: uint8 -> [0,1] -> bicubic resize (antialiased) -> crop -> normalise
    x = to_uint8(samples).float() / 255
    x = TF.center_crop(TF.resize(x, 32, interpolation=TF.InterpolationMode.BICUBIC, antialias=True), 32)
    x = TF.normalize(x, open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)
    with torch.no_grad():
        img = torch.nn.functional.normalize(model.encode_image(x), dim=-1)
        txt = torch.nn.functional.normalize(model.encode_text(open_clip.tokenize(CAPTIONS)), dim=-1)
    assert result["clip"] == pytest.approx(float((img * txt).sum(-1).mean()), abs=1e-5)

    prov = scorer.provenance()
    assert REQUIRED_PROVENANCE <= set(prov)
    assert prov["resolution"] == 32 and "raw cosine" in prov["scale"] and prov["weights"].endswith("(option)")


def test_clip_score_is_one_when_the_image_embedding_is_the_caption_embedding(tiny_clip, tmp_path: Path) -> None:
    from ablate.scorers.clip import ClipModel

    model, _ = tiny_clip
    import copy

    aligned = copy.deepcopy(model)
    torch.manual_seed(2)
    samples = torch.rand(4, 3, 32, 32) * 2 - 1
    clip = ClipModel.wrap(aligned, TINY, "test")
    text = clip.text_features(CAPTIONS[:4])
    proj = aligned.visual.proj
    aligned.visual.proj = None  # pooled features (4, 32) before the projection
    pooled = clip.image_features(to_uint8(samples)).double()
    # choose the projection so that each image's embedding is 3x its caption's embedding
    aligned.visual.proj = torch.nn.Parameter((torch.linalg.pinv(pooled) @ (3 * text.double())).float())
    assert proj.shape == aligned.visual.proj.shape
    path = tmp_path / "aligned.pt"
    torch.save(aligned.state_dict(), path)

    scorer = _tiny_scorer("clip", tmp_path, path)
    assert scorer.score(samples, torch.arange(4), CAPTIONS[:4])["clip"] == pytest.approx(1.0, abs=1e-4)
    # pairing matters: the same images against rotated captions score lower
    assert scorer.score(samples, torch.arange(4), CAPTIONS[1:4] + CAPTIONS[:1])["clip"] < 0.99


def test_clip_score_is_symmetric_in_batch_order(tiny_clip, tmp_path: Path) -> None:
    _, weights = tiny_clip
    torch.manual_seed(3)
    samples = torch.rand(5, 3, 16, 16) * 2 - 1
    scorer = _tiny_scorer("clip", tmp_path, weights, batch_size=3)
    base = scorer.score(samples, torch.arange(5), CAPTIONS)["clip"]
    perm = [3, 0, 4, 2, 1]
    permuted = scorer.score(samples[perm], torch.arange(5)[perm], [CAPTIONS[i] for i in perm])["clip"]
    assert permuted == pytest.approx(base, abs=1e-6)
    with pytest.raises(ConfigError, match="one caption per sample"):
        scorer.score(samples, torch.arange(5), CAPTIONS[:4])


def test_vit_l14_random_init_gives_768_d_features_at_224_with_77_tokens() -> None:
    """The paper's architecture, once, on 2 tiny images (random weights: shapes and plumbing only)."""
    import open_clip

    from ablate.scorers.clip import ClipModel, clip_cosine

    clip = ClipModel.wrap(open_clip.create_model("ViT-L-14", pretrained=None), "ViT-L-14", "random")
    assert clip.preprocess_cfg["size"] in (224, (224, 224)) and clip.context_length == 77
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    image = clip.image_features(images)
    text = clip.text_features(["a photo of a tabby cat", "a very long caption " * 40])  # truncated at 77
    assert image.shape == text.shape == (2, 768) and image.dtype == text.dtype == torch.float32
    cos = clip_cosine(image, text)
    assert cos.shape == (2,) and bool(((cos >= -1) & (cos <= 1)).all())


# --- fid_clip ----------------------------------------------------------------------------------------

def _write_pngs(folder: Path, images: torch.Tensor) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i:03d}.png")
    return folder


def test_fid_clip_end_to_end_with_a_cached_reference_folder(tiny_clip, tmp_path: Path, monkeypatch) -> None:
    _, weights = tiny_clip
    torch.manual_seed(4)
    samples = torch.rand(40, 3, 16, 16) * 2 - 1
    reference = _write_pngs(tmp_path / "ref", to_uint8(samples))
    scorer = _tiny_scorer("fid_clip", tmp_path, weights, reference=str(reference), batch_size=16)
    scorer.check_available()
    # the reference images read back from PNG are the samples: FD 0 (uint8 rule in memory == on disk)
    assert scorer.score(samples, torch.zeros(40), [""] * 40)["fid_clip"] == pytest.approx(0.0, abs=1e-6)
    other = scorer.score(torch.rand(40, 3, 16, 16) * 2 - 1, torch.zeros(40), [""] * 40)["fid_clip"]
    assert other > 1e-3

    cached = list((tmp_path / "cache" / "fid_reference").glob("fid_clip-*-16px-*.npz"))
    assert len(cached) == 1
    saved = json.loads(cached[0].with_suffix(".json").read_text())
    assert saved["count"] == 40 and saved["resolution"] == 16 and saved["features"]["model"] == TINY
    prov = scorer.provenance()
    assert REQUIRED_PROVENANCE <= set(prov) and prov["reference_count"] == 40

    # a second scorer uses the cache: reading the reference images again would fail
    import ablate.scorers.fid as fid

    monkeypatch.setattr(fid, "read_images", lambda *a, **k: pytest.fail("reference recomputed"))
    again = _tiny_scorer("fid_clip", tmp_path, weights, reference=str(reference), batch_size=7)
    assert again.score(samples, torch.zeros(40), [""] * 40)["fid_clip"] == pytest.approx(0.0, abs=1e-6)


def test_fid_reference_defaults_to_the_datasets_test_split(tiny_clip, tmp_path: Path, monkeypatch) -> None:
    import ablate.data

    _, weights = tiny_clip
    torch.manual_seed(5)
    test_split = LatentSplit(torch.rand(30, 3, 16, 16) * 2 - 1, torch.zeros(30, dtype=torch.int64))
    calls = []

    def fake_load(name: str, resolution: int, data_dir=None):
        calls.append((name, resolution))
        return _info(name), {"train": test_split, "test": test_split}

    monkeypatch.setattr(ablate.data, "load_dataset", fake_load)
    scorer = _tiny_scorer("fid_clip", tmp_path, weights, reference_count=25)
    fd = scorer.score(test_split.latents[:25], torch.zeros(25), [""] * 25)["fid_clip"]
    assert fd == pytest.approx(0.0, abs=1e-6) and calls == [("toy", 16)]
    prov = scorer.provenance()
    assert prov["reference_set"].startswith("toy test split (25 images)") and prov["reference_count"] == 25
    with pytest.raises(ConfigError, match="no split 'val'"):
        _tiny_scorer("fid_clip", tmp_path, weights, reference_split="val").score(
            test_split.latents[:4], torch.zeros(4), [""] * 4
        )


# --- fid_inception -----------------------------------------------------------------------------------

def test_fid_inception_runs_torch_fidelity_inception_from_weights_dir(inception_file: Path, tmp_path: Path, monkeypatch) -> None:
    import ablate.scorers.fid as fid

    torch.manual_seed(6)
    samples = torch.rand(2, 1, 12, 12) * 2 - 1  # grey samples become RGB
    reference = _write_pngs(tmp_path / "ref", to_uint8(torch.rand(2, 3, 12, 12) * 2 - 1))
    scorer = get_scorer("fid_inception", _ctx(tmp_path, weights_dir=inception_file.parent, reference=str(reference)))
    scorer.check_available()
    assert scorer.weights is not None and scorer.weights.origin == "weights_dir"

    features = []
    extract = scorer.features
    monkeypatch.setattr(scorer, "features", lambda images: features.append(extract(images)) or features[-1])

    # the 2048-d matrix square root costs ~100 s on this CPU; the FD itself is tested in test_frechet.py
    seen = {}
    monkeypatch.setattr(fid, "frechet_distance", lambda a, b: seen.update(a=a, b=b) or 1.5)
    assert scorer.score(samples, torch.zeros(2), [""] * 2) == {"fid_inception": 1.5}
    stats, reference = seen["a"], seen["b"]
    assert [f.shape for f in features] == [(2, 2048), (2, 2048)]
    assert all(f.dtype == torch.float32 and torch.isfinite(f).all() for f in features)
    assert stats.n == 2 and reference.n == 2 and stats.dim == reference.dim == 2048
    assert stats.mean.dtype.name == stats.cov.dtype.name == reference.cov.dtype.name == "float64"
    assert len(list((tmp_path / "cache" / "fid_reference").glob("fid_inception-ref-12px-*.npz"))) == 1
    prov = scorer.provenance()
    assert REQUIRED_PROVENANCE <= set(prov) and prov["resolution"] == 299 and prov["feature_layer"].startswith("2048")


# --- weights without the internet --------------------------------------------------------------------

@pytest.fixture
def no_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, with empty library caches (so a machine that has the real weights cached still fails)."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))


@pytest.mark.parametrize(
    ("scorer", "filename", "option"),
    [
        ("clip", "vit_large_patch14_clip_224.openai/open_clip_model.safetensors", "clip_weights"),
        ("fid_clip", "vit_large_patch14_clip_224.openai/open_clip_model.safetensors", "clip_weights"),
        ("fid_inception", "weights-inception-2015-12-05-6726825d.pth", "inception_weights"),
    ],
)
def test_missing_weights_error_names_scorer_file_and_place(no_caches, tmp_path: Path, scorer, filename, option) -> None:
    import open_clip  # noqa: F401  (import time is not what check_available must keep short)

    s = get_scorer(scorer, _ctx(tmp_path, weights_dir=tmp_path / "w"))
    start = time.perf_counter()
    with pytest.raises(ScorerUnavailableError) as err:
        s.check_available()
    assert time.perf_counter() - start < 2.0
    message = str(err.value)
    assert f"Scorer {scorer!r}" in message and filename in message and option in message
    assert str(tmp_path / "w" / filename) in message and "HF_HUB_OFFLINE" in message
    assert "https://" in message and "\n" not in message


def test_explicit_weights_path_that_is_missing_is_named(tmp_path: Path) -> None:
    s = get_scorer("fid_inception", _ctx(tmp_path, inception_weights=str(tmp_path / "nope.pth")))
    with pytest.raises(ScorerUnavailableError, match="'inception_weights' option points to .*nope.pth"):
        s.check_available()


def test_weights_are_looked_up_in_order_and_never_downloaded_offline(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("explicit.pt", "dir/w.pt", "cache.pt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")

    def request(explicit=None, cache=None):
        def download():
            raise AssertionError("must not download offline")

        return WeightsRequest("s", ("w.pt",), "https://example.org/w.pt", "example.org",
                              lambda: cache, download, "s_weights", explicit)

    full = request(tmp_path / "explicit.pt", tmp_path / "cache.pt")
    assert locate_weights(full, tmp_path / "dir").origin == "option"
    assert locate_weights(request(None, tmp_path / "cache.pt"), tmp_path / "dir").origin == "weights_dir"
    assert locate_weights(request(None, tmp_path / "cache.pt"), None).path == tmp_path / "cache.pt"
    with pytest.raises(ScorerUnavailableError, match="put it at DIR/w.pt and pass --weights-dir DIR"):
        locate_weights(request(), None)


def test_bad_clip_options_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown open_clip model 'ViT-Q-99'"):
        get_scorer("clip", _ctx(tmp_path, model="ViT-Q-99")).check_available()
    with pytest.raises(ConfigError, match="no pretrained tag 'nonesuch'.*openai"):
        get_scorer("clip", _ctx(tmp_path, pretrained="nonesuch")).check_available()
    with pytest.raises(ConfigError, match="randomly initialised"):
        get_scorer("clip", _ctx(tmp_path, pretrained=None)).check_available()


# --- the score command -------------------------------------------------------------------------------

def test_score_command_scores_a_folder_and_a_saved_batch(tiny_clip, tmp_path: Path, capsys) -> None:
    from ablate.cli import main

    _, weights = tiny_clip
    torch.manual_seed(7)
    samples = torch.rand(5, 3, 16, 16) * 2 - 1
    folder = _write_pngs(tmp_path / "images", to_uint8(samples))
    (tmp_path / "captions.txt").write_text("\n".join(CAPTIONS) + "\n")
    common = ["--option", f"model={TINY}", "--option", "pretrained=none", "--option", f"clip_weights={weights}",
              "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]
    assert main(["score", str(folder), "--scorer", "clip", "--scorer", "fid_clip", "--captions",
                 str(tmp_path / "captions.txt"), "--reference", str(folder), *common]) == 0
    out = capsys.readouterr().out
    assert "fid_clip" in out and "raw cosine" in out and "num_samples" in out
    folder_clip = float(next(line for line in out.splitlines() if "│ clip" in line and "alignment" in line).split("│")[3])

    batch = tmp_path / "batch.pt"
    torch.save({"samples": samples, "labels": torch.arange(5), "captions": CAPTIONS}, batch)
    assert main(["score", str(batch), "--scorer", "clip", *common]) == 0
    out = capsys.readouterr().out
    batch_clip = float(next(line for line in out.splitlines() if "│ clip" in line and "alignment" in line).split("│")[3])
    assert batch_clip == pytest.approx(folder_clip, abs=1e-4)  # PNGs on disk == pixels in memory

    assert main(["score", str(folder), "--scorer", "clip", *common]) == 2  # no captions for a folder
    assert "pass --captions FILE" in capsys.readouterr().err.replace("\n", " ")
    assert main(["score", str(folder), "--scorer", "fid_clip", *common]) == 2  # no reference
    assert "--reference" in capsys.readouterr().err


def test_a_weights_file_that_does_not_load_is_named(tiny_clip, tmp_path: Path) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ScorerUnavailableError, match=f"'fid_clip': the weights file .*broken.pt' does not load into open_clip {TINY}"):
        _tiny_scorer("fid_clip", tmp_path, broken).clip.model()
    scorer = get_scorer("fid_inception", _ctx(tmp_path, inception_weights=str(broken)))
    with pytest.raises(ScorerUnavailableError, match="does not load into torch-fidelity"):
        scorer.features(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


def test_score_refuses_probe_without_labels(tmp_path, capsys):
    """A folder of images has no prompted classes: the probe's align_probe would be meaningless."""
    from PIL import Image

    from ablate.cli import main

    for i in range(3):
        Image.new("L", (32, 32), color=40 * i).save(tmp_path / f"{i}.png")
    assert main(["score", str(tmp_path), "--scorer", "probe", "--dataset", "fashion-mnist"]) == 2
    assert "prompted class index" in " ".join(capsys.readouterr().err.split())
