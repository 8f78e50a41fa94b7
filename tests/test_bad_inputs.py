"""Bad inputs are clear mindgap errors naming the item — in the library and in the CLI."""

from __future__ import annotations

import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from _tiny_clip import tiny_clip_dir, tiny_onnx_dir

from mindgap.cli import main
from mindgap.encoders import load_encoder
from mindgap.errors import ImageError, ImageTooLarge, InputError


def write_bomb_png(path: Path, side: int = 30000) -> Path:
    """A valid 1-bit PNG whose IHDR says side×side (≈112 MB of rows, ~110 KB on disk), streamed."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (side + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bad(tmp_path_factory, flickr_test) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad-inputs")
    good = flickr_test[0].path
    data = good.read_bytes()
    files = {
        "good": good,
        "missing": d / "missing.jpg",
        "empty": d / "empty.jpg",
        "random": d / "random.jpg",
        "text_as_png": d / "notes.png",
        "truncated_jpeg": d / "truncated.jpg",
        "truncated_png": d / "truncated.png",
        "bomb": write_bomb_png(d / "bomb.png"),
        "folder": d,
    }
    files["empty"].write_bytes(b"")
    files["random"].write_bytes(bytes(range(256)) * 40)
    files["text_as_png"].write_text("this is not an image\n")
    files["truncated_jpeg"].write_bytes(data[: len(data) * 2 // 5])
    from PIL import Image

    Image.open(good).save(d / "full.png")
    full = (d / "full.png").read_bytes()
    files["truncated_png"].write_bytes(full[: len(full) // 2])
    return files


@pytest.fixture(scope="module", params=["hf", "onnx"])
def enc(request, tmp_path_factory):
    if request.param == "hf":
        return load_encoder(f"hf:{tiny_clip_dir(tmp_path_factory)}", device="cpu")
    return load_encoder(f"onnx:{tiny_onnx_dir(tmp_path_factory)}")


def test_bomb_file_is_small_but_huge(bad, monkeypatch):
    from PIL import Image

    assert bad["bomb"].stat().st_size < 300_000
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # PIL's own guard would refuse to open it
    with Image.open(bad["bomb"]) as im:  # header only: a valid PNG as far as PIL is concerned
        assert im.size == (30000, 30000)


@pytest.mark.parametrize("key,match", [
    ("missing", "does not exist"),
    ("empty", "empty"),
    ("random", "not an image"),
    ("text_as_png", "not an image"),
    ("truncated_jpeg", "corrupt or truncated"),
    ("truncated_png", "corrupt or truncated"),
    ("folder", "not a regular file"),
])
def test_bad_image_files_are_named(enc, bad, key, match):
    with pytest.raises(ImageError, match=match) as ei:
        enc.encode_image([bad["good"], bad[key]])
    assert ei.value.item == str(bad[key]) and str(bad[key]) in str(ei.value)


def test_decompression_bomb_is_refused_before_decoding(enc, bad, monkeypatch):
    from PIL import ImageFile

    def no_decode(self):  # noqa: ANN001, ANN202
        raise AssertionError("the bomb was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    t = time.perf_counter()
    with pytest.raises(ImageTooLarge, match="30000x30000") as ei:
        enc.encode_image([bad["bomb"]])
    assert time.perf_counter() - t < 2.0
    assert ei.value.item == str(bad["bomb"]) and ei.value.code == "image_too_large"


def test_bomb_as_bytes_names_its_index(enc, bad):
    with pytest.raises(ImageTooLarge) as ei:
        enc.encode_image([bad["good"], bad["good"].read_bytes(), bad["bomb"].read_bytes()], batch_size=2)
    assert "at index 2" in str(ei.value)


def test_pixel_limit_is_configurable(enc, bad, monkeypatch):
    monkeypatch.setenv("MINDGAP_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(ImageTooLarge, match="over the limit of 1,000"):
        enc.encode_image([bad["good"]])


def test_unsupported_image_object(enc):
    with pytest.raises(ImageError, match="unsupported image input of type int"):
        enc.encode_image([3])


def test_bad_texts(enc):
    with pytest.raises(InputError, match="not valid UTF-8") as ei:
        enc.encode_text(["fine", b"caf\xe9 au lait"])
    assert ei.value.item == "texts[1]" and "0xe9" in str(ei.value)
    assert enc.encode_text([b"\xef\xbb\xbfcaf\xc3\xa9"]).shape == (1, enc.dim)  # UTF-8 with BOM is fine
    with pytest.raises(InputError, match="expected str, got int") as ei:
        enc.encode_text(["ok", 7])
    assert ei.value.item == "texts[1]"
    with pytest.raises(InputError, match="empty"):
        enc.encode_text([])
    with pytest.raises(InputError, match="empty"):
        enc.encode_image([])


# -- the CLI: exit code 2, one line naming the item, no traceback ---------------------------


def _run(capsys, argv: list[str]) -> tuple[int, str]:
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    return rc, err


@pytest.fixture(scope="module")
def onnx_spec(tmp_path_factory) -> str:
    return f"onnx:{tiny_onnx_dir(tmp_path_factory)}"


@pytest.mark.parametrize("key,match", [("truncated_jpeg", "corrupt or truncated"), ("bomb", "pixels"),
                                       ("text_as_png", "not an image"), ("missing", "does not exist")])
def test_cli_bad_image(capsys, onnx_spec, bad, key, match):
    rc, err = _run(capsys, ["embed", "-e", onnx_spec, "-i", str(bad["good"]), "-i", str(bad[key])])
    assert rc == 2
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err
    assert str(bad[key]) in err and match in err


def test_cli_bad_texts_file(capsys, onnx_spec, tmp_path):
    f = tmp_path / "latin1.txt"
    f.write_bytes("a dog\ncafé\n".encode("latin-1"))
    rc, err = _run(capsys, ["embed", "-e", onnx_spec, "--texts-file", str(f)])
    assert rc == 2 and str(f) in err and "UTF-8" in err and "\n" not in err
    (tmp_path / "blank.txt").write_text("\n\n")
    rc, err = _run(capsys, ["embed", "-e", onnx_spec, "--texts-file", str(tmp_path / "blank.txt")])
    assert rc == 2 and "no texts" in err


@pytest.mark.parametrize("argv,match", [
    (["embed", "-e", "hf:/no/such/model-dir", "-t", "a dog"], "no such model directory"),
    (["embed", "-e", "bogus:thing", "-t", "a dog"], "unknown encoder 'bogus'"),
    (["embed", "-t", "a dog", "-o", "out.txt"], "must be a .npy"),
    (["embed"], "nothing to embed"),
])
def test_cli_bad_arguments(capsys, argv, match):
    rc, err = _run(capsys, argv)
    assert rc == 2 and match in err and "\n" not in err and "Traceback" not in err


def test_cli_embed_writes_npy(capsys, onnx_spec, bad, tmp_path):
    import numpy as np

    out = tmp_path / "e.npy"
    assert main(["embed", "-e", onnx_spec, "-i", str(bad["good"]), "-i", str(bad["good"]), "-o", str(out)]) == 0
    x = np.load(out)
    assert x.shape == (2, 16) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


def test_cli_subprocess_non_utf8_argument(onnx_spec):
    """A real process: argv bytes that are not UTF-8 → exit 2, one line on stderr, no traceback."""
    code = "import sys; from mindgap.cli import main; sys.exit(main(sys.argv[1:]))"
    p = subprocess.run([sys.executable, "-c", code, "embed", "-e", onnx_spec, "-t", "ok", "-t", b"caf\xe9"],
                       capture_output=True, timeout=120)
    err = p.stderr.decode("utf-8", "replace").strip()
    assert p.returncode == 2, err
    assert err.startswith("error:") and "--text[1]" in err and "UTF-8" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_cli_help_imports_no_torch():
    """`mindgap --help` (and every command's --help) stays light: no torch, transformers or onnxruntime."""
    code = ("import sys; from mindgap.cli import main, app; import typer\n"
            "cmds = [c.name for c in typer.main.get_command(app).commands.values()]\n"
            "codes = [main(['--help'])] + [main([c, '--help']) for c in cmds]\n"
            "heavy = [m for m in ('torch', 'transformers', 'onnxruntime') if m in sys.modules]\n"
            "print(len(cmds), set(codes), heavy)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    n, codes, heavy = p.stdout.strip().splitlines()[-1].split(" ", 2)
    assert int(n) >= 3 and codes == "{0}" and heavy == "[]", p.stdout[-500:]
