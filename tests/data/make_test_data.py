"""How tests/data was made from the project's shared open-image folder (run by hand, once).

    python tests/data/make_test_data.py /path/to/shared/data

Copies a subset of the openly licensed images (never a file marked "train/eval only"), downscales
the large ones (the tests need content, not resolution; 16-bit images stay 16-bit), writes the
matching rows of labels.csv and copies the ADA-1100 reference tables. Attribution for every file is
in NOTICE.md beside this script.
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent

# path prefix or exact path -> longest side after downscaling (None: bytes as published)
SELECTION: list[tuple[str, int | None]] = [
    ("photos/faces_london/", 640),
    ("photos/intraoral/sjtu_", 560),
    ("photos/intraoral/sample_NikonD90.JPG", None),  # real camera EXIF: bytes as published
    ("photos/intraoral/sample_topsOrtho.jp2", None),
    ("photos/intraoral/partial_arch/", 640),
    ("radiographs/chest/", None),
    ("radiographs/musculoskeletal/IMG", None),
    ("radiographs/musculoskeletal/0", None),
    ("radiographs/dental/", None),
    ("radiographs/ceph/B1893", 1024),
    ("radiographs/ceph/fernroentgenseitenbild.jpg", None),
    ("radiographs/ceph/landmarks_26points.jpg", None),
    ("radiographs/panoramic/basic_panoramic_radiograph.jpg", 1400),
    ("film_scans/Calc-", 480),
    ("film_scans/starshot.tif", None),
    ("film_scans/bfd9000/", None),
    ("drawings/", None),
]
FACES_CANADA = 8  # the first N of 40, downscaled like the London set
CHEST = 21  # all of them: the train/evaluate round trip counts 10 + 11


def pick(path: str) -> int | bool | None:
    for prefix, side in SELECTION:
        if path == prefix or (
            prefix.endswith(("/", "_", "-", "B1893", "IMG", "0")) and path.startswith(prefix)
        ):
            return side
    return False


def downscale(src: Path, dst: Path, side: int) -> None:
    im = Image.open(src)
    scale = side / max(im.size)
    if scale >= 1:
        shutil.copyfile(src, dst)
        return
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    if im.mode in ("I;16", "I;16B", "I"):
        # Pillow resamples 16-bit data as 32-bit integers; store it back as 16-bit.
        arr = np.asarray(im.convert("I").resize(size, Image.Resampling.LANCZOS), dtype=np.int64)
        Image.fromarray(np.clip(arr, 0, 65535).astype(np.uint16)).save(dst)
    elif dst.suffix.lower() in (".jpg", ".jpeg"):
        im.convert("RGB" if im.mode not in ("L", "RGB") else im.mode).resize(
            size, Image.Resampling.LANCZOS
        ).save(dst, quality=90)
    else:
        im.resize(size, Image.Resampling.LANCZOS).save(dst)


def main(shared: Path) -> None:
    with (shared / "labels.csv").open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or ())
        rows = list(reader)
    kept = []
    canada = chest = 0
    for r in rows:
        path = r["path"]
        side: int | bool | None
        if path.startswith("photos/faces_canada/"):
            canada += 1
            side = 640 if canada <= FACES_CANADA else False
        elif path.startswith("radiographs/chest/"):
            chest += 1
            side = None if chest <= CHEST else False
        else:
            side = pick(path)
        if side is False:
            continue
        dst = HERE / path
        dst.parent.mkdir(parents=True, exist_ok=True)
        if side is None:
            shutil.copyfile(shared / path, dst)
        else:
            assert isinstance(side, int)
            downscale(shared / path, dst, side)
        kept.append(r)
    with (HERE / "labels.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(kept)
    ref = HERE / "ada1100"
    ref.mkdir(exist_ok=True)
    for p in sorted((shared.parent / "reference" / "ada1100").iterdir()):
        if p.is_file():
            shutil.copyfile(p, ref / p.name)
    print(f"{len(kept)} images, reference tables in {ref}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
