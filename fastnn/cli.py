"""The fastnn command line: train, evaluate, predict, export, sweep, report, dashboard, data.

Exit codes: 0 success, 1 error (bad data, bad model file, unwritable
output), 2 bad command-line usage or settings, 3 training diverged,
130 interrupted (Ctrl-C or SIGTERM), 141 its output pipe closed.
"""

import contextlib
import difflib
import json
import math
import os
import signal
import sys
import threading
from pathlib import Path

from . import __version__
from ._cli_args import UsageError, build_parser, explicit_settings
from .errors import ConfigError, FastnnError, TrainingDivergedError

EXIT_ERROR, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 1, 2, 3, 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `yes | head -1`

@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Inside the block SIGTERM raises KeyboardInterrupt, as Ctrl-C does (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_save_path(path, flag="--save"):
    """Fail before any work if a file cannot be written to ``path``."""
    path = Path(path)
    if path.is_dir():
        raise FastnnError(f"{flag} {path}: is a directory")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FastnnError(f"{flag} {path}: cannot create directory {parent} ({exc.strerror})")
    if not os.access(parent, os.W_OK):
        raise FastnnError(f"{flag} {path}: directory {parent} is not writable")
    return path


def _make_printer(epochs, progress, out):
    """A callback printing one line per epoch and, on a terminal, a progress bar."""
    from .train import Callback

    class EpochPrinter(Callback):
        bar = None

        def on_train_begin(self, net, n_batches):
            self.n_batches = n_batches

        def close_bar(self):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

        def on_epoch_end(self, epoch, logs):
            from .runs import epoch_line

            self.close_bar()
            print(epoch_line(epoch, epochs, logs), file=out, flush=True)

    class ProgressPrinter(EpochPrinter):
        def on_batch_end(self, step, loss):
            if self.bar is None:
                from tqdm import tqdm

                # disable=None: silent unless stderr is a terminal.
                self.bar = tqdm(total=self.n_batches, leave=False, disable=None, unit="batch",
                                file=sys.stderr)
            self.bar.update(1)

    return ProgressPrinter() if progress else EpochPrinter()


def cmd_train(args, out):
    from . import runs
    from .trainer import Trainer

    config, resume_dir = _train_config(args)
    if args.print_config:
        print(runs.config_yaml(config), end="", file=out)
        return 0
    save_path = _check_save_path(args.save) if args.save else None
    if args.resume is True and not args.checkpoint:
        raise ConfigError("--resume needs a run folder (--resume RUN_DIR) or --checkpoint DIR")
    if args.run_dir and resume_dir is None and (Path(args.run_dir) / runs.CONFIG).exists():
        raise ConfigError(f"--run-dir {args.run_dir} already holds a run: continue it with "
                          f"--resume {args.run_dir}, or choose another folder")
    checkpoint_dir = args.checkpoint or resume_dir
    if checkpoint_dir:
        _check_save_path(Path(checkpoint_dir) / runs.CHECKPOINT, "--checkpoint")
    trainer = Trainer(config, data_dir=args.data_dir, download=not args.no_download,
                      threads=args.threads, kernels=args.kernels)
    if save_path is not None:
        trainer.check_space(save_path, what="--save")
    # the data is read and the network built: from here on the run leaves its folder
    run_dir = resume_dir or _new_run_dir(args, config)
    runs.write_config(run_dir, config)
    trainer.checkpoint_to(checkpoint_dir or run_dir, resume=bool(args.resume))
    out = runs.Tee(out, run_dir / runs.LOG)
    try:
        return _train_in(run_dir, trainer, args, config, save_path, out)
    finally:
        out.close()


def _train_config(args):
    """(settings, run folder to resume or None): defaults, then --config, then the flags
    given; with --resume RUN_DIR the run's stored settings, which given flags must match."""
    import dataclasses

    from . import runs
    from .config import TrainConfig

    given = args.given
    if isinstance(args.resume, str):
        if args.config:
            raise ConfigError("--resume takes the run's own settings: drop --config")
        stored, run_dir = runs.stored_config(args.resume)
        asked = dataclasses.replace(stored, **given).validated()
        differ = [f"{k} {getattr(asked, k)!r} (the run: {getattr(stored, k)!r})" for k in given
                  if k not in ("epochs", "patience") and getattr(asked, k) != getattr(stored, k)]
        if differ:
            raise ConfigError(f"--resume {args.resume}: the run was made with other settings: "
                              f"{'; '.join(differ)}; drop those flags or start a new run")
        return asked, run_dir
    values = TrainConfig.from_args(args).to_dict()
    if args.config:
        values.update(runs.read_settings(args.config))
        values.update(given)
    return TrainConfig.from_dict(values).validated(), None


def _new_run_dir(args, config):
    from . import runs

    if args.run_dir:
        path = Path(args.run_dir)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FastnnError(f"--run-dir {path}: cannot create it ({exc.strerror})") from None
        return path
    try:
        return runs.new_run_dir(config.dataset)
    except OSError as exc:
        raise FastnnError(f"cannot create a run folder under {runs.DEFAULT_ROOT} "
                          f"({exc.strerror}); choose one with --run-dir") from None


def _train_in(run_dir, trainer, args, config, save_path, out):
    from . import modelfile, runs

    net, opt, split = trainer.net, trainer.optimizer, trainer.split
    print(f"fastnn {__version__}: {config.dataset} from {split.source}; "
          f"{len(split.X_train)} train / {len(split.X_val)} val / {len(split.X_test)} test; "
          f"{net!r}, {opt!r}; {net.kernels} kernels; run folder {run_dir}", file=out,
          flush=True)
    if trainer.resumed_from is not None:
        print(f"resuming after epoch {trainer.initial_epoch} from {trainer.resumed_from}",
              file=out, flush=True)
    elif args.resume:
        print(f"no checkpoint in {args.checkpoint or run_dir} yet: starting at epoch 1",
              file=out)
    printer = _make_printer(config.epochs, not args.no_progress, out)
    callbacks = [runs.MetricsLog(run_dir / runs.METRICS, opt, trainer.prior_history), printer]
    wandb_cb = None
    # A W&B agent runs `fastnn train --key=value ...` with WANDB_SWEEP_ID set: log to it.
    if args.wandb_project or args.wandb_entity or os.environ.get("WANDB_SWEEP_ID"):
        from .wandb_log import WandbCallback, run_name

        wandb_cb = WandbCallback(args.wandb_project or "fastnn", args.wandb_entity,
                                 config=config.to_dict(), name=run_name(config))
        callbacks.append(wandb_cb)
    try:
        with _sigterm_as_interrupt():  # a scheduler's `kill` (Slurm's SIGTERM) is Ctrl-C
            trainer.fit(callbacks)
    except KeyboardInterrupt:
        printer.close_bar()
        if save_path is not None:
            partial = save_path.with_name(save_path.stem + ".interrupted.npz")
            modelfile.save(net, partial, class_names=split.class_names,
                           metadata={"config": config.to_dict(), "interrupted": True})
            print(f"interrupted; partial model saved to {partial} ({save_path} untouched)",
                  file=sys.stderr)
        print(f"interrupted: continue with fastnn train --resume {run_dir}", file=sys.stderr)
        return EXIT_INTERRUPTED
    test_loss, test_acc = trainer.evaluate()
    print(f"test accuracy {test_acc:.4f}  test loss {test_loss:.4f}  "
          f"(training {trainer.seconds:.1f}s)", file=out, flush=True)
    if wandb_cb is not None:
        wandb_cb.finish({"test_accuracy": test_acc, "test_loss": test_loss})
    trainer.save(run_dir / runs.MODEL, test_accuracy=test_acc)
    if save_path is not None:
        trainer.save(save_path, test_accuracy=test_acc)
        print(f"model saved to {save_path}", file=out)
    return 0


def cmd_evaluate(args, out):
    from . import evaluation, metrics, modelfile

    net, header = modelfile.load(args.model)
    ds, X = evaluation.test_data(net, header, model=args.model, dataset=args.dataset,
                                 data_dir=args.data_dir, download=not args.no_download,
                                 target=args.target, test_fraction=args.test_fraction,
                                 seed=args.seed)
    loss, acc = net.evaluate(X, ds.y_test)
    pred = net.predict(X)
    matrix = metrics.confusion_matrix(ds.y_test, pred, net.n_classes)
    what = "images" if ds.kind == "images" else "rows"
    print(f"{ds.name} test set ({len(X)} {what}): accuracy {acc:.4f}  loss {loss:.4f}", file=out)
    print(metrics.format_confusion_matrix(matrix, ds.class_names), file=out)
    return 0


def cmd_data(args, out):
    from . import datasets

    ds = datasets.load(args.dataset, data_dir=args.data_dir, download=not args.no_download)
    what = "images" if ds.kind == "images" else "rows"
    test = "" if ds.test_part == "file" else f" ({ds.test_part})"
    print(f"{ds.name}: {len(ds.x_train)} train and {len(ds.x_test)} test {what}{test}, "
          f"{len(ds.class_names)} classes, {math.prod(ds.x_train.shape[1:])} features, "
          f"from {ds.source}", file=out)
    return 0


def cmd_sweep(args, out):
    from . import sweep

    spec = sweep.load_spec(args.spec)
    wandb_opts = None
    if args.wandb or args.wandb_project or args.wandb_entity or args.wandb_sweep:
        wandb_opts = {"project": args.wandb_project or "fastnn", "entity": args.wandb_entity,
                      "group": Path(args.spec).stem}
    if args.wandb_sweep:
        sweep_id = sweep.wandb_sweep(spec, wandb_opts["project"], wandb_opts["entity"],
                                     count=args.count)
        print(f"W&B sweep {sweep_id} finished on this agent", file=out)
        return 0
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"workers must be >= 1, got {args.workers}")
    results = Path(args.results or Path("results") / Path(args.spec).stem)
    total = spec.run_cap if spec.method == "bayes" else len(spec.configs(args.seed))
    print(f"sweep {args.spec}: {spec.method}, {total} runs, results in {results}", file=out,
          flush=True)
    if spec.method == "random" and total < spec.run_cap:
        print(f"note: the search space holds only {total} distinct configurations, fewer "
              f"than run_cap {spec.run_cap}; each runs once", file=out)
    if spec.hyperband is not None:
        print(f"hyperband: runs in the worse part of each bracket stop after epochs "
              f"{', '.join(map(str, spec.hyperband.brackets[:6]))}"
              f"{'...' if len(spec.hyperband.brackets) > 6 else ''} (eta "
              f"{spec.hyperband.eta:g})", file=out)

    def progress(record, done, total):
        status = record["status"]
        if status in ("finished", "stopped"):
            # validation scores only: the test score belongs to the final choice
            detail = (f"val_acc {record['val_accuracy']:.4f}  val_loss {record['val_loss']:.4f}"
                      + (f"  (after epoch {record['history']['epoch'][-1]})"
                         if status == "stopped" else ""))
        else:
            detail = record.get("error", "")
        print(f"[{done}/{total}] {record['run_id']} {status}  {detail}  "
              f"({record['wall_time']:.1f}s)", file=out, flush=True)

    try:
        with _sigterm_as_interrupt():  # `kill` stops a sweep like Ctrl-C
            records = sweep.run_sweep(spec, results, dataset=args.dataset,
                                      data_dir=args.data_dir, workers=args.workers,
                                      seed=args.seed, val_fraction=args.val_fraction,
                                      wandb=wandb_opts, on_result=progress,
                                      kernels=args.kernels, retry_failed=args.retry_failed,
                                      scheduler=args.scheduler)
    except KeyboardInterrupt:
        done = len(sweep.read_results(results))
        print(f"interrupted: {done} finished runs kept in {results}; run the same command "
              "to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    best = sweep.best_run(records, spec.metric, spec.goal)
    if wandb_opts and best is not None:
        sweep.log_best_to_wandb(results, records, spec, wandb_opts, args.data_dir)
    failed = sum(r["status"] in ("failed", "diverged") for r in records)
    stopped = sum(r["status"] == "stopped" for r in records)
    print(f"{len(records)} runs recorded ({failed} failed or diverged"
          + (f", {stopped} stopped early by hyperband" if stopped else "") + ")", file=out)
    if len(records) < total:
        print(f"note: the search space ran out of new configurations after {len(records)} "
              "runs", file=out)
    if best is not None:
        print(f"best: {best['run_id']} {spec.metric} {best[spec.metric]:.4f} "
              f"test_acc {best['test_accuracy']:.4f} config {json.dumps(best['config'])}",
              file=out)
    return 0


def cmd_predict(args, out):
    from . import modelfile, predict

    if args.top < 1:
        raise ConfigError(f"top must be >= 1, got {args.top}")
    net, header = modelfile.load(args.model)
    names = header.get("class_names") or [str(i) for i in range(net.n_classes)]
    data = (header.get("metadata") or {}).get("data")
    try:
        results = predict.predict_files(net, args.images, names,
                                        data if isinstance(data, dict) else None)
    except FastnnError as exc:
        raise FastnnError(f"{args.model}: {exc}" if "model takes" in str(exc) else str(exc)
                          ) from None
    if args.out:
        predict.write_csv(_check_save_path(args.out, "--out"), results, names)
        print(f"{len(results)} predictions written to {args.out}", file=out)
        return 0
    if args.json:
        print(json.dumps([{"input": r["input"], "inverted": r["inverted"],
                           "top": r["top"][:args.top]} for r in results], indent=1), file=out)
        return 0
    for r in results:
        guesses = ", ".join(f"{t['class']} {t['probability']:.1%}" for t in r["top"][:args.top])
        note = "  (dark-on-light picture: inverted to match the training data)" \
            if r["inverted"] else ""
        print(f"{r['input']}: {guesses}{note}", file=out)
    return 0


def cmd_export(args, out):
    from . import modelfile, onnx_export

    net, header = modelfile.load(args.model)
    path = _check_save_path(args.out, "export")
    onnx_export.export(net, path, class_names=header.get("class_names"))
    print(f"{args.model} -> {path} (ONNX opset {onnx_export.OPSET}: input "
          f"'{onnx_export.INPUT}' of {net.n_features} raw features, output "
          f"'{onnx_export.OUTPUT}' of {net.n_classes} classes)", file=out)
    return 0


def cmd_dashboard(args, out):
    from . import dashboard

    if args.out:
        target = Path(args.out)
    elif len(args.paths) == 1 and Path(args.paths[0]).is_dir():
        target = Path(args.paths[0]) / "dashboard.html"
    else:
        target = Path("dashboard.html")
    target = _check_save_path(target, "--out")
    if args.watch:
        print(f"watching {', '.join(args.paths)}: {target} is rewritten as results arrive "
              "(Ctrl-C to stop)", file=out, flush=True)
        try:
            data = dashboard.watch(args.paths, target, data_dir=args.data_dir,
                                   log=lambda line: print(line, file=out, flush=True))
        except KeyboardInterrupt:
            print(f"stopped watching; {target} holds the last state", file=sys.stderr)
            return EXIT_INTERRUPTED
    else:
        data = dashboard.write(args.paths, target, data_dir=args.data_dir)
    size = target.stat().st_size / 2**20
    print(f"dashboard of {len(data['runs'])} runs written to {target} ({size:.1f} MiB; open "
          "it in a browser, no server needed)", file=out)
    return 0


def cmd_report(args, out):
    from . import report

    if args.seeds < 0:
        raise ConfigError(f"seeds must be >= 0, got {args.seeds}")
    if args.no_mnist and (args.mnist or args.mnist_dir):
        raise ConfigError("--no-mnist contradicts --mnist/--mnist-dir")
    mnist = args.mnist or args.mnist_dir is not None
    path = report.write_report(args.results, args.out, data_dir=args.data_dir,
                               mnist_dir=(args.mnist_dir or args.data_dir) if mnist else False,
                               log=lambda msg: print(msg, file=out, flush=True),
                               seeds=args.seeds, stronger=args.stronger,
                               compare_loss=args.compare_loss)
    print(f"report written to {path}", file=out)
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
            "export": cmd_export, "sweep": cmd_sweep, "report": cmd_report,
            "dashboard": cmd_dashboard, "data": cmd_data}


# What other tools call fastnn's commands, for the hint after an unknown one.
_COMMAND_ALIASES = {"fit": "train", "run": "train", "eval": "evaluate", "test": "evaluate",
                    "score": "evaluate", "infer": "predict", "search": "sweep", "tune": "sweep"}


def _usage_hint(exc, argv):
    """The usage error's one line, pointing at the help of a command that exists."""
    first = argv[0] if argv else ""
    if first in COMMANDS:
        return f"{exc} (see fastnn {first} --help)"
    guess = _COMMAND_ALIASES.get(first) or next(
        iter(difflib.get_close_matches(first, COMMANDS, n=1)), None)
    if guess and not first.startswith("-"):
        return f"{exc} (did you mean 'fastnn {guess}'? see fastnn --help)"
    return f"{exc} (see fastnn --help)"


def main(argv=None, out=None):
    """Run the command line; return the exit code (does not call sys.exit)."""
    out = out or sys.stdout
    argv = list(sys.argv[1:] if argv is None else argv)
    # The course assignment ran as `train.py -e 10 ...`: bare flags mean `train`.
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        argv.insert(0, "train")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(out)
            return EXIT_USAGE
        if args.command == "train":
            args.given = explicit_settings(argv)
        return COMMANDS[args.command](args, out)
    except UsageError as exc:
        print(_usage_hint(exc, argv), file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"fastnn: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TrainingDivergedError as exc:
        print(f"fastnn: error: {exc}; nothing was saved", file=sys.stderr)
        return EXIT_DIVERGED
    except FastnnError as exc:
        print(f"fastnn: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (`fastnn evaluate ... | head -1`): stop quietly, as Unix
        # tools do, and keep Python from failing again when it flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except (OSError, ValueError) as exc:
        print(f"fastnn: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
