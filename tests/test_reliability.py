"""Nothing lost, nothing silent (issue 14): checked writes on a full disk, resume that trusts only complete
artifacts, checkpoints that a diverging run cannot destroy, leftover temp files, image size limits, damaged JPEGs,
no-data in float GeoTIFFs, and a bounded seeded fuzz of the image and mask loaders."""
import builtins
import contextlib
import errno
import json
import logging
import os
import shutil
import subprocess
import uuid

import cv2
import numpy as np
import pytest
import torch

import misc.io
import run_sample
from data import raster_io
from misc import artifacts, robust
from misc.io import WriteError, is_complete, load_png, save_npz, save_png, save_text_lines
from tests.test_bad_input import error_line, run
from tests.tiny_data import make_cam_checkpoint, make_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reliability")
    d = make_dataset(str(tmp))
    d["names"] = open(d["train"]).read().split()
    d["cam_weights"] = make_cam_checkpoint(str(tmp / "sess" / "cam.pth"))
    return d



@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)




# --- a full disk ------------------------------------------------------------------------------------------------------

class FullDisk:
    """Stands in for ``open`` in misc.io: the first ``allow`` files opened for writing work; every later one receives
    half of its bytes, then the write fails with ENOSPC, as on a disk that has just filled up."""

    def __init__(self, allow: int):
        self.allow = allow
        self.opened = 0

    def __call__(self, file, mode="r", *args, **kwargs):
        handle = builtins.open(file, mode, *args, **kwargs)
        if "w" not in mode:
            return handle
        self.opened += 1
        return handle if self.opened <= self.allow else _FailingFile(handle)


class _FailingFile:
    def __init__(self, handle):
        self.handle = handle

    def write(self, data):
        data = memoryview(data)
        self.handle.write(data[: len(data) // 2])
        self.handle.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def temp_files(folder) -> list[str]:
    return [f for _, _, files in os.walk(folder) for f in files if ".tmp" in f]


def assert_all_complete(folder) -> None:
    """Every file under its final name is whole (and every PNG decodes)."""
    for root, _, files in os.walk(folder):
        for f in files:
            path = os.path.join(root, f)
            assert os.path.getsize(path) > 0 and is_complete(path), path
            if f.endswith(".png"):
                load_png(path)


def test_write_failure_names_the_file_and_the_cause(tmp_path, monkeypatch):
    monkeypatch.setattr(misc.io, "open", FullDisk(allow=0), raising=False)
    for write, name in [(lambda p: save_png(p, np.zeros((8, 8), np.uint8)), "a.png"),
                        (lambda p: save_npz(p, x=np.zeros(3)), "b.npz"),
                        (lambda p: misc.io.save_json(p, {"a": 1}), "c.json"),
                        (lambda p: misc.io.save_npy(p, np.zeros(3)), "d.npy")]:
        path = str(tmp_path / name)
        with pytest.raises(WriteError) as err:
            write(path)
        assert str(err.value) == f"cannot write {path}: no space left on device"
        assert err.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == []  # neither a final file nor a temp file


def test_an_encoder_that_writes_nothing_never_leaves_an_empty_file(tmp_path):
    path = str(tmp_path / "x.png")
    with pytest.raises(WriteError, match="empty file"):
        with misc.io.atomic_path(path):
            pass  # like numpy's tofile after a failed, unchecked write: the temp file stays empty
    assert os.listdir(tmp_path) == []
    save_text_lines(str(tmp_path / "empty.txt"), [])  # an empty list is a legitimate empty file
    assert os.path.getsize(tmp_path / "empty.txt") == 0


def test_cam_to_ir_label_on_a_full_disk_keeps_only_whole_labels_and_the_rerun_redoes_the_rest(
        data, tmp_path, capsys, monkeypatch):
    names = data["names"][:6]
    save_text_lines(str(tmp_path / "list.txt"), names)
    cam = ["--make_cam_pass", "True", "--voc12_root", data["root"], "--infer_list", str(tmp_path / "list.txt"),
           "--cam_weights_name", data["cam_weights"], "--cam_out_dir", str(tmp_path / "cam")]
    assert run(tmp_path, *cam) == 0
    ir = ["--cam_to_ir_label_pass", "True", "--voc12_root", data["root"], "--train_list", str(tmp_path / "list.txt"),
          "--cam_out_dir", str(tmp_path / "cam")]
    assert run(tmp_path, *ir, "--ir_label_out_dir", str(tmp_path / "reference")) == 0

    out = tmp_path / "ir"
    monkeypatch.setattr(misc.io, "open", FullDisk(allow=1 + 3), raising=False)  # args json + 3 labels fit
    assert run(tmp_path, *ir, "--ir_label_out_dir", str(out)) == 2
    line = error_line(capsys)
    assert f"cannot write {artifacts.ir_label_path(str(out), names[3])}: no space left on device" in line
    assert sorted(f for f in os.listdir(out) if f.endswith(".png")) == sorted(f"{n}.png" for n in names[:3])
    assert_all_complete(out)
    assert temp_files(out) == []

    monkeypatch.undo()  # space freed: the rerun does the 3 missing labels
    assert run(tmp_path, *ir, "--ir_label_out_dir", str(out)) == 0
    for name in names:
        assert (out / f"{name}.png").read_bytes() == (tmp_path / "reference" / f"{name}.png").read_bytes()

    # files an older, unchecked version left empty or cut short under their final names are redone, not trusted
    (out / f"{names[0]}.png").write_bytes(b"")
    whole = (out / f"{names[1]}.png").read_bytes()
    (out / f"{names[1]}.png").write_bytes(whole[: len(whole) // 2])
    assert run(tmp_path, *ir, "--ir_label_out_dir", str(out)) == 0
    assert "2 existing artifact(s) are empty or incomplete and are redone" in (tmp_path / "log.log").read_text()
    for name in names[:2]:
        assert (out / f"{name}.png").read_bytes() == (tmp_path / "reference" / f"{name}.png").read_bytes()


def test_make_cam_on_a_full_disk(data, tmp_path, capsys, monkeypatch):
    names = data["names"][:3]
    save_text_lines(str(tmp_path / "list.txt"), names)
    monkeypatch.setattr(misc.io, "open", FullDisk(allow=1 + 1), raising=False)
    out = tmp_path / "cam"
    assert run(tmp_path, "--make_cam_pass", "True", "--voc12_root", data["root"], "--infer_list",
               str(tmp_path / "list.txt"), "--cam_weights_name", data["cam_weights"], "--cam_out_dir", str(out)) == 2
    assert (f"cannot write {artifacts.cam_path(str(out), names[1])}: no space left on device"
            in error_line(capsys))
    assert sorted(f for f in os.listdir(out) if f.endswith(".npz")) == [f"{names[0]}.npz"]
    assert_all_complete(out)
    assert temp_files(out) == []


def _tiny_checkpoint(path, value: float, **kw):
    from misc.torchutils import save_checkpoint

    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(value)
    save_checkpoint(str(path), model=model, args={}, step=1, **kw)


def test_checkpoint_on_a_full_disk_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "w.pth"
    _tiny_checkpoint(path, 1.0)
    before = path.read_bytes()
    monkeypatch.setattr(misc.io, "open", FullDisk(allow=0), raising=False)
    with pytest.raises(WriteError) as err:
        _tiny_checkpoint(path, 2.0)
    assert str(err.value) == f"cannot write {path}: no space left on device"  # not torch's "unexpected pos"
    assert path.read_bytes() == before and temp_files(tmp_path) == []


def test_a_diverged_model_never_replaces_the_last_good_checkpoint(tmp_path):
    path = tmp_path / "w.pth"
    _tiny_checkpoint(path, 1.0)
    before = path.read_bytes()
    with pytest.raises(FloatingPointError, match=r"not saving .*w\.pth: the weights hold NaN/inf.*'weight'"):
        _tiny_checkpoint(path, float("nan"))
    with pytest.raises(FloatingPointError):
        _tiny_checkpoint(path, float("inf"))
    assert path.read_bytes() == before and temp_files(tmp_path) == []


def test_train_cam_whose_weights_turn_nan_keeps_the_earlier_checkpoint(data, tmp_path, capsys, monkeypatch):
    import step.train_cam

    weights = tmp_path / "cam.pth"
    shutil.copy(data["cam_weights"], weights)
    before = weights.read_bytes()
    real_step = step.train_cam.PolyOptimizer.step

    def diverging_step(self, closure=None):  # a learning rate that blows the weights up on the last step
        result = real_step(self, closure)
        with torch.no_grad():
            self.param_groups[-1]["params"][0].fill_(float("nan"))
        return result

    monkeypatch.setattr(step.train_cam.PolyOptimizer, "step", diverging_step)
    save_text_lines(str(tmp_path / "four.txt"), data["names"][:4])  # one step of 4 images: the epoch's last
    assert run(tmp_path, "--train_cam_pass", "True", "--voc12_root", data["root"], "--train_list",
               str(tmp_path / "four.txt"), "--cam_crop_size", "32", "--cam_batch_size", "4", "--cam_num_epochs", "1",
               "--pretrained", "none", "--cam_weights_name", str(weights)) == 2
    line = error_line(capsys)
    assert f"not saving {weights}: the weights hold NaN/inf" in line and "previous checkpoint" in line
    assert weights.read_bytes() == before


@contextlib.contextmanager
def tmpfs(mount_point, options: str):
    """A small tmpfs at ``mount_point`` where mounting is allowed (root); the test is skipped elsewhere."""
    mount_point.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"mount not permitted here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def test_tmpfs_full_disk(tmp_path):
    """A real full file system (a 64 KiB tmpfs)."""
    with tmpfs(tmp_path / "small", "size=64k") as mount_point:
        noise = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)  # ~190 KiB as PNG
        path = str(mount_point / "big.png")
        with pytest.raises(WriteError) as err:
            save_png(path, noise)
        assert str(err.value) == f"cannot write {path}: no space left on device"
        assert os.listdir(mount_point) == []
        save_png(str(mount_point / "small.png"), noise[:8, :8])  # space is left for what fits
        assert load_png(str(mount_point / "small.png")).shape == (8, 8, 3)


def test_data_prepare_into_a_read_only_folder(data, tmp_path, capsys):
    """A real read-only file system (root ignores permission bits, not a read-only mount)."""
    from data import prepare

    raw = os.path.join(os.path.dirname(data["root"]), "raw")
    with tmpfs(tmp_path / "ro", "ro,size=64k") as mount_point:
        with pytest.raises(SystemExit) as stop:
            prepare.main(["--images", raw, "--masks", raw, "--out_root", str(mount_point / "out"), "--quiet"])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and "Traceback" not in err
        assert f"cannot create output folder '{mount_point / 'out' / 'JPEGImages'}'" in err
        assert "read-only file system" in err.lower()


# --- leftover temp files ----------------------------------------------------------------------------------------------

def test_train_irn_resume_removes_temp_overlays_of_a_killed_run(tmp_path):
    from misc.torchutils import save_checkpoint
    from net.cam_net import CAMNet
    from step.train_irn import run as train_irn
    from tests.test_irn import fixture_args, make_fixture

    paths = make_fixture(tmp_path)
    args = fixture_args(paths, tmp_path, "--irn_boundary", "plain", "--cam_num_overlays", "0")
    torch.manual_seed(1)
    save_checkpoint(args.cam_weights_name, model=CAMNet("efficientnet_lite0", num_classes=1, pretrained=None),
                    args={"backbone": "efficientnet_lite0"}, step=0, extra={"kind": "cam", "num_classes": 1})
    train_irn(args)
    overlays = os.path.dirname(artifacts.irn_boundary_overlay_path(args.irn_weights_name, "a"))
    os.makedirs(overlays, exist_ok=True)
    stale = [os.path.join(overlays, ".a.k3j_x.tmp.png"), str(tmp_path / "sess" / ".irn.q1w2.tmp.pth"),
             str(tmp_path / "sess" / ".args_train_irn.z9.tmp.json")]
    keep = [os.path.join(overlays, "b.png"), str(tmp_path / "sess" / ".other.q1.tmp.pth")]
    for path in stale + keep:
        open(path, "wb").write(b"x")
    args.resume = True  # everything trained: the resumed run only cleans and checks
    train_irn(args)
    assert [p for p in stale if os.path.exists(p)] == []
    assert all(os.path.exists(p) for p in keep)  # only this pass's temp files go


# --- images: size limit, damage, no-data ------------------------------------------------------------------------------

def _png_header_claiming(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_decompression_bomb_header_is_refused_naming_the_file(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_claiming(100000, 100000))
    for reader in (raster_io.read_image, raster_io.read_mask, load_png):  # load_png: the passes' label reader
        with pytest.raises(ValueError) as err:
            reader(str(bomb))
        assert str(bomb) in str(err.value) and "100000x100000" in str(err.value)
        assert f"{raster_io.MAX_IMAGE_PIXELS:,}" in str(err.value)
    # the JPEG frame header is parsed too
    ok, buf = cv2.imencode(".jpg", np.zeros((24, 40, 3), np.uint8))
    assert raster_io.header_size(buf.tobytes()) == (40, 24)
    assert raster_io.header_size(_png_header_claiming(7, 5)) == (7, 5)


def _damaged_jpeg(path) -> bool:
    """Write a JPEG whose entropy-coded data has one flipped byte that libjpeg decodes with a warning."""
    rng = np.random.default_rng(0)
    ok, buf = cv2.imencode(".jpg", (rng.random((48, 48, 3)) * 255).astype(np.uint8))
    data = bytearray(buf.tobytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return True


def test_damaged_jpeg_is_a_named_warning_and_counted(data, tmp_path, caplog):
    bad = tmp_path / "damaged.jpg"
    _damaged_jpeg(bad)
    counter = robust.BadItems("test", skip_bad=False)
    with caplog.at_level(logging.WARNING):
        image = raster_io.read_image(str(bad))
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8
    assert [p for p, _ in counter.damaged] == [str(bad)]
    assert any(str(bad) in r.getMessage() and "Corrupt JPEG data" in r.getMessage() for r in caplog.records)
    counter.log_summary()
    assert "test: 1 damaged file(s) decoded with warnings" in caplog.text
    # an intact JPEG is not reported
    ok, buf = cv2.imencode(".jpg", image)
    (tmp_path / "fine.jpg").write_bytes(buf.tobytes())
    raster_io.read_image(str(tmp_path / "fine.jpg"))
    assert len(counter.damaged) == 1


def _float_scene(path, nodata_value=-9999.0):
    """A float32 3-band GeoTIFF: a ramp, NaN in the top-left 8x8, the nodata value in the bottom-right 8x8."""
    import rasterio

    h, w = 32, 32
    bands = np.stack([np.linspace(100, 200, h * w, dtype=np.float32).reshape(h, w) + 10 * c for c in range(3)])
    bands[:, :8, :8] = np.nan
    bands[:, -8:, -8:] = nodata_value
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=3, dtype="float32",
                       nodata=nodata_value) as dst:
        dst.write(bands)
    return bands


def test_nan_and_nodata_are_left_out_of_the_stretch(tmp_path):
    _float_scene(str(tmp_path / "f.tif"))
    image, nodata = raster_io.read_image_nodata(str(tmp_path / "f.tif"))
    assert nodata.sum() == 2 * 64 and nodata[:8, :8].all() and nodata[-8:, -8:].all()
    valid = image[~nodata]
    assert valid.min() == 0 and valid.max() == 255  # the 2-98 % stretch of the valid ramp spans the whole range
    assert (image[nodata] == 0).all()
    assert np.percentile(valid[:, 0], 50) > 100  # not the all-black patch np.percentile's NaN gave


def test_prepare_makes_nodata_pixels_ignore_and_counts_them(tmp_path):
    from data.prepare import prepare

    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    _float_scene(str(src / "images" / "s.tif"))
    mask = np.zeros((32, 32, 3), np.uint8)
    mask[:] = (60, 16, 152)  # all building in the dubai palette
    save_png(str(src / "masks" / "s.png"), mask)
    summary = prepare(str(src), str(src), palette="dubai", fg_classes=["building"], patch_size=0,
                      out_root=str(tmp_path / "out"), quiet=True)
    assert summary["nodata_pixels"] == 128
    label = load_png(artifacts.mask_path(str(tmp_path / "out"), summary["names"][0]))
    assert (label[:8, :8] == 255).all() and (label[-8:, -8:] == 255).all()
    assert (label == 1).sum() == 32 * 32 - 128


def test_truncated_geotiff_names_the_file_and_gdal_s_reason(tmp_path):
    import rasterio

    from data.raster_io import SceneReader

    path = tmp_path / "cut.tif"
    with rasterio.open(path, "w", driver="GTiff", width=200, height=200, count=3, dtype="uint16") as dst:
        dst.write((np.arange(3 * 200 * 200) % 1000).astype(np.uint16).reshape(3, 200, 200))
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError) as err:
        raster_io.read_image(str(path))
    assert str(path) in str(err.value) and "Read failed" not in str(err.value)
    assert "TIFFReadEncodedStrip" in str(err.value) or "IReadBlock" in str(err.value)
    with pytest.raises(ValueError) as err:  # predict reads TIFF scenes window by window
        reader = SceneReader(str(path))
        reader.read_rows(0, 200)
    assert str(path) in str(err.value) and "Read failed" not in str(err.value)


# --- a bounded, seeded fuzz of the loaders ----------------------------------------------------------------------------

def _mutations(data: bytes, rng: np.random.Generator, count: int):
    """``count`` mutated copies: flipped bytes, a truncation, a random insertion or a zeroed run."""
    for _ in range(count):
        d = bytearray(data)
        kind = rng.integers(4)
        if kind == 0:
            for pos in rng.integers(0, len(d), size=rng.integers(1, 4)):
                d[pos] ^= int(rng.integers(1, 256))
        elif kind == 1:
            d = d[: int(rng.integers(0, len(d)))]
        elif kind == 2:
            pos = int(rng.integers(0, len(d)))
            d[pos:pos] = rng.integers(0, 256, size=int(rng.integers(1, 16)), dtype=np.uint8).tobytes()
        else:
            pos = int(rng.integers(0, len(d)))
            d[pos:pos + int(rng.integers(1, 32))] = bytes(32)[: len(d[pos:pos + 32])]
        yield bytes(d)


def test_fuzzed_images_and_masks_decode_or_fail_naming_the_file(tmp_path):
    import rasterio

    rng = np.random.default_rng(14)
    base = (np.random.default_rng(1).random((24, 32, 3)) * 255).astype(np.uint8)
    sources = {}
    for ext in (".png", ".jpg"):
        ok, buf = cv2.imencode(ext, base)
        sources[ext] = buf.tobytes()
    ok, buf = cv2.imencode(".png", (base[..., 0] > 128).astype(np.uint8))
    sources["mask.png"] = buf.tobytes()
    with rasterio.open(tmp_path / "src.tif", "w", driver="GTiff", width=32, height=24, count=3,
                       dtype="uint8") as dst:
        dst.write(np.moveaxis(base, -1, 0))
    sources[".tif"] = (tmp_path / "src.tif").read_bytes()

    outcomes = {"decoded": 0, "error": 0}
    for key, original in sources.items():
        readers = (raster_io.read_mask, load_png) if key.startswith("mask") else (raster_io.read_image,)
        for i, mutated in enumerate(_mutations(original, rng, 80)):  # 320 mutated files, 400 reads in all
            path = tmp_path / f"m{i}_{uuid.uuid4().hex[:6]}{os.path.splitext(key)[1]}"
            path.write_bytes(mutated)
            for reader in readers:
                try:
                    array = reader(str(path))
                except (ValueError, OSError) as err:
                    assert str(path) in str(err), (key, i, str(err))
                    outcomes["error"] += 1
                    continue
                assert array.dtype == np.uint8 and array.size > 0
                if reader is raster_io.read_image:
                    assert array.ndim == 3 and array.shape[2] == 3, (key, i, array.shape)
                else:
                    assert array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4)), (key, i, array.shape)
                assert array.shape[0] * array.shape[1] <= raster_io.MAX_IMAGE_PIXELS
                outcomes["decoded"] += 1
            path.unlink()
    assert outcomes["decoded"] > 0 and outcomes["error"] > 0, outcomes  # both kinds of outcome were exercised


def test_json_sidecar_rows_follow_a_resumed_run(tmp_path):
    from misc.torchutils import save_checkpoint

    path = str(tmp_path / "w.pth")
    model = torch.nn.Linear(2, 1)
    for step in (1, 2, 3):
        save_checkpoint(path, model=model, args={}, step=step, metrics={"loss": 0.5, "epoch_seconds": 1.5},
                        extra={"epoch": step})
    save_checkpoint(path, model=model, args={}, step=2, metrics={"epoch_seconds": 2.0}, extra={"epoch": 2})
    rows = json.load(open(artifacts.checkpoint_timings_path(path)))["checkpoints"]
    assert [(r["epoch"], r["epoch_seconds"]) for r in rows] == [(1, 1.5), (2, 2.0)]
    assert torch.load(path, weights_only=False)["metrics"] == {}


def test_a_streamed_writer_failing_on_the_disk_names_the_final_file(tmp_path):
    """predict streams GeoJSON / GeoTIFF into atomic_path's temp file; a disk error there names the real file."""
    path = str(tmp_path / "scene_buildings.geojson")
    with pytest.raises(WriteError) as err:
        with misc.io.atomic_path(path) as tmp:
            with open(tmp, "w") as f:
                f.write("{")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what file.write raises on a full disk
    assert str(err.value) == f"cannot write {path}: no space left on device"
    with pytest.raises(ValueError, match="not a disk error"):  # anything else passes through unchanged
        with misc.io.atomic_path(path):
            raise ValueError("not a disk error")
    assert os.listdir(tmp_path) == []


def test_write_error_survives_a_worker_process():
    import pickle

    err = pickle.loads(pickle.dumps(WriteError("/out/a.png", "no space left on device", errno.ENOSPC)))
    assert isinstance(err, WriteError) and isinstance(err, OSError)
    assert str(err) == "cannot write /out/a.png: no space left on device" and err.errno == errno.ENOSPC


def test_an_eval_pass_removes_the_temp_json_of_a_killed_run(data, tmp_path):
    names = data["names"][:2]
    save_text_lines(str(tmp_path / "list.txt"), names)
    cam = tmp_path / "cam"
    assert run(tmp_path, "--make_cam_pass", "True", "--voc12_root", data["root"], "--infer_list",
               str(tmp_path / "list.txt"), "--cam_weights_name", data["cam_weights"], "--cam_out_dir", str(cam)) == 0
    stale = [cam / ".eval_cam.a1b2c3.tmp.json", cam / ".args_eval_cam.x9.tmp.json"]
    for path in stale:
        path.write_text("{")  # a kill during eval_cam's own writes
    assert run(tmp_path, "--eval_cam_pass", "True", "--voc12_root", data["root"], "--infer_list",
               str(tmp_path / "list.txt"), "--cam_out_dir", str(cam)) == 0
    assert [p for p in stale if p.exists()] == [] and (cam / "eval_cam.json").is_file()
