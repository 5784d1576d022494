# SPDX-License-Identifier: Apache-2.0
"""Copy the open images the classification tests need, downscaled, into tests/data/classify/.

    python models/tools/make_test_images.py [--data ../shared/data]

Only files whose licence allows copying (never the shared README's "train/eval only" ones); each
keeps its attribution in tests/data/classify/NOTICE.md. Images are stored as the source stored
them (turned ones stay turned), longer side at most 512 px, JPEG quality 90 or PNG.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OUT = REPO / "tests" / "data" / "classify"

LONDON = (
    "DeBruine L. & Jones B. (2017) Face Research Lab London Set, figshare doi:10.6084/m9.figshare.5047666.v5",
    "CC BY 4.0",
)
SJTU = (
    "(c) 2023 CHEN Yizhou, GitHub SJTUzhou/3D-Teeth-Reconstruction-from-Five-Intra-oral-Images",
    "MIT",
)
OPENORTHO_CEPH = ("(c) 2021 Open-Ortho, GitHub open-ortho/dcm4ceph dcm4ceph-sampledata/", "MIT")
BFD = ("(c) 2023 Open-Ortho, GitHub open-ortho/edu.case.BFD9000 documentation/images/", "MIT")
CHEST = (
    "COVID-19 Image Repository, Institute for Diagnostic and Interventional Radiology, Hannover "
    "Medical School, doi:10.6084/m9.figshare.12275009",
    "CC BY 3.0",
)

# (source path under shared/data, file name here, attribution, licence)
FILES: list[tuple[str, str, tuple[str, str]]] = [
    (
        "radiographs/panoramic/basic_panoramic_radiograph.jpg",
        "panoramic.jpg",
        (
            "Coronation Dental Specialty Group, Wikimedia Commons File:Basic_panoramic_radiograph.jpg",
            "CC BY 3.0",
        ),
    ),
    (
        "radiographs/ceph/fernroentgenseitenbild.jpg",
        "ceph_lateral.jpg",
        ("Segelnistcool, Wikimedia Commons File:Fernröntgenseitenbild.jpg", "CC BY-SA 3.0"),
    ),
    ("radiographs/ceph/B1893L12.jpg", "ceph_lateral_turned90.jpg", OPENORTHO_CEPH),
    ("radiographs/ceph/B1893F12.jpg", "ceph_pa.jpg", OPENORTHO_CEPH),
    ("film_scans/bfd9000/treerez_scan.png", "ceph_lateral_film_turned270.png", BFD),
    (
        "radiographs/dental/bitewing.png",
        "bitewing.png",
        ("(c) 2024 nnistelrooij, GitHub nnistelrooij/bitewings test/", "MIT"),
    ),
    (
        "radiographs/dental/bitewing_film.jpg",
        "bitewing_film.jpg",
        (
            "Dr. Jeffrey Cross, DDS, Wikimedia Commons File:ZELLFAZE_MN01_MP08_010.JPG",
            "CC BY-SA 3.0",
        ),
    ),
    (
        "radiographs/dental/periapical_film_photo.jpg",
        "periapical.jpg",
        ("Bin im Garten, Wikimedia Commons File:Dental_X-ray_2012_PD_03.JPG", "CC BY-SA 3.0"),
    ),
    ("film_scans/bfd9000/example0.png", "hand_wrist.png", BFD),
    ("film_scans/bfd9000/example2.png", "knees_two_views.png", BFD),
    ("radiographs/chest/1ae7877e.png", "chest_1.png", CHEST),
    ("radiographs/chest/5782ae15.png", "chest_2.png", CHEST),
    (
        "radiographs/musculoskeletal/0004_0542630449_01_WRI-L1_M003.png",
        "wrist.png",
        (
            "Nagy E. et al., GRAZPEDWRI-DX, Sci Data 9:222 (2022), doi:10.6084/m9.figshare.14825193",
            "CC BY 4.0",
        ),
    ),
    (
        "radiographs/musculoskeletal/IMG0003297.jpg",
        "limb.jpg",
        (
            "Abedeen I. et al., FracAtlas, Sci Data 10:521 (2023), doi:10.6084/m9.figshare.22363012",
            "CC BY 4.0",
        ),
    ),
    (
        "film_scans/Calc-Test_P_00127_RIGHT_CC.png",
        "mammogram.png",
        (
            "Sawyer-Lee R. et al., CBIS-DDSM, TCIA doi:10.7937/K9/TCIA.2016.7O02S9CY; resized in "
            "GitHub dpetrini/two-views-classifier",
            "CC BY 3.0",
        ),
    ),
    ("photos/intraoral/sjtu_p0_frontal.png", "io_frontal.jpg", SJTU),
    ("photos/intraoral/sjtu_p0_right_buccal.png", "io_right_buccal.jpg", SJTU),
    ("photos/intraoral/sjtu_p0_left_buccal.png", "io_left_buccal.jpg", SJTU),
    ("photos/intraoral/sjtu_p0_upper_occlusal.png", "io_upper_occlusal.jpg", SJTU),
    ("photos/intraoral/sjtu_p0_lower_occlusal.png", "io_lower_occlusal.jpg", SJTU),
    ("photos/faces_london/rest/005_03.jpg", "face_rest.jpg", LONDON),
    ("photos/faces_london/smile/096_08.jpg", "face_smile.jpg", LONDON),
]

SIDE = 512


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = ap.parse_args(argv)
    readme = (args.data / "README.md").read_text(encoding="utf-8")
    train_only = [line for line in readme.splitlines() if "train/eval only" in line]
    OUT.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Test images for the classification tests",
        "",
        "Copied from the project's shared open data (`../shared/data`, see its README) by",
        "`models/tools/make_test_images.py`: downscaled to at most 512 px (a derived image keeps",
        "its source's licence; CC BY-SA ones stay CC BY-SA), otherwise as stored (turned ones stay",
        'turned). None is a "train/eval only" file.',
        "",
        "| file | source file | licence | attribution |",
        "| --- | --- | --- | --- |",
    ]
    for src, name, (attribution, licence) in FILES:
        assert "hitl_tile" not in src and "orthopantomogram" not in src, "train/eval only"
        assert not any(Path(src).stem in line for line in train_only), src
        with Image.open(args.data / src) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I"):
                import numpy as np

                a = np.asarray(im, np.float32)
                lo, hi = np.percentile(a, 0.5), np.percentile(a, 99.5)
                a = np.clip((a - lo) / max(1.0, hi - lo) * 255, 0, 255).astype(np.uint8)
                img = Image.fromarray(a)
            else:
                img = im.convert("RGB") if im.mode not in ("L", "RGB") else im.copy()
        img.thumbnail((SIDE, SIDE), Image.Resampling.LANCZOS)
        dest = OUT / name
        if name.endswith(".jpg"):
            img.convert("RGB" if img.mode != "L" else "L").save(dest, quality=90)
        else:
            img.save(dest, optimize=True)
        lines.append(f"| `{name}` | `{src}` | {licence} | {attribution} |")
    (OUT / "NOTICE.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(FILES)} images and NOTICE.md to {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
