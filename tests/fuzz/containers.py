"""Seeded mutation of what surrounds the images (issue 23): zips, file names, manifests, EXIF
and MPF segments, as a twenty-year-old share holds them.

- `make_containers(folder, n, seed)`: n inputs, each a zip (duplicate and case-colliding member
  names, `../` and absolute names, 250-byte names, Latin-1 names, bombs, too many members,
  encrypted flags, a broken central directory, a cut archive, mutated images inside), a loose
  file with a hostile name (Latin-1 bytes, escapes, newlines, 251 characters, bidi overrides),
  or a camera JPEG whose EXIF or MPF segment lies.
- `make_manifests(folder, n, seed)`: n small cases, each a folder of real images and a CSV
  typed by hand (backslashes, long and non-ASCII names, dates that do not exist, a birth after
  the study, rows that match nothing, case typos, BOM, semicolons, quoted newlines, unknown
  columns, control characters), converted as its own run.
Same seed, same bytes. The images are the real samples of `mutators.seeds()`.
"""

from __future__ import annotations

import functools
import io
import os
import random
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import mutators
from PIL import Image, ImageOps

# Bounds the container runs use, so that a bomb or a crowd of members is cheap to make.
ZIP_OPTIONS = ("--zip-max-members", "40", "--zip-max-ratio", "100", "--zip-max-size", "64M")


@functools.cache
def _seeds() -> list[tuple[str, tuple[str, bytes]]]:
    return sorted(mutators.seeds().items())


def _image(rng: random.Random, mutated: bool) -> tuple[str, bytes]:
    name, (fmt, data) = rng.choice(_seeds())
    if mutated:
        data, _ = mutators.mutate(data, fmt, rng)
    return name, data


@functools.cache
def _camera() -> bytes:
    """A camera JPEG (its real EXIF) with an MPF preview after the picture, as cameras save."""
    primary = mutators._photo((320, 240))
    preview = ImageOps.invert(primary.resize((160, 120)))
    buf = io.BytesIO()
    primary.save(
        buf, format="MPO", save_all=True, append_images=[preview], quality=85, exif=mutators._camera_exif()
    )
    return buf.getvalue()


# ------------------------------------------------------------------ zips


def _info(name: str, method: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2006, 5, 4, 3, 2, 2))
    info.compress_type = method
    return info


def _zip(members: list[tuple[str | bytes, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": on purpose
        with zipfile.ZipFile(buf, "w", method) as zf:
            for name, data in members:
                # bytes: a legacy (cp437) name, no UTF-8 flag. A fixed date: same seed, same bytes.
                text = name.decode("cp437") if isinstance(name, bytes) else name
                zf.writestr(_info(text, method), data)
    return buf.getvalue()


def zip_duplicates(rng: random.Random) -> bytes:
    a, b = _image(rng, False)[1], _image(rng, rng.random() < 0.5)[1]
    return _zip([("v/img.jpg", a), ("v/img.jpg", b), ("v/IMG.JPG", a)])


def zip_escapes(rng: random.Random) -> bytes:
    a, b = _image(rng, False)[1], _image(rng, False)[1]
    return _zip(
        [("../../x.jpg", a), ("x.jpg", b), ("/abs/x.jpg", a), ("C:\\win\\x.jpg", b), ("./.././x.jpg", a)]
    )


def zip_long_names(rng: random.Random) -> bytes:
    a = _image(rng, False)[1]
    return _zip([("d/" + "n" * 246 + ".jpg", a), ("e/" + "é" * 200 + ".png", _image(rng, False)[1])])


def zip_latin1_names(rng: random.Random) -> bytes:
    return _zip([(b"scan_\xe9t\xe9.jpg", _image(rng, False)[1]), (b"\x82\x8a.tif", _image(rng, True)[1])])


def zip_bomb(rng: random.Random) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(rng.randint(1, 3)):
            with zf.open(_info(f"zeros{i}.jpg", zipfile.ZIP_DEFLATED), "w") as dst:
                for _ in range(rng.randint(8, 24)):
                    dst.write(bytes(1 << 20))
    return buf.getvalue()


def zip_crowd(rng: random.Random) -> bytes:
    a = _image(rng, False)[1]
    return _zip([(f"m{i:03d}.jpg", a) for i in range(rng.randint(41, 60))], zipfile.ZIP_STORED)


def zip_mutated_members(rng: random.Random) -> bytes:
    return _zip([(f"s/{i}_{n}", d) for i, (n, d) in enumerate(_image(rng, True) for _ in range(4))])


def zip_broken(rng: random.Random) -> bytes:
    data = bytearray(_zip([(f"p{i}.jpg", _image(rng, False)[1]) for i in range(3)]))
    how = rng.choice(["flip-directory", "cut", "encrypted", "flip-anywhere"])
    if how == "cut":
        return bytes(data[: rng.randrange(4, len(data))])
    if how == "encrypted":  # the flag set in every header: members refused, not read
        for sig in (b"PK\x03\x04", b"PK\x01\x02"):
            pos = data.find(sig)
            while pos >= 0:
                data[pos + (6 if sig == b"PK\x03\x04" else 8)] |= 1
                pos = data.find(sig, pos + 4)
        return bytes(data)
    start = data.rfind(b"PK\x01\x02") if how == "flip-directory" else 0
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(max(start, 0), len(data))] = rng.randrange(256)
    return bytes(data)


ZIPS: dict[str, Callable[[random.Random], bytes]] = {
    "duplicates": zip_duplicates,
    "escapes": zip_escapes,
    "long-names": zip_long_names,
    "latin1-names": zip_latin1_names,
    "bomb": zip_bomb,
    "crowd": zip_crowd,
    "mutated-members": zip_mutated_members,
    "broken": zip_broken,
}


# ------------------------------------------------------------------ names and segments


def hostile_name(rng: random.Random, i: int, suffix: str) -> bytes:
    kind = rng.choice(["latin1", "escape", "newline", "long", "bidi", "dash", "spaces", "brackets"])
    stem = {
        "latin1": b"scan_\xe9t\xe9_%d" % i,
        "escape": b"\x1b[2J\x1b[H%d" % i,
        "newline": b"a%d\nfailed: forged" % i,
        "long": b"%d_" % i + b"x" * (251 - len(suffix) - len(b"%d_" % i)),
        "bidi": f"gpj\u202e_{i}".encode(),
        "dash": b"-rf %d" % i,
        "spaces": b" lead %d ." % i,
        "brackets": b"[bold red]%d[link=x]" % i,
    }[kind]
    return stem + suffix.encode()


def exif_lies(rng: random.Random) -> bytes:
    """A JPEG whose EXIF says what DICOM cannot hold or points nowhere."""
    exif = Image.Exif()
    exif[0x010F] = rng.choice(["Can\\on", "x" * 300, "Ni\x1bkon", "Fuji\nfilm", "Ølympus" * 12])
    exif[0x0110] = rng.choice(["EOS\\5D", "", "m" * 80])
    exif[0x8769] = {0x9003: rng.choice(["9999:12:31 23:59:59", "2024:02:30 10:00:00", "0000:00:00 00:00:00"])}
    raw = bytearray(exif.tobytes())
    if rng.random() < 0.5:  # an offset past the block
        at = raw.find(struct.pack(">H", 0x010F), 14)
        if at > 0:
            struct.pack_into(">I", raw, at + 8, rng.randrange(1 << 16, 1 << 31))
    buf = io.BytesIO()
    mutators._photo().save(buf, "JPEG", quality=85, exif=bytes(raw))
    return buf.getvalue()


def mpf_lies(rng: random.Random) -> bytes:
    """A camera JPEG whose MPF preview lies: offset past the end or into the picture, a forged
    size, garbage tables."""
    data = bytearray(_camera())
    mpf = data.find(b"MPF\x00")
    start = data.find(b"\xff\xd8", data.find(b"\xff\xd9"))
    how = rng.choice(["offset-past", "offset-inside", "forged-size", "garbage", "flip-app2"])
    if how in ("offset-past", "offset-inside") and mpf > 0:
        tiff = mpf + 4
        end = "<" if data[tiff : tiff + 2] == b"II" else ">"
        (ifd,) = struct.unpack_from(end + "I", data, tiff + 4)
        (n,) = struct.unpack_from(end + "H", data, tiff + ifd)
        for k in range(min(n, 16)):
            tag, _t, _c, val = struct.unpack_from(end + "HHII", data, tiff + ifd + 2 + 12 * k)
            if tag == 0xB002 and tiff + val + 32 <= len(data):
                where = rng.randrange(1 << 20, 1 << 30) if how == "offset-past" else rng.randrange(64, 4096)
                struct.pack_into(end + "I", data, tiff + val + 24, where)
    elif how == "forged-size" and start > 0:
        sof = data.find(b"\xff\xc0", start)
        if sof > 0:
            struct.pack_into(">HH", data, sof + 5, 60000, 60000)
    elif how == "garbage" and start > 0:
        for k in range(start + 20, min(start + 700, len(data))):
            data[k] = rng.randrange(256)
    elif mpf > 0:
        for _ in range(rng.randint(1, 10)):
            data[rng.randrange(mpf, min(mpf + 120, len(data)))] = rng.randrange(256)
    return bytes(data)


def make_containers(folder: Path, count: int, seed: int = 23) -> dict[str, str]:
    """`count` inputs under `folder` (file name as bytes, decoded with os.fsdecode) -> kind."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}
    kinds = [*(f"zip:{k}" for k in ZIPS), "name", "name", "exif", "mpf"]
    for i in range(count):
        kind = kinds[i % len(kinds)]
        if kind.startswith("zip:"):
            name, data = f"{i:05d}_{kind[4:]}.zip".encode(), ZIPS[kind[4:]](rng)
        elif kind == "name":
            src, data = _image(rng, rng.random() < 0.3)
            name = hostile_name(rng, i, Path(src).suffix)
        elif kind == "exif":
            name, data = f"{i:05d}_exif.jpg".encode(), exif_lies(rng)
        else:
            name, data = f"{i:05d}_mpf.jpg".encode(), mpf_lies(rng)
        (folder / os.fsdecode(name)).write_bytes(data)
        made[os.fsdecode(name)] = kind
    return made


# ------------------------------------------------------------------ manifests

COLUMNS = [
    "path",
    "PatientID",
    "PatientName",
    "BirthDate",
    "StudyDate",
    "ReferringPhysician",
    "Modality",
    "BodyPart",
]
# Per column: values a PACS takes though they look odd, then values DICOM cannot hold.
ODD_VALUES: dict[str, list[str]] = {
    "PatientID": ["Ünï-1", "  P 7 ", "x" * 64, "李-8"],
    "PatientName": ["Müller^Jürgen", "Doe, Jane", "李^小龙", "O'Brien^Seán", "A" * 64],
    "BirthDate": ["31.12.1899", "2020-02-29", "20000101"],
    "StudyDate": ["20200101", "2024/02/29", "1999:12:31"],
    "ReferringPhysician": ["Ødegård^Åse", "Dr^Who", ""],
    "Modality": ["xc", "DX", "PX"],
    "BodyPart": ["head", "jaw", "SKULL"],
}
BAD_VALUES: dict[str, list[str]] = {
    "PatientID": ["P1\\P2", "x" * 65, "ID\x07"],
    "PatientName": ["F" * 300, "a\\b", "\x1b[31mred"],
    "BirthDate": ["9999-12-31", "2020-02-30", "1700-01-01", "yesterday", "2030-01-01"],
    "StudyDate": ["9999-12-31", "2023-02-29", "2020/13/01"],
    "ReferringPhysician": ["Dr^" + "y" * 200, "Who\\Knows"],
    "Modality": ["ZZ"],
    "BodyPart": ["jaw bone", "X" * 20],
}


def make_manifests(folder: Path, count: int, seed: int = 23) -> list[tuple[Path, Path]]:
    """`count` cases: (input folder, manifest) each, with two real images per folder."""
    rng = random.Random(seed)
    cases = []
    for i in range(count):
        case = folder / f"case{i:04d}"
        src = case / "in" / "visit"
        src.mkdir(parents=True, exist_ok=True)
        names = []
        for j in range(2):
            sname, data = _image(rng, False)
            names.append(f"img{j}{Path(sname).suffix}")
            (src / names[-1]).write_bytes(data)
        rows = [COLUMNS]
        for _ in range(rng.randint(1, 5)):
            target = rng.choice(
                [
                    f"visit/{names[0]}",
                    f"visit/{names[1]}",
                    "visit",
                    f"visit/{names[0].upper()}",
                    "visti",
                    "nowhere/x.jpg",
                ]
            )
            row = [target, "P1", "Doe^Jane", "2001-02-03", "2021-04-05", "", "XC", "HEAD"]
            for _ in range(rng.randint(0, 3)):
                col = rng.randrange(1, len(COLUMNS))
                table = BAD_VALUES if rng.random() < 0.3 else ODD_VALUES
                row[col] = rng.choice(table[COLUMNS[col]])
            rows.append(row)
        sep = rng.choice([",", ";", "\t"])
        text = "\n".join(sep.join(_quote(c, sep) for c in r) for r in rows) + "\n"
        if rng.random() < 0.2:
            text = "\ufeff" + text
        if rng.random() < 0.1:
            text = text.replace(COLUMNS[5], "Referring Physician Name")
        if rng.random() < 0.05:
            text = text.replace("BodyPart", "Colour")  # an unknown column: a usage error
        manifest = case / "manifest.csv"
        manifest.write_text(text, encoding="utf-8")
        cases.append((case / "in", manifest))
    return cases


def _quote(cell: str, sep: str) -> str:
    if any(c in cell for c in (sep, '"', "\n", "\r")):
        return '"' + cell.replace('"', '""') + '"'
    return cell
