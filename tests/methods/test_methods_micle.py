"""MICLe on real chest X-rays and fundus photos: same-patient pairs, determinism, the loss, the CLI run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import zoo
from tests.conftest import needs_data
from tests.data.test_data import link_images
from zoo import PretrainedCfg
from zoo.cli import main as cli_main
from zoo.data.datasets import DatasetError, FundusDataset, ImageFolderDataset
from zoo.data.pairs import SamePatientPairs
from zoo.data.paths import data_root
from zoo.methods.base import DataSpec
from zoo.methods.micle import MICLe
from zoo.methods.simclr import SimCLR
from zoo.train.pretrain import PretrainConfig, _collate, pretrain

ARCH = "resnet18"
# Kermany training patients: person1019 and IM-0429 have 3 images, person1000 2, person1001 and IM-0115 1
PATIENTS = {"PNEUMONIA": ("person1019_", "person1000_", "person1001_"), "NORMAL": ("IM-0429-", "IM-0115-")}


DATA = data_root()
pytestmark = needs_data("cxr", "kermany")


@pytest.fixture(scope="module")
def patients(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 real Kermany training X-rays of 5 patients (3 + 3 + 2 + 1 + 1 images), as a class folder of symlinks."""
    dst = tmp_path_factory.mktemp("patients")
    for cls, prefixes in PATIENTS.items():
        (dst / cls).mkdir()
        for prefix in prefixes:
            for f in sorted((DATA / "cxr/kermany/train" / cls).glob(f"{prefix}*.jpeg")):
                (dst / cls / f.name).symlink_to(f)
    assert len(list(dst.rglob("*.jpeg"))) == 10
    return dst


@pytest.fixture(scope="module")
def pairs(patients: Path) -> SamePatientPairs:
    return SamePatientPairs(ImageFolderDataset(patients, img_size=32), seed=0)


def _batch(ds: SamePatientPairs, indices: list[int] | None = None) -> dict[str, torch.Tensor]:
    return _collate([ds[i] for i in (indices if indices is not None else range(len(ds)))])


def test_pairs_are_other_images_of_the_same_patient(pairs: SamePatientPairs) -> None:
    from zoo.data.patients import patient_id

    files = pairs.base.files
    ids = [patient_id(f) for f in files]
    assert None not in ids
    counts = {p: ids.count(p) for p in ids}
    for epoch in range(4):
        pairs.set_epoch(epoch)
        for i in range(len(pairs)):
            j = pairs.partner(i)
            if counts[ids[i]] > 1:
                assert j != i and ids[j] == ids[i], (files[i].name, files[j].name)
            else:
                assert j == i  # single-image patient: two augmentations of the same image
            item = pairs[i]
            assert set(item) == {"image", "partner"}
            assert torch.equal(item["partner"], pairs.base[j][0]) and item["image"].shape == (3, 32, 32)
    assert (pairs.num_patients, pairs.num_multi_image_patients, pairs.num_paired_images) == (5, 3, 8)
    assert "10 images, 5 patients (3 with several images), 8 images with a same-patient partner" in pairs.describe()
    with pytest.raises(IndexError):
        pairs.partner(10)


def test_partners_depend_on_seed_epoch_index_only(pairs: SamePatientPairs) -> None:
    def partners(ds: SamePatientPairs, epoch: int) -> list[int]:
        ds.set_epoch(epoch)
        return [ds.partner(i) for i in range(len(ds))]

    again = SamePatientPairs(pairs.base, seed=0)
    per_epoch = [partners(pairs, e) for e in range(8)]
    assert per_epoch == [partners(again, e) for e in range(8)]  # a fresh dataset (worker, resumed run) agrees
    assert len({tuple(p) for p in per_epoch}) > 1  # 3-image patients draw other partners in other epochs
    other_seed = SamePatientPairs(pairs.base, seed=1)
    assert [partners(other_seed, e) for e in range(8)] != per_epoch


def test_fundus_left_and_right_eyes_pair_through_build_dataset(tmp_path: Path) -> None:
    images = tmp_path / "eyepacs" / "images"
    images.mkdir(parents=True)
    for name in ("10_left", "10_right", "1002_left"):
        (images / f"{name}.jpeg").symlink_to(DATA / "fundus/eyepacs/images" / f"{name}.jpeg")
    cfg = DataSpec(data=str(tmp_path / "eyepacs"), img_size=32)
    ds = MICLe.build_dataset(cfg)
    assert isinstance(ds.base, FundusDataset)  # FOV crop and masking as in the rest of zoo
    names = [f.stem for f in ds.base.files]
    assert names == ["1002_left", "10_left", "10_right"]
    assert [ds.partner(i) for i in range(3)] == [0, 2, 1]
    assert ds.num_paired_images == 2


def test_without_multi_image_patients_micle_is_simclr(pairs: SamePatientPairs) -> None:
    singles = [i for i in range(len(pairs)) if pairs.partner(i) == i]
    paired = [i for i in range(len(pairs)) if pairs.partner(i) != i][:len(singles)]
    assert len(singles) == 2
    losses = {}
    for name, cls in (("micle", MICLe), ("simclr", SimCLR)):
        torch.manual_seed(0)
        method = cls(ARCH, aug="cxr")
        single = _batch(pairs, singles)
        assert torch.equal(single["image"], single["partner"])
        batch = single if name == "micle" else single["image"]
        losses[name] = method(batch, torch.Generator().manual_seed(3))["loss"].item()
        if name == "micle":
            losses["paired"] = method(_batch(pairs, paired), torch.Generator().manual_seed(3))["loss"].item()
    assert losses["micle"] == pytest.approx(losses["simclr"], rel=1e-6)
    assert losses["paired"] != pytest.approx(losses["simclr"], rel=1e-3)  # real partners change the positives


def test_cli_run_exports_a_strict_loading_backbone(tmp_path: Path) -> None:
    root = link_images(DATA, tmp_path / "cxr")  # person1000 has 2 of these 8 images
    out = tmp_path / "run"
    code = cli_main(["pretrain", "--method", "micle", "--arch", ARCH, "--data", str(root), "--img-size", "32",
                     "--batch-size", "4", "--max-steps", "2", "--out", str(out), "--hparam", "aug=cxr",
                     "--hparam", "temperature=0.2"])
    assert code == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(r["loss"] > 0 and r["images_per_s"] > 0 for r in log)
    model = zoo.create_model(ARCH, checkpoint_path=out / f"{ARCH}.safetensors")  # strict
    assert model.num_features == 512
    entry = PretrainedCfg.from_dict(json.loads((out / "pretrained_cfg.json").read_text()))
    assert entry.method == "micle" and entry.modality == "cxr" and "--method micle" in entry.command
    assert "8 images, 7 patients (1 with several images), 2 images with a same-patient partner" in entry.pretrain_data
    assert "same-patient partner" in json.loads((out / "run.json").read_text())["dataset"]


def test_resume_continues_with_the_same_pairs(patients: Path, tmp_path: Path) -> None:
    kw = dict(method="micle", arch=ARCH, data=str(patients), img_size=32, batch_size=4, epochs=2, progress=False,
              ckpt_every=0, hparams={"aug": "cxr"})
    full = pretrain(PretrainConfig(out=str(tmp_path / "full"), **kw))  # 2 steps per epoch, 2 epochs
    part = pretrain(PretrainConfig(out=str(tmp_path / "part"), max_steps=3, **kw))
    resumed = pretrain(PretrainConfig(out=str(tmp_path / "part"), resume=True, **kw))
    assert full.steps == resumed.steps == 4 and part.losses == full.losses[:3]
    assert resumed.losses == full.losses[3:]
    assert (tmp_path / "part" / f"{ARCH}.safetensors").read_bytes() == full.weights.read_bytes()


def test_clear_errors_for_unusable_data(tmp_path: Path) -> None:
    (tmp_path / "empty" / "NORMAL").mkdir(parents=True)
    cfg = DataSpec(data=str(tmp_path / "empty"))
    with pytest.raises(DatasetError, match="contains no image files"):
        MICLe.build_dataset(cfg)
    assert cli_main(["pretrain", "--method", "micle", "--arch", ARCH, "--data", str(tmp_path / "empty"),
                     "--out", str(tmp_path / "o")]) != 0
    with pytest.raises(DatasetError, match="MICLe needs a folder of images"):
        SamePatientPairs(torch.utils.data.TensorDataset(torch.zeros(2, 3)))
    with pytest.raises(ValueError, match="--data-kind medmnist"):
        MICLe.build_dataset(DataSpec(data=str(tmp_path), data_kind="medmnist"))
    with pytest.raises(ValueError, match="missing \\['partner'\\]"):
        MICLe(ARCH)({"image": torch.rand(2, 3, 32, 32)})
