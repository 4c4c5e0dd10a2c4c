"""The landmark recipe a user would pick instead: MediaPipe Face Mesh on JPEG frames, run by MediaPipe itself.

This file runs in the MediaPipe environment (`make mediapipe-env`: `.venv/mediapipe`, whose pins conflict with
the project's), not in `.venv`: it imports only mediapipe, OpenCV and NumPy, and is started by path.

    .venv/mediapipe/bin/python training/blinkstack_train/face_mesh_runner.py FRAMES.npz OUT.npz [--refine]

FRAMES.npz holds `jpeg` (an object array of JPEG bytes; PNG bytes decode as well) and `stream` (the clip each
frame belongs to: a new FaceMesh, as a new camera, starts at each change). Each frame is decoded and converted to
RGB exactly as a service receiving it would, then given to FaceMesh in video mode (detection only when it has no
face). OUT.npz gets `landmarks` [F, 478 or 468, 2] in pixels (NaN where no face was found) and `cpu_s`, the
process CPU time the decoding and FaceMesh took over all frames (every thread MediaPipe started included).
"""

from __future__ import annotations

import argparse
import resource


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("frames")
    parser.add_argument("out")
    parser.add_argument("--refine", action="store_true", help="refine_landmarks: the attention model (478 points)")
    args = parser.parse_args()

    import cv2
    import mediapipe as mp
    import numpy as np

    data = np.load(args.frames, allow_pickle=True)
    jpegs, streams = data["jpeg"], data["stream"]
    points = 478 if args.refine else 468
    landmarks = np.full((len(jpegs), points, 2), np.nan, dtype=np.float32)
    mesh, current = None, None
    cpu = 0.0
    for i, (jpeg, stream) in enumerate(zip(jpegs, streams, strict=True)):
        if stream != current:
            if mesh is not None:
                mesh.close()
            mesh = mp.solutions.face_mesh.FaceMesh(max_num_faces=1, refine_landmarks=args.refine)
            current = stream
        start = _cpu_seconds()
        frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if frame is None or mesh is None:
            raise ValueError(f"frame {i} of {stream} is not a JPEG")
        result = mesh.process(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        cpu += _cpu_seconds() - start
        if result.multi_face_landmarks:
            height, width = frame.shape[:2]
            face = result.multi_face_landmarks[0].landmark
            landmarks[i] = [(p.x * width, p.y * height) for p in face]
    if mesh is not None:
        mesh.close()
    np.savez(args.out, landmarks=landmarks, cpu_s=np.float64(cpu))


if __name__ == "__main__":
    main()
