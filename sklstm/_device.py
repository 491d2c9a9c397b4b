"""Where training runs and in what arithmetic: devices, precision, memory,
and the random generators a fit draws from.

Everything here is plain torch (and numpy, to derive seeds); nothing
depends on skorch or on the estimators.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
import warnings
from numbers import Integral

import numpy as np
import torch


class DeviceOutOfMemoryError(torch.OutOfMemoryError, MemoryError):
    """Training or prediction ran out of memory; the message says what to lower.

    Both a ``MemoryError`` and a ``torch.OutOfMemoryError``, so code that
    already catches either keeps working.
    """


def is_out_of_memory(exc):
    """Whether ``exc`` reports an allocation failure, on a GPU or the CPU."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    # torch's CPU allocator raises a plain RuntimeError.
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def out_of_memory(exc):
    """A :class:`DeviceOutOfMemoryError` carrying the first line of ``exc``.

    Only the message is kept, not ``exc`` itself, whose traceback holds the
    tensors of the batch that failed.
    """
    text = str(exc).strip()
    return DeviceOutOfMemoryError(text.splitlines()[0] if text else "")


def release_cached_memory():
    """Hand memory that torch's CUDA allocator keeps cached back to the device."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def resolve_device(device):
    """Turn the ``device`` parameter into a usable ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(
            f"device={device!r} is not a torch device. Use 'auto', 'cpu', "
            "'cuda' or 'cuda:N'."
        ) from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available "
                "on this machine. Use device='auto' or device='cpu'."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)."
            )
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"device={device!r} was requested but MPS is not available. Use "
            "device='auto' or device='cpu'."
        )
    return resolved


# ---------------------------------------------------------------------------
# Randomness
# Every random draw of a fit (initial weights, dropout masks, batch order)
# comes from generators of its own, seeded from its random_state, never from
# torch's global generator: fits running at once in threads would interleave
# their draws there, and a caller's torch.manual_seed would change the model.
# Each use gets its own stream, so that one use drawing more (a larger
# network, more batches) leaves the others' draws alone.
_STREAMS = ("weights", "dropout", "shuffle", "time_warp")


def stream_seed(seed, stream, process=0):
    """The seed of the ``stream`` of random draws of a fit seeded by ``seed``.

    ``stream`` is one of "weights", "dropout", "shuffle" and "time_warp"
    (new streams go at the end: a stream's seed is its place). ``process``
    (a data-parallel rank) gives each process of one fit a stream of its
    own; process 0 draws what a fit in a single process draws.
    """
    key = [seed, _STREAMS.index(stream)] + ([process] if process else [])
    entropy = np.random.SeedSequence(key)
    # 63 bits: any torch generator takes it, and it survives int64 tensors.
    return int(entropy.generate_state(1, np.uint64)[0] >> np.uint64(1))


def new_generator(seed, stream, device="cpu", process=0):
    """A torch generator on ``device`` for the ``stream`` of a fit's draws."""
    generator = torch.Generator(device=device)
    generator.manual_seed(stream_seed(seed, stream, process))
    return generator


# ---------------------------------------------------------------------------
# Precision
@functools.lru_cache(maxsize=1)
def cpu_runs_bf16():
    """Whether this CPU's kernels run a bfloat16 LSTM, forward and backward.

    Found by trying rather than by CPU name: oneDNN picks kernels by the
    instructions a CPU has, and some x86 CPUs have none for bfloat16
    recurrent layers ("could not create a primitive descriptor").
    """
    # Built on the meta device and filled with a constant: the probe draws
    # nothing from torch's global generator, which a fit in another thread
    # or the caller may be using (forking it there would rewind their draws).
    layer = torch.nn.LSTM(2, 2, batch_first=True, device="meta")
    layer = layer.to_empty(device="cpu")
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.fill_(0.1)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = layer(torch.ones(1, 2, 2))[0]
        outputs.float().sum().backward()
    except RuntimeError:
        return False
    return True


def autocast_context(precision, device):
    """The autocast region that computes in ``precision`` on ``device``."""
    if precision == "bf16-mixed":
        if device.type == "cpu" and not cpu_runs_bf16():
            # A model fitted in bfloat16 elsewhere predicts in float32 here
            # (check_prediction_precision warns once per call).
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "16-mixed" and device.type == "cuda":
        # Off CUDA (a model fitted on a GPU and loaded on a CPU) this
        # precision computes in float32: the CPU has no float16 LSTM kernel.
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def check_precision(precision, device):
    """Refuse, before fitting, a precision that ``device`` cannot train in."""
    if precision == "bf16-mixed" and device.type == "cpu" and not cpu_runs_bf16():
        raise ValueError(
            "precision='bf16-mixed' needs bfloat16 recurrent kernels, which "
            "this CPU does not have (its oneDNN kernels refused a bfloat16 "
            "LSTM). Use precision='32', or train on a GPU with bfloat16 "
            "support."
        )
    if precision == "16-mixed" and device.type != "cuda":
        raise ValueError(
            f"precision='16-mixed' needs a CUDA device, but this fit runs on "
            f"{device.type!r}: float16 recurrent kernels exist only on CUDA. "
            "Use precision='bf16-mixed' or '32' instead."
        )


def check_prediction_precision(precision, device):
    """Warn when a bfloat16 model predicts in float32 on this CPU."""
    if precision == "bf16-mixed" and device.type == "cpu" and not cpu_runs_bf16():
        warnings.warn(
            "This model was fitted with precision='bf16-mixed', but this CPU "
            "has no bfloat16 recurrent kernels: it predicts in float32, "
            "which can differ from bfloat16 predictions by rounding.",
            RuntimeWarning,
            stacklevel=4,
        )


def new_grad_scaler(precision, device):
    """A loss scaler for float16 training, or None when none is needed.

    float16 gradients of small losses underflow to zero; the scaler
    multiplies the loss before ``backward``, divides the gradients before the
    step, and skips steps whose gradients overflowed.
    """
    if precision != "16-mixed":
        return None
    return torch.amp.GradScaler(torch.device(device).type)


# ---------------------------------------------------------------------------
# Prediction batch size
# On a GPU, prediction batches grow with the free memory, within these
# bounds: no activations are kept for a backward pass, so large batches are
# cheap in memory and keep the device busy.
_GPU_PREDICT_ROWS = (1024, 16384)
# The share of free GPU memory one prediction batch may plan to take.
_GPU_PREDICT_SHARE = 0.25


def prediction_rows(module, device, n_timesteps, cpu_rows):
    """Rows per prediction batch for ``module`` on ``device``.

    CPUs get ``cpu_rows``. On CUDA, the batch is as large as a quarter of the
    free memory allows, by a generous count of the float32 values that live
    at once per time step: the input and its normalised copy, the
    convolution outputs, and for the recurrent layers two layers' states and
    four gates each (``head.in_features`` bounds a layer's state width). Too
    large a guess still works: prediction halves the batch on running out
    of memory.
    """
    if device.type != "cuda":
        return cpu_rows
    n_inputs = module.feature_mean.numel()
    conv_width = sum(layer.out_channels for layer in module.convolutions)
    width = 2 * n_inputs + conv_width + 6 * module.head.in_features
    free_bytes, _ = torch.cuda.mem_get_info(device)
    rows = int(_GPU_PREDICT_SHARE * free_bytes) // (4 * max(n_timesteps, 1) * width)
    low, high = _GPU_PREDICT_ROWS
    # Multiples of 8 keep predictions independent of batch composition
    # (see sklstm._data.round_up_rows).
    return max(low, min(high, rows // 8 * 8))


# ---------------------------------------------------------------------------
# CPU threads
#
# torch's thread count is process-wide in effect (set in one thread, it
# changes what others run with), so the calls that set it are counted: the
# first one to start saves the caller's setting, the last one to end puts it
# back, whatever order concurrent fits end in.
_threads_lock = threading.Lock()
_threads_users = 0
_threads_saved = 1
_flushing_saved = False
# Reading the load costs a few milliseconds; predictions called in a loop
# reuse a recent reading.
_LOAD_READING_SECONDS = 0.5
_load_reading = (-float("inf"), 0)


def usable_cores():
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _busy_cores():
    """Threads of other work running now (Linux); 0 where it cannot be read."""
    global _load_reading
    now = time.monotonic()
    if now - _load_reading[0] < _LOAD_READING_SECONDS:
        return _load_reading[1]
    counts = []
    try:
        for attempt in range(3):
            if attempt:
                time.sleep(0.002)
            with open("/proc/loadavg") as file:
                # Fourth field: runnable scheduling entities / all of them.
                running = int(file.read().split()[3].split("/")[0])
            counts.append(running - _own_running_threads())
    except (OSError, ValueError, IndexError):
        return 0
    # This process's own threads are not other work: the reading thread,
    # and torch's workers, which spin for a few milliseconds after each
    # operation before they sleep. The smallest of a few readings skips
    # other threads that were awake only for a moment.
    busy = max(0, min(counts))
    _load_reading = (now, busy)
    return busy


def _flushing_denormals():
    """Whether torch flushes denormal floats to zero now (it has no getter)."""
    # With flushing on, a denormal input reads as zero.
    return bool(torch.tensor([1e-40], dtype=torch.float32) * 2 == 0)


def _own_running_threads():
    """Threads of this process running now, from /proc/self/task (Linux)."""
    count = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/stat") as file:
                stat = file.read()
        except OSError:  # the thread ended meanwhile
            continue
        # The state follows the command name, which is in parentheses and
        # may itself hold spaces or parentheses.
        count += stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] == "R"
    return count


def _auto_threads(ceiling, users):
    free = usable_cores() - _busy_cores()
    return max(1, min(ceiling, free) // users)


@contextlib.contextmanager
def cpu_threads(n_threads):
    """Run with torch using ``n_threads`` CPU threads ("auto": see the docs),
    and with denormal floats flushed to zero.

    Yields the number chosen. Safe when several fits run in threads: "auto"
    shares the free cores among them, and the caller's settings come back
    when the last of them ends.

    Late in training, as gates saturate, values below float32's normal range
    appear, and x86 CPUs compute on them many times slower: epochs slowed
    down more than twofold. Flushing them to zero changes values under
    1e-38 only.
    """
    global _threads_users, _threads_saved, _flushing_saved
    if n_threads != "auto" and (
        isinstance(n_threads, (bool, np.bool_))
        or not isinstance(n_threads, Integral)
        or n_threads < 1
    ):
        # Checked here too: predict reads n_threads without a fit's checks.
        raise ValueError(f'n_threads must be an int >= 1 or "auto", got {n_threads!r}.')
    with _threads_lock:
        if _threads_users == 0:
            _threads_saved = torch.get_num_threads()
            _flushing_saved = _flushing_denormals()
        _threads_users += 1
        # Set by every call: the CPU holds this mode per thread.
        torch.set_flush_denormal(True)
        if n_threads == "auto":
            chosen = _auto_threads(_threads_saved, _threads_users)
        else:
            chosen = n_threads
        torch.set_num_threads(chosen)
    try:
        yield chosen
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_saved)
                torch.set_flush_denormal(_flushing_saved)
