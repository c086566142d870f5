"""load_image / encode_image: EXIF orientation, every input mode, tiny images, bombs and non-images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from animegan.errors import ImageError
from animegan.inference import encode_image, load_image


def png_bytes(image: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", **kw)
    return buf.getvalue()


def test_rgb_jpeg_from_bytes_and_path(tmp_path):
    rng = np.random.default_rng(0)
    src = Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    path = tmp_path / "a.jpg"
    src.save(path, quality=95)
    for source in (path, str(path), path.read_bytes()):
        image = load_image(source)
        assert image.mode == "RGB" and image.size == (30, 20)


def test_exif_orientation_is_applied():
    # Stored 40x20 with a red left half; orientation 6 means "rotate 90 degrees clockwise to display".
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", exif=exif, quality=100)
    image = np.asarray(load_image(buf.getvalue())).astype(int)
    assert image.shape == (40, 20, 3)
    assert image[5, 10, 0] > 200 and image[5, 10, 2] < 60  # the red half is now on top
    assert image[35, 10, 0] < 60


def test_cmyk_becomes_rgb():
    buf = io.BytesIO()
    Image.new("CMYK", (16, 8), (0, 255, 255, 0)).save(buf, format="JPEG", quality=100)  # pure red ink
    image = load_image(buf.getvalue())
    assert image.mode == "RGB" and image.size == (16, 8)
    r, g, b = np.asarray(image)[4, 8].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_16_bit_grey_is_scaled_not_clipped():
    values = np.array([[0, 32896, 65535]], dtype=np.uint16)  # 32896 = 128 * 257
    image = load_image(png_bytes(Image.fromarray(values)))
    assert image.mode == "RGB"
    assert np.asarray(image)[0, :, 0].tolist() == [0, 128, 255]


def test_palette_with_and_without_transparency():
    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    assert load_image(png_bytes(pal)).mode == "RGB"
    with_alpha = load_image(png_bytes(pal, transparency=1))
    assert with_alpha.mode == "RGBA" and np.asarray(with_alpha)[0, 0, 3] == 0


@pytest.mark.parametrize(("mode", "expected"), [("L", "RGB"), ("LA", "RGBA"), ("1", "RGB"), ("RGBA", "RGBA")])
def test_grey_and_alpha_modes(mode, expected):
    image = load_image(png_bytes(Image.new(mode, (5, 3))))
    assert image.mode == expected and image.size == (5, 3)


@pytest.mark.parametrize("size", [(1, 1), (3, 2)])
def test_tiny_images(size):
    assert load_image(png_bytes(Image.new("RGB", size, (10, 20, 30)))).size == size


def test_not_an_image_names_the_problem(tmp_path):
    with pytest.raises(ImageError, match="not an image"):
        load_image(b"%PDF-1.4 definitely not a picture")
    path = tmp_path / "notes.png"
    path.write_text("hello")
    with pytest.raises(ImageError, match="notes.png"):
        load_image(path)


def test_truncated_image_is_an_image_error():
    data = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(data[: len(data) // 2])


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "nope.jpg")


def test_decompression_bomb_refused_with_the_numbers():
    bomb = png_bytes(Image.new("1", (10_000, 10_000)))  # 100 Mpx in a few kB
    assert len(bomb) < 100_000
    with pytest.raises(ImageError, match=r"10000x10000 = 100,000,000 pixels .* limit of 64,000,000"):
        load_image(bomb)
    with pytest.raises(ImageError, match="limit of 100 pixels"):
        load_image(png_bytes(Image.new("RGB", (20, 20))), max_pixels=100)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "jpg", "webp"])
def test_encode_formats_decode_back(fmt):
    rgba = Image.new("RGBA", (12, 7), (200, 100, 50, 128))
    data = encode_image(rgba, fmt, quality=90)
    decoded = Image.open(io.BytesIO(data))
    assert decoded.size == (12, 7)
    assert decoded.format == {"jpg": "JPEG"}.get(fmt, fmt.upper())
    assert decoded.mode == ("RGB" if fmt in ("jpeg", "jpg") else "RGBA")


def test_encode_rejects_unknown_format():
    with pytest.raises(ImageError, match="png, jpeg, webp"):
        encode_image(Image.new("RGB", (2, 2)), "gif")
