"""The core shared by cvfeat's micro-CNN estimators.

:class:`_MicroCNNBase` does what :class:`~cvfeat.models.MicroCNNRegressor`,
:class:`~cvfeat.models.MicroCNNClassifier` and
:class:`~cvfeat.models.HybridCNNRegressor` have in common: image validation,
the budget solver (:mod:`cvfeat.models.architectures`), the training loop
(:mod:`cvfeat.models.training`), batched prediction and pickling. PyTorch is
imported only when a model is fitted, predicted or unpickled.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from .._validation import check_image_shape, check_images, check_targets, image_shape

#: test-time views (``tta``): the pixel axes of ``(n, h, w[, c])`` images flipped in each
TTA_VIEWS = {None: ((),), "hflip": ((), (2,)), "flips": ((), (2,), (1,), (1, 2))}

_INSTALL = "pip install 'cvfeat[cnn]'"
_PIXEL_CHUNK = 1 << 22  # pixels per chunk when computing the input statistics


def _import_torch(where):
    """``(torch, architectures, training)``, or an ImportError that says what to install."""
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            f"{where} needs PyTorch, which is not installed: {_INSTALL} (or install torch for "
            "your platform from https://pytorch.org first)."
        ) from exc
    from . import architectures, training

    return torch, architectures, training


def resolve_device(device, where):
    """A ``torch.device`` from ``'auto'`` (CUDA when available, else CPU) or a device string."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"{where}: device={device!r} is not a torch device; use 'auto', 'cpu', 'cuda' or "
            "'cuda:N'."
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"{where}: device={device!r} but CUDA is not available here; use device='auto' or "
            "'cpu'."
        )
    return dev


def _n_threads(n_jobs):
    """Torch intra-op threads for ``n_jobs``.

    None: ``max(1, min(4, cores // 2))`` (1 on a 2-core machine), unless
    ``OMP_NUM_THREADS`` (or else ``MKL_NUM_THREADS``) holds a positive integer: then
    that number, read at each fit. Torch reads the variable only once, when it
    starts, and it can change later: a ``distributed.LocalCluster`` started in this
    process sets both to 1 here as well as in its workers.
    Tiny convolutions split badly across threads, and OpenMP threads that wait
    for a core another process holds stall every operation: on a shared 2-core
    machine an epoch took 10-20x longer with 2 threads than with 1.
    """
    cores = os.cpu_count() or 1
    if n_jobs is None:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            value = os.environ.get(var, "").strip()
            if value.isdigit() and int(value) > 0:
                return int(value)  # the user (or a Dask nanny) chose, through the environment
        return max(1, min(4, cores // 2))
    if n_jobs < 0:
        return max(1, cores + 1 + n_jobs)
    return max(1, n_jobs)


@contextlib.contextmanager
def torch_context(n_jobs):
    """Torch's CPU thread count for the duration of a call, then restored.

    No ``torch.use_deterministic_algorithms``: the CPU kernels used here (convolution,
    BatchNorm, pooling, gathers, ``grid_sample`` forward, AdamW) are deterministic for a
    fixed thread count, and switching the flag on imports torch's compiler stack (seconds).
    On CUDA, cuDNN may pick non-deterministic kernels: GPU fits are close, not identical.
    """
    import torch

    threads = _n_threads(n_jobs)
    old_threads = torch.get_num_threads()
    if threads is not None and threads != old_threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if threads is not None and threads != old_threads:
            torch.set_num_threads(old_threads)


def pixels(X):
    """Validated images -> ``(n, h, w, c)`` pixels on the 0-255 scale (uint8 kept as is)."""
    if X.ndim == 3:
        X = X[..., None]
    if X.dtype == np.uint8:
        return X
    return (X * 255.0).astype(np.float32)


def bin_centers(t, bins):
    """``(k, bins)`` evenly spaced centres from the smallest to the largest of each
    column of ``t`` (standardised training targets); a constant column gets bins one
    unit apart around its value."""
    lo, hi = t.min(axis=0), t.max(axis=0)
    span = np.where(hi - lo > 1e-6, hi - lo, bins - 1.0)
    frac = np.arange(bins) / (bins - 1) - 0.5
    return ((lo + hi) / 2)[:, None] + span[:, None] * frac


def channel_stats(P):
    """Per-channel mean and std of ``(n, h, w, c)`` pixels, in bounded memory."""
    c = P.shape[3]
    per = max(1, _PIXEL_CHUNK // (P.shape[1] * P.shape[2] * c))
    s = np.zeros(c)
    s2 = np.zeros(c)
    for a in range(0, len(P), per):
        chunk = P[a:a + per].reshape(-1, c).astype(np.float64)
        s += chunk.sum(axis=0)
        s2 += np.square(chunk).sum(axis=0)
    m = len(P) * P.shape[1] * P.shape[2]
    mean = s / m
    std = np.sqrt(np.maximum(s2 / m - mean**2, 0.0))
    return mean, np.where(std > 1e-6, std, 1.0)


_DOC_CORE = """
    Parameters
    ----------
    max_params : int, default=3000
        Budget for the whole model, counted as in :mod:`cvfeat.budget`: every
        trainable weight (convolutions, BatchNorm scale and shift, head) plus the
        normalisation constants learned from the data{hybrid_budget}. With
        ``width='auto'`` the widths are solved so that ``max_params * 0.9 <=
        n_params_ <= max_params``.
    depth : 'auto' or int, default='auto'
        Number of conv layers, the stem included. ``'auto'``: one per
        resolution (5 for 64x64 images, 3 for 16x16; max-pooling halves the
        resolution down to about 4x4), plus one from 5,000 parameters and one
        more from 20,000.
    width : 'auto', int or list of int, default='auto'
        ``'auto'``: solved from the budget. An int: the stem's width, 1.5x wider
        after each pooling. A list: every layer's width (for ``block='dense'``
        the growth of each layer after the stem). With an explicit ``width`` the
        model must fit ``max_params`` or ``fit`` raises an error that gives the
        count.
    block : {{'plain', 'residual', 'dense'}}, default='plain'
        ``'plain'``: conv-BN-ReLU. ``'residual'``: a parameter-free shortcut
        around every layer after the stem (identity, or zero-padded channels).
        ``'dense'``: each layer's output is concatenated to its input. At 1k-10k
        parameters and 5-6 layers, plain beat residual on UTKFace age in
        ``benchmarks/bench_micro_cnn.py`` (residuals pay off in deeper nets).
    conv : {{'separable', 'standard'}}, default='separable'
        3x3 convolutions, or depthwise 3x3 + pointwise 1x1 (the stem is always
        standard). Every published sub-2k-parameter record uses separable
        convolutions with global average pooling.
    head : {{'gap', 'dense'}}, default='gap'
        Global average pooling then a linear layer, or a linear layer on the
        flattened final (about 4x4) map, which keeps the position.
    head_units : 'auto' or int, default='auto'
        Hidden units of the head (a linear layer + ReLU between the pooled
        features, with any hybrid features, and the output layer); 0: none.
        ``'auto'``: 8 below 2,000 parameters, 16 from 2,000, 0 with
        ``head='dense'``. On UTKFace age the hidden layer lowered the MAE at both
        1k and 5k parameters. A hybrid gets 0 when the hidden layer's weights for
        its ``d`` features would pass 10 % of ``max_params``.
    coord_channels : bool, default=False
        Append two constant coordinate channels to the input (CoordConv): for
        targets that depend on where things are in the image.
    max_epochs : int, default=60
        Epochs of training (ignored when ``max_time`` is set).
    max_time : float or None, default=None
        Time budget of the whole ``fit``, in seconds (data preparation, a
        teacher's fit and hybrid features included). ``fit`` times a few training
        steps and one validation pass on a throwaway copy of the network, then
        fixes the number of epochs so that the whole schedule (one-cycle or
        cosine, and the ``prune_epochs`` after it) ends within the budget;
        ``max_epochs`` is then ignored. A schedule is never cut short: at least
        one epoch runs (with a warning when even that does not fit). The count
        depends on the machine's speed: ``time_budget_['epochs']`` is the number
        chosen, and ``max_epochs=time_budget_['epochs']`` without ``max_time``
        repeats the fit exactly (the timing draws no random numbers of the fit).
        None: train ``max_epochs``.
    batch_size : int, default=64
    learning_rate : float, default=0.01
        Peak learning rate of AdamW (the one-cycle maximum).
    weight_decay : float, default=1e-4
        AdamW's decoupled weight decay, on conv and linear weights only.
    schedule : {{'onecycle', 'cosine', 'constant'}}, default='onecycle'
        Learning-rate schedule over ``max_epochs`` (stepped every batch).
    validation_fraction : float in [0, 1), default=0.1
        Share of the training images held out for early stopping (stratified for
        classifiers); the weights of the best validation epoch are kept. 0 trains
        all ``max_epochs`` on all images and keeps the last weights.
    patience : int or None, default=None
        Stop after this many epochs without a better validation loss. None
        trains all ``max_epochs`` (the best validation epoch is still kept):
        with the one-cycle and cosine schedules the validation loss is noisy
        while the learning rate is high and improves most in the final
        annealing, which early stopping would cut off.
{loss_doc}
    optimizer : {{'adamw', 'sam', 'asam'}}, default='adamw'
        ``'sam'`` / ``'asam'``: sharpness-aware minimisation (adaptive for
        ``'asam'``) around AdamW: two forward and backward passes per step,
        about twice the cost.
    rho : 'auto' or float, default='auto'
        SAM neighbourhood radius: ``'auto'`` is 0.05 for SAM and 0.5 for ASAM.
    augment : None, {{'flip', 'light', 'strong'}} or dict, default=None
        Augmentation of the training batches only (see
        :mod:`cvfeat.models.training` for the keys ``hflip``, ``vflip``,
        ``shift``, ``rotate``, ``scale``, ``brightness``, ``contrast``, ``noise``
        and which targets each one changes). Off by default because the right
        choice depends on the target: a flip changes an orientation target.
{smoothing_doc}
    mixup : float, default=0.0
        Mixup: ``alpha`` of the Beta distribution of the mixing weight (e.g.
        0.2); each training batch is mixed with a shuffled copy of itself,
        images and targets alike (0 = off).
    teacher : None, estimator or array-like, default=None
        Distillation. An estimator on the same kind of images ({teacher_api}),
        e.g. a larger micro-CNN or a HOG + SVR pipeline. Unfitted, it is cloned
        and the clone fitted inside ``fit`` on the student's training rows (not its
        validation split), so ``cross_validate`` and the searches never let it
        see test images (a fitted teacher is cloned unfitted by ``clone``, and is
        then refitted per fold too). Fitted, it is used as it is. Either way
        ``teacher_`` is the fitted teacher; only the student is counted
        (``n_params_``) and exported. The teacher is called on every augmented
        training batch, so it sees exactly the student's view, at the cost of one
        teacher prediction per training image per epoch on the CPU (computed once
        when nothing is augmented or mixed). An array of its predictions for the
        training images (shape of ``y``{teacher_shape}): cheap, but with augmentation the student's view no longer matches the
        image the teacher saw, which is harmless only for augmentations that do
        not change the target.
    alpha : float in [0, 1], default=0.5
        Distillation weight: ``loss = alpha * loss(y) + (1 - alpha) *
        loss(teacher)``.
    prune_amount : float in [0, 1), default=0.0
        After training, zero this fraction of the smallest-magnitude weights of
        every conv and linear layer, then fine-tune the rest for ``prune_epochs``
        (0 = no pruning). ``n_params_`` still counts dense storage;
        ``n_nonzero_params_`` and ``pruning_`` report the effect.
    prune_epochs : int, default=5
    tta : {{None, 'hflip', 'flips'}}, default=None
        Test-time flips: ``predict`` (and the exported ONNX graph) averages the
        predictions{tta_what} over the image and its left-right mirror (``'hflip'``),
        or over the image, its left-right, up-down and both-ways flips
        (``'flips'``). No parameters; the MACs of a prediction (``n_macs_``) grow
        with the number of views (2 or 4). Whether a flip keeps the target is your
        call, as with ``augment``: a left-right flip keeps an age, a count or a
        size but changes a left/right orientation or a horizontal position (an
        angle ``a`` becomes ``180 - a``); an up-down flip also changes what
        depends on "up" (faces, scenes, vertical position). Read at prediction
        time: ``set_params(tta=...)`` needs no refit. Training is unchanged.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the validation split, shuffling and every
        augmentation draw: the same value gives identical predictions on CPU.
    device : str, default='auto'
        ``'auto'``: CUDA when available, else the CPU; or any torch device
        string (``'cpu'``, ``'cuda:1'``).
    n_jobs : int or None, default=None
        Torch CPU threads during ``fit`` and ``predict`` (restored afterwards).
        None: ``max(1, min(4, cores // 2))``, i.e. 1 on a 2-core machine (tiny
        convolutions gain little from more threads, and threads competing with
        other processes for cores stall), unless ``OMP_NUM_THREADS`` (or
        ``MKL_NUM_THREADS``) is set to a positive integer, then that number; -1:
        all cores.
    verbose : int, default=0
        1: one line per epoch.
"""

_DOC_ATTRS = """
    Attributes
    ----------
    n_params_ : int
        Values counted against ``max_params`` (see ``max_params``).
    n_macs_ : int
        Multiply-accumulates of one prediction (convolutions and linear layers),
        times the number of test-time views of ``tta``.
    n_nonzero_params_ : int
        The same count without the values zeroed by pruning (weights that are
        exactly zero).
    architecture_ : str
        Readable summary: layers, shapes, parameters and MACs.
    history_ : list of dict
        One record per epoch: ``epoch``, ``phase`` ('train' or 'prune'),
        ``train_loss``, ``val_loss`` (None without a validation split), ``lr``
        and ``seconds``.
    teacher_ : estimator or None
        The fitted teacher: ``teacher`` itself when it was fitted, else its clone
        fitted on the training rows; None without a teacher or with an array.
    time_budget_ : dict or None
        With ``max_time``: ``max_time``, ``epoch_seconds`` (the estimate of one
        epoch), ``seconds_before_training`` (data preparation, teacher, features
        and the timing itself), ``epochs`` (the schedule's length) and
        ``prune_epochs``. None without ``max_time``.
    best_epoch_ : int or None
        Epoch whose weights were kept (None without a validation split).
    pruning_ : dict or None
        With ``prune_amount > 0``: ``n_nonzero_before``, ``n_nonzero_after`` and
        the validation loss and {metric} before pruning, right after it and after
        fine-tuning (on the training images when there is no validation split:
        ``on`` says which).
    module_ : torch.nn.Module
        The trained network, in eval mode. ``module_(x)`` takes ``(n, h, w[, c])``
        pixels on the 0-255 scale (uint8 or float) and returns {module_out};
        ``torch.onnx.export`` exports it with uint8 pixels in.
    image_shape_ : tuple
        ``(h, w, c)`` of the training images.
    device_ : str
        Device used in ``fit``.
"""


class _MicroCNNBase(BaseEstimator):
    """The shared core. Subclasses set ``_task`` and implement the target handling."""

    _task = "regression"

    _parameter_constraints = {
        "max_params": [Interval(Integral, 1, None, closed="left")],
        "depth": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "width": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left"), list, tuple],
        "block": [StrOptions({"plain", "residual", "dense"})],
        "conv": [StrOptions({"standard", "separable"})],
        "head": [StrOptions({"gap", "dense"})],
        "head_units": [StrOptions({"auto"}), Interval(Integral, 0, None, closed="left")],
        "coord_channels": ["boolean"],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "max_time": [None, Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "schedule": [StrOptions({"onecycle", "cosine", "constant"})],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "patience": [Interval(Integral, 1, None, closed="left"), None],
        "optimizer": [StrOptions({"adamw", "sam", "asam"})],
        "rho": [StrOptions({"auto"}), Interval(Real, 0, None, closed="neither")],
        "augment": [None, str, dict],
        "mixup": [Interval(Real, 0, None, closed="left")],
        "teacher": "no_validation",
        "alpha": [Interval(Real, 0, 1, closed="both")],
        "prune_amount": [Interval(Real, 0, 1, closed="left")],
        "prune_epochs": [Interval(Integral, 0, None, closed="left")],
        "tta": [None, StrOptions({"hflip", "flips"})],
        "random_state": ["random_state"],
        "device": [str],
        "n_jobs": [None, Integral],
        "verbose": ["verbose"],
    }

    # -- hooks for subclasses ----------------------------------------------------------
    def _prepare_targets(self, y, n):  # -> (targets for torch, n_outputs)
        raise NotImplementedError

    def _features(self, X, fit):  # hybrid models: (n, d) float32 features or None
        return None

    def _fixed_params(self):  # values counted outside the CNN (hybrid features)
        return 0

    # -- fit -------------------------------------------------------------------------
    def fit(self, X, y):
        """Size the network to ``max_params``, then train it.

        Parameters
        ----------
        X : (n, h, w[, c]) ndarray or list of equal-size (h, w[, c]) ndarrays
            uint8 (0-255) or float in [0, 1], grey or RGB, one size (put
            :class:`cvfeat.preprocessing.Resize` first for images of several sizes).
        y : (n,) or (n, k) array-like
            Targets (finite) or class labels.

        Returns
        -------
        self
        """
        started = time.perf_counter()
        self._validate_params()
        where = type(self).__name__
        if y is None:
            raise ValueError(f"{where} requires y to be passed, but the target y is None.")
        if self._task == "classification":
            check_classification_targets(y)
            if len(np.unique(np.asarray(y))) < 2:
                raise ValueError(
                    f"{where}: y has a single class ({np.asarray(y).ravel()[0]!r}); a classifier "
                    "needs at least two."
                )
        torch, arch_mod, training = _import_torch(where)
        X = check_images(X, estimator=self, same_size=True)
        if self._task == "regression":
            y = check_targets(y, len(X), estimator=self)
        augment = training.check_augment(self.augment, where)
        device = resolve_device(self.device, where)
        rs = check_random_state(self.random_state)
        seed = int(rs.randint(np.iinfo(np.int32).max))
        rng = np.random.default_rng(seed)
        n = len(X)
        targets, n_out = self._prepare_targets(y, n)

        # validation split of the training data
        vf = float(self.validation_fraction)
        if vf > 0:
            n_val = int(np.ceil(vf * n))
            if n - n_val < 2:
                raise ValueError(
                    f"{where}: validation_fraction={vf} leaves {n - n_val} of {n} images for "
                    "training; pass more images or validation_fraction=0."
                )
            strat = self._stratify(targets, n_val)
            tr, va = train_test_split(np.arange(n), test_size=n_val, random_state=seed,
                                      stratify=strat)
            tr, va = np.sort(tr), np.sort(va)
        else:
            tr, va = np.arange(n), None

        self.image_shape_ = image_shape(X)
        P = pixels(X)
        feats = self._features(X, fit=True)
        in_mean, in_std = channel_stats(P[tr])
        targets_std, scaler = self._standardize(targets, tr)
        self.teacher_ = _fit_teacher(self.teacher, X, y, tr, where)
        teacher_t, teacher_fn_maker = self._teacher(X, targets, tr, augment, scaler, where)

        # architecture
        h, w, c = self.image_shape_
        arch = {
            "in_channels": c, "height": h, "width": w,
            "coord_channels": bool(self.coord_channels), "block": self.block,
            "conv": self.conv, "head": self.head, "n_outputs": n_out,
            "n_features": 0 if feats is None else feats.shape[1], "task": self._task,
            "bins": self._bins(),
        }
        arch["head_hidden"] = self._head_units(arch["n_features"])
        width = self.width if isinstance(self.width, (str, Integral)) else list(self.width)
        arch = arch_mod.solve(arch, self.max_params, depth=self.depth, width=width,
                              fixed=self._fixed_params(), where=where)

        spec = self._train_spec(training, augment, n_out)
        with torch_context(self.n_jobs):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                module = arch_mod.build_module(arch)
            with torch.no_grad():
                module.in_mean.copy_(torch.as_tensor(in_mean, dtype=torch.float32))
                module.in_scale.copy_(torch.as_tensor(1.0 / in_std, dtype=torch.float32))
                if scaler is not None:
                    module.out_mean.copy_(torch.as_tensor(scaler[0], dtype=torch.float32))
                    module.out_scale.copy_(torch.as_tensor(scaler[1], dtype=torch.float32))
                if arch["bins"]:
                    module.bin_centers.copy_(torch.as_tensor(
                        bin_centers(targets_std[tr], arch["bins"]), dtype=torch.float32))
                if feats is not None:
                    fm = feats[tr].mean(axis=0)
                    fs = feats[tr].std(axis=0)
                    fs = np.where(fs > 1e-12, fs, 1.0)
                    module.feat_mean.copy_(torch.as_tensor(fm, dtype=torch.float32))
                    module.feat_scale.copy_(torch.as_tensor(1.0 / fs, dtype=torch.float32))
            module.to(device)

            def split(idx):
                if idx is None:
                    return None
                x = torch.as_tensor(np.ascontiguousarray(P[idx])).to(device)
                yt = torch.as_tensor(targets_std[idx]).to(device)
                f = None if feats is None else torch.as_tensor(feats[idx]).to(device)
                t = None
                if teacher_t is not None and idx is tr:
                    t = torch.as_tensor(teacher_t[idx], dtype=torch.float32).to(device)
                return training._Data(x, yt, f, t)

            train_data, val_data = split(tr), split(va)
            teacher_fn = None if teacher_fn_maker is None else teacher_fn_maker(device)
            log = self._logger(where) if self.verbose else None
            epochs, time_budget = self.max_epochs, None
            if self.max_time is not None:
                time_budget = self._plan_epochs(module, train_data, val_data, spec, teacher_fn,
                                                training, started, where)
                epochs = time_budget["epochs"]
            history = training.train_module(module, train_data, val_data, spec, rng,
                                            teacher_fn=teacher_fn, epochs=epochs, log=log)
            best_epoch = None
            if val_data is not None:
                losses = [r["val_loss"] for r in history]
                best_epoch = int(np.argmin(losses)) + 1
            pruning = None
            if self.prune_amount > 0:
                pruning, more = self._prune(module, train_data, val_data, spec, rng,
                                            teacher_fn, training, log)
                history += more
            module.eval()
            self.n_nonzero_params_ = training.count_nonzero(module) + self._fixed_params()

        self.module_ = module
        self.device_ = str(device)
        self.history_ = history
        self.best_epoch_ = best_epoch
        self.n_epochs_ = sum(r["phase"] == "train" for r in history)
        self.pruning_ = pruning
        self.time_budget_ = time_budget
        self.n_params_, self._network_macs = arch_mod.count(arch)
        self.n_params_ += self._fixed_params()
        return self

    # -- what the fitted model costs: the network, times the test-time views ---------
    @property
    def n_macs_(self):
        """Multiply-accumulates of one prediction, every test-time view (``tta``) included."""
        return self._network_macs * len(self._views())

    @property
    def architecture_(self):
        """Readable summary: layers, shapes, parameters and MACs (and test-time views)."""
        from .architectures import describe

        extra = [e for e in (self._describe_extra(),) if e]
        views = len(self._views())
        if views > 1:
            extra.append(
                f"test-time flips tta={self.tta!r}: {views} views per prediction, "
                f"{self.n_macs_:,} MACs ({views} x {self._network_macs:,}); no parameters"
            )
        return describe(self.module_.arch, "\n".join(extra) or None)

    def _views(self):
        """The test-time views of ``tta`` (validated here: it is read at predict time)."""
        if self.tta not in TTA_VIEWS:
            raise ValueError(
                f"{type(self).__name__}: tta={self.tta!r} is not one of None, 'hflip' (the "
                "image and its left-right mirror) or 'flips' (also the up-down flips)."
            )
        return TTA_VIEWS[self.tta]

    # -- pieces of fit --------------------------------------------------------------
    def _plan_epochs(self, module, train_data, val_data, spec, teacher_fn, training, started,
                     where):
        """The number of epochs whose whole schedule ends within ``max_time``."""
        epoch_s = training.time_epoch(module, train_data, val_data, spec, teacher_fn)
        spent = time.perf_counter() - started
        prune = self.prune_epochs if self.prune_amount > 0 else 0
        # 5 % held back for the per-epoch noise of a shared machine and the final steps
        fit = int((0.95 * self.max_time - spent) // epoch_s) - prune
        if fit < 1:
            warnings.warn(
                f"{where}: max_time={self.max_time:g} s leaves time for less than one epoch "
                f"(one epoch takes about {epoch_s:.2f} s, {spent:.2f} s went to preparing the "
                f"data{f', and {prune} prune epochs follow' if prune else ''}); training "
                "one epoch anyway. Raise max_time, or use fewer images or a smaller batch "
                "count per epoch.", UserWarning, stacklevel=3)
        return {"max_time": float(self.max_time), "epoch_seconds": epoch_s,
                "seconds_before_training": spent, "epochs": max(1, fit), "prune_epochs": prune}

    def _bins(self):  # label-distribution bins (0: a plain output layer)
        return 0

    def _head_units(self, n_features=0):
        if self.head_units != "auto":
            return int(self.head_units)
        if self.head == "dense":
            return 0
        units = 8 if self.max_params < 2000 else 16
        # a hybrid's features each cost `units` weights: none when that passes 10% of the
        # budget (fewer units would squeeze the CNN's features through a bottleneck)
        return 0 if n_features * units > 0.1 * self.max_params else units

    def _stratify(self, targets, n_val):
        return None

    def _standardize(self, targets, tr):
        """Standardised targets and ``(mean, scale)`` (regression); classes are kept."""
        return targets, None

    def _teacher(self, X, targets, tr, augment, scaler, where):
        return None, None

    def _train_spec(self, training, augment, n_out):
        rho = self.rho
        if rho == "auto":
            rho = 0.5 if self.optimizer == "asam" else 0.05
        return training.TrainSpec(
            task=self._task, n_outputs=n_out, max_epochs=self.max_epochs,
            batch_size=self.batch_size, learning_rate=float(self.learning_rate),
            weight_decay=float(self.weight_decay), schedule=self.schedule,
            patience=self.patience, loss=getattr(self, "loss", None),
            huber_delta=float(getattr(self, "huber_delta", 1.0)),
            label_sigma=float(getattr(self, "label_sigma", 0.5)), optimizer=self.optimizer,
            rho=float(rho), augment=augment, target_noise=float(getattr(self, "target_noise", 0)),
            label_smoothing=float(getattr(self, "label_smoothing", 0)),
            mixup=float(self.mixup), alpha=float(self.alpha),
        )

    def _logger(self, where):
        def log(r):
            val = "" if r["val_loss"] is None else f" val {r['val_loss']:.4f}"
            print(f"[{where}] {r['phase']} epoch {r['epoch']}: train {r['train_loss']:.4f}{val} "
                  f"lr {r['lr']:.2e} {r['seconds']:.2f}s", flush=True)
        return log

    def _prune(self, module, train_data, val_data, spec, rng, teacher_fn, training, log):
        on = "validation" if val_data is not None else "training"
        data = val_data if val_data is not None else train_data
        bs = max(256, spec.batch_size)
        before = (training.evaluate(module, data, spec, bs), self._metric(module, data, training))
        nz_before = training.count_nonzero(module)
        masks = training.magnitude_masks(module, float(self.prune_amount))
        pruned = (training.evaluate(module, data, spec, bs), self._metric(module, data, training))
        more = []
        if self.prune_epochs > 0:
            more = training.train_module(
                module, train_data, val_data, spec, rng, teacher_fn=teacher_fn, masks=masks,
                epochs=self.prune_epochs, learning_rate=spec.learning_rate / 10,
                schedule="cosine", phase="prune", log=log,
            )
        after = (training.evaluate(module, data, spec, bs), self._metric(module, data, training))
        name = self._metric_name
        return {
            "amount": float(self.prune_amount), "on": on,
            "n_nonzero_before": nz_before, "n_nonzero_after": training.count_nonzero(module),
            "loss_before": before[0], "loss_pruned": pruned[0], "loss_after": after[0],
            f"{name}_before": before[1], f"{name}_pruned": pruned[1], f"{name}_after": after[1],
        }, more

    def _describe_extra(self):
        return None

    # -- prediction --------------------------------------------------------------------
    def _device(self):
        torch, _, _ = _import_torch(type(self).__name__)
        dev = resolve_device(self.device, type(self).__name__)
        if next(self.module_.parameters()).device != dev:
            self.module_.to(dev)
        return dev

    def _forward(self, X, standardized=False):
        """Validated images -> raw model outputs (numpy float64)."""
        check_is_fitted(self)
        where = type(self).__name__
        X = check_images(X, estimator=self, same_size=True)
        check_image_shape(self, X)
        _, _, training = _import_torch(where)
        views = ((),) if standardized else self._views()
        feats = self._features(X, fit=False)
        with torch_context(self.n_jobs):
            dev = self._device()
            bs = 1024 if dev.type == "cuda" else 256
            return training.predict_module(self.module_, pixels(X), feats, dev, bs,
                                           standardized=standardized, views=views)

    def __sklearn_is_fitted__(self):
        return hasattr(self, "module_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags

    # -- pickling: the network travels as its architecture and numpy weights ---------
    def __getstate__(self):
        state = self.__dict__.copy()
        module = state.get("module_")
        if module is not None and not isinstance(module, dict):
            state["module_"] = {
                "__cvfeat_module__": 1,
                "arch": dict(module.arch),
                "state": {k: v.detach().cpu().numpy().copy()
                          for k, v in module.state_dict().items()},
            }
        return state

    def __setstate__(self, state):
        module = state.get("module_")
        if isinstance(module, dict) and module.get("__cvfeat_module__"):
            torch, arch_mod, _ = _import_torch(type(self).__name__)
            net = arch_mod.build_module(module["arch"])
            net.load_state_dict({k: torch.as_tensor(v) for k, v in module["state"].items()})
            net.eval()
            state["module_"] = net
        self.__dict__.update(state)


def _fit_teacher(teacher, X, y, tr, where):
    """The fitted teacher estimator (``teacher_``), or None for an array or no teacher.

    A fitted teacher is used as it is. An unfitted scikit-learn estimator (one that
    ``check_is_fitted`` refuses) is cloned and the clone fitted on the student's
    training rows ``tr`` (never its validation rows); the user's object is untouched.
    Objects that are not scikit-learn estimators are trusted to be fitted.
    """
    from sklearn.base import BaseEstimator, clone
    from sklearn.exceptions import NotFittedError

    if teacher is None or not hasattr(teacher, "predict"):
        return None
    if not isinstance(teacher, BaseEstimator):
        return teacher
    try:
        check_is_fitted(teacher)
        return teacher
    except NotFittedError:
        pass
    if not hasattr(teacher, "fit"):
        raise TypeError(f"{where}: the teacher {type(teacher).__name__} is not fitted and has "
                        "no fit method; pass a fitted teacher or an estimator to fit.")
    fitted = clone(teacher)
    try:
        fitted.fit(X[tr], np.asarray(y)[tr])
    except Exception as exc:
        raise ValueError(
            f"{where}: the teacher {type(teacher).__name__} could not be fitted on the "
            f"training images ({type(exc).__name__}: {exc}). A teacher must take images like "
            "X: a larger MicroCNNRegressor, or a cvfeat pipeline such as "
            "make_pipeline(HOG(), StandardScaler(), SVR())."
        ) from exc
    return fitted


def _teacher_predict(teacher, X):
    try:
        return teacher.predict(X)
    except Exception as exc:
        raise type(exc)(
            f"the teacher {type(teacher).__name__} failed to predict on the training images "
            f"({exc}); it must be fitted on images like X (same size and colour mode)."
        ) from exc
