"""The training loop: AdamW, linear warm-up then cosine decay, gradient clipping, periodic validation.

Batches come straight from the feature store (random crops for training, full-length utterances for
validation). At each validation the best weights are *copied* (the course sample kept a reference, so its
"best" model was really the last one) and the callbacks decide whether to go on — that is where Optuna's
pruning plugs in without this loop knowing about Optuna.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from automel.data.augment import Augmenter
from automel.data.batching import Batch, RandomCrops, full_length_batches
from automel.data.split import Split
from automel.data.store import FeatureStore
from automel.errors import NonFiniteLossError
from automel.layers import unpadded
from automel.plugin import set_head_progress
from automel.train.config import RunSettings, TrainParams
from automel.train.device import (
    autocast,
    autocast_dtype,
    deterministic_algorithms,
    prepare_device,
    release_memory,
)

# Called after each validation with the step and metrics; returns True to stop training.
Callback = Callable[[int, dict[str, float]], bool]


ProgressHook = Callable[[int, dict[str, float]], None]


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


def lr_lambda(steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up to 1, then cosine decay to 0 (the course's ``get_cosine_schedule_with_warmup``)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, steps - warmup_steps)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))

    return factor


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
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(settings.steps, params.warmup_for(settings.steps)))
    amp_dtype = autocast_dtype(device, settings.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    batches = RandomCrops(store, split.train, params.batch_size, params.segment_len, seed=settings.seed)
    augment = Augmenter.from_params(params, settings.seed)  # training batches only, never validation
    result = TrainResult(-1.0, 0, 0, 0.0, False, {})
    window_losses: list[torch.Tensor] = []
    correct = torch.zeros((), device=device)
    seen = 0
    started = time.perf_counter()
    model.train()
    trainer = _Stepper(model, step_fn, optimizer, scaler, settings.grad_clip, amp_dtype)
    for step in range(1, settings.steps + 1):
        batch = next(batches)
        batch.x = augment(batch.x, batch.mask)
        _set_progress(model, step / settings.steps)
        loss, hits = trainer.step(batch)
        schedule.step()
        # Keep losses on the device and look at them only every log_every steps: no per-step sync on GPU.
        window_losses.append(loss)
        correct += hits
        seen += len(batch.labels)
        last = step == settings.steps
        if step % settings.log_every and step % settings.valid_every and not last:
            continue
        if settings.deadline is not None and time.monotonic() >= settings.deadline and not last:
            # Out of time: end here like a last step (validated, if the run validates at all).
            result.stopped_by_deadline, last = True, True
        train_loss = _check_window(window_losses, step)
        metrics = {"step": float(step), "loss": train_loss, "train_acc": float(correct) / max(seen, 1),
                   "lr": float(schedule.get_last_lr()[0]), "seconds": time.perf_counter() - started}
        window_losses, correct, seen = [], torch.zeros((), device=device), 0
        if (step % settings.valid_every == 0 or last) and settings.validate:
            validation_started = time.perf_counter()
            metrics.update(_validate(model, store, split, device, amp_dtype))
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
        elif on_progress:
            on_progress(step, metrics)
        result.steps = step
        if last:
            break
    if not settings.validate:  # a refit on all labelled data: no held-out score, keep the last weights
        result.best_step = result.steps
        result.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    result.seconds = time.perf_counter() - started
    del optimizer, schedule, trainer
    if settings.compile:
        torch._dynamo.reset()  # else each architecture of a search adds a compiled entry until dynamo gives up
    release_memory(device)
    return result


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
              amp_dtype: torch.dtype | None) -> dict[str, float]:
    if len(split.valid) == 0:  # a data set with one utterance per speaker: fall back to training data
        acc, loss = evaluate(model, store, split.train, device, amp_dtype)
    else:
        acc, loss = evaluate(model, store, split.valid, device, amp_dtype)
    return {"valid_acc": acc, "valid_loss": loss}


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
             amp_dtype: torch.dtype | None = None) -> tuple[float, float]:
    """Accuracy and mean cross-entropy on full-length utterances ``indices`` (deterministic).

    Counts add up on the device; the host reads them once, at the end.
    """
    model.eval().to(device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    for batch in eval_batches(store, indices, device):
        with unpadded(batch.mask, not batch.padded), autocast(device, amp_dtype):
            logits = model(batch.x, batch.mask).float()
        correct += (logits.argmax(-1) == batch.labels).sum()
        total_loss += F.cross_entropy(logits, batch.labels, reduction="sum").double()
        count += len(batch.labels)
    return int(correct) / max(count, 1), float(total_loss) / max(count, 1)


@torch.no_grad()
def predict(model: torch.nn.Module, store: FeatureStore, indices: np.ndarray, device: torch.device,
            amp_dtype: torch.dtype | None = None) -> np.ndarray:
    """Predicted speaker ids for store rows ``indices``, in the order given (one device read at the end)."""
    model.eval().to(device)
    rows, labels = [], []
    for batch in eval_batches(store, np.asarray(indices), device):
        with unpadded(batch.mask, not batch.padded), autocast(device, amp_dtype):
            labels.append(model(batch.x, batch.mask).argmax(-1))
        rows.append(batch.index)
    predictions = np.empty(len(indices), dtype=np.int64)
    if not rows:
        return predictions
    position = {int(i): k for k, i in enumerate(np.asarray(indices).tolist())}
    for row, label in zip(torch.cat(rows).tolist(), torch.cat(labels).cpu().tolist(), strict=True):
        predictions[position[row]] = label
    return predictions
