"""Parameter documentation shared by the estimators, written once.

:class:`~sklstm.LSTMClassifier`, :class:`~sklstm.LSTMRegressor` and
:class:`~sklstm.LSTMForecaster` take mostly the same parameters. Each one's
numpydoc entry lives here, once, so that the three docstrings cannot drift
apart; :func:`fill_doc` writes the entries into a class docstring. The
``default=`` of each entry is not written here but read from the class's own
``__init__``, as the estimators' defaults differ and must never be misstated.
"""

from __future__ import annotations

import inspect
import re

# One numpydoc entry per parameter: the name line without its default (added
# by fill_doc), then the description, indented by four spaces. The texts
# hold for every estimator whatever its defaults, so none names a default;
# an estimator adds a sentence of its own under the placeholder (see
# fill_doc). To each estimator's network a "sequence" is one sample: the
# forecaster's windows are the sequences of its LSTMRegressor.
_ENTRIES = """
hidden_size : int
    Units of each recurrent layer (per direction).
num_layers : int
    Stacked recurrent layers.
bidirectional : bool
    Read sequences in both directions; the backward pass starts at each
    sequence's own last valid step.
cell : {"lstm", "gru"}
    Recurrent cell.
dropout : float
    Dropout rate between stacked recurrent layers and on the features
    entering the output layer; with a single recurrent layer it acts only
    before the output layer.
output_mode : {"last", "sequence"}
    "last": one prediction per sequence. "sequence": one per time step of
    each sequence; ``pooling`` is then unused.
pooling : {"auto", "last", "mean", "max", "attention"}
    How the recurrent states over time become the one vector a sequence's
    prediction is made from: the state at the last valid step (for a
    bidirectional network, joined with the backward state at the first
    step), their mean or maximum over valid steps, or a learned
    attention-weighted sum. "auto": "mean" when the training sequences all
    have one length (the mean sees the whole of a long series, where the
    last state mostly holds its recent steps), "last" when their lengths
    differ (a mean would dilute a pattern by the sequence's length);
    ``partial_fit`` decides on its first call's sequences.
conv_filters : tuple of int or None
    Channels of each layer of a convolutional branch beside the recurrent
    layers, which makes the network an LSTM-FCN hybrid (Karim et al. 2018):
    the convolutions capture local shape, the LSTM long-range memory. Each
    layer is a convolution, a batch norm over valid steps only and a ReLU;
    ``(64, 128, 64)`` is the paper's FCN at half its width. None: no
    convolutions, a plain recurrent network. ``conv_placement="before"``
    puts the convolutions in front of the recurrent layers instead. With
    ``conv_placement="parallel"`` and ``output_mode="last"``, the layers
    after the first read the means of pairs of steps of the first layer's
    output when every training sequence has at least 100 steps (of
    ``recurrent_stride`` steps where that is more; see ``conv_stride``):
    they reach twice as far along the series at about half the cost. On
    GunPoint, ArrowHead and OSULeaf (150 to 427 steps) that raised accuracy
    from 0.993, 0.844 and 0.956 to 0.998, 0.874 and 0.981 with fits a third
    shorter (``benchmarks/RESULTS.md``).
conv_kernel_size : int, tuple of int or "auto"
    Odd width of the convolutions, so that each output stays aligned with
    its time step: one for all layers, or one per layer. "auto": wide to
    narrow as in FCN, 5 for a single layer, (7, 3) for two, (7, 5, 3) for
    three, (7, 5, ..., 5, 3) for more.
conv_placement : {"parallel", "before"}
    "parallel": the convolutions read the input beside the recurrent
    layers, and their output, averaged over valid steps (or, for per-step
    predictions, taken step by step), joins the recurrent features before
    the output layer, as in LSTM-FCN. "before": the convolutions feed the
    recurrent layers.
recurrent_stride : int or "auto"
    The recurrent layers read the sequence this many steps at a time: each
    of their steps takes that many consecutive time steps side by side (the
    last one zero-padded), so they step through that many times fewer steps.
    Parallel convolutions (``conv_placement="parallel"``) follow the same
    pace after their first layer (``conv_stride="auto"``), which reads every
    step: the later ones read the means of that many consecutive steps of
    its output, so they reach that many times further along the series at a
    fraction of the cost. Long sequences train faster: past a few hundred
    steps, stepping through them one by one is most of a fit's time on a
    CPU, and the epochs this saves go back into training (``max_epochs``).
    On ACSF1 (1,460 steps) and two series stretched past 1,000 steps, all
    read 3 steps at a time, the strided convolutions raised accuracy by 0.06
    to 0.11 within the same budget (``benchmarks/RESULTS.md``). "auto": the
    smallest stride that leaves the longest training sequence at most 500
    recurrent steps (so 1 up to 500 steps: on shorter series a stride cost
    accuracy, see ``benchmarks/RESULTS.md``), and 1 for
    ``output_mode="sequence"``, which needs one recurrent step per time
    step.
conv_stride : int or "auto"
    With parallel convolutions (``conv_placement="parallel"``) and
    ``output_mode="last"``, the convolutions after the first read the means
    of this many consecutive steps of the first one's output (which reads
    every step), so they reach this many times further along the series at
    a fraction of the cost; 1: every step, at full resolution. "auto":
    ``recurrent_stride``'s steps, or pairs where the recurrent layers read
    one step at a time and every training sequence has at least 100 steps
    (see ``conv_filters``). Ignored with "auto" or 1 where the convolutions
    read every step anyway; any other value there is an error.
forget_bias : float
    Initial bias of the LSTM forget gate (GRU: update gate). A positive
    bias makes the cells keep their memory early in training, which helps
    gradients flow through long sequences.
standardize : bool
    Standardise each input feature with its mean and standard deviation
    over the valid time steps of the training data; a constant feature is
    only centred.
sequence_norm : {"append", "replace"} or None
    Also feed ("append") or feed instead ("replace") each sequence
    z-normalised per feature over its own valid steps: its shape regardless
    of its level and scale. "append" doubles the input features the network
    sees. None: the input only, standardised with ``standardize``.
differences : int >= 0 or "auto"
    Also feed each numeric feature's change around every step, ``(x[t + d]
    - x[t - d]) / (2 d)`` for ``differences=d``, on the standardised values
    and divided by its typical size on the training data; each sequence's
    first and last steps stand in for steps past its ends. It shows the
    slopes and turns that tell shapes apart, which the network would
    otherwise have to learn to find. A larger ``d`` smooths out noise from
    step to step. ``sequence_norm`` treats the changes as features too. With
    ``output_mode="sequence"`` each step's change reads ``d`` steps ahead.
    0: none. "auto": 3 for series of one numeric feature (no categorical
    ones), all of one length of at least 100 steps for the classifier and
    60 for the regressor, that the recurrent layers read one step at a
    time (``recurrent_stride``; "auto" does up to 500 steps), with
    ``output_mode="last"``; 0 otherwise. On the benchmark's univariate
    series of 150 to 427 steps it raised the classifier's accuracy or left
    it as it was; on several channels, short, ragged or strided series,
    and on two series shortened to 83 and 85 steps, it lowered it. On the
    univariate Covid3Month (84 steps, and stretched to 168) it lowered the
    regressor's error on every seed where the fit did not end at the
    training mean, and raised it on the series shortened to 42 steps
    (benchmarks/RESULTS.md).
length_aware : bool
    Let the network use how long each sequence is. When the training
    sequences' lengths differ and ``output_mode="last"``, the network also
    takes each sequence's log length (standardised, beside any static
    features), and the convolutions' summary adds their maximum over a
    sequence's valid steps to their mean: a mean dilutes a short pattern by
    the sequence's length, a maximum finds it at any length. Equal-length
    training data is unaffected. Set False when lengths should tell the
    network nothing, e.g. when it will predict on the first steps of
    sequences it was trained on whole. ``partial_fit`` decides on its
    first call's sequences, when it builds the network.
categorical_features : "from_dtype", array-like of int, bool or str, or None
    Features that are categories, not numbers: positions, a boolean mask or
    column names, as in ``HistGradientBoostingClassifier``. "from_dtype":
    DataFrame columns of ``category``, ``string``/``object`` and ``bool``
    dtype, and arrays of strings, are categorical; other arrays are
    numeric. Each categorical feature is held as integer codes and gets a
    learned embedding (see ``embedding_size``); the categories learned in
    ``fit`` are ``categories_``. A category unseen in ``fit``, or seen less
    than ``min_frequency`` times, shares one "unknown" embedding, and a
    missing value (None or NaN) is a category of its own, so ``predict``
    never fails on a new category. Strings are never read as numbers: a
    string column that this parameter does not name is an error.
static_features : array-like of int, bool or str, or None
    Features constant within each sequence (a customer's segment, a
    machine's model), by position, mask or name. They enter the network
    once per sequence, numeric ones standardised and categorical ones
    embedded, through a layer of their own (``hidden_size`` ReLU units),
    joined to the pooled state (``output_mode="last"``) or to every step
    (``"sequence"``). A named feature that varies within a
    sequence is an error naming the sequence and the column.
embedding_size : int or "auto"
    Width of each categorical feature's embedding. "auto":
    ``round(1.6 * n_codes ** 0.56)`` between 2 and 8, for ``n_codes``
    categories plus the unknown and missing codes.
min_frequency : int
    Categories seen fewer times than this in ``fit`` share the unknown
    embedding, which they train for the categories ``predict`` has never
    seen.
time_deltas : bool or "auto"
    Give the network, as an extra step feature, the time elapsed since the
    previous step (``log1p`` of seconds for datetimes), from the time column
    of a :class:`~sklstm.SequenceFrame` or the index of DataFrame
    sequences. "auto": when the input carries times. Arrays carry none.
max_epochs : int or "auto"
    Passes over the training data; early stopping may end training
    sooner. "auto": enough epochs for 500 optimiser steps, more for long
    sequences (500 x their mean length / 100 when that is over 100 steps),
    that is ``ceil(steps / n_batches)`` for ``n_batches`` mini-batches per
    epoch, clipped to [100, 300] (the 300 also grows with a mean length
    over 100 steps, in proportion); then at most as many epochs as keep the
    fit within 5,000,000 sequence steps in all (epochs x the training
    sequences' time steps; with ``recurrent_stride`` s, a time step counts
    0.1 + 0.9/s, as the recurrent layers and all but the first convolution
    step through 1/s of them, or (1 + 1/s) / 2 with
    ``conv_placement="before"``, whose convolutions read every step), but
    at least 10. For short sequences and the
    "auto" batch size this gives 300 epochs for up to 16 training
    sequences, 250 for 17 to 32, 167 for 33 to 48, 125 for 49 to 64 and 100
    from 65 up, until the budget lowers it (5,000 sequences of 20 steps: 50
    epochs). The budget bounds a default fit's time: on 2 CPU cores, under
    a minute for the default network. The training sequences are those
    left after early stopping's hold-out.
batch_size : int or "auto"
    Most sequences per mini-batch; an epoch's batches are split as evenly
    as this allows. "auto": ``n_train // 16`` clipped to [16, 64], for
    ``n_train`` training sequences: small batches, hence enough steps per
    epoch, on small data sets, and faster epochs on large ones.
lr : float
    Learning rate.
optimizer : {"adam", "adamw", "sgd", "rmsprop"}
    torch optimizer, with torch's defaults for its other settings.
weight_decay : float
    Weight decay passed to the optimizer: an L2 penalty, decoupled from the
    gradient with "adamw".
gradient_clip : float or None
    Clip the gradient norm to this value before each step; None: no
    clipping.
lr_schedule : {"cosine", "plateau"} or None
    "cosine": anneal the learning rate from ``lr`` towards zero along a
    cosine over ``max_epochs`` epochs. "plateau": halve it whenever the
    monitored loss has not improved for more than
    ``max(1, n_iter_no_change // 2)`` epochs; the monitored loss is the
    validation loss when early stopping holds data out, the training loss
    otherwise. None: a constant learning rate.
weight_averaging : float in (0, 1) or None
    Keep an exponential moving average of the weights while ``fit``
    trains (an exponential form of Polyak averaging): after every
    optimiser step it moves ``1 - weight_averaging`` of the way to the new
    weights (more over the first steps, as the average is normalised over
    the steps taken), so 0.97 averages about the last 30 steps.
    Validation, and with it early stopping, scores the averaged weights,
    and the fitted network holds them (the best epoch's, with early
    stopping). The average damps the noise of the last steps, which on a
    small regression set can decide whether the network beats predicting
    the mean. ``partial_fit`` does not average. None: the weights as the
    optimiser left them. The regressor and the forecaster average by
    default (0.97), the classifier does not.
time_warp : float in [0, 1]
    Augment the training data: every training epoch (of ``fit`` or
    ``partial_fit``) re-reads each training sequence at a random speed that
    varies smoothly along it (faster in places, slower in others; the first
    and last steps stay where they are), so that the network sees each
    example at many timings. The value is the standard deviation of the log
    of the speed: 0.1 reads parts of a sequence about 10% faster or slower.
    Validation and prediction read the sequences as they are. Numeric
    features are interpolated between steps, categorical ones taken from the
    nearer step. Needs ``output_mode="last"``. 0: no warping. It can help a
    small data set whose patterns come a little earlier or later from one
    sequence to the next, but it is off by default because it does not help
    in general: on the benchmark's real data sets 0.1 raised some accuracies
    and lowered others (benchmarks/RESULTS.md). Compare it by
    cross-validation, and leave it at 0 when the speed of a sequence, or the
    spacing of its steps, tells its label.
early_stopping : bool or "auto"
    Hold out ``validation_fraction`` of the sequences ``fit`` gets, stop
    training when the validation score has not improved by more than
    ``tol`` for ``n_iter_no_change`` epochs, and restore the weights of the
    best epoch. "auto": on when ``fit`` gets 50 sequences or more, enough
    for the held-out score to mean something.
validation_fraction : float
    Share of the sequences held out for validation when early stopping is
    on.
n_iter_no_change : int
    Patience of early stopping, in epochs; half of it (at least 1) is the
    patience of ``lr_schedule="plateau"``.
tol : float
    Smallest improvement of the validation score that counts for early
    stopping.
interval_width : {"constant", "adaptive"}
    How ``predict_interval`` and ``predict_quantiles`` size their
    intervals, which the validation split of ``early_stopping`` calibrates
    either way (split conformal prediction: see the Notes). "constant": the
    same width for every prediction of an output, from the absolute errors
    on the validation split. "adaptive": the network also learns, for each
    output, the absolute error to expect for each input (one more output
    per target, trained beside the squared error on a Laplace likelihood of
    the training errors), and each interval is that expected error times a
    factor calibrated on the validation split: narrow where the targets are
    predictable, wide where they are noisy. ``dropout`` then acts between
    recurrent layers only, as its masks would blur the errors the scales
    learn from. The scales learn from
    training errors: a network that memorises its training targets (many
    weights, few sequences) learns little of how noise varies, and its
    intervals stay close to constant, calibrated all the same. Both give
    any coverage and any quantile from one fit.
calibration : {"auto", "split", "cross"}
    Whose held-out errors calibrate the intervals. "split": those of the
    network ``fit`` trains, on its validation split. "cross": also those of
    up to 4 more networks, each trained as that one is (same settings, as
    many sequences, a seed of its own) with another part of the data held
    out, so that up to five times as many errors calibrate (cross-conformal
    prediction, Vovk 2015); predictions still come from the one network,
    and ``fit`` takes up to five times as long. "auto": "cross" when the
    validation split holds fewer than 100 sequences (steps with
    ``output_mode="sequence"``), where a split's coverage varies much from
    fit to fit and coverages above n / (n + 1) are out of reach, and where
    the fit stays within the 5 million sequence steps that bound a default
    fit (epochs times the training sequences' steps) even if each further
    network trains all its ``max_epochs``; else "split". A ``warm_start``
    fit calibrates on its split: further networks trained from scratch
    would not err as the continued one does.
warm_start : bool
    On the next ``fit``, continue training the fitted network instead of
    starting afresh.
device : str
    torch device to train and predict on, such as "cpu", "cuda" or
    "cuda:1"; "auto" uses CUDA when it is available, else the CPU.
precision : {"32", "64", "bf16-mixed", "16-mixed"}
    Arithmetic of training and prediction. "32" (float32) and "64"
    (float64) work on every device. "bf16-mixed": bfloat16 autocast with
    float32 weights, for CUDA GPUs with bfloat16 support and for CPUs whose
    oneDNN kernels support bfloat16 (not all x86 CPUs do). "16-mixed":
    float16 autocast with loss scaling, for GPUs without fast bfloat16;
    CUDA only, so a CPU fit is refused, and a model fitted so predicts in
    float32 on a CPU.
n_threads : int or "auto"
    CPU threads torch may use during ``fit`` and ``predict``; the caller's
    setting (``torch.get_num_threads()``) is restored afterwards. "auto":
    the cores not busy with other work when the call starts (on Linux,
    counted from the runnable threads in ``/proc/loadavg``; elsewhere all
    the cores this process may use), at most the caller's setting (so
    ``OMP_NUM_THREADS`` and ``torch.set_num_threads`` cap it), shared
    among the sklstm fits and predictions running at the same time in this
    process. More threads than free cores slow torch down many times over,
    so on a busy machine "auto" takes one. Some torch kernels sum in a
    different order with another thread count, so for fits that must
    match bit for bit across runs and machines, set an int.
distributed : bool or "auto"
    Data-parallel training of one model by several processes, each on its
    own device, launched by ``torchrun`` (e.g. ``torchrun
    --nproc_per_node=2 train.py``) in a script that calls
    ``torch.distributed.init_process_group()`` before ``fit``. Every
    process calls ``fit`` (or ``partial_fit``) with the same, whole data;
    each trains on its own share of every epoch's mini-batches, the
    gradients are averaged over the processes after each backward pass,
    and all of them end with the same fitted estimator. ``batch_size`` is
    per process, so a step takes ``batch_size * world_size`` sequences in
    all: a fit with ``batch_size=b`` in ``k`` processes matches a
    single-process fit with ``batch_size=k * b`` (up to rounding, for
    networks without batch norm and equal shares of unweighted sequences;
    otherwise each process's share weighs equally in the step, as in
    ``DistributedDataParallel``). An epoch has a multiple of ``k``
    batches; when there are fewer sequences than that needs, some are
    repeated. Validation for early stopping runs on all held-out sequences
    in every process, and all take rank 0's scores. With ``device="auto"``
    each process uses the GPU of its ``LOCAL_RANK``. "auto": train
    data-parallel when the default process group is initialised with more
    than one process; True: require one; False: train in this process
    alone (for fits each process runs on its own data, or in threads).
random_state : int, RandomState instance or None
    Seeds weight initialisation, shuffling, dropout and the validation
    split; an int makes fits reproducible, also when several run at once
    in threads. A fit neither reads nor changes torch's global random state.
verbose : int
    0: silent; 1: a progress bar over epochs; 2: one line per epoch.
callbacks : list of skorch callbacks or None
    Extra skorch callbacks, as instances or ``(name, callback)`` tuples:
    objects that skorch calls at fixed points of training (start and end
    of training, of each epoch and of each batch). Stock ones work as
    skorch documents them, e.g. ``EpochScoring`` with a scorer
    ``f(net, X, y)`` to record a metric each epoch (``y`` holds class
    indices into ``classes_``, or standardised regression targets),
    ``Checkpoint`` with ``LoadInitState`` to save weights and resume an
    interrupted fit, ``LRScheduler`` for another learning-rate schedule
    (set ``lr_schedule=None``), ``PrintLog`` or ``ProgressBar``; see
    https://skorch.readthedocs.io/en/stable/user/callbacks.html. The
    estimators' own ``verbose``, ``early_stopping``, ``gradient_clip`` and
    ``lr_schedule`` are callbacks too, named ``progress``,
    ``early_stopping``, ``gradient_clip`` and ``lr_schedule`` in ``net_``.
"""


def _split_entries(text):
    """``{name: entry}`` from numpydoc entries, one unindented line each."""
    entries = {}
    for block in re.split(r"\n(?=\S)", text.strip("\n")):
        name = block.split(" : ", 1)[0]
        if name in entries:
            raise ValueError(f"Parameter {name!r} is documented twice.")
        entries[name] = block
    return entries


# Parameter name -> its entry: the name line, without default, then the
# description indented by four spaces.
PARAMETERS = _split_entries(_ENTRIES)

# A docstring line holding nothing but {name}.
_PLACEHOLDER = re.compile(r"^(?P<indent>[ ]*)\{(?P<name>[A-Za-z_]\w*)\}[ ]*$", re.M)


def format_default(value):
    """A default as numpydoc writes it: ``"auto"``, ``1e-3``, ``None``."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float):
        # 1e-3 reads better than 0.001; keep whichever form is shorter.
        mantissa, exponent = f"{value:e}".split("e")
        short = f"{float(mantissa):g}e{int(exponent)}"
        if float(short) == value and len(short) < len(repr(value)):
            return short
    return repr(value)


def fill_doc(cls):
    """Class decorator: write the shared parameter entries into the docstring.

    Every docstring line that holds only ``{name}`` becomes the entry of
    parameter ``name`` from :data:`PARAMETERS`, at that line's indentation,
    with ``default=`` read from ``cls.__init__``, so it is always the
    class's real default. Lines indented under the placeholder stay and so
    continue the entry's description: the place for what holds for this
    estimator only. Parameters no other estimator takes are written out in
    the class docstring as usual.

    Parameters
    ----------
    cls : type
        The class whose ``__doc__`` to fill.

    Returns
    -------
    cls : type
        The same class, its docstring filled.

    Examples
    --------
    >>> @fill_doc
    ... class Model:
    ...     '''A model.
    ...
    ...     Parameters
    ...     ----------
    ...     {lr}
    ...         Small enough for long training.
    ...     '''
    ...     def __init__(self, lr=1e-4):
    ...         self.lr = lr
    >>> print(Model.__doc__.rstrip())
    A model.
    <BLANKLINE>
        Parameters
        ----------
        lr : float, default=1e-4
            Learning rate.
            Small enough for long training.
    """
    if cls.__doc__ is None:  # docstrings stripped (python -OO)
        return cls
    signature = inspect.signature(cls.__init__).parameters

    def entry(match):
        name, indent = match["name"], match["indent"]
        if name not in PARAMETERS:
            raise KeyError(
                f"{cls.__name__}'s docstring names {{{name}}}, which "
                "sklstm._docs.PARAMETERS does not document."
            )
        if name not in signature or signature[name].default is inspect.Parameter.empty:
            raise TypeError(
                f"{cls.__name__}'s docstring names {{{name}}}, but {name} is not "
                "a parameter with a default of its __init__."
            )
        head, *description = PARAMETERS[name].splitlines()
        default = format_default(signature[name].default)
        lines = [f"{head}, default={default}", *description]
        return "\n".join(indent + line for line in lines)

    cls.__doc__ = _PLACEHOLDER.sub(entry, cls.__doc__)
    return cls
