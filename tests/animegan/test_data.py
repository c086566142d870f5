"""The unpaired dataset: bad files reported by name, sizes, grayscale, seeded resumable streams."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from animegan.data import ShuffledStream, UnpairedDataset, list_images, load_image_set
from animegan.errors import DatasetError


def write_images(folder, count, size=(48, 40), seed=0, fmt="PNG", suffix=".png"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"img{i:02d}{suffix}"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, format=fmt)
        paths.append(path)
    return paths


def make_dataset(tmp_path, n_photos=5, n_styles=3, batch=2, seed=0, size=32):
    write_images(tmp_path / "photos", n_photos, seed=1)
    write_images(tmp_path / "styles", n_styles, seed=2, fmt="JPEG", suffix=".jpg")
    return UnpairedDataset(
        tmp_path / "photos",
        tmp_path / "styles",
        image_size=size,
        batch_size=batch,
        seed=seed,
        smooth_cache_dir=tmp_path / "cache",
    )


def test_bad_files_are_reported_by_name(tmp_path):
    photos = tmp_path / "photos"
    write_images(photos, 2)
    good = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(good, format="JPEG")
    (photos / "truncated.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 3])
    (photos / "garbage.png").write_bytes(np.random.default_rng(0).bytes(500))
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "notes.jpg").write_text("this is a text file, not a photo\n")
    Image.new("RGB", (4, 4)).save(photos / "tiny.png")
    write_images(tmp_path / "styles", 2)

    with pytest.raises(DatasetError) as info:
        UnpairedDataset(
            photos,
            tmp_path / "styles",
            image_size=32,
            batch_size=2,
            seed=0,
            smooth_cache_dir=tmp_path / "cache",
        )
    message = str(info.value)
    for name in ("truncated.jpg", "garbage.png", "empty.jpg", "notes.jpg", "tiny.png"):
        assert name in message, f"{name} missing from: {message}"
    assert "img00.png" not in message
    assert "5 of 7 photo images" in message
    assert "4x4 is too small" in message


def test_missing_folder_empty_folder_and_missing_listed_file(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        list_images(tmp_path / "nope", "photo")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="holds no images"):
        list_images(tmp_path / "empty", "style")
    write_images(tmp_path / "styles", 1)
    with pytest.raises(DatasetError, match="gone.png"):
        UnpairedDataset(
            [tmp_path / "gone.png"],
            tmp_path / "styles",
            image_size=32,
            batch_size=1,
            seed=0,
            smooth_cache_dir=tmp_path / "cache",
        )


def test_batches_shapes_ranges_and_iterations(tmp_path):
    data = make_dataset(tmp_path, n_photos=5, n_styles=3, batch=2)
    assert data.iterations_per_epoch == 2  # max(5, 3) // 2
    batch = data.next_batch()
    for t in (batch.photo, batch.anime, batch.anime_gray, batch.smooth_gray):
        assert t.shape == (2, 3, 32, 32)
        assert t.dtype == torch.float32
        assert t.min() >= -1 and t.max() <= 1
    assert torch.equal(batch.anime_gray[:, 0], batch.anime_gray[:, 2])
    assert torch.equal(batch.smooth_gray[:, 0], batch.smooth_gray[:, 1])
    data.batch_size = 8
    assert data.iterations_per_epoch == 1


def test_grayscale_uses_rgb_order(tmp_path):
    Image.new("RGB", (32, 32), (255, 0, 0)).save(tmp_path / "red.png")
    write_images(tmp_path / "photos", 1)
    data = UnpairedDataset(
        tmp_path / "photos",
        [tmp_path / "red.png"],
        image_size=32,
        batch_size=1,
        seed=0,
        smooth_cache_dir=tmp_path / "cache",
    )
    # ITU-R 601 luma of pure red is 0.299 * 255 = 76; a swapped R/B conversion would give 29.
    assert int(data.styles.gray[0, 5, 5]) == 76
    expected = 76 / 127.5 - 1
    assert data.next_batch().anime_gray[0, :, 5, 5].tolist() == pytest.approx([expected] * 3)


def test_resize_keeps_aspect_by_center_crop(tmp_path):
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, :10] = 255  # a white left band, cropped away by a center crop to a square
    Image.fromarray(img).save(tmp_path / "wide.png")
    data = UnpairedDataset(
        [tmp_path / "wide.png"],
        [tmp_path / "wide.png"],
        image_size=32,
        batch_size=1,
        seed=0,
        smooth_cache_dir=tmp_path / "cache",
    )
    assert data.photos.color.shape == (1, 32, 32, 3)
    assert data.photos.color.max() <= 5


def test_stream_is_a_permutation_per_pass_and_resumes_exactly():
    stream = ShuffledStream(7, seed=3)
    first_pass = stream.take(7)
    assert sorted(first_pass) == list(range(7))
    stream.take(3)
    state = stream.state_dict()
    expected = stream.take(20)

    other = ShuffledStream(7, seed=3)
    other.load_state_dict(state)
    assert other.take(20) == expected
    assert ShuffledStream(7, seed=4).take(7) != first_pass

    with pytest.raises(DatasetError, match="had 7 images, this dataset has 6"):
        ShuffledStream(6, seed=3).load_state_dict(state)


def test_seeded_batches_reproduce_and_streams_are_independent(tmp_path):
    a = make_dataset(tmp_path / "a", n_photos=6, n_styles=6, batch=3, seed=5)
    b = make_dataset(tmp_path / "b", n_photos=6, n_styles=6, batch=3, seed=5)
    for _ in range(3):
        ba, bb = a.next_batch(), b.next_batch()
        assert torch.equal(ba.photo, bb.photo) and torch.equal(ba.smooth_gray, bb.smooth_gray)
    orders = [a.streams[name].take(6) for name in ("photo", "style", "smooth")]
    assert len({tuple(o) for o in orders}) == 3, f"streams share an order: {orders}"

    state = a.state_dict()
    expected = a.next_batch()
    c = make_dataset(tmp_path / "c", n_photos=6, n_styles=6, batch=3, seed=5)
    c.load_state_dict(state)
    got = c.next_batch()
    assert torch.equal(got.photo, expected.photo) and torch.equal(got.anime, expected.anime)


def test_shared_photos_load(shared_data, tmp_path):
    photos = sorted((shared_data / "photos").glob("*.jpg"))[:3]
    styles = sorted((shared_data / "hayao_reference").glob("*.jpg"))[:3]
    data = UnpairedDataset(photos, styles, image_size=64, batch_size=2, seed=0, smooth_cache_dir=tmp_path)
    assert data.photos.color.shape == (3, 64, 64, 3)
    # Real anime frames have line art, so smoothing must change some pixels.
    assert (data.smooth_gray != data.styles.gray).any()


def test_decoded_images_are_cached_by_content(tmp_path, monkeypatch):
    import animegan.data.dataset as dataset_module

    paths = write_images(tmp_path / "photos", 3)
    calls = []
    real_decode = dataset_module.decode_fitted

    def counting_decode(*args):
        calls.append(1)
        return real_decode(*args)

    monkeypatch.setattr(dataset_module, "decode_fitted", counting_decode)
    first = load_image_set(tmp_path / "photos", "photo", 32, cache_dir=tmp_path / "cache")
    assert len(calls) == 3
    second = load_image_set(tmp_path / "photos", "photo", 32, cache_dir=tmp_path / "cache")
    assert len(calls) == 3, "the second load decoded again"
    np.testing.assert_array_equal(second.color, first.color)

    Image.new("RGB", (48, 40), (200, 10, 10)).save(paths[1])
    third = load_image_set(tmp_path / "photos", "photo", 32, cache_dir=tmp_path / "cache")
    assert len(calls) == 6
    assert tuple(third.color[1, 5, 5]) == (200, 10, 10)
    np.testing.assert_array_equal(third.color[0], first.color[0])
