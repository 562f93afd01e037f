"""Region mode end to end: features.zarr equals a plain per-region forward, background is skipped, the output
contract (open_features), classifier heatmaps, empty results, multi-slide inputs and the bad-input paths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from slide_support import TEST_MODEL, reference_grids, small_slide
from test_train_support import one_thread  # noqa: F401 (autouse fixture)

from atlas_vision.cli import main as cli_main
from atlas_vision.slide import RegionReadError, SlideError, open_features
from atlas_vision.slide.run import EmbedOptions, embed_slides

OPTS = {"model": TEST_MODEL, "region_size": 256, "overlap": 64, "read_threads": 2, "thumbnail_size": 256}


def _run(inputs, out: Path, **kw) -> list[dict]:
    return embed_slides(inputs, out, EmbedOptions(**{**OPTS, **kw}), device="cpu")


@pytest.fixture(scope="module")
def slide(tmp_path_factory) -> Path:
    return small_slide(tmp_path_factory.mktemp("slides") / "s.tif")


def test_features_equal_plain_forward_and_background_is_skipped(slide: Path, tmp_path: Path) -> None:
    (summary,) = _run([slide], tmp_path, batch_size=3, dtype="float32")
    regions = summary["regions"]
    assert regions["total"] == 35  # ceil(1280 / 192) x ceil(960 / 192) = 7 x 5
    assert 0 < regions["tissue"] < regions["total"] and regions["done"] == regions["tissue"]
    assert regions["skipped_background"] == regions["total"] - regions["tissue"]
    feats = open_features(tmp_path / "s")
    done = [r * 7 + c for r, c in feats.attrs["regions_done"]]
    want = reference_grids(slide, 256, 64, done)
    for stage, (got, ref) in enumerate(zip(feats.stages, want)):
        assert got.shape == ref.shape == (32, -(-960 // feats.strides[stage]), -(-1280 // feats.strides[stage]))
        np.testing.assert_allclose(np.asarray(got[...]), ref, atol=2e-5, rtol=1e-5)
        valid = feats.tissue_mask(stage)
        assert valid.any() and not valid.all()
        assert (np.abs(ref).sum(axis=0) > 0)[valid].all() and (ref[:, ~valid] == 0).all()
    emb = np.asarray(feats.region_embedding[...])
    assert np.allclose(summary["embedding"], emb.reshape(-1, emb.shape[-1])[done].mean(axis=0), atol=1e-6)
    for png in ("tissue.png", "heatmap.png"):
        assert (tmp_path / "s" / png).stat().st_size > 10_000


def test_output_contract(slide: Path, tmp_path: Path) -> None:
    _run([slide], tmp_path, level=1, region_size=192, overlap=0)
    feats = open_features(tmp_path / "s" / "features.zarr")
    attrs = feats.attrs
    for key in (
        "mpp",
        "level",
        "downsample",
        "region_size",
        "overlap",
        "strides",
        "model",
        "weights_sha256",
        "library_version",
        "regions_done",
        "stitch_rule",
        "dtype",
        "slide_dimensions",
    ):
        assert key in attrs, key
    assert (attrs["level"], attrs["downsample"], attrs["mpp"], attrs["region_size"]) == (1, 2.0, 1.0, 192)
    assert attrs["strides"] == [8, 16, 32] and attrs["model"] == TEST_MODEL and len(attrs["weights_sha256"]) == 64
    assert all(isinstance(a, zarr.Array) for a in feats.stages + feats.valid)
    assert feats.stages[0].dtype == np.float16 and feats.stages[0].shape == (32, 60, 80)  # 480 x 640 px / 8
    assert feats.stages[0].chunks == (32, 24, 24) and feats.valid[0].dtype == np.uint8
    coords = feats.cell_coordinates(0)
    assert len(coords) == feats.tissue_mask(0).sum() and (coords % 16 == 0).all()  # level-0 px, stride 8 x 2
    summary = json.loads((tmp_path / "s" / "slide.json").read_text())
    assert summary["status"] == "finished" and summary["prediction"] is None
    assert set(summary["timings"]["ranks"][0]) >= {"read_wait_s", "compute_s", "write_s", "regions"}


def test_classifier_gives_probability_heatmap(slide: Path, tmp_path: Path) -> None:
    (summary,) = _run([slide], tmp_path, num_classes=3, mpp=1.0)
    probs = open_features(tmp_path / "s").region_probs
    done = np.asarray(open_features(tmp_path / "s").attrs["regions_done"])
    p = np.asarray(probs[...])[done[:, 0], done[:, 1]]
    assert np.allclose(p.sum(axis=1), 1, atol=1e-5)
    assert summary["heatmap"] == "probabilities"
    assert np.allclose(summary["prediction"]["probabilities"], p.mean(axis=0), atol=1e-6)
    assert summary["prediction"]["label"] == int(p.mean(axis=0).argmax())


def test_resampled_mpp_between_levels(slide: Path, tmp_path: Path) -> None:
    (summary,) = _run([slide], tmp_path, mpp=0.75)  # 1.5x below level 0 (0.5 µm/px)
    assert summary["resolution"]["level"] == 0 and summary["resolution"]["factor"] == pytest.approx(1.5)
    assert open_features(tmp_path / "s").stages[0].shape[1:] == (80, 107)  # 640 x 853 px / 8


def test_no_tissue_gives_empty_but_valid_result(tmp_path: Path, capsys) -> None:
    blank = tmp_path / "blank.tif"
    tifffile.imwrite(blank, np.full((500, 700, 3), 244, np.uint8), tile=(128, 128), photometric="rgb")
    (summary,) = _run([blank], tmp_path / "out")
    assert "no tissue found in blank.tif" in capsys.readouterr().err
    assert summary["regions"]["done"] == 0 and summary["regions"]["tissue"] == 0
    assert summary["embedding"] is None and summary["status"] == "finished"
    feats = open_features(tmp_path / "out" / "blank")
    assert not feats.tissue_mask(0).any() and feats.attrs["regions_done"] == []
    assert (tmp_path / "out" / "blank" / "heatmap.png").is_file()


def test_folder_and_list_inputs_skip_finished_slides(slide: Path, tmp_path: Path) -> None:
    folder = tmp_path / "slides"
    folder.mkdir()
    small_slide(folder / "a.tif", 640, 448, seed=1)
    small_slide(folder / "b.tif", 512, 512, seed=2)
    first = _run([folder], tmp_path / "run")
    assert [s["slide_id"] for s in first] == ["a", "b"] and all("skipped" not in s for s in first)
    listing = tmp_path / "slides.txt"
    listing.write_text("# my cohort\nslides/b.tif\nslides/a.tif\n")
    again = _run([listing], tmp_path / "run")
    assert [s["slide_id"] for s in again] == ["b", "a"]
    assert all(s["skipped"] == "finished earlier" for s in again)
    with pytest.raises(SlideError, match="other settings.*overlap: 64 -> 128"):
        _run([folder / "a.tif"], tmp_path / "run", overlap=128)
    (redone,) = _run([folder / "a.tif"], tmp_path / "run", overlap=128, overwrite=True)
    assert "skipped" not in redone and redone["fingerprint"]["overlap"] == 128


def test_region_geometry_errors_name_valid_values(slide: Path, tmp_path: Path) -> None:
    with pytest.raises(SlideError, match=r"--overlap 100 must be a multiple of 64.*64 or 128"):
        _run([slide], tmp_path, overlap=100)
    with pytest.raises(
        SlideError,
        match=r"--region-size 300 minus --overlap 64 = 236 must be a multiple of .* 32; nearest valid region sizes: 288 or 320",
    ):
        _run([slide], tmp_path, region_size=300)
    with pytest.raises(SlideError, match="--overlap must be in 0..255"):
        _run([slide], tmp_path, overlap=256)


def _corrupt_slide(path: Path) -> Path:
    rng = np.random.default_rng(0)
    pixels = (rng.integers(120, 200, (512, 640, 3))).astype(np.uint8)
    pixels[..., 1] //= 2  # saturated: all tissue
    tifffile.imwrite(path, pixels, tile=(128, 128), photometric="rgb", compression="zlib")
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[0].dataoffsets[6], tif.pages[0].databytecounts[6]  # tile row 1, col 1
    data = bytearray(path.read_bytes())
    data[offset : offset + count] = b"\xff" * count
    path.write_bytes(bytes(data))
    return path


def test_corrupt_tile_region_is_skipped_and_reported_or_stops_under_strict(tmp_path: Path) -> None:
    bad = _corrupt_slide(tmp_path / "bad.tif")
    (summary,) = _run([bad], tmp_path / "run", tissue="all")
    failed = summary["regions"]["failed"]
    assert len(failed) >= 1 and all("cannot decode level 0 region" in m for m in failed.values())
    assert summary["regions"]["done"] == summary["regions"]["tissue"] - len(failed)
    with pytest.raises(RegionReadError, match="bad.tif: cannot decode level 0 region"):
        _run([bad], tmp_path / "strict", tissue="all", strict=True)
    assert not (tmp_path / "strict" / "bad" / "slide.json").exists()


def test_cli_bad_inputs_exit_2(tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "o")
    assert cli_main(["slide", "embed", str(tmp_path / "nope.svs"), "--out", out]) == 2
    assert "slide not found" in capsys.readouterr().err
    odd = tmp_path / "x.czi"
    odd.write_bytes(b"?")
    assert cli_main(["slide", "embed", str(odd), "--out", out, "--model", TEST_MODEL]) == 2
    assert "unsupported slide format '.czi'" in capsys.readouterr().err
    png = tmp_path / "p.png"
    from PIL import Image

    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(png)
    assert cli_main(["slide", "embed", str(png), "--out", out, "--model", TEST_MODEL, "--mpp", "0.5"]) == 2
    assert "--slide-mpp" in capsys.readouterr().err
    assert cli_main(["slide", "embed", str(png), "--out", out, "--level", "1"]) == 2
    assert "level 1 out of range" in capsys.readouterr().err
    assert cli_main(["slide", "frobnicate"]) == 2
    assert cli_main(["slide", "info", str(png)]) == 0
    assert json.loads(capsys.readouterr().out)["level_dimensions"] == [[64, 64]]


def test_cli_synth_then_map_redraws_heatmap(tmp_path: Path, capsys) -> None:
    path = tmp_path / "syn.tif"
    assert cli_main(["slide", "synth", str(path), "--width", "700", "--height", "500", "--seed", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["level_dimensions"] == [[700, 500]]
    args = [
        "slide",
        "embed",
        str(path),
        "--out",
        str(tmp_path / "run"),
        "--model",
        TEST_MODEL,
        "--region-size",
        "256",
        "--overlap",
        "64",
        "--num-classes",
        "2",
        "--thumbnail-size",
        "256",
    ]
    assert cli_main(args) == 0
    capsys.readouterr()
    assert (
        cli_main(["slide", "map", str(tmp_path / "run" / "syn"), "--stage", "0", "--out", str(tmp_path / "p.png")]) == 0
    )
    assert capsys.readouterr().out.strip().endswith("pca stage 0")
    assert cli_main(["slide", "map", str(tmp_path / "run" / "syn")]) == 0
    assert capsys.readouterr().out.strip().endswith("probabilities")
    assert (tmp_path / "p.png").stat().st_size > 10_000
    assert cli_main(["slide", "map", str(tmp_path / "run" / "syn"), "--stage", "7"]) == 2
    assert "stage 7 out of range 0..2" in capsys.readouterr().err


@pytest.mark.gpu
def test_cuda_bf16_run_matches_cpu_features(slide: Path, tmp_path: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    _run([slide], tmp_path / "cpu", dtype="float32")
    embed_slides([slide], tmp_path / "gpu", EmbedOptions(**{**OPTS, "dtype": "float32"}), device="cuda")
    cpu, gpu = open_features(tmp_path / "cpu" / "s"), open_features(tmp_path / "gpu" / "s")
    for a, b in zip(cpu.stages, gpu.stages):
        a, b = np.asarray(a[...]), np.asarray(b[...])
        assert np.abs(a - b).max() <= 0.05 * np.abs(a).max() + 0.05  # bf16 autocast on CUDA


def test_user_mask_image_selects_the_regions(slide: Path, tmp_path: Path) -> None:
    from PIL import Image

    mask = np.zeros((30, 40), np.uint8)  # any size: resized to the thumbnail
    mask[:, :10] = 255  # the left quarter of the slide
    Image.fromarray(mask).save(tmp_path / "mask.png")
    (summary,) = _run([slide], tmp_path / "run", tissue=str(tmp_path / "mask.png"))
    assert summary["tissue"]["method"] == "mask"
    done = open_features(tmp_path / "run" / "s").attrs["regions_done"]
    assert {c for _, c in done} == {0, 1}  # owned columns [0, 192) and [192, 384) touch x < 320
    assert len(done) == 10
    with pytest.raises(SlideError, match="neither a method"):
        _run([slide], tmp_path / "bad", tissue=str(tmp_path / "nope.png"))


def test_truncated_file_regions_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "trunc.tif"
    rng = np.random.default_rng(1)
    pixels = rng.integers(100, 200, (512, 640, 3)).astype(np.uint8)
    pixels[..., 1] //= 2
    tifffile.imwrite(path, pixels, tile=(128, 128), photometric="rgb", compression="zlib")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])  # the last tiles are cut off
    (summary,) = _run([path], tmp_path / "run", tissue="all")
    assert summary["regions"]["failed"] and summary["regions"]["done"] >= 1
    assert summary["regions"]["done"] + len(summary["regions"]["failed"]) == summary["regions"]["tissue"]
