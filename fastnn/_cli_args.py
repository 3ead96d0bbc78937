"""The argument parser of the fastnn command line (its flags, groups and help)."""

import argparse
import functools

from . import __version__, activations, losses, optimizers
from .errors import ConfigError

DESCRIPTION = ("fastnn trains fully-connected neural networks (hand-written forward and "
               "backward passes,\nNumPy/BLAS with fused numba kernels) on Fashion-MNIST, "
               "MNIST, scikit-learn's digits\nor your own CSV, .npz, .npy or image folder.")
EPILOG = """examples:
  fastnn train -e 10 -nhl 3 -sz 256 -o adam -lr 1e-3 --save model.npz
                                         train a network (the course assignment's flags)
  fastnn train -d my.csv --target species
                                         train on your own data (a run folder under runs/)
  fastnn evaluate model.npz              test accuracy and loss of a saved model
  fastnn predict model.npz shirt.png     classify images (or CSV/.npy rows) with a saved model
  fastnn export model.npz model.onnx     the model (with its preprocessing) as ONNX
  fastnn sweep sweeps/fashion_mnist.yaml run a W&B-format hyperparameter sweep locally
  fastnn report results/fashion_mnist    tables and figures of a sweep, in its results folder
  fastnn dashboard results/fashion_mnist an interactive page of the sweep (one HTML file)
  fastnn data fashion_mnist              find or download a data set, or describe yours

exit codes: 0 success, 1 error (data, model file, output), 2 bad usage or settings,
3 training diverged, 130 interrupted (Ctrl-C, SIGTERM), 141 output pipe closed.
`fastnn COMMAND --help` lists a command's flags."""



class UsageError(Exception):
    """A command-line usage error (argparse's complaints end up here)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` where it says something: not for None or False,
    nor where the help text already tells the default."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def _add_train_args(p):
    """The flags of ``fastnn train``, in the argument groups ``--help`` shows."""
    from .config import TrainConfig

    d = TrainConfig()
    _add_data_args(p, d)
    _add_model_args(p, d)
    _add_optimizer_args(p, d)
    _add_regularisation_args(p, d)
    _add_schedule_args(p, d)
    _add_output_args(p, d)
    _add_performance_args(p, d)


def _add_data_args(p, d):
    g = p.add_argument_group("data")
    g.add_argument("-d", "--dataset", default=d.dataset, metavar="NAME|PATH",
                   help="fashion_mnist, mnist or digits, or a CSV (header row), .npz, .npy (with its "
                        "labels file beside it), folder of .npy files, or folder of images in "
                        "one sub-folder per class")
    _add_reading_args(g, d)
    g.add_argument("--data-dir", default=None,
                   help="directory with the IDX files of the built-in sets")
    g.add_argument("--no-download", action="store_true",
                   help="fail instead of downloading missing data")
    g.add_argument("--val-fraction", "--val_fraction", dest="val_fraction", type=float,
                   default=d.val_fraction,
                   help="share of the training set held out for validation")
    g.add_argument("--seed", type=int, default=d.seed,
                   help="seed of initialisation, split and shuffling")


def _add_reading_args(g, d):
    """How a data file is read: shared by train and evaluate."""
    g.add_argument("--target", default=d.target, metavar="COLUMN",
                   help="a CSV's label column (default: label, target or class, else the "
                        "last); for a .npy of features, its labels file")
    g.add_argument("--test-fraction", "--test_fraction", dest="test_fraction", type=float,
                   default=d.test_fraction,
                   help="share held out (stratified, with --seed) as the test set when the "
                        "data has no test part")
    g.add_argument("--image-size", "--image_size", dest="image_size", default=d.image_size,
                   metavar="HxW",
                   help="size the images of a folder are resized to (default: the first "
                        "image's)")


def _add_model_args(p, d):
    g = p.add_argument_group("model")
    g.add_argument("-nhl", "--num_layers", type=int, default=d.num_layers,
                   help="number of hidden layers")
    g.add_argument("-sz", "--hidden_size", type=int, default=d.hidden_size,
                   help="units per hidden layer")
    g.add_argument("-a", "--activation", default=d.activation,
                   metavar=_choices(activations.REGISTRY),
                   help="hidden-layer activation")
    g.add_argument("-w_i", "--weight_init", default=d.weight_init, metavar="{random,Xavier,he}",
                   help="weight initialisation")
    g.add_argument("-l", "--loss", default=d.loss,
                   metavar=_choices(losses.REGISTRY), help="loss after the softmax")
    g.add_argument("--batch-norm", "--batch_norm", dest="batch_norm", nargs="?", const=True,
                   default=d.batch_norm, type=_flag, metavar="BOOL",
                   help="batch normalisation of every hidden layer (running statistics for "
                        "evaluation)")
    g.add_argument("--dtype", default=d.dtype, metavar="{float32,float64}", help="float type")


def _add_optimizer_args(p, d):
    g = p.add_argument_group("optimizer and training length")
    g.add_argument("-o", "--optimizer", default=d.optimizer,
                   metavar=_choices(optimizers.OPTIMIZERS),
                   help="optimizer (adamw: -w_d is its decoupled weight decay)")
    g.add_argument("-lr", "--learning_rate", "--lr", dest="lr", type=float, default=d.lr,
                   help="learning rate")
    g.add_argument("-m", "--momentum", type=float, default=d.momentum,
                   help="momentum of momentum and nag")
    g.add_argument("-beta", "--beta", type=float, default=d.beta, help="decay of rmsprop")
    g.add_argument("-beta1", "--beta1", type=float, default=d.beta1, help="adam/nadam beta1")
    g.add_argument("-beta2", "--beta2", type=float, default=d.beta2, help="adam/nadam beta2")
    g.add_argument("-eps", "--epsilon", "--eps", dest="eps", type=float, default=d.eps,
                   help="epsilon of rmsprop, adam, nadam")
    g.add_argument("-e", "--epochs", type=int, default=d.epochs, help="passes over the training set")
    g.add_argument("-b", "--batch_size", type=int, default=d.batch_size, help="mini-batch size")


def _add_regularisation_args(p, d):
    g = p.add_argument_group("regularisation and augmentation")
    g.add_argument("-w_d", "--weight_decay", type=float, default=d.weight_decay,
                   help="weight decay: the L2 penalty on weights (with adamw, its decoupled "
                        "decay instead)")
    g.add_argument("--dropout", type=float, default=d.dropout,
                   help="dropout probability on hidden layers")
    g.add_argument("--label-smoothing", "--label_smoothing", dest="label_smoothing",
                   type=float, default=d.label_smoothing,
                   help="train against (1-eps)*onehot + eps/K instead of one-hot targets")
    g.add_argument("--augment-shift", "--augment_shift", dest="augment_shift", type=int,
                   default=d.augment_shift, metavar="PIXELS",
                   help="shift each training image by up to this many pixels (0: off)")
    g.add_argument("--augment-flip", "--augment_flip", dest="augment_flip", nargs="?",
                   const=True, default=d.augment_flip, type=_flag, metavar="BOOL",
                   help="mirror training images left-right at random (not for digits)")
    g.add_argument("--mixup", type=float, default=d.mixup, metavar="ALPHA",
                   help="blend each training image and its target with another's, weights "
                        "from Beta(ALPHA, ALPHA), e.g. 0.2 (0: off)")
    g.add_argument("--sam", type=float, default=d.sam, metavar="RHO",
                   help="sharpness-aware minimisation: take each step's gradient at the weights "
                        "RHO away along the gradient, e.g. 0.05 (two passes a step; 0: off)")
    g.add_argument("--ema", "--ema-decay", "--ema_decay", dest="ema_decay", type=float,
                   default=d.ema_decay, metavar="DECAY",
                   help="validate and keep an exponential moving average of the weights with "
                        "this decay, e.g. 0.999 (0: off)")
    g.add_argument("--clip-norm", "--clip_norm", dest="clip_norm", type=float,
                   default=d.clip_norm, help="clip the gradient to this L2 norm (0: off)")


def _add_schedule_args(p, d):
    g = p.add_argument_group("learning-rate schedule and stopping")
    g.add_argument("--lr-schedule", "--lr_schedule", dest="lr_schedule", default=d.lr_schedule,
                   metavar="{constant,step,exponential,cosine}", help="learning-rate schedule")
    g.add_argument("--lr-decay", "--lr_decay", dest="lr_decay", type=float, default=d.lr_decay,
                   help="factor of the step and exponential schedules")
    g.add_argument("--lr-step", "--lr_step", dest="lr_step", type=int, default=d.lr_step,
                   help="epochs between steps of the step schedule")
    g.add_argument("--warmup-epochs", "--warmup_epochs", dest="warmup_epochs", type=int,
                   default=d.warmup_epochs, help="linear learning-rate warm-up epochs")
    g.add_argument("--min-lr", "--min_lr", dest="min_lr", type=float, default=d.min_lr,
                   help="final learning rate of the cosine schedule")
    g.add_argument("--early-stopping", "--patience", dest="patience", type=int,
                   default=d.patience, metavar="PATIENCE",
                   help="stop after this many epochs without a better validation loss and "
                        "keep the best weights (0: off)")
    g.add_argument("--keep-best", "--keep_best", dest="keep_best", nargs="?", const=True,
                   default=d.keep_best, type=_flag, metavar="BOOL",
                   help="end with the weights of the epoch of best validation accuracy")


def _add_output_args(p, d):
    g = p.add_argument_group("output: model file, checkpoints, logging")
    g.add_argument("--run-dir", metavar="DIR", default=None,
                   help="the run's folder: config.yaml, metrics.csv, log.txt, model.npz and the "
                        "checkpoint (default: a new folder under $FASTNN_RUNS or runs/)")
    g.add_argument("--config", metavar="FILE.yaml", default=None,
                   help="read settings from this file (a sweep's parameter names); flags "
                        "given on the command line win")
    g.add_argument("--print-config", action="store_true",
                   help="print the resolved settings as YAML (what --config reads) and exit")
    g.add_argument("--save", metavar="PATH", default=None,
                   help="also save the trained model here (.npz)")
    g.add_argument("--checkpoint", metavar="DIR", default=None,
                   help="save the checkpoint here instead of in the run folder")
    g.add_argument("--resume", nargs="?", const=True, default=False,
                   metavar="RUN_DIR_OR_CHECKPOINT",
                   help="continue a run from its last checkpoint with its own settings (flags "
                        "that differ are an error; -e may ask for more epochs); bare --resume "
                        "continues from --checkpoint DIR; the result is bit-identical to an "
                        "uninterrupted run")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("-wp", "--wandb_project", default=None,
                   help="log the run to this Weights & Biases project")
    g.add_argument("-we", "--wandb_entity", default=None, help="W&B entity (user or team)")


def _add_performance_args(p, d):
    g = p.add_argument_group("performance")
    g.add_argument("--threads", type=int, default=None,
                   help="thread budget (default: $FASTNN_NUM_THREADS or all CPUs); small "
                        "layers use one BLAS thread, which is faster there")
    _add_kernels_arg(g)


def _add_kernels_arg(p):
    p.add_argument("--kernels", default=None, metavar="{auto,numba,numpy}",
                   help="element-wise kernels: numba's fused loops or the NumPy reference "
                        "(default: $FASTNN_KERNELS or auto, numba when installed)")


def build_parser():
    parser = _Parser(prog="fastnn", description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"fastnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.add_parser = functools.partial(sub.add_parser, allow_abbrev=False,
                                       formatter_class=_DefaultsFormatter)

    train = sub.add_parser("train", help="train a network (flags of the course assignment)")
    _add_train_args(train)
    parser.train_parser = train

    ev = sub.add_parser("evaluate", help="test accuracy and confusion matrix of a saved model")
    ev.add_argument("model", help="model file written by fastnn train --save")
    ev.add_argument("-d", "--dataset", default=None,
                    metavar="NAME|PATH",
                    help="data set whose test part to evaluate on (default: the one the model "
                         "was trained on, read as it was then)")
    ev.add_argument("--target", default=None, metavar="COLUMN",
                    help="a CSV's label column (default: the one the model was trained with)")
    ev.add_argument("--test-fraction", dest="test_fraction", type=float, default=None,
                    help="share held out as the test set (default: the training run's)")
    ev.add_argument("--seed", type=int, default=None,
                    help="seed of the held-out test part (default: the training run's)")
    ev.add_argument("--data-dir", default=None, help="directory with the IDX files")
    ev.add_argument("--no-download", action="store_true",
                    help="fail instead of downloading missing data")

    _add_sweep_command(sub)

    pr = sub.add_parser("predict", help="classify images, CSV rows or .npy rows with a saved "
                                        "model")
    pr.add_argument("model", help="model file written by fastnn train")
    pr.add_argument("images", nargs="+", metavar="INPUT",
                    help="images (PNG, JPEG, ...), CSV files (the model's feature columns; a "
                         "label column is ignored) or .npy arrays of rows")
    pr.add_argument("--top", type=int, default=3, help="classes to show per input")
    pr.add_argument("--out", metavar="FILE.csv", default=None,
                    help="write one line per input or row: its name, the predicted class and "
                         "every class's probability")
    pr.add_argument("--json", action="store_true", help="machine-readable output")

    ex = sub.add_parser("export", help="write a saved model as an ONNX graph (with its "
                                       "preprocessing), for onnxruntime and other tools")
    ex.add_argument("model", help="model file written by fastnn train")
    ex.add_argument("out", metavar="OUT.onnx", help="the ONNX file to write")

    _add_report_command(sub)

    db = sub.add_parser("dashboard", help="one self-contained HTML page to explore sweeps and "
                                          "runs (parallel coordinates, importance, curves)")
    db.add_argument("paths", nargs="+", metavar="PATH",
                    help="sweep results folders, fastnn train run folders (or a folder of "
                         "them) or model files")
    db.add_argument("--out", metavar="FILE.html", default=None,
                    help="the page to write (default: dashboard.html in the one folder given)")
    db.add_argument("--watch", action="store_true",
                    help="rewrite the page as a running sweep records runs, until it is "
                         "complete; the open page reloads itself")
    db.add_argument("--data-dir", default=None,
                    help="where the best model's test data is (for its confusion matrix)")

    data = sub.add_parser("data", help="find (or download) a data set, or read yours, and "
                                       "describe it")
    data.add_argument("dataset", nargs="?", default="fashion_mnist",
                      help="fashion_mnist, mnist or digits, or a data file or folder (it is "
                           "read and described)")
    data.add_argument("--data-dir", default=None, help="directory with the IDX files")
    data.add_argument("--no-download", action="store_true",
                      help="fail instead of downloading missing data")
    return parser


def _add_sweep_command(sub):
    sw = sub.add_parser("sweep", help="run a hyperparameter sweep (W&B sweep YAML)")
    sw.add_argument("spec", help="sweep file (W&B sweep format: method, metric, parameters)")
    sw.add_argument("--results", default=None, metavar="DIR",
                    help="results directory (default: results/SPEC-NAME); re-running resumes")
    sw.add_argument("--workers", type=int, default=None,
                    help="worker processes (default: number of CPUs)")
    sw.add_argument("--seed", type=int, default=0, help="seed of sampling and validation split")
    sw.add_argument("-d", "--dataset", default=None, help="data set unless the spec sets one")
    sw.add_argument("--data-dir", default=None, help="directory with the IDX files")
    sw.add_argument("--val-fraction", type=float, default=0.1,
                    help="share of the training set held out for validation, the same split "
                         "for every run, unless the spec sets val_fraction")
    sw.add_argument("--wandb", action="store_true", help="log every run to Weights & Biases")
    sw.add_argument("-wp", "--wandb_project", default=None,
                    help="W&B project of the runs (implies --wandb)")
    sw.add_argument("-we", "--wandb_entity", default=None,
                    help="W&B entity, user or team (implies --wandb)")
    sw.add_argument("--wandb-sweep", action="store_true",
                    help="register the sweep with the W&B server and run an agent on it")
    sw.add_argument("--count", type=int, default=None, help="runs for this W&B agent")
    sw.add_argument("--scheduler", default=None, metavar="ADDRESS",
                    help="run on a Dask cluster (tcp://HOST:8786 or tls://...) instead of "
                         "local worker processes; needs fastnn[dask]")
    sw.add_argument("--retry-failed", action="store_true",
                    help="when resuming, run again the runs that failed with an error "
                         "(diverged runs are results and stay)")
    _add_kernels_arg(sw)


def _add_report_command(sub):
    rp = sub.add_parser("report", help="tables and figures of a sweep, beside its results")
    rp.add_argument("results", help="results directory of fastnn sweep")
    rp.add_argument("--out", default=None, metavar="DIR",
                    help="output directory (default: RESULTS/report)")
    rp.add_argument("--data-dir", default=None, help="directory with the IDX files")
    rp.add_argument("--seeds", type=int, default=0,
                    help="re-train the 3 best configurations and fastnn train's default with "
                         "this many seeds each, to show how much of the ranking is luck")
    rp.add_argument("--compare-loss", action="store_true",
                    help="train the best configuration again with squared-error loss and "
                         "compare it with cross-entropy")
    rp.add_argument("--mnist", action="store_true",
                    help="train three configurations chosen from the sweep on MNIST")
    rp.add_argument("--mnist-dir", default=None,
                    help="where MNIST is (implies --mnist; default: --data-dir)")
    rp.add_argument("--no-mnist", action="store_true",
                    help="no MNIST section (the default; kept for older scripts)")
    rp.add_argument("--stronger", default=None, metavar="DIR",
                    help="results of a sweep outside the classic space: section 9, and its "
                         "best run joins the MNIST configurations")


def _choices(registry):
    """``{a,b,c}``: a registry's names, for an option's metavar."""
    return "{" + ",".join(registry) + "}"


def _flag(text):
    """argparse type of the boolean flags: --augment-flip, --augment-flip=false, ..."""
    from ._checks import flag

    try:
        return flag("value", text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def explicit_settings(argv):
    """The training settings given on the ``fastnn train`` command line ``argv`` (defaults
    left out), by TrainConfig field name."""
    from .config import TrainConfig

    parser = build_parser()
    for action in parser.train_parser._actions:
        if action.dest != "help":
            action.default = argparse.SUPPRESS
    given = vars(parser.parse_args(argv))
    return {k: v for k, v in given.items() if k in TrainConfig.__dataclass_fields__}
