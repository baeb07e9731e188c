"""Readers for the RGBT benchmarks in their own folder layouts (docs/metrics.md, Dataset layouts).

Each reader lists sequences with their frame folders, the initial box and the ground truth used by
the metric (one array, or one per modality). Ground-truth files are read strictly: a malformed line
names the file and the line. The synthetic suite is written in the LasHeR layout.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ckd_ros.data.files import number_rows, read_text
from ckd_ros.data.frames import list_images, read_rgb
from ckd_ros.errors import InputError


def read_boxes(path: Path, ltrb: bool = False, allow_nan: bool = False) -> np.ndarray:
    """(N, 4) float64 x, y, w, h from a text file: comma, space or tab separated; blank lines skipped.

    8-value polygon rows become their axis-aligned bounding box. ``ltrb`` files (GTOT) are
    converted with w = x2 − x1, h = y2 − y1 (no +1, as the toolkit). ``allow_nan`` keeps rows like
    ``NaN,NaN,NaN,NaN`` (absent target) as zeros. An infinite value is always an error: no
    annotation tool writes one, and it would reach the tracker as an impossible init box.
    """
    rows = []
    for n, line, values in number_rows(path, "ground-truth file"):
        if len(values) == 8:
            xs, ys = values[0::2], values[1::2]
            values = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        if len(values) != 4:
            raise InputError(f"{path}:{n}: expected 4 (or 8) values, got {len(values)}: {line!r}")
        if any(np.isnan(values)):
            if not allow_nan:
                raise InputError(f"{path}:{n}: NaN in {line!r}")
            values = [0.0, 0.0, 0.0, 0.0]
        if any(np.isinf(values)):
            raise InputError(f"{path}:{n}: infinite value in {line!r}")
        rows.append(values)
    if not rows:
        raise InputError(f"{path}: no boxes")
    boxes = np.array(rows, dtype=np.float64)
    if ltrb:
        boxes[:, 2:] -= boxes[:, :2]
    return boxes


@dataclass
class Sequence:
    name: str
    rgb_dir: Path
    tir_dir: Path
    init_box: tuple[float, float, float, float]
    gt: dict[str, np.ndarray]  # "aligned" (one GT) or "visible" + "infrared"
    gt_files: tuple[Path, ...] = ()  # the files ``gt`` was read from, for messages that name them
    init_file: Path | None = None  # the file ``init_box`` was read from (default: the first of gt_files)
    gt_frames: np.ndarray | None = None  # frame indices of sparse GT rows (VTUAV); None: every frame
    labels: np.ndarray | None = None  # optional per-frame labels (synthetic scenarios)
    _files: tuple[list[Path], list[Path]] | None = field(default=None, repr=False)

    def files(self) -> tuple[list[Path], list[Path]]:
        if self._files is None:
            self._files = (list_images(self.rgb_dir), list_images(self.tir_dir))
        return self._files

    def __len__(self) -> int:
        return min(len(f) for f in self.files())

    def pairs(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rgb, tir = self.files()
        for a, b in zip(rgb, tir):
            yield read_rgb(a), read_rgb(b)

    @property
    def boxes(self) -> np.ndarray:
        """(frames, 4) x, y, w, h per frame, w or h ≤ 0 where the target is absent: what training's
        pair sampler reads. The aligned GT, else the visible one (the boxes are in RGB pixels); sparse
        rows (VTUAV) are spread to their frames and the frames between them count as absent."""
        gt = self.gt.get("aligned", self.gt.get("visible"))
        if self.gt_frames is None:
            return gt
        full = np.zeros((len(self), 4))
        inside = self.gt_frames < len(full)
        full[self.gt_frames[inside]] = gt[inside]
        return full

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame ``i`` of both cameras, decoded alone (training reads two frames of a sequence at a time)."""
        rgb, tir = self.files()
        return read_rgb(rgb[i]), read_rgb(tir[i])


def _seq_dirs(root: Path, names: list[str] | None) -> list[Path]:
    if not root.is_dir():
        raise InputError(f"{root}: dataset root {'is not a folder' if root.exists() else 'not found'}")
    if names is None:
        listed = [root / f for f in ("testingsetList.txt", "list.txt") if (root / f).is_file()]
        if listed:
            names = [n.strip() for n in read_text(listed[0], "sequence list").splitlines() if n.strip()]
    dirs = [root / n for n in names] if names is not None else sorted(p for p in root.iterdir() if p.is_dir())
    missing = [d.name for d in dirs if not d.is_dir()]
    if missing:
        raise InputError(f"{root}: sequences not found: {missing[:5]}")
    if not dirs:
        raise InputError(f"{root}: no sequence folders")
    return dirs


def _init(boxes: np.ndarray) -> tuple[float, float, float, float]:
    return tuple(float(v) for v in boxes[0])  # type: ignore[return-value]


def _labels(d: Path) -> np.ndarray | None:
    f = d / "scenario.txt"
    return np.array(read_text(f, "scenario label file").split()) if f.is_file() else None


FOLDER_THERMAL_DIRS = ("thermal", "infrared")


def read_folder(root: Path, names: list[str] | None = None) -> list[Sequence]:
    """A user's own recordings (what ``ckd-ros bag export`` writes): one folder per sequence with
    rgb/, thermal/ (or infrared/) and groundtruth.txt, x,y,w,h per frame, rows of 0 or NaN where the
    target is absent. ``root`` may also be one such sequence folder."""
    root = Path(root)
    if (root / "rgb").is_dir() and names is None:
        dirs = [root]
    else:
        dirs = _seq_dirs(root, names)
    out = []
    for d in dirs:
        tir = next((d / t for t in FOLDER_THERMAL_DIRS if (d / t).is_dir()), d / FOLDER_THERMAL_DIRS[0])
        gt = read_boxes(d / "groundtruth.txt", allow_nan=True)
        first = next((i for i, b in enumerate(gt) if b[2] > 0 and b[3] > 0), 0)
        out.append(Sequence(d.name, d / "rgb", tir, _init(gt[first:]), {"aligned": gt}, (d / "groundtruth.txt",)))
    return out


def read_lasher(root: Path, names: list[str] | None = None) -> list[Sequence]:
    """LasHeR (and the synthetic suite): visible/, infrared/, init.txt — one aligned GT."""
    out = []
    for d in _seq_dirs(root, names):
        gt = read_boxes(d / "init.txt")
        labels = _labels(d)
        out.append(Sequence(d.name, d / "visible", d / "infrared", _init(gt), {"aligned": gt}, (d / "init.txt",), labels=labels))
    return out


def read_rgbt234(root: Path, names: list[str] | None = None) -> list[Sequence]:
    """RGBT234: init from init.txt, GT per modality from visible.txt and infrared.txt."""
    out = []
    for d in _seq_dirs(root, names):
        init = read_boxes(d / "init.txt")
        gt = {"visible": read_boxes(d / "visible.txt"), "infrared": read_boxes(d / "infrared.txt")}
        files = (d / "visible.txt", d / "infrared.txt")
        out.append(Sequence(d.name, d / "visible", d / "infrared", _init(init), gt, files, d / "init.txt"))
    return out


def read_rgbt210(root: Path, names: list[str] | None = None) -> list[Sequence]:
    """RGBT210: init.txt is both the init and the GT of both modalities."""
    out = []
    for d in _seq_dirs(root, names):
        gt = read_boxes(d / "init.txt")
        out.append(Sequence(d.name, d / "visible", d / "infrared", _init(gt), {"aligned": gt}, (d / "init.txt",)))
    return out


def read_gtot(root: Path, names: list[str] | None = None) -> list[Sequence]:
    """GTOT: v/ and i/ frames; init.txt (tab) for init; groundTruth_v/_i.txt in ltrb for the metric."""
    out = []
    for d in _seq_dirs(root, names):
        gt = {
            "visible": read_boxes(d / "groundTruth_v.txt", ltrb=True),
            "infrared": read_boxes(d / "groundTruth_i.txt", ltrb=True),
        }
        has_init = (d / "init.txt").is_file()
        init = read_boxes(d / "init.txt") if has_init else gt["visible"]
        files = (d / "groundTruth_v.txt", d / "groundTruth_i.txt")
        out.append(Sequence(d.name, d / "v", d / "i", _init(init), gt, files, d / "init.txt" if has_init else files[0]))
    return out


def read_vtuav(root: Path, names: list[str] | None = None) -> list[Sequence]:
    """VTUAV short-term test: test_ST/test_ST/<seq>/rgb, ir, rgb.txt (sparse: one row every k frames).

    Rows are mapped to frames 0, k, 2k… with k = round(frames / rows); NaN rows mark absence. This
    protocol is ours (docs/metrics.md: no official metric code exists) and is documented as such.
    """
    base = root / "test_ST" / "test_ST" if (root / "test_ST" / "test_ST").is_dir() else root
    out = []
    for d in _seq_dirs(base, names):
        gt = read_boxes(d / "rgb.txt", allow_nan=True)
        n = len(list_images(d / "rgb"))
        stride = max(1, round(n / len(gt))) if len(gt) < n else 1
        frames = np.arange(len(gt)) * stride
        first = next((i for i, b in enumerate(gt) if b[2] > 0 and b[3] > 0), 0)
        out.append(Sequence(d.name, d / "rgb", d / "ir", _init(gt[first:]), {"aligned": gt}, (d / "rgb.txt",), gt_frames=frames))
    return out


READERS = {"lasher": read_lasher, "rgbt234": read_rgbt234, "rgbt210": read_rgbt210, "gtot": read_gtot, "vtuav": read_vtuav}
# The benchmark names the CLI's help and error lines offer: a new reader is one READERS entry.
DATASETS = tuple(READERS)


def dataset_key(name: str) -> str:
    """The READERS key (and scoring protocol) a user's spelling means: case, '-' and '_' do not
    count, and the synthetic suite is written in the LasHeR layout, so it reads and scores as LasHeR."""
    key = name.lower().replace("_", "").replace("-", "")
    return "lasher" if key in ("synthetic", "synth") else key


def read_dataset(name: str, root: str | Path, sequences: list[str] | None = None) -> list[Sequence]:
    key = dataset_key(name)
    if key not in READERS:
        raise InputError(f"unknown dataset {name!r}; one of {', '.join(DATASETS)} (or 'synthetic')")
    return READERS[key](Path(root), sequences)
