"""Image files through Pillow: exact, byte-stable PNG writes and normalised reads."""

import numpy as np
import pytest
from PIL import Image

from sparse3d.data.images import (
    read_image,
    rgb_over_white_and_mask,
    straight_rgb_under,
    write_png,
)


@pytest.mark.parametrize(
    "shape,dtype", [((9, 7), np.uint8), ((9, 7, 3), np.uint8), ((5, 6, 4), np.uint8), ((8, 3), np.uint16)]
)
def test_png_round_trip(tmp_path, shape, dtype):
    image = np.random.default_rng(0).integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)
    write_png(tmp_path / "x.png", image)
    back = read_image(tmp_path / "x.png")
    assert back.dtype == dtype and np.array_equal(back.reshape(shape), image)
    # Same array, same bytes; and the 16-bit depth really is stored with bit depth 16 (IHDR byte 24).
    write_png(tmp_path / "again.png", image)
    assert (tmp_path / "again.png").read_bytes() == (tmp_path / "x.png").read_bytes()
    assert (tmp_path / "x.png").read_bytes()[24] == 8 * np.dtype(dtype).itemsize


def test_read_image_normalises_modes_of_other_writers(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 255, size=(23, 19, 3)).astype(np.uint8)
    palette = Image.fromarray(rgb).quantize(16)  # mode "P": must come back as RGB colours
    palette.save(tmp_path / "p.png")
    assert np.array_equal(read_image(tmp_path / "p.png"), np.asarray(palette.convert("RGB")))
    palette.save(tmp_path / "pt.png", transparency=0)  # palette entry 0 transparent: RGBA, alpha 0 exactly there
    rgba = read_image(tmp_path / "pt.png")
    assert rgba.shape == (23, 19, 4) and np.array_equal(rgba[:, :, 3] == 0, np.asarray(palette) == 0)
    Image.fromarray(rgb[:, :, 0] > 127).save(tmp_path / "bits.png")  # mode "1" -> 0 / 255 grey
    assert np.array_equal(read_image(tmp_path / "bits.png")[:, :, 0], np.where(rgb[:, :, 0] > 127, 255, 0))
    # JPEG is lossy, but a flat colour survives it within a few levels, also via CMYK.
    flat = np.broadcast_to(np.array([200, 30, 90], np.uint8), (16, 16, 3)).copy()
    Image.fromarray(flat).save(tmp_path / "q.jpg", quality=95)
    Image.fromarray(flat).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    for name in ("q.jpg", "cmyk.jpg"):
        jpeg = read_image(tmp_path / name)
        assert jpeg.dtype == np.uint8 and jpeg.shape == (16, 16, 3), name
        assert np.abs(jpeg.astype(int) - flat).max() <= 3, name
    (tmp_path / "z.png").write_bytes(b"hello")
    with pytest.raises(ValueError, match=r"z\.png: not a readable image"):
        read_image(tmp_path / "z.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "p.png").read_bytes()[:60])
    with pytest.raises(ValueError, match=r"cut\.png: not a readable image"):
        read_image(tmp_path / "cut.png")
    Image.fromarray(np.zeros((4, 4), np.float32)).save(tmp_path / "f.tiff")
    with pytest.raises(ValueError, match=r"f\.tiff: image mode 'F'"):
        read_image(tmp_path / "f.tiff")
    with pytest.raises(ValueError, match=r"16-bit images must be single-channel"):
        write_png(tmp_path / "w.png", np.zeros((4, 4, 3), np.uint16))


def test_rgb_over_white_and_mask_on_every_colour_and_alpha():
    c, a = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")  # [256, 256] each
    rgba = np.stack([c, 255 - c, np.full_like(c, 7), a], -1).astype(np.uint8)
    rgb, mask = rgb_over_white_and_mask(rgba)
    # c a / 255 + 255 - a is never a half-integer (255 is odd), so float64 rounding is exact.
    expected = np.round(rgba[..., :3] * (a[..., None] / 255.0) + (255.0 - a[..., None])).astype(np.uint8)
    assert rgb.dtype == np.uint8 and np.array_equal(rgb, expected)
    assert np.array_equal(rgb[:, 255], rgba[:, 255, :3]) and (rgb[:, 0] == 255).all()  # opaque / transparent
    assert np.array_equal(mask, a >= 128)
    with pytest.raises(ValueError, match=r"expected uint8 \[\.\.\., 4\] RGBA"):
        rgb_over_white_and_mask(rgba[..., :3])


def test_straight_colours_reproduce_every_reachable_composite():
    c, a = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    alphas = a.astype(np.uint8)
    images = rgb_over_white_and_mask(np.stack([c, c, c, a], -1).astype(np.uint8))[0]  # every reachable (image, alpha)
    straight = straight_rgb_under(images, alphas, "all pairs")
    assert np.array_equal(rgb_over_white_and_mask(np.concatenate([straight, alphas[..., None]], -1))[0], images)
    assert (straight[alphas == 0] == 255).all()
    # Under alpha 1 the composite is 254 or 255, so 100 is out of reach.
    images = np.array([[[255, 255, 255], [100, 255, 255]]], np.uint8)
    with pytest.raises(ValueError, match=r"test view: pixel \(0, 1\) with RGB \[100, 255, 255\] cannot come from"):
        straight_rgb_under(images, np.array([[0, 1]], np.uint8), "test view")
