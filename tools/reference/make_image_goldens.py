#!/usr/bin/python3
"""Builds the image-preprocessing fixtures in test/fixtures/images/ with PIL
itself (run with /usr/bin/python3: Debian's Pillow 9.4 and numpy).

For each synthetic radiograph-like input it writes

  <name>.png / .jpg     the input (grey, RGB or RGBA; various sizes; two JPEGs)
  <name>.golden.png     CXR-LLaVA's official preprocessing up to the uint8 stage:
                        convert('L') -> shortest edge to 512 with LANCZOS ->
                        centre crop 512x512
  goldens.json          per input: size, PIL mode, resized size, crop offset and
                        the officially normalised values ((u8/255 - mean)/std)
                        at a few positions
  animated.gif, cmyk.jpg  tiny inputs that must be rejected (a format and a
                        colour space we do not accept)
  resample-cases.txt    small L-mode LANCZOS resizes (down, up, one axis only,
                        clipping) for the C++ test, one case per three lines:
                          case <in_w> <in_h> <out_w> <out_h> <name>
                          in <pixels...>
                          out <pixels...>

The official pipeline is re-stated here, not imported, so the fixture is
independent of our engine. Inputs are deterministic (fixed seeds). The noise is
mild but real, so the resampler's rounding is exercised on every pixel.
"""
import json
import os

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "test", "fixtures", "images")

SIZE = 512
MEAN = 0.5518136078431373
STD = 0.3821719215686275


def official_u8(img):
    """The CXR-LLaVA preprocessing of a PIL image, up to the uint8 512x512 crop."""
    img = img.convert("L")
    w, h = img.size
    if w <= h:
        new_w, new_h = SIZE, int(SIZE * h / w)
    else:
        new_w, new_h = int(SIZE * w / h), SIZE
    img = img.resize((new_w, new_h), Image.LANCZOS)
    top = (new_h - SIZE) // 2
    left = (new_w - SIZE) // 2
    img = img.crop((left, top, left + SIZE, top + SIZE))
    return img, (new_w, new_h), (left, top)


def soft(d, width):
    """A smooth 0..1 step: 1 inside (d < 0), 0 outside."""
    return 1.0 / (1.0 + np.exp(d / width))


def radiograph(w, h, seed):
    """A chest-radiograph-like float image in 0..255: body, lungs, spine, ribs,
    heart, a hard-edged marker (ringing and clipping for Lanczos) and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    u = (x + 0.5) / w - 0.5
    v = (y + 0.5) / h - 0.5
    img = np.full((h, w), 18.0)
    body = soft(np.hypot(u / 0.46, v / 0.52) - 1.0, 0.03)
    img += 150.0 * body
    for side in (-1.0, 1.0):
        lung = soft(np.hypot((u - side * 0.19) / 0.15, (v + 0.03) / 0.33) - 1.0, 0.05)
        img -= 85.0 * lung * body
        # Ribs: thin bright arcs inside each lung field.
        for k in range(9):
            v0 = -0.32 + 0.075 * k + rng.uniform(-0.01, 0.01)
            curve = v0 + 0.9 * (u - side * 0.05) ** 2 * side * np.sign(u)
            img += 28.0 * np.exp(-(((v - curve) / 0.008) ** 2)) * lung
    spine = soft(np.abs(u) - 0.035, 0.006)
    img += 60.0 * spine * body
    heart = soft(np.hypot((u + 0.06) / 0.13, (v - 0.12) / 0.14) - 1.0, 0.03)
    img += 50.0 * heart
    # A hard-edged white marker in a corner, like a laterality letter.
    mx, my = int(0.08 * w), int(0.06 * h)
    img[my : my + max(4, h // 20), mx : mx + max(3, w // 40)] = 255.0
    img[my : my + max(2, h // 100), mx : mx + max(8, w // 16)] = 255.0
    # Sparse noise: a few percent of pixels move by up to 2 levels. Dense noise
    # would exercise no more of the resampler and would bloat the fixtures.
    hit = rng.random(img.shape) < 0.015
    img += hit * rng.integers(-2, 3, size=img.shape)
    return np.clip(img, 0, 255)


def to_u8(a):
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def make_inputs():
    """(name, extension, PIL image) for every fixture input."""
    out = []

    def gray(name, w, h, seed):
        out.append((name, "png", Image.fromarray(to_u8(radiograph(w, h, seed)), "L")))

    gray("portrait", 560, 720, 1)
    gray("landscape", 820, 600, 2)
    gray("square", 720, 720, 3)
    gray("small-upscale", 300, 380, 4)
    gray("odd-777x1301", 777, 1301, 5)
    gray("large-downscale", 1000, 1200, 6)
    gray("edge512", 512, 540, 7)  # short edge already 512: only the vertical pass runs

    # A colour image whose channels differ, so the luma weights matter.
    g = radiograph(540, 520, 8)
    yy, xx = np.mgrid[0:520, 0:540]
    tint = 20.0 * (xx / 540.0 - yy / 520.0)
    rgb = np.stack([to_u8(g + tint), to_u8(g), to_u8(g - 0.8 * tint + 10)], axis=-1)
    out.append(("rgb-color", "png", Image.fromarray(rgb, "RGB")))

    # Alpha is ignored by convert('L'); give it structure so a mistake shows.
    g = to_u8(radiograph(520, 560, 9))
    alpha = to_u8(np.mgrid[0:560, 0:520][1] * 255.0 / 519.0)
    tint = to_u8(g.astype(np.float64) * 0.9 + 12)
    out.append(("rgba", "png", Image.fromarray(np.stack([g, tint, g, alpha], axis=-1), "RGBA")))
    # JPEGs: the decoders (PIL's libjpeg-turbo vs sharp's mozjpeg) may differ.
    out.append(("gray-jpeg", "jpg", Image.fromarray(to_u8(radiograph(820, 700, 11)), "L")))
    g = radiograph(640, 720, 12)
    rgb = np.stack([to_u8(g + 6), to_u8(g), to_u8(g - 6)], axis=-1)
    out.append(("rgb-jpeg", "jpg", Image.fromarray(rgb, "RGB")))
    return out


def sample_points():
    pts = [(0, 0), (511, 0), (0, 511), (511, 511), (256, 256), (100, 400), (400, 100), (37, 301)]
    return [{"x": x, "y": y} for x, y in pts]


def resample_cases():
    """Small resizes by PIL, written as text so the C++ test needs no decoder."""
    rng = np.random.default_rng(99)
    cases = [
        ("down-x-up-y", rng.integers(0, 256, (7, 13)), (5, 11)),
        ("vertical-only", rng.integers(0, 256, (9, 17)), (17, 4)),
        ("horizontal-only", rng.integers(0, 256, (15, 9)), (20, 15)),
        ("strip", rng.integers(0, 256, (3, 40)), (7, 1)),
        ("checkerboard-clips", (np.indices((16, 16)).sum(axis=0) % 2) * 255, (7, 9)),
        ("single-pixel", np.array([[77]]), (3, 2)),
        ("random-40x30", rng.integers(0, 256, (30, 40)), (23, 17)),
        ("large-factor", rng.integers(0, 256, (20, 150)), (9, 4)),
    ]
    lines = []
    for name, a, (ow, oh) in cases:
        a = a.astype(np.uint8)
        out = np.asarray(Image.fromarray(a, "L").resize((ow, oh), Image.LANCZOS))
        lines.append(f"case {a.shape[1]} {a.shape[0]} {ow} {oh} {name}")
        lines.append("in " + " ".join(str(v) for v in a.ravel()))
        lines.append("out " + " ".join(str(v) for v in out.ravel()))
    with open(os.path.join(OUT, "resample-cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def rejected_inputs():
    """Inputs the preprocessing must refuse with a clear message."""
    a = (np.indices((16, 16)).sum(axis=0) * 8).astype(np.uint8)
    frames = [Image.fromarray(a, "L"), Image.fromarray(255 - a, "L")]
    frames[0].save(os.path.join(OUT, "animated.gif"), save_all=True, append_images=frames[1:], duration=100, loop=0)
    Image.fromarray(np.stack([a, a, a], axis=-1), "RGB").convert("CMYK").save(os.path.join(OUT, "cmyk.jpg"))


def main():
    os.makedirs(OUT, exist_ok=True)
    resample_cases()
    rejected_inputs()
    entries = []
    for name, ext, img in make_inputs():
        path = os.path.join(OUT, f"{name}.{ext}")
        if ext == "png":
            img.save(path, optimize=True)
        else:
            img.save(path, quality=90)
        # The golden comes from PIL decoding the saved file, as the official code would.
        with Image.open(path) as src:
            mode = src.mode
            golden, resized, crop = official_u8(src)
        golden.save(os.path.join(OUT, f"{name}.golden.png"), optimize=True)
        g = np.asarray(golden)
        samples = []
        for p in sample_points():
            u8 = int(g[p["y"], p["x"]])
            p.update({"u8": u8, "value": (u8 / 255.0 - MEAN) / STD})
            samples.append(p)
        entries.append(
            {
                "file": f"{name}.{ext}",
                "golden": f"{name}.golden.png",
                "width": img.size[0],
                "height": img.size[1],
                "mode": mode,
                "resized": list(resized),
                "crop": list(crop),
                "samples": samples,
            }
        )
    with open(os.path.join(OUT, "goldens.json"), "w") as f:
        json.dump({"size": SIZE, "mean": MEAN, "std": STD, "images": entries}, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(entries)} inputs to {OUT} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
