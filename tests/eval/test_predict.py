"""zoo predict: sliding window against MONAI, whole volumes back on their grid, 2D images, bad inputs."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import zoo
from tests._user_data import image_mask_folders
from tests.eval.test_finetune import nifti_csv, tiny_3d
from zoo.cli import main
from zoo.data.userdata import open_user_data
from zoo.eval.finetune import classifier_preprocess, hu_window, prepare_classification
from zoo.eval.harness import resolve_source
from zoo.eval.predict import (
    PredictError,
    gaussian_importance,
    predict,
    predict_images,
    predict_volume,
    sliding_window,
)

LPS = np.diag([-1.5, -1.0, 3.0, 1.0])
LPS[:3, 3] = [40.0, 30.0, -20.0]


def _conv(dims: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    conv = (nn.Conv2d if dims == 2 else nn.Conv3d)(2, 3, 3, padding=1)
    return nn.Sequential(conv, nn.Tanh()).eval()


@pytest.mark.parametrize(("shape", "roi", "overlap", "mode"), [
    ((37, 29, 20), (16, 16, 8), 0.25, "gaussian"),
    ((37, 29, 20), (16, 12, 8), 0.5, "gaussian"),
    ((10, 29, 21), (16, 16, 8), 0.6, "constant"),  # smaller than the window along x: padded, then cut
    ((53, 47), (32, 32), 0.25, "gaussian"),
])
def test_sliding_window_matches_monai(shape, roi, overlap, mode) -> None:
    inferers = pytest.importorskip("monai.inferers")
    x = torch.randn(1, 2, *shape, generator=torch.Generator().manual_seed(1))
    net = _conv(len(shape))
    with torch.no_grad():
        ours = sliding_window(x, net, roi, overlap=overlap, mode=mode, batch_size=3)
        ref = inferers.sliding_window_inference(x, roi, 3, net, overlap=overlap, mode=mode)
    assert ours.shape == ref.shape == (1, 3, *shape)
    assert torch.allclose(ours, torch.as_tensor(ref), atol=1e-5)


def test_gaussian_importance_matches_monai() -> None:
    utils = pytest.importorskip("monai.data.utils")
    ref = utils.compute_importance_map((16, 12, 8), mode="gaussian", sigma_scale=0.125, device="cpu")
    assert torch.allclose(gaussian_importance((16, 12, 8)), ref, atol=1e-6)


class _Voxelwise(nn.Module):
    """A dense 3D 'model' with a zoo config: two logits, +-(x - 0.5) (label 1 where HU > 0), or the input."""

    def __init__(self, restore: bool = False) -> None:
        super().__init__()
        self.restore = restore
        self.out_act = "sigmoid" if restore else None
        self.pretrained_cfg = zoo.get_pretrained_cfg("unet3d_small_seg").replace(
            input_size=(1, 16, 16, 16), voxel_spacing=(1.0, 1.0, 1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.restore else torch.cat([0.5 - x, x - 0.5], dim=1) * 20


def _sphere(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """An off-centre ball of +500 HU in -500 HU, stored LPS with anisotropic voxels."""
    shape = (30, 40, 12)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1) * np.array([1.5, 1.0, 3.0])
    centre = np.array([12.0, 14.0, 15.0])
    data = np.where(np.linalg.norm(idx - centre, axis=-1) < 9.0, 500, -500).astype(np.int16)
    path = tmp_path / "ball.nii.gz"
    nib.save(nib.Nifti1Image(data, LPS), path)
    return path, data


def test_volume_back_on_its_grid_orientation_and_affine(tmp_path: Path) -> None:
    path, data = _sphere(tmp_path)
    out = tmp_path / "labels.nii.gz"
    summary = predict_volume(_Voxelwise(), path, out, overlap=0.5)
    img = nib.load(out)
    assert img.shape == data.shape and np.allclose(img.affine, LPS)
    labels = np.asarray(img.dataobj)
    assert img.get_data_dtype() == np.uint8 and set(np.unique(labels)) == {0, 1}
    truth = data > 0
    dice = 2 * (labels.astype(bool) & truth).sum() / (labels.sum() + truth.sum())
    assert dice > 0.97  # a flip of any axis would move the off-centre ball (dice < 0.5)
    assert summary["resampled_shape"] == [44, 40, 34] and summary["windows"] > 1
    probs = tmp_path / "probs.nii.gz"
    predict_volume(_Voxelwise(), path, probs, output="probabilities")
    p = np.asarray(nib.load(probs).dataobj)
    assert p.shape == (*data.shape, 2) and np.allclose(p.sum(-1), 1.0, atol=1e-5)


def test_image_output_undoes_the_hu_window(tmp_path: Path) -> None:
    path, data = _sphere(tmp_path)
    out = tmp_path / "restored.nii.gz"
    predict_volume(_Voxelwise(restore=True), path, out, output="image", overlap=0.25, mode="constant")
    hu = np.asarray(nib.load(out).dataobj)
    assert hu.shape == data.shape
    # identical away from the ball's edge (where the two resamplings blur it), in HU
    assert np.median(np.abs(hu - data)) < 1.0 and np.percentile(np.abs(hu - data), 90) < 150


@pytest.fixture(scope="module")
def seg3d_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A width-4 3D U-Net with a 2-class head, saved as `zoo finetune` saves a run (zoo.save_for_hf)."""
    torch.manual_seed(0)
    model = zoo.create_model("unet3d_small_seg", num_classes=2, width=4,
                             pretrained_cfg_overlay={"input_size": (1, 16, 16, 16),
                                                     "label_names": ("background", "ball")})
    return zoo.save_for_hf(model, tmp_path_factory.mktemp("run3d"))


def test_local_dir_model_through_the_cli(seg3d_run: Path, tmp_path: Path, capsys) -> None:
    path, data = _sphere(tmp_path)
    out = tmp_path / "out"
    assert main(["predict", f"local-dir:{seg3d_run}", str(path), "-o", str(out), "--batch-size", "8"]) == 0
    img = nib.load(out / "ball_pred.nii.gz")
    assert img.shape == data.shape and np.allclose(img.affine, LPS)
    assert (out / "predictions.json").is_file()
    printed = capsys.readouterr().out
    assert "ball_pred.nii.gz" in printed and "labels: 0 background, 1 ball" in printed  # what the values mean


def test_bad_inputs_name_the_file_and_the_fix(seg3d_run: Path, tmp_path: Path, capsys) -> None:
    assert main(["predict", f"local-dir:{seg3d_run}", str(tmp_path / "missing.nii.gz")]) == 2
    assert "missing.nii.gz" in capsys.readouterr().err
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a nifti")
    assert main(["predict", f"local-dir:{seg3d_run}", str(bad), "-o", str(tmp_path / "o.nii.gz")]) == 2
    assert "bad.nii.gz is not a readable NIfTI" in capsys.readouterr().err
    assert main(["predict", "resnet50", str(bad)]) == 2  # no weights: random predictions refused
    assert "has no weights" in capsys.readouterr().err
    encoder = zoo.create_model("unet3d_small", num_classes=2, width=4)
    with pytest.raises(PredictError, match="per voxel"):
        predict_volume(encoder, tmp_path / "x.nii.gz", tmp_path / "y.nii.gz")


def test_seg_tag_loads_the_decoder_without_checkpoint_path() -> None:
    from safetensors.torch import load_file

    from zoo.hub import resolve_weights

    cfg = zoo.get_pretrained_cfg("unet3d_small_seg.pcrl_ct32")
    model = zoo.create_model("unet3d_small_seg.pcrl_ct32", pretrained=True)
    stored = load_file(str(resolve_weights(cfg)))
    assert torch.equal(model.state_dict()["up_tr64.ops.0.conv1.weight"].float(),
                       stored["up_tr64.ops.0.conv1.weight"].float())


# --- 2D --------------------------------------------------------------------------------------------
def _images(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate(sizes):
        p = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_2d_classifier_writes_probabilities(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = zoo.create_model("resnet18", num_classes=3, pretrained_cfg_overlay={"input_size": (3, 32, 32)})
    run = zoo.save_for_hf(model, tmp_path / "run")
    _images(tmp_path / "imgs", [(40, 50), (33, 33), (64, 48)])
    rows = predict_images(f"local-dir:{run}", [tmp_path / "imgs"], tmp_path / "p.csv")
    with open(tmp_path / "p.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [Path(r["path"]).name for r in table] == ["img0.png", "img1.png", "img2.png"]
    assert all(abs(sum(float(r[f"class_{k}"]) for k in range(3)) - 1) < 1e-4 for r in table)
    assert [r["prediction"] for r in table] == [r["prediction"] for r in rows]
    assert main(["predict", f"local-dir:{run}", str(tmp_path / "imgs" / "img1.png"), "-o", str(tmp_path / "p.json")]) == 0
    assert (tmp_path / "p.json").read_text().count("img1.png") == 1


def test_2d_segmentation_masks_keep_the_image_size(tmp_path: Path, capsys) -> None:
    torch.manual_seed(0)
    model = zoo.create_model("unet_resnet18", num_classes=1, pretrained_cfg_overlay={"input_size": (3, 32, 32)})
    paths = _images(tmp_path / "imgs", [(45, 70), (20, 24)])  # larger and smaller than a window
    predict_images(model, paths, tmp_path / "masks", probabilities=True)
    for p, (h, w) in zip(paths, [(45, 70), (20, 24)], strict=True):
        mask = np.asarray(Image.open(tmp_path / "masks" / f"{p.stem}_mask.png"))
        assert mask.shape == (h, w) and set(np.unique(mask)) <= {0, 255}
        assert np.asarray(Image.open(tmp_path / "masks" / f"{p.stem}_prob.png")).shape == (h, w)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"nope")
    with pytest.raises(PredictError, match="broken.png is not a readable image"):
        predict_images(model, [tmp_path / "imgs"], tmp_path / "masks")
    with pytest.raises(PredictError, match="does not exist"):
        predict_images(model, [tmp_path / "nothing"], tmp_path / "masks")


def test_2d_segmentation_fine_tuned_on_resized_images_predicts_on_them(tmp_path: Path) -> None:
    """`zoo finetune --scale 0.5` records image_scale 0.5; `zoo predict` resizes each image by it, as training did,
    and puts the output back on the image's own grid (was: the full-size image, vessels twice as wide)."""
    data = image_mask_folders(tmp_path / "data", sizes=((96, 64), (64, 80), (80, 64), (64, 64)))
    zoo.finetune("unet_resnet18", data, tmp_path / "run", pretrained=False, img_size=32, scale=0.5, epochs=1,
                 batch_size=2, progress=False, val_fraction=0.25)
    run = f"local-dir:{tmp_path / 'run'}"
    model = zoo.create_model(run, pretrained=True).eval()
    assert model.pretrained_cfg.image_scale == 0.5
    image = data / "images" / "0.png"
    predict_images(run, [image], tmp_path / "masks", probabilities=True)
    prob = np.asarray(Image.open(tmp_path / "masks" / "0_prob.png")).astype(np.float64) / 255
    assert prob.shape == (64, 96)
    # the reference: the image at half size (as fine-tuning saw it), the model, then bilinear back to 96 x 64
    from zoo.data.transforms import create_transform, resolve_data_config
    from zoo.eval.predict import sliding_window

    half = Image.open(image).convert("RGB").resize((48, 32), Image.BILINEAR)
    x = create_transform(resolve_data_config(model, input_size=(3, 32, 48), crop_pct=1.0))(half)
    with torch.no_grad():
        ref = torch.sigmoid(sliding_window(x[None], model, (32, 32), overlap=0.25))
    ref = torch.nn.functional.interpolate(ref, size=(64, 96), mode="bilinear", align_corners=False)[0, 0].numpy()
    assert np.abs(prob - ref).max() <= 1 / 255 + 1e-6


# --- 3D classifiers --------------------------------------------------------------------------------
def test_3d_classifier_rows_equal_the_model_on_finetunes_own_preprocessing(
        tmp_path: Path, register_weights, capsys) -> None:
    name, labels = tiny_3d(register_weights), nifti_csv(tmp_path / "ct", n=6)
    zoo.finetune(name, labels, tmp_path / "run", epochs=1, batch_size=4, progress=False, val_fraction=0.34)
    run = f"local-dir:{tmp_path / 'run'}"
    assert main(["predict", run, str(tmp_path / "ct"), "-o", str(tmp_path / "p.csv"), "--show", "1"]) == 0
    assert "6 volumes; probabilities written to" in capsys.readouterr().out
    with open(tmp_path / "p.csv") as fh:
        table = {Path(r["path"]).name: r for r in csv.DictReader(fh)}
    # the reference: what `zoo finetune` fed the network, built from the STARTING checkpoint's config (so a
    # spacing, HU window or cube lost on the way to the saved model would show here)
    src = resolve_source(name).cfg
    spec = open_user_data(labels)
    x = prepare_classification(spec, spec, (16, 16, 16), src.voxel_spacing, hu_window(src)).train_x
    model = zoo.create_model(run, pretrained=True).eval()
    with torch.no_grad():
        ref = torch.softmax(model(classifier_preprocess(src, (16, 16, 16))(x)), 1)
    cut = model.pretrained_cfg.decision["threshold"]
    assert sorted(table) == sorted(f.name for f in spec.files)
    for f, p in zip(spec.files, ref.tolist(), strict=True):
        row = table[f.name]
        assert abs(float(row["no"]) - p[0]) < 1e-6 and abs(float(row["yes"]) - p[1]) < 1e-6
        assert row["prediction"] == ("yes" if p[1] >= cut else "no")  # the checkpoint's threshold
    rows = predict(run, [tmp_path / "ct" / "ct1.nii.gz"], tmp_path / "one.json", threshold=0.0)
    assert rows[0]["prediction"] == "yes" and (tmp_path / "one.json").read_text().count("ct1.nii.gz") == 1


def test_3d_classifier_bad_inputs_name_the_fix(tmp_path: Path, register_weights, capsys) -> None:
    torch.manual_seed(0)
    model = zoo.create_model(tiny_3d(register_weights), pretrained=True, num_classes=2)
    run = f"local-dir:{zoo.save_for_hf(model, tmp_path / 'run')}"
    vol, _ = _sphere(tmp_path)
    png = _images(tmp_path / "imgs", [(20, 20)])[0]
    for argv, message in [
        ([str(png)], "img0.png is not a NIfTI volume (.nii, .nii.gz) and "),
        ([str(vol), "-o", str(tmp_path / "x.nii.gz")], "it writes a table, not a NIfTI; pass -o FILE.csv"),
        ([str(vol), "--roi-size", "8", "8", "8"], "--roi-size and --output image do not apply; drop them"),
    ]:
        assert main(["predict", run, *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    with pytest.raises(PredictError, match="one prediction per volume, not per voxel: classify volumes with "
                                           "classify_volumes"):
        predict_volume(run, vol, tmp_path / "y.nii.gz")
    with pytest.raises(PredictError, match="ball.nii.gz is a NIfTI volume but the model is a 2D model"):
        predict_images(zoo.create_model("resnet18", num_classes=2), [vol], tmp_path / "z.csv")
