"""The ``hf-ddb`` command line: the whole of DDB, or one stage of it, from a YAML config in ``pipelines/``.

    hf-ddb run pipelines/colored_mnist.yaml          # data -> diffusion -> generation -> amplifier -> methods -> report
    hf-ddb train-diffusion | generate | train-amplifier | debias | evaluate  CONFIG
    hf-ddb push CONFIG --repo-prefix you/colored-mnist-ddb

Every stage is cached in the run folder, keyed by its settings: a re-run skips finished stages and resumes
an interrupted one. Every command also runs on several processes (GPUs, or gloo on CPUs):
``accelerate launch -m hf_ddb.cli run CONFIG`` (or ``torchrun --nproc-per-node N -m hf_ddb.cli run CONFIG``);
every stage then shares its work across them and the main process writes.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datasets import DatasetDict

    from .config import RunConfig

# nothing heavy at import time: `hf-ddb --help` and `--version` must not load torch (commands import it)

__all__ = ["main"]

COMMANDS = {
    "validate": "check the config, the data and the models it needs, without training anything",
    "run": "run the whole pipeline and print the results table",
    "train-diffusion": "train the class-conditional diffusion model (resumable, multi-process)",
    "generate": "generate the synthetic bias-aligned dataset (resumable, multi-process)",
    "train-amplifier": "train the bias amplifier on the synthetic images and score the real data",
    "debias": "train every method the config lists (its `methods`), each cached on its own",
    "evaluate": "write results.json/results.md, the plots and the model cards",
    "push": "push the diffusion pipeline, the amplifier and the debiased classifier to the Hub",
}


def _stage(config: RunConfig, command: str, args: argparse.Namespace, data: DatasetDict | None) -> int:
    from .checks import ConfigError
    from .report import format_results_table
    from .runner import Run

    run = Run(config, data=data)
    start = time.time()
    # under torchrun/accelerate every process works, the main one reports
    say = print if run.is_main_process else lambda *args, **kwargs: None
    if command == "train-diffusion":
        say(f"train-diffusion: {run.diffusion()}")
    elif command == "generate":
        say(f"generate: {run.generation().num_rows} images in {run.root / 'synthetic' / 'dataset'}")
    elif command == "train-amplifier":
        say(f"train-amplifier: {run.amplifier()}")
    elif command == "debias":
        say(format_results_table(run.debias()))
    elif command == "push":
        from .hub import push_run

        prefix = args.repo_prefix or config.hub.repo_prefix
        if not prefix:
            raise ConfigError("push needs --repo-prefix or 'hub.repo_prefix' in the config")
        from huggingface_hub import HfApi

        api = HfApi(token=args.token) if args.token else None
        private = args.private or config.hub.private
        sent = push_run(
            run.root,
            prefix,
            classifier=config.hub.classifier,
            api=api,
            private=private,
            dry_run=args.dry_run,
            dataset=not args.no_dataset,
            space=not args.no_space,
        )
        for repo, files in sent.items():
            if args.dry_run:
                say(f"would push {len(files)} files to {repo}{' (private)' if private else ''}: {', '.join(files)}")
            else:
                say(f"pushed {len(files)} files to {repo}")
    else:  # run, evaluate
        report = run.report()
        seconds = round(time.time() - start, 1)
        title = f"{config.benchmark_name} {config.benchmark_options}: test split, accuracies in % ({seconds} s)"
        say(title if args.quiet else f"\n{title}")
        say(format_results_table(report["methods"]))
        detection = (report.get("amplifier") or {}).get("detection")
        if detection:
            say(f"bias amplifier: bias-conflicting detection AUROC {detection['auroc']:.3f} (evaluation only)")
        if not args.quiet:
            say(f"\nreport: {run.root / 'results.md'}  (results.json, plots, model cards)")
        if run.is_main_process:
            from .utils import atomic_write_text

            atomic_write_text(run.root / "last_run.json", json.dumps({"command": command, "seconds": seconds}))
    return 0


def _configure_logging(level: int) -> None:
    """The library's log (stage progress, cache hits) on stderr, one ``[hf-ddb]`` line per message; results
    stay on stdout. Idempotent: repeated `main` calls (tests) replace the handler, never stack them."""
    logger = logging.getLogger("hf_ddb")
    for handler in [h for h in logger.handlers if getattr(h, "hf_ddb_cli", False)]:
        logger.removeHandler(handler)
    from .utils import LaunchedProcesses

    handler = logging.StreamHandler(sys.stderr)
    handler.hf_ddb_cli = True
    if not LaunchedProcesses.from_environment().is_main:  # one line per event: the main process logs (as
        handler.setLevel(logging.ERROR)  # Accelerate's logger does); the others only their own errors
    handler.setFormatter(logging.Formatter("[hf-ddb] %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)


def _require_token(token: str | None) -> None:
    """``push``: no token fails here, in about a second, before torch or any model is loaded."""
    from huggingface_hub import get_token

    if not (token or get_token()):
        raise PermissionError("no Hub token: log in with `hf auth login`, set HF_TOKEN or pass --token")


def _hide_library_progress_bars(warnings_too: bool = False) -> None:
    """``-q``: the progress bars of datasets, diffusers and transformers off too, through their own switches
    (hf-ddb's bars and Trainers follow its logger's level); ``warnings_too`` (a process other than the main
    one) also their log below errors, so that several processes print each message once."""
    import datasets
    import diffusers
    import transformers

    datasets.disable_progress_bars()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    if warnings_too:
        datasets.logging.set_verbosity_error()
        diffusers.utils.logging.set_verbosity_error()
        transformers.utils.logging.set_verbosity_error()


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Errors a user can cause and fix (a bad config, data, path, token or network): one line, exit 2."""
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
    from requests.exceptions import ConnectionError as NetworkError

    from .checks import ConfigError, DatasetValidationError

    return (
        ConfigError,
        DatasetValidationError,
        OSError,  # missing, unreadable or unwritable files and folders
        HfHubHTTPError,
        HFValidationError,
        OfflineModeIsEnabled,
        NetworkError,
    )


def _report_error(err: Exception, where: str = "") -> int:
    """One line on stderr for a failed command; the exit status: 2 for an error the user can fix, else 1."""
    from .checks import ConfigError

    user_error = isinstance(err, _user_error_types())
    kind = "" if user_error else f"unexpected {type(err).__name__}: "
    lines = str(err).strip().splitlines() or [type(err).__name__]
    if not isinstance(err, ConfigError):  # a config's problems, one line each; any other error, its first line
        lines = lines[:1]
    for index, line in enumerate(lines):
        hint = " (--debug shows the traceback)" if index == len(lines) - 1 else ""
        print(f"hf-ddb: error: {where}{kind}{line}{hint}", file=sys.stderr)
    return 2 if user_error else 1


def _init(args: argparse.Namespace) -> int:
    """``hf-ddb init DATASET``: a commented starting config read off the data, and the next command."""
    from .scaffold import write_starting_config

    name = Path(str(args.dataset).rstrip("/")).name or "dataset"
    output = Path(args.output or f"{name}.yaml")
    try:
        sketch = write_starting_config(args.dataset, output, force=args.force)
    except Exception as err:
        if args.debug:
            raise
        return _report_error(err)
    if args.quiet:
        return 0
    bias = f", bias column {sketch.bias_column!r}" if sketch.bias_column else ", no bias column"
    print(
        f"wrote {output}: image column {sketch.image_column!r}, label column {sketch.label_column!r} "
        f"({len(sketch.class_names)} classes){bias}, images "
        + (
            "of several sizes (the config resizes them)"
            if sketch.mixed_sizes
            else f"{sketch.image_size[0]}x{sketch.image_size[1]} px"
        )
    )
    quoted = shlex.quote(str(output))
    print(f"next: hf-ddb validate {quoted} && hf-ddb run {quoted}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    """``hf-ddb demo RUN_DIR``: serve the run's Gradio demo until interrupted."""
    from .demo import build_demo, demo_sources

    try:
        sources = demo_sources(args.run_dir)
        app = build_demo(sources["folder"], classifier=sources["classifier"], amplifier=sources.get("amplifier"))
    except Exception as err:
        if args.debug:
            raise
        return _report_error(err)
    app.launch(server_name=args.host, server_port=args.port)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The ``hf-ddb`` command; returns its exit status: 0 done, 2 a user error (one line on stderr, no
    traceback unless ``--debug``), 1 an unexpected failure, 130 interrupted."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="hf-ddb", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"hf-ddb {__version__}")

    def add_verbosity(target: argparse.ArgumentParser, default: Any) -> None:
        # before or after the command (`hf-ddb -q run X` or `hf-ddb run X -q`): the command's copy keeps the
        # top-level value unless it is given there (default SUPPRESS)
        verbosity = target.add_mutually_exclusive_group()
        verbosity.add_argument("--verbose", "-v", action="store_true", default=default, help="log debug messages too")
        verbosity.add_argument("--quiet", "-q", action="store_true", default=default, help="log warnings only")

    add_verbosity(parser, False)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in COMMANDS.items():
        sub = commands.add_parser(name, help=text)
        sub.add_argument("config", help="path of the YAML config, e.g. pipelines/colored_mnist.yaml")
        sub.add_argument("--output-dir", help="override the config's output_dir")
        add_verbosity(sub, argparse.SUPPRESS)
        sub.add_argument("--debug", action="store_true", help="show the full traceback of an error")
        sub.add_argument(
            "--trust-code",
            action="store_true",
            help="allow methods named by import path (file.py:Class, package.module:Class) to be imported: that "
            "runs their code (also HF_DDB_TRUST_CODE=1)",
        )
        sub.add_argument(
            "--image-check",
            choices=["all", "sample"],
            default=None,
            help="decode every image of a hub/local dataset before any work (the default, except when streamed), "
            "or 256 per split (the default for a streamed dataset, whose later rows are checked as they are read)",
        )
        sub.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config key, e.g. --set training.epochs=2 (VALUE is YAML; validated like the file)",
        )
        if name == "push":
            sub.add_argument("--repo-prefix", help="e.g. you/colored-mnist-ddb (default: the config's hub.repo_prefix)")
            sub.add_argument("--private", action="store_true", help="create the repos private (or hub.private)")
            sub.add_argument("--token", help="a Hub token (default: the one `hf auth login` stored, or HF_TOKEN)")
            sub.add_argument("--dry-run", action="store_true", help="list the files per repo; send nothing")
            sub.add_argument(
                "--no-dataset", action="store_true", help="do not push the synthetic images as a dataset repo"
            )
            sub.add_argument("--no-space", action="store_true", help="do not push the demo Space (<prefix>-demo)")
    init = commands.add_parser("init", help="write a starting config for a dataset (a Hub id or a local folder)")
    init.add_argument("dataset", help="a Hub dataset id or a local folder (Parquet, image folder, save_to_disk)")
    init.add_argument("--output", help="where to write the YAML (default: <dataset name>.yaml here)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    add_verbosity(init, argparse.SUPPRESS)
    init.set_defaults(config=None)
    demo = commands.add_parser("demo", help="a Gradio demo of a finished run: results, figures, scoring an image")
    demo.add_argument("run_dir", help="a finished run's folder (its output_dir)")
    demo.add_argument("--host", default="127.0.0.1", help="the address to serve on (default: this machine only)")
    demo.add_argument("--port", type=int, default=None, help="the port (default: Gradio's, 7860 or the next free)")
    demo.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    add_verbosity(demo, argparse.SUPPRESS)
    demo.set_defaults(config=None)
    args = parser.parse_args(argv)
    _configure_logging(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
    if args.command == "init":
        return _init(args)
    if args.command == "demo":
        return _demo(args)
    from .checks import ConfigError

    status = 1
    try:
        status = _command(args)
        return status
    except KeyboardInterrupt:
        print("hf-ddb: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        return _report_error(err, f"{args.config}: " if isinstance(err, ConfigError) else "")
    finally:
        from .utils import leave_process_group

        leave_process_group(wait=status == 0)


def _command(args: argparse.Namespace) -> int:
    """Checks the config and data, then runs ``args.command`` under the run folder's lock."""
    from .config import load_config

    config = load_config(args.config, args.set, trust_code=args.trust_code)  # every mistake at once, no torch yet
    if args.command == "push" and not args.dry_run:
        _require_token(args.token)
    from .utils import LaunchedProcesses

    if not LaunchedProcesses.from_environment().is_main:  # the main process shows bars and warnings for all
        _hide_library_progress_bars(warnings_too=True)
    elif args.quiet:
        _hide_library_progress_bars()
    if args.output_dir:
        config.output_dir = args.output_dir
    data = None
    if args.command != "push":
        from .validation import validate_run

        # every check before any stage: nothing is written if one fails
        data = validate_run(config, image_check=args.image_check)
    if args.command == "validate":
        sizes = ", ".join(f"{split} {len(rows):,}" for split, rows in data.items())
        print(f"{args.config}: valid ({config.benchmark_name}: {sizes}; methods {', '.join(config.methods)})")
        return 0
    if args.command == "push":
        if args.dry_run or not Path(config.output_dir).is_dir():  # reads only (or fails naming the missing run)
            return _stage(config, args.command, args, data)
        from .hub import check_pushable

        check_pushable(config.output_dir, classifier=config.hub.classifier, dataset=not args.no_dataset)
    from .utils import run_folder_lock

    with run_folder_lock(config.output_dir, f"{args.command} {args.config}"):
        return _stage(config, args.command, args, data)


if __name__ == "__main__":
    sys.exit(main())
