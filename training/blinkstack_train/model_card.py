"""The model card (JSON + Markdown) beside the served model, assembled from the runs that produced it.

Reads, per size, `runs/<size>/{train_summary.json, export.json, eval/eval.json}` and the family benchmark
JSON from `bench/bench_eye_state_models.py`. The served model is the run whose exported file has the same
sha256 as `<repository>/eye_state/<newest version>/model.onnx`.
"""

from __future__ import annotations

import json
from pathlib import Path

from blinkstack.common.model_repository import EYE_STATE_MODEL, file_sha256, resolve_model_file
from blinkstack.common.preprocess import INPUT_HEIGHT, INPUT_WIDTH

DATASETS = [
    {
        "name": "MRL",
        "full_name": "MRL Eye Dataset (VSB Technical University of Ostrava, 2018)",
        "used": "the ~60 % training part copied into ../shared/data/eyes/mrl.parquet: 50,937 infrared crops, 37 subjects",
        "licence": "published by its authors for research use; images not redistributed",
    },
    {
        "name": "CEW",
        "full_name": "Closed Eyes In The Wild (Song et al., NUAA, 2014); open eyes from LFW",
        "used": "half of the 24x24 eye patches (../shared/data/eyes/cew_dev.parquet, 2,420 patches), split by face",
        "licence": "published by its authors for research use; images not redistributed",
    },
    {
        "name": "ZJU Eyeblink",
        "full_name": "ZJU Eyeblink database (Pan et al., Zhejiang University, 2007), re-annotated per eye and frame by Fogelton & Benesova",
        "used": "the dev half (../shared/data/video/zju_dev: 40 webcam clips of 10 people): eye crops cut by blinkstack's own detector from every frame (`blinkstack-train cut-video-crops`), open/closed per eye; closing and reopening frames left out",
        "licence": "published by its authors for research use; images not redistributed",
    },
]

CAVEATS = [
    "MRL is infrared driver-camera footage; visible light is CEW (1,474 training patches) and the detector crops of 10 ZJU webcam people (low resolution: eyes 15-25 px wide).",
    "Squinting while laughing and eyes lowered to look down read as closed (the Eyeblink8 video shows both).",
    "Sensor is a shortcut in MRL (open eyes are over-represented on sensors 02/03); metrics are reported per sensor.",
    "About 5 % of CEW labels are debatable squints; CEW F1 is bounded by that noise.",
    "Crops must be square and centred on the eye (the detector's crop geometry); other geometries were not evaluated.",
    "Not evaluated on children, on heavy make-up, or on faces turned more than about 30 degrees.",
]


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _family_rows(runs: Path, bench: dict) -> list[dict]:
    bench_by_model = {row["model"]: row for row in bench.get("models", [])}
    rows = []
    for run in sorted(
        p for p in runs.iterdir() if (p / "export.json").exists() and (p / "eval" / "eval.json").exists()
    ):
        exported, evaluated = _load(run / "export.json"), _load(run / "eval" / "eval.json")
        summary = _load(run / "train_summary.json")
        b = bench_by_model.get(run.name, {})
        rows.append(
            {
                "model": run.name,  # the run: one size may have several (e.g. small and its refit)
                "run": run.name,
                "parameters": exported["parameters"],
                "epochs": summary["config"]["epochs"],
                "best_epoch": summary["best"]["epoch"],
                "bytes": exported["bytes"],
                "sha256": exported["sha256"],
                "mrl_test_f1": evaluated["mrl_test"]["f1"],
                "mrl_test_macro_f1": evaluated["mrl_test"]["macro_f1"],
                "cew_test_f1": evaluated["cew_test"]["f1"],
                "batch1_single_thread_p50_ms": b.get("batch1_single_thread_p50_ms"),
                "batch1_single_thread_p99_ms": b.get("batch1_single_thread_p99_ms"),
                "batch256_crops_per_s": b.get("batch256_crops_per_s"),
                # JSON keys are strings; 32 is the eye-state service's run size (--run-batch).
                "batch32_crops_per_s": (b.get("crops_per_s_by_batch") or {}).get("32"),
                "int8": exported.get("int8"),
            }
        )
    return sorted(rows, key=lambda r: r["parameters"])


def _carried_rows(previous_card: Path, rows: list[dict]) -> list[dict]:
    """Family rows of the previous card whose runs are not here: measured once, kept rather than dropped."""
    if not previous_card.exists():
        return []
    here = {r["run"] for r in rows}
    return [{**r, "carried": True} for r in _load(previous_card).get("family", []) if r["run"] not in here]


def build_card(repository: Path, runs: Path, bench_path: Path, video_evals: dict[str, Path] | None = None) -> dict:
    """`video_evals`: `evaluate-video` reports to quote, by what they measured (e.g. "cross-validated")."""
    model_file, version = resolve_model_file(repository / EYE_STATE_MODEL)
    digest = file_sha256(model_file)
    bench = _load(bench_path) if bench_path.exists() else {}
    family = _family_rows(runs, bench)
    family = sorted(
        family + _carried_rows(repository / EYE_STATE_MODEL / "model_card.json", family),
        key=lambda r: (r["parameters"], r["run"]),
    )
    served = next((r for r in family if r["sha256"] == digest), None)
    if served is None:
        raise FileNotFoundError(f"no run under {runs} exported {model_file} (sha256 {digest[:12]}...)")
    run = runs / served["run"]
    summary, evaluated, exported = (
        _load(run / "train_summary.json"),
        _load(run / "eval" / "eval.json"),
        _load(run / "export.json"),
    )
    return {
        "name": EYE_STATE_MODEL,
        "version": version,
        "file": str(model_file.relative_to(repository)),
        "sha256": digest,
        "bytes": model_file.stat().st_size,
        "architecture": f"{summary['config']['model']} (inverted-residual CNN, training/blinkstack_train/models.py)",
        "parameters": served["parameters"],
        "input": {
            "name": "images",
            "shape": ["N", 1, INPUT_HEIGHT, INPUT_WIDTH],
            "dtype": "float32",
            "preprocessing": "blinkstack.common.preprocess: decode -> gray -> resize (area/bilinear) -> per-crop standardisation",
        },
        "output": {
            "name": "prob_open",
            "shape": ["N"],
            "dtype": "float32",
            "meaning": "P(eye open), sigmoid inside the graph",
        },
        "threshold": evaluated["threshold"],
        "data": {"datasets": DATASETS, **summary["data"]},
        "training": {"config": summary["config"], "best": summary["best"], "train_rows": summary["train_rows"]},
        "export": {"parity": exported["parity"], "opset": exported["opset"]},
        "metrics": {
            k: evaluated[k] for k in ("mrl_test", "cew_test", "mrl_per_sensor", "mrl_per_glasses", "mrl_per_subject")
        },
        "family": family,
        # Per-clip details stay in the reports themselves; the card quotes the summary.
        "webcam_video": {
            name: {k: v for k, v in _load(path).items() if k != "clips"} for name, path in (video_evals or {}).items()
        },
        "benchmark_machine": bench.get("machine"),
        "caveats": CAVEATS,
        "commands": _commands(summary["config"], served["run"], version, video_evals or {}),
    }


def _commands(config: dict, run: str, version: int, video_evals: dict[str, Path]) -> list[str]:
    """The commands that produced the served model, in order."""
    return [
        "make train-family   # prepare, train tiny/small/medium, export, evaluate, benchmark, card",
        *(
            [f"blinkstack-train cut-video-crops --front-end centerface --out {config['video_crops']}"]
            if config.get("video_crops")
            else []
        ),
        _train_command(config["model"], run, config),
        f"blinkstack-train export --checkpoint runs/{run}/best.pt --repository model_repository --version {version} --int8",
        f"blinkstack-train evaluate --model runs/{run}/model.onnx --out runs/{run}/eval",
        "python bench/bench_eye_state_models.py runs/*/model.onnx --json runs/bench_family.json",
        *(
            ["make eval-video   # the fold models on unseen people, the served model on ZJU and Eyeblink8"]
            if video_evals
            else []
        ),
        "blinkstack-train card" + "".join(f' --video-eval "{name}={path}"' for name, path in video_evals.items()),
    ]


def _training_text(training: dict) -> str:
    config, best = training["config"], training["best"]
    if config.get("refit") and config.get("video_crops"):
        return (
            f"Refit: trained for {config['epochs']} epochs on the MRL/CEW training and validation people and on the "
            "detector's eye crops of all ten ZJU dev people, last (EMA) weights kept. The same recipe trained "
            "without either half of the ZJU people (`--video-holdout`) gives the cross-validated video figures; "
            "the MRL test people and the CEW hold-out stay unseen."
        )
    if config.get("refit"):
        return (
            f"Refit: trained on the training and validation subjects for {config['epochs']} epochs, last (EMA) "
            "weights kept; the epoch count was set from the validation-selected run of the same size. The test "
            "subjects stay unseen."
        )
    return f"Best epoch {best['epoch']} (validation score {best['score']:.4f});"


def _train_command(model: str, run: str, config: dict) -> str:
    """The `blinkstack-train train` call that reproduces a run, from its recorded config."""
    from blinkstack_train.augment import AugmentConfig
    from blinkstack_train.train import TrainConfig

    command = f"blinkstack-train train --model {model} --epochs {config['epochs']} --out runs/{run}"
    if config.get("cew_repeat", TrainConfig.cew_repeat) != TrainConfig.cew_repeat:
        command += f" --cew-repeat {config['cew_repeat']}"
    for name in ("max_shift", "rim_p", "motion_blur_p"):
        value = config.get("augment", {}).get(name, getattr(AugmentConfig, name))
        if value != getattr(AugmentConfig, name):
            command += f" --{name.replace('_', '-')} {value}"
    if config.get("video_crops"):
        command += f" --video-crops {config['video_crops']} --video-repeat {config['video_repeat']}"
        if config.get("video_holdout"):
            command += " --video-holdout " + ",".join(str(s) for s in config["video_holdout"])
    if config.get("mrl_per_epoch"):
        command += f" --mrl-per-epoch {config['mrl_per_epoch']}"
    return command + (" --refit" if config.get("refit") else "")


def _fmt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else format(value, pattern)


def render_markdown(card: dict) -> str:
    lines = [
        f"# Model card: `{card['name']}` version {card['version']}",
        "",
        f"Open/closed eye classifier served by blinkstack. File `{card['file']}` ({card['bytes']:,} bytes), sha256 `{card['sha256']}`.",
        f"Architecture: {card['architecture']}, {card['parameters']:,} parameters.",
        "",
        "## Interface",
        f"- input `images` [N, 1, {INPUT_HEIGHT}, {INPUT_WIDTH}] float32: {card['input']['preprocessing']}.",
        f"- output `prob_open` [N] float32 in [0, 1]; the eye counts as open at prob_open >= {card['threshold']}.",
        "- crops: square, centred on the eye; any size and encoding (the service resizes).",
        "",
        "## Data",
    ]
    lines += _data_lines(card["data"])
    lines += _metric_lines(card["metrics"], card["threshold"])
    lines += _family_lines(card["family"])
    lines += _webcam_lines(card.get("webcam_video") or {})
    machine = card.get("benchmark_machine") or {}
    lines += [
        "",
        f"Latency measured on {machine.get('cpus', '?')} CPU cores ({machine.get('processor', '?')}) with ONNX Runtime, by `bench/bench_eye_state_models.py`.",
        "",
        "## Training",
        _training_text(card["training"]) + f" {card['training']['train_rows']:,} training crops. "
        f"Export parity (ONNX Runtime vs PyTorch, "
        f"{card['export']['parity']['crops']} real crops): max |diff| {card['export']['parity']['max_abs_diff']:.2g}.",
        "",
        "Commands that produced this model:",
        "```",
        *card["commands"],
        "```",
        "",
        "## Caveats",
        *[f"- {c}" for c in card["caveats"]],
        "",
    ]
    return "\n".join(lines)


def _data_lines(data: dict) -> list[str]:
    lines: list[str] = []
    lines += [
        f"- **{d['name']}**: {d['full_name']}. Used: {d['used']}. Licence: {d['licence']}." for d in data["datasets"]
    ]
    dedup = data["dedup"]
    lines += [
        f"- De-duplication (byte-identical images): {dedup['duplicate_groups']} groups; {dedup['duplicate_rows_removed']} extra copies removed, "
        f"{dedup['conflicting_rows_dropped']} rows of {dedup['conflicting_groups']} groups with contradicting labels dropped.",
        f"- MRL test subjects: {', '.join(data['mrl_test_subjects'])}; validation subjects: {', '.join(data['mrl_val_subjects'])}; every other subject trains.",
        f"- CEW split by face: {data['cew_rule']}.",
        "",
        "| split | dataset | rows | open | closed | persons | sensors |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    lines += [
        f"| {r['split']} | {r['dataset']} | {r['rows']} | {r['open']} | {r['closed']} | {r['persons']} | {r['sensors']} |"
        for r in data["summary"]
    ]
    return lines


def _metric_lines(m: dict, threshold: float) -> list[str]:
    lines: list[str] = []
    lines += [
        "",
        f"## Metrics (threshold {threshold}, open = positive class)",
        "",
        "| set | n | F1 | macro F1 | accuracy | precision | recall | ROC-AUC | ECE |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def row(name: str, r: dict) -> str:
        return (
            f"| {name} | {r['n']} | {r['f1']:.4f} | {r['macro_f1']:.4f} | {r['accuracy']:.4f} | {r['precision']:.4f} | "
            f"{r['recall']:.4f} | {r['roc_auc']:.4f} | {r['ece']:.4f} |"
        )

    lines.append(row("MRL test subjects", m["mrl_test"]))
    lines.append(row("CEW hold-out (cross-domain)", m["cew_test"]))
    for group in ("mrl_per_sensor", "mrl_per_glasses", "mrl_per_subject"):
        lines += [row(f"MRL {group.removeprefix('mrl_per_')} {key}", r) for key, r in m[group].items()]
    return lines


def _family_lines(family: list[dict]) -> list[str]:
    lines: list[str] = []
    lines += [
        "",
        "## Family (same data and recipe; schedule per row)",
        "",
        "| model | parameters | epochs (best) | file KB | MRL-test F1 | CEW F1 | batch-1 p50 ms (1 thread) | batch-1 p99 ms | crops/s at batch 32 | crops/s at batch 256 | INT8 MRL F1 / CEW F1 / KB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in family:
        int8 = r["int8"]
        int8_text = (
            f"{int8['mrl_test_f1']:.4f} / {int8['cew_test_f1']:.4f} / {int8['bytes'] / 1024:.0f}" if int8 else "n/a"
        )
        lines.append(
            f"| {r['model']}{'*' if r.get('carried') else ''} | {r['parameters']:,} | {r['epochs']} ({r['best_epoch']}) | {r['bytes'] / 1024:.0f} | {r['mrl_test_f1']:.4f} | {r['cew_test_f1']:.4f} | "
            f"{_fmt(r['batch1_single_thread_p50_ms'], '.3f')} | {_fmt(r['batch1_single_thread_p99_ms'], '.3f')} | "
            f"{_fmt(r['batch32_crops_per_s'], ',.0f')} | {_fmt(r['batch256_crops_per_s'], ',.0f')} |  {int8_text} |"
        )
    if any(r.get("carried") for r in family):
        lines.append("\nRows marked * were measured for an earlier card; their runs are not in this build's `runs/`.")
    return lines


def _webcam_lines(reports: dict[str, dict]) -> list[str]:
    """Blink detection on real webcam video through the whole stack, per quoted `evaluate-video` report."""
    if not reports:
        return []
    lines = [
        "",
        "## Blinks in real webcam video (the whole stack, `blinkstack-train evaluate-video`)",
        "",
        "| run | people | encodings (the worst's figures) | BLINK P / R / F1 [95 % over people] | F1 by condition | "
        "false WINK / LONG_CLOSURE | both closed / both open frames | failed streams |",
        "|---|---|---|---|---|---|---|---:|",
    ]
    for name, r in reports.items():
        b, people = r["blink"], r["people"]
        seen = "cross-validated by person: no one seen" if people["cross_validated"] else "one model"
        conditions = ", ".join(f"{k} {v['f1']:.3f}" for k, v in r["blink_by_condition"].items())
        encodings = ", ".join(f"{k} {v['blink']['f1']:.3f}" for k, v in r.get("by_encoding", {}).items())
        interval = f" [{r['blink_f1_ci95'][0]:.3f}-{r['blink_f1_ci95'][1]:.3f}]" if "blink_f1_ci95" in r else ""
        lines.append(
            f"| {name} | {len(people['subjects'])} ({seen}) | {encodings or '-'} | "
            f"{b['precision']:.3f} / {b['recall']:.3f} / {b['f1']:.3f}{interval} | "
            f"{conditions} | {r['false_winks']} / {r['false_long_closures']} | "
            f"{r['both_closed_agreement']:.3f} / {r['both_open_agreement']:.3f} | {len(r['failed_streams'])} |"
        )
        if "eyeblink8" in r:
            e = r["eyeblink8"]
            lines.append(
                f"\n{name}, Eyeblink8 windows video: {e['frames_with_one_face']}/{e['frames']} frames with one face, "
                f"{e['certain_blinks_found']}/2 certain blinks found, BLINKs at {e['blinks_s']} s, "
                f"{e['winks']} WINK, {e['long_closures']} LONG_CLOSURE."
            )
    return lines


def write_model_card(
    repository: Path, runs: Path, bench_path: Path, video_evals: dict[str, Path] | None = None
) -> list[Path]:
    card = build_card(Path(repository), Path(runs), Path(bench_path), video_evals)
    model_dir = Path(repository) / EYE_STATE_MODEL
    json_path, md_path = model_dir / "model_card.json", model_dir / "MODEL_CARD.md"
    json_path.write_text(json.dumps(card, indent=2) + "\n")
    md_path.write_text(render_markdown(card))
    return [json_path, md_path]
