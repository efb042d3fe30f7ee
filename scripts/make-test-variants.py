"""Derives deterministic test variants from real photos (Debian's Pillow; run by fetch-test-data.sh).

Every variant is named after its source photo so tests know the expected answer:
  <stem>.png / <stem>.webp           same pixels, other formats
  <stem>.exif6.jpg                   pixels stored rotated, EXIF Orientation=6 restores the original
  <stem>.grey.jpg                    greyscale copy
  <stem>.crop50.jpg                  centre crop keeping ~50% of the area
  <stem>.in-scene.jpg + .box         the photo scaled to 40% and pasted into another photo; .box = x,y,w,h
  broken-*.{jpg,png,webp,txt}        corrupt, truncated, zero-byte and non-image inputs
  bomb-20000x20000.png               a valid, tiny PNG that declares 400 megapixels (a decompression bomb)
"""
import io
import os
import struct
import sys
import zlib

from PIL import Image

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
photos = sorted(f for f in os.listdir(src) if f.endswith(".jpg"))
# A fixed handful of sources keeps the folder small; they are spread over the sorted list.
chosen = photos[::12][:5]


def save(img, name, **kw):
    img.save(os.path.join(out, name), **kw)


for i, name in enumerate(chosen):
    stem = name[:-4]
    img = Image.open(os.path.join(src, name)).convert("RGB")
    w, h = img.size
    save(img, stem + ".png", optimize=False)
    save(img, stem + ".webp", quality=90, method=4)
    # Orientation 6 means "rotate 90 degrees clockwise to display": store the pixels rotated the other way.
    exif = Image.Exif()
    exif[0x0112] = 6
    save(img.transpose(Image.Transpose.ROTATE_90), stem + ".exif6.jpg", quality=92, exif=exif.tobytes())
    save(img.convert("L"), stem + ".grey.jpg", quality=92)
    cw, ch = int(w * 0.707), int(h * 0.707)
    save(img.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch)), stem + ".crop50.jpg", quality=90)
    host = Image.open(os.path.join(src, photos[(photos.index(name) + len(photos) // 2) % len(photos)])).convert("RGB")
    small = img.resize((int(w * 0.4), int(h * 0.4)), Image.Resampling.LANCZOS)
    x, y = 37 + 11 * i, 29 + 7 * i
    host.paste(small, (x, y))
    save(host, stem + ".in-scene.jpg", quality=90)
    with open(os.path.join(out, stem + ".in-scene.box"), "w") as f:
        f.write(f"{x},{y},{small.width},{small.height}\n")

first = open(os.path.join(src, chosen[0]), "rb").read()
buf = io.BytesIO()
Image.open(os.path.join(src, chosen[0])).save(buf, format="PNG")
png = buf.getvalue()
broken = {
    "broken-truncated.jpg": first[: len(first) // 3],
    "broken-header-only.jpg": first[:600],
    "broken-truncated.png": png[: len(png) // 2],
    "broken-zero.jpg": b"",
    "broken-text.jpg": b"this is not an image\n" * 20,
    "broken-html.png": b"<!doctype html><html><body>hello</body></html>\n",
}
# Flip bytes inside the entropy-coded data, deterministically.
flipped = bytearray(first)
for k in range(len(flipped) // 2, len(flipped) - 2, 97):
    flipped[k] ^= 0x5A
broken["broken-bitflip.jpg"] = bytes(flipped)
for name, data in broken.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


# 20000 rows of (filter byte 0 + 20000 zero grey pixels), deflated: ~400 MB of pixels in ~400 KB.
side = 20000
z = zlib.compressobj(9)
row = bytes(side + 1)
idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
bomb = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
with open(os.path.join(out, f"bomb-{side}x{side}.png"), "wb") as f:
    f.write(bomb)
