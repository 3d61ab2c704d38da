"""The ``dreamer`` command.

    dreamer generate PROMPT [--negative TEXT] [--preset NAME|FILE] [--prior ID|PATH|reference:PATH]
                            [--seed N] [--out DIR] [--device cpu|cuda] [--steps N] [--faces N]
                            [--texture-size N] [--set KEY=VALUE ...]
    dreamer generate --resume OUT
    dreamer edit OUT --prompt TEXT [--source-prompt TEXT] [--out DIR] [--steps N] [--seed N]
                     [--device cpu|cuda] [--prior ID|PATH] [--set KEY=VALUE ...]
    dreamer presets
    dreamer serve | worker | jobs list|show|cancel      (the studio: see dreamer/jobs/cli.py)

User mistakes (bad input, missing weights, unreadable files) print one line and exit with 2;
an interrupted run says how to resume it and exits with 130.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from dreamer.errors import DreamerError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line instead of the usage block."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dreamer", description="Text-to-3D: a prompt in, a textured mesh out.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    gen = sub.add_parser("generate", help="generate a textured mesh from a prompt")
    gen.add_argument("prompt", nargs="?", help='what to make, e.g. "a wooden chair"')
    gen.add_argument("--negative", help="negative prompt (default: the preset's)")
    gen.add_argument(
        "--preset", help="preset name (see `dreamer presets`) or a YAML file; default cpu, or fast on CUDA"
    )
    gen.add_argument("--prior", help="diffusion model (alias, hub id, local folder) or reference:MESH")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    gen.add_argument("--out", type=Path, help="output folder (default out/<prompt>-<seed>)")
    gen.add_argument("--device", choices=["cpu", "cuda"], help="default: the preset's (cuda when available)")
    gen.add_argument("--steps", type=_positive_int, help="coarse-stage steps")
    gen.add_argument("--faces", type=_positive_int, help="target face count of the exported mesh")
    gen.add_argument("--texture-size", type=_positive_int, help="texture resolution in texels")
    gen.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any preset setting, e.g. --set coarse.objective.guidance_scale=50",
    )
    gen.add_argument("--resume", type=Path, metavar="OUT", help="continue an interrupted run in OUT")
    gen.add_argument("--quiet", action="store_true", help="no progress bars")

    ed = sub.add_parser("edit", help="refine a finished run toward a new prompt (DDS), into a new folder")
    ed.add_argument("run", type=Path, metavar="OUT", help="a finished run folder; it is only read")
    ed.add_argument("--prompt", required=True, help='the target prompt, e.g. "a red wooden chair"')
    ed.add_argument(
        "--source-prompt", help="what the run shows now; shared words are kept (default: the run's own prompt)"
    )
    ed.add_argument("--out", type=Path, metavar="DIR", help="output folder (default OUT-edit)")
    ed.add_argument("--steps", type=_positive_int, help="edit steps (default 300)")
    ed.add_argument("--seed", type=int, help="random seed (default: the run's)")
    ed.add_argument("--device", choices=["cpu", "cuda"], help="default: the run's preset's")
    ed.add_argument("--prior", help="diffusion model (alias, hub id, local folder); default: the run's")
    ed.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting of the edit, e.g. --set edit.objective.guidance_scale=15",
    )
    ed.add_argument("--quiet", action="store_true", help="no progress bars")

    sub.add_parser("presets", help="list the presets: what each is for, expected time and memory")

    from dreamer.jobs.cli import add_commands  # serve, worker, jobs: the studio's commands

    add_commands(sub)
    return parser


def _default_out(prompt: str, seed: int) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:48] or "run"
    return Path("out") / f"{slug}-{seed}"


def _stage_printer(quiet: bool):
    """Print a line when a stage starts (the per-stage tqdm bars show the rest)."""
    seen: set[str] = set()

    def on_progress(event) -> None:
        if event.stage not in seen:
            seen.add(event.stage)
            if not quiet:
                print(f"[dreamer] {event.stage}", file=sys.stderr, flush=True)

    return on_progress


def cmd_generate(args: argparse.Namespace) -> int:
    from dreamer.preset_files import default_preset, parse_override, read_preset, resolve_preset_path
    from dreamer.priors.load import check_prior_available
    from dreamer.prompts import check_prompt

    if args.quiet:
        os.environ["TQDM_DISABLE"] = "1"
    if args.resume is not None:
        if args.prompt:
            raise DreamerError("--resume continues a run with its own prompt: drop the prompt or --resume")
        from dreamer.stages.pipeline import resume

        out = resume(args.resume, _stage_printer(args.quiet), device=args.device)
        print(out / "model.glb")
        return 0
    if args.prompt is None:
        raise DreamerError('give a prompt, e.g. dreamer generate "a wooden chair", or --resume OUT')
    overrides = dict(parse_override(s) for s in args.set)
    if args.steps is not None:
        overrides["coarse.steps"] = args.steps
    if args.faces is not None:
        overrides["extract.target_faces"] = args.faces
    if args.texture_size is not None:
        overrides["texture.resolution"] = args.texture_size

    # Missing weights are the commonest first-run failure: report them before importing torch.
    check_prompt(args.prompt)
    preset = args.preset or default_preset()
    prior = args.prior or overrides.get("prior") or read_preset(resolve_preset_path(preset)).get("prior")
    if isinstance(prior, str):
        check_prior_available(prior)

    from dreamer.stages.pipeline import GenerateRequest, generate

    request = GenerateRequest(
        prompt=args.prompt,
        out=args.out or _default_out(args.prompt, args.seed),
        preset=preset,
        negative=args.negative,
        prior=args.prior,
        seed=args.seed,
        device=args.device,
        overrides=overrides,
    )
    try:
        out = generate(request, _stage_printer(args.quiet))
    except KeyboardInterrupt:
        print(f"interrupted: resume with  dreamer generate --resume {request.out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(out / "model.glb")
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    from dreamer.preset_files import parse_override
    from dreamer.priors.load import check_prior_available
    from dreamer.prompts import check_prompt

    if args.quiet:
        os.environ["TQDM_DISABLE"] = "1"
    # user mistakes first, before torch is imported
    check_prompt(args.prompt)
    if args.source_prompt is not None:
        check_prompt(args.source_prompt)
    overrides = dict(parse_override(s) for s in args.set)
    if args.steps is not None:
        overrides["edit.steps"] = args.steps
    if args.prior is not None:
        check_prior_available(args.prior)

    from dreamer.stages.edit import EditRequest, default_edit_out, edit

    request = EditRequest(
        source=args.run,
        prompt=args.prompt,
        source_prompt=args.source_prompt,
        out=args.out or default_edit_out(args.run),
        prior=args.prior,
        seed=args.seed,
        device=args.device,
        overrides=overrides,
    )
    try:
        out = edit(request, _stage_printer(args.quiet))
    except KeyboardInterrupt:
        print(f"interrupted: resume with  dreamer generate --resume {request.out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(out / "model.glb")
    return 0


def cmd_presets(_: argparse.Namespace) -> int:
    from dreamer.preset_files import preset_names
    from dreamer.presets import load_preset

    for name in preset_names():
        cfg = load_preset(name)
        print(f"{name:<12} {cfg.description}  [{cfg.expected.time}; {cfg.expected.memory}]")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "generate":
            return cmd_generate(args)
        if args.command == "edit":
            return cmd_edit(args)
        if args.command == "presets":
            return cmd_presets(args)
        from dreamer.jobs.cli import dispatch

        return dispatch(args)
    except DreamerError as err:
        print(f"dreamer: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
