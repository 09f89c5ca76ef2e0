"""Image files through Pillow: exact, byte-stable PNG writes and normalised reads."""

import numpy as np
import pytest
from PIL import Image

from sparse3d.data.images import read_image, write_png


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
