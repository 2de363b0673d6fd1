"""The training loop: AdamW, linear warm-up then cosine decay, gradient clipping, periodic validation.

Batches come straight from the feature store (random crops for training, full-length utterances for
validation). At each validation the best weights are *copied* (the course sample kept a reference, so its
"best" model was really the last one) and the callbacks decide whether to go on — that is where Optuna's
pruning plugs in without this loop knowing about Optuna.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from automel.data.augment import Augmenter
from automel.data.batching import Batch, RandomCrops, full_length_batches
from automel.data.split import Split
from automel.data.store import FeatureStore
from automel.errors import DataError, NonFiniteLossError
from automel.layers import unpadded
from automel.plugin import set_head_progress
from automel.train.averaging import BN_BATCHES, MIN_STEPS, TailAverage, reestimate_batchnorm
from automel.train.config import RunSettings, TrainParams
from automel.train.device import (
    autocast,
    autocast_dtype,
    deterministic_algorithms,
    prepare_device,
    release_memory,
)
from automel.train.large_margin import MARGIN_SCALE, LargeMarginFinish, boost_margin
from automel.train.schedule import Schedule, cosine_factor
from automel.train.shift import shifted

ANNEALED = 0.01  # a run whose last rate is at most this share of the peak ended annealed

# Called after each validation with the step and metrics; returns True to stop training.
Callback = Callable[[int, dict[str, float]], bool]


ProgressHook = Callable[[int, dict[str, float]], None]

# Changes a validation batch's features ``(x (B, T, F), mask (B, T), batch number) -> x``.
Transform = Callable[[Tensor, Tensor, int], Tensor]


@dataclass
class TrainResult:
    """The outcome of :func:`fit`; ``best_state`` is a CPU copy of the best validation weights."""

    best_valid_acc: float
    best_step: int
    steps: int
    seconds: float
    stopped_by_callback: bool
    best_state: dict[str, torch.Tensor]
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_by_deadline: bool = False  # ``settings.deadline`` passed before the last step
    validation_seconds: float = 0.0  # of ``seconds``, spent validating
    planned_steps: int = 0  # ``settings.steps``: what was planned, against ``steps``, what ran
    schedule: str = "steps"  # what set the decay at the end: "steps", or "clock" (the deadline)
    final_lr: float = 0.0  # the rate of the last step
    annealed: bool = False  # the last step's rate was at most 1 % of the peak
    averaging: dict[str, Any] | None = None  # the tail average, when one was made (see _finish_average)
    large_margin: dict[str, Any] | None = None  # the large-margin finish, when the run reached it


def lr_lambda(steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up to 1, then cosine decay to 0 over ``steps`` (:func:`automel.train.schedule.cosine_factor`)."""
    return lambda step: cosine_factor(step, steps, warmup_steps)


def fit(model: torch.nn.Module, store: FeatureStore, split: Split, params: TrainParams, settings: RunSettings,
        device: torch.device, callbacks: Sequence[Callback] = (), on_progress: ProgressHook | None = None
        ) -> TrainResult:
    """Train ``model`` (``model(x, mask, labels) -> logits``) for ``settings.steps`` steps; see module docs."""
    with deterministic_algorithms(settings.deterministic):
        return _fit(model, store, split, params, settings, device, callbacks, on_progress)


def _fit(model: torch.nn.Module, store: FeatureStore, split: Split, params: TrainParams, settings: RunSettings,
         device: torch.device, callbacks: Sequence[Callback], on_progress: ProgressHook | None) -> TrainResult:
    torch.manual_seed(settings.seed)
    prepare_device(device, settings.deterministic)
    model.to(device)
    store = store.on(device)
    step_fn = torch.compile(model) if settings.compile else model
    # Fused AdamW: one kernel for the whole update instead of a handful per parameter; on a CPU the step
    # takes a third of the time of the default loop over parameters (bench/fastpath_ab.py).
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=params.weight_decay,
                                  fused=True if device.type in ("cpu", "cuda") else None)
    schedule = Schedule(optimizer, settings.steps, params.warmup_for(settings.steps), settings.deadline)
    average = TailAverage(model, settings.average) if settings.average > 1 and settings.steps >= MIN_STEPS else None
    finish = LargeMarginFinish(settings.large_margin, params.segment_len)
    amp_dtype = autocast_dtype(device, settings.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    batches = RandomCrops(store, split.train, params.batch_size, params.segment_len, seed=settings.seed)
    augment = Augmenter.for_run(params, settings, store)  # training batches only, never validation
    result = TrainResult(-1.0, 0, 0, 0.0, False, {}, planned_steps=settings.steps)
    window_losses: list[torch.Tensor] = []
    correct = torch.zeros((), device=device)
    seen = 0
    started = time.perf_counter()
    model.train()
    trainer = _Stepper(model, step_fn, optimizer, scaler, settings.grad_clip, amp_dtype)
    for step in range(1, settings.steps + 1):
        batch = next(batches)
        batch.x = augment(batch.x, batch.mask)
        schedule.set_step(step - 1)
        if finish.due(schedule.progress):  # longer crops from here on (the next batch), and a larger margin
            batches = RandomCrops(store, split.train, params.batch_size, finish.segment, seed=settings.seed + 2)
            result.large_margin = {"from_step": step + 1, "segment_len": finish.segment,
                                   "margin_heads": boost_margin(model, MARGIN_SCALE)}
        _set_progress(model, step / settings.steps)
        loss, hits = trainer.step(batch)
        if average is not None:
            average.offer(schedule.progress)
        # Keep losses on the device and look at them only every log_every steps: no per-step sync on GPU.
        window_losses.append(loss)
        correct += hits
        seen += len(batch.labels)
        last = step == settings.steps
        if schedule.finished and schedule.by_clock and not last:
            # Annealed by the clock: the deadline is here, and further steps at a zero rate change nothing.
            result.stopped_by_deadline, last = True, True
        if step % settings.log_every and step % settings.valid_every and not last:
            continue
        if settings.deadline is not None and time.monotonic() >= settings.deadline and not last:
            # Out of time: end here like a last step (validated, if the run validates at all).
            result.stopped_by_deadline, last = True, True
        train_loss = _check_window(window_losses, step)
        metrics = {"step": float(step), "loss": train_loss, "train_acc": float(correct) / max(seen, 1),
                   "lr": schedule.last_lr(), "seconds": time.perf_counter() - started}
        window_losses, correct, seen = [], torch.zeros((), device=device), 0
        if (step % settings.valid_every == 0 or last) and settings.validate:
            validation_started = time.perf_counter()
            metrics.update(_validate(model, store, split, device, amp_dtype, settings.objective))
            result.validation_seconds += time.perf_counter() - validation_started
            _keep_best(result, model, step, metrics["valid_acc"])
            result.history.append(metrics)
            if on_progress:
                on_progress(step, metrics)
            if any([cb(step, metrics) for cb in callbacks]):
                result.stopped_by_callback = True
                result.steps = step
                break
            model.train()
        else:
            if not settings.validate:  # no validation rows: the log rows are the run's curve (metrics.jsonl)
                result.history.append(metrics)
            if on_progress:
                on_progress(step, metrics)
        result.steps = step
        if last:
            break
    if finish.started:
        boost_margin(model, 1.0)  # the model leaves with its own margin (inference ignores it anyway)
    result.schedule, result.final_lr = ("clock" if schedule.by_clock else "steps"), schedule.last_lr()
    result.annealed = schedule.factor <= ANNEALED
    if not settings.validate:  # a refit on all labelled data: no held-out score, keep the last weights
        result.best_step = result.steps
        result.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    if average is not None and not result.stopped_by_callback:
        _finish_average(result, average, schedule.progress, model, store, split, params, settings, device, amp_dtype)
    result.seconds = time.perf_counter() - started
    del optimizer, schedule, trainer, average
    if settings.compile:
        torch._dynamo.reset()  # else each architecture of a search adds a compiled entry until dynamo gives up
    release_memory(device)
    return result


def _finish_average(result: TrainResult, average: TailAverage, progress: float, model: torch.nn.Module,
                    store: FeatureStore, split: Split, params: TrainParams, settings: RunSettings,
                    device: torch.device, amp_dtype: torch.dtype | None) -> None:
    """Weigh the tail average against the last weights, and keep it where it wins.

    BatchNorm statistics of the average are re-estimated on un-augmented training crops. A run that
    validates compares it with the last weights on validation (accuracy, then loss) and records whether it
    won; the run's model becomes the average when it also beats the best checkpoint. A run without
    validation (a refit) keeps the average when ``settings.average_trusted`` says a validated run of the
    same configuration found it better (the refit's source trial).
    """
    averaged = average.finish(progress)
    if averaged is None:
        return
    crops = RandomCrops(store, split.train, params.batch_size, params.segment_len, seed=settings.seed + 1)
    bn_batches = reestimate_batchnorm(averaged, ((b.x, b.mask) for b in (next(crops) for _ in range(BN_BATCHES))))
    info: dict[str, Any] = {"snapshots": average.n_averaged, "bn_batches": bn_batches}
    state = {k: v.detach().to("cpu", copy=True) for k, v in averaged.state_dict().items()}
    if settings.validate and result.history:
        last = result.history[-1]
        scored = _validate(averaged, store, split, device, amp_dtype, settings.objective)
        wins = (scored["valid_acc"], -scored["valid_loss"]) > (last["valid_acc"], -last["valid_loss"])
        info.update(valid_acc=scored["valid_acc"], valid_loss=scored["valid_loss"], last_valid_acc=last["valid_acc"],
                    last_valid_loss=last["valid_loss"], wins=wins, used=scored["valid_acc"] > result.best_valid_acc,
                    **{k: v for k, v in scored.items() if k.startswith("valid_acc_")})
        if info["used"]:
            result.best_valid_acc, result.best_state = scored["valid_acc"], state
    elif not settings.validate:
        info["used"] = settings.average_trusted
        if settings.average_trusted:
            result.best_state = state
    result.averaging = info


def _set_progress(model: torch.nn.Module, progress: float) -> None:
    """The model's own ``set_progress`` (a margin warm-up), or the head's for a bare module tree."""
    setter = getattr(model, "set_progress", None)
    if callable(setter):
        setter(progress)
    else:
        set_head_progress(getattr(model, "head", model), progress)


@dataclass
class _Stepper:
    """One optimisation step on a batch already on the device, without a single host-device sync.

    Loss and correct count stay on the device (``(loss, hits)``, 0-d tensors); the host looks at them
    only every ``log_every`` steps. Whether the batch is padded was decided on the host when it was cut.
    """

    model: torch.nn.Module
    step_fn: Callable[..., torch.Tensor]
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    grad_clip: float
    amp_dtype: torch.dtype | None

    def step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        device = batch.x.device
        with unpadded(batch.mask, not batch.padded), autocast(device, self.amp_dtype):
            logits = self.step_fn(batch.x, batch.mask, batch.labels)
            loss = F.cross_entropy(logits.float(), batch.labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach(), (logits.detach().argmax(-1) == batch.labels).sum()


def _check_window(losses: list[torch.Tensor], step: int) -> float:
    """Mean loss of the window; raise at the first non-finite one, naming its step."""
    stacked = torch.stack(losses).float().cpu()
    bad = (~torch.isfinite(stacked)).nonzero()
    if len(bad):
        first = int(bad[0])
        raise NonFiniteLossError(step - len(losses) + 1 + first, float(stacked[first]))
    return float(stacked.mean())


def _keep_best(result: TrainResult, model: torch.nn.Module, step: int, valid_acc: float) -> None:
    if valid_acc > result.best_valid_acc:
        result.best_valid_acc, result.best_step = valid_acc, step
        result.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _validate(model: torch.nn.Module, store: FeatureStore, split: Split, device: torch.device,
              amp_dtype: torch.dtype | None, objective: str = "clean") -> dict[str, float]:
    """``valid_acc``/``valid_loss``; with ``objective="robust"`` the mean of the clean scores and those on
    shifted copies (:mod:`automel.train.shift`), each also given on its own (``valid_acc_clean`` ...)."""
    # A data set with one utterance per speaker has no validation utterances: fall back to training data.
    indices = split.valid if len(split.valid) else split.train
    acc, loss = evaluate(model, store, indices, device, amp_dtype)
    if objective != "robust":
        return {"valid_acc": acc, "valid_loss": loss}
    shifted_acc, shifted_loss = evaluate(model, store, indices, device, amp_dtype, transform=shifted)
    return {"valid_acc": (acc + shifted_acc) / 2, "valid_loss": (loss + shifted_loss) / 2,
            "valid_acc_clean": acc, "valid_acc_shifted": shifted_acc}


def eval_batches(store: FeatureStore, indices: np.ndarray, device: torch.device) -> Iterator[Batch]:
    """Full-length, length-bucketed batches of ``indices`` cut from ``store`` on ``device``.

    A GPU takes far larger batches than the CPU defaults (64 utterances, 32k frames): validation and
    prediction would otherwise be a long row of small kernels.
    """
    if device.type == "cuda":
        return full_length_batches(store.on(device), indices, max_frames=262_144, max_batch=512)
    return full_length_batches(store.on(device), indices)


@torch.no_grad()
def evaluate(model: torch.nn.Module, store: FeatureStore, indices: np.ndarray, device: torch.device,
             amp_dtype: torch.dtype | None = None, transform: Transform | None = None) -> tuple[float, float]:
    """Accuracy and mean cross-entropy on full-length utterances ``indices`` (deterministic).

    ``transform(x, mask, batch_number)`` changes each batch's features first (a deterministic shift).
    Counts add up on the device; the host reads them once, at the end.
    """
    model.eval().to(device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    for number, batch in enumerate(eval_batches(store, indices, device)):
        x = batch.x if transform is None else transform(batch.x, batch.mask, number)
        with unpadded(batch.mask, not batch.padded), autocast(device, amp_dtype):
            logits = model(x, batch.mask).float()
        correct += (logits.argmax(-1) == batch.labels).sum()
        total_loss += F.cross_entropy(logits, batch.labels, reduction="sum").double()
        count += len(batch.labels)
    return int(correct) / max(count, 1), float(total_loss) / max(count, 1)


@torch.no_grad()
def predict(model: torch.nn.Module, store: FeatureStore, indices: np.ndarray, device: torch.device,
            amp_dtype: torch.dtype | None = None) -> np.ndarray:
    """Predicted speaker ids for store rows ``indices``, in the order given (one device read at the end)."""
    model.eval().to(device)
    rows, labels, finite = [], [], []
    for batch in eval_batches(store, np.asarray(indices), device):
        with unpadded(batch.mask, not batch.padded), autocast(device, amp_dtype):
            logits = model(batch.x, batch.mask)
        labels.append(logits.argmax(-1))
        finite.append(torch.isfinite(logits).all(-1))  # read with the labels: no extra host sync
        rows.append(batch.index)
    predictions = np.empty(len(indices), dtype=np.int64)
    if not rows:
        return predictions
    broken = ~torch.cat(finite).cpu()
    if bool(broken.any()):  # argmax of NaN scores is a speaker: never write it as a prediction
        first = int(torch.cat(rows)[broken.nonzero()[0, 0]])
        raise DataError(f"{store.paths[first]}: the model's scores are not finite ({int(broken.sum())} utterances); "
                        f"its weights or this input are broken")
    position = {int(i): k for k, i in enumerate(np.asarray(indices).tolist())}
    for row, label in zip(torch.cat(rows).tolist(), torch.cat(labels).cpu().tolist(), strict=True):
        predictions[position[row]] = label
    return predictions
