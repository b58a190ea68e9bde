"""Run stage passes of the weakly supervised pipeline, e.g.

    python run_sample.py --train_cam_pass True --voc12_root Dataset/potsdam --train_list cdy12/train_aug.txt

Builds the parser, sets up logging / seed / device, then runs each enabled pass (``step.<pass>.run(args)``) in
pipeline order. Nothing else lives here.
"""
from __future__ import annotations

import importlib
import logging
import sys
import time

from misc import dist
from misc.cli import build_parser, creation_hint, enabled_passes
from misc.logutils import log_exception_to_files, setup_logging
from misc.robust import ITEM_ATTR
from misc.torchutils import resolve_device, set_seed, tune_cpu_allocator


# Errors a user can fix (a missing file, a corrupt image, a bad list, a diverging loss, an unwritable folder): one
# line on stderr and exit status 2; the traceback goes to the log file. Anything else is a bug and keeps its traceback.
USER_ERRORS = (FileNotFoundError, ValueError, KeyError, FloatingPointError, OSError)
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl-C (128 + SIGINT)


def one_line(err: BaseException, args) -> str:
    """The terminal's one line for a user error: the message, how to create a missing default input, and the
    --skip_bad hint when one item's fault stopped the pass."""
    message = str(err.args[0] if isinstance(err, KeyError) and err.args else err).strip().replace("\n", " | ")
    if isinstance(err, FileNotFoundError) or "not found" in message or "does not exist" in message:
        found = creation_hint(message, args)
        if found:
            flags, hint = found
            for flag in flags:  # said once, with the remedy
                message = message.replace(f" ({flag})", "")
            message += f" ({' / '.join(flags)}: {hint})"
    item = getattr(err, ITEM_ATTR, None)
    if item is not None and not args.skip_bad:
        message += " (--skip_bad True skips such items, logs and counts them)"
    return message


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(prog="run_sample.py")
    args = parser.parse_args(argv)
    passes = enabled_passes(args)
    if not passes:
        parser.error("no pass enabled: add e.g. --train_cam_pass True (see --help, group 'passes')")
    # under torchrun rank 0 alone writes the log file and INFO lines; the other ranks report warnings and errors
    setup_logging(f"{args.log_name}.log" if dist.is_main() else None, quiet=args.quiet or not dist.is_main())
    log = logging.getLogger("run_sample")
    name = "set-up"
    try:
        args.device = str(dist.init_distributed(resolve_device(args.device)))
        tune_cpu_allocator(args.device)
        set_seed(args.seed)
        log.info("passes: %s | device %s | world size %d", ", ".join(passes), args.device, dist.world_size())
        for name in passes:
            start = time.time()
            log.info("== %s", name)
            importlib.import_module(f"step.{name}").run(args)
            dist.barrier()
            log.info("== %s done in %.1f s", name, time.time() - start)
    except USER_ERRORS as err:
        message = one_line(err, args)
        log_exception_to_files(log, f"{name} failed: {message}")
        print(f"error: {name}: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        log_exception_to_files(log, f"{name} interrupted (Ctrl-C)")
        print(f"interrupted: {name} stopped by Ctrl-C; finished artifacts are kept, rerun the same command to "
              f"continue (training passes: add --resume True)", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        dist.cleanup()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # during set-up, before main's own handler
        print("interrupted (Ctrl-C)", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
