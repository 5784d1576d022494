"""CPU cost of BlazePose (issue 28) on a face photograph, one process, one ONNX thread.

    python bench/bench_head_pose.py [--corpus bench/_corpus/camera-20] [--count 20] [--repeat 3]

BlazePose runs only for a face that looks turned or a photograph without a face (not intraoral).
The camera corpus's faces are frontal, so this measures `LocalClassifier.classify` on its JPEGs
as they are (`frontal`: BlazePose never runs) and with the turn check set to 0 degrees (`forced`:
every face found also runs the pose detector and landmark model, as a turned face does). CPU
time (time.process_time) per photograph in ms, median of `--repeat` runs after a warm-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("ORTHOVISION_THREADS", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from orthovision_cli.inputs.source import SourceImage  # noqa: E402
from orthovision_cli.labels.local import load_pack  # noqa: E402
from orthovision_cli.labels.local import pose as head_pose  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=HERE / "_corpus" / "camera-20")
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    paths = sorted(args.corpus.rglob("*.JPG"))[: args.count]
    if not paths:
        print(f"no JPEGs under {args.corpus}: make them with bench/bench_camera.py")
        return 2
    clf = load_pack()

    def run() -> tuple[float, int]:
        t = time.process_time()
        posed = 0
        for p in paths:
            labels = clf.classify(SourceImage(p, rel=p.name, probed=True))
            protocol = labels.get("protocol")
            posed += bool(protocol is not None and "pose_yaw_degrees" in protocol.detail)
        return (time.process_time() - t) / len(paths) * 1000, posed

    normal = head_pose.POSE_CHECK_DEGREES
    for name, check in (("frontal", normal), ("forced", -1.0)):
        head_pose.POSE_CHECK_DEGREES = check
        run()
        times, posed = [], 0
        for _ in range(args.repeat):
            ms, posed = run()
            times.append(ms)
        print(
            f"{name}: {statistics.median(times):.1f} ms CPU per photo ({posed} of {len(paths)} ran BlazePose)"
        )
    head_pose.POSE_CHECK_DEGREES = normal
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
