"""The export's model card (``README.md``): where the model comes from, what it scored, what that means."""

from __future__ import annotations

import json

import optuna
from optuna.trial import FrozenTrial

from automel._version import versions


def model_card(study: optuna.Study, trial: FrozenTrial, config: dict, valid_acc: float | None, kind: str = "trial",
               members: list[dict] | None = None) -> str:
    """The card of an export of ``kind`` (``trial``, ``refit`` or ``ensemble``) that comes from ``trial``;
    ``config`` is the (first) model's ``config.json``, ``members`` the export's entries in ``export.json``."""
    dataset = config["dataset"]
    params = "\n".join(f"| `{k}` | `{v}` |" for k, v in sorted(config["params"].items()))
    synthetic = " — synthetic data, not real speech" if dataset.get("kind") == "synthetic" else ""
    chosen = config["params"]
    soft = {**versions()}
    return f"""# automel model: study `{study.study_name}`, {_what(kind, trial, members)}

- Data set: `{dataset.get('name')}` [{dataset.get('kind')}]{synthetic}, fingerprint `{dataset.get('fingerprint')}`
  ({dataset.get('speakers')} speakers, {dataset.get('train_utterances')} training and
  {dataset.get('test_utterances')} test utterances), from `{dataset.get('root')}`
- Model: encoder `{chosen['encoder']}`, pooling `{chosen['pooling']}`, head `{chosen['head']}`
{_scores(kind, trial, config, valid_acc, members)}
- Software: automel {soft['automel']}, torch {soft['torch']}, optuna {soft['optuna']}

`automel predict {{this folder}} --data DIR` writes a submission; `config.json` rebuilds the model.

## Parameters{' of the best member' if kind == 'ensemble' else ''}

| parameter | value |
| --- | --- |
{params}

## Training metrics

```json
{json.dumps(config.get('result', {}), indent=2)}
```
"""


def _what(kind: str, trial: FrozenTrial, members: list[dict] | None) -> str:
    if kind == "ensemble":
        return "ensemble of trials " + ", ".join(str(m["trial"]) for m in members or [])
    return f"trial {trial.number}" + (" refit on all labelled data" if kind == "refit" else "")


def _scores(kind: str, trial: FrozenTrial, config: dict, valid_acc: float | None, members: list[dict] | None) -> str:
    value = f"{trial.value:.4f}" if trial.value is not None else "none (it did not reach the last rung)"
    if kind == "trial":
        return (f"- Validation accuracy: {value} recorded by the trial, {valid_acc:.4f} re-measured from these files\n"
                f"- Training: {trial.user_attrs.get('steps')} steps "
                f"(best at step {trial.user_attrs.get('best_step')}),\n"
                f"  {trial.user_attrs.get('seconds')} s, seed {trial.user_attrs.get('seed')}")
    refit = config.get("refit", {})
    lines = [f"- Comes from trial {trial.number}, whose validation accuracy was {value}."]
    if refit:
        lines.append(f"- Refit on training + validation utterances ({refit.get('utterances')}) for "
                     f"{refit.get('steps')} steps: **this model has no held-out score**; the trial's validation "
                     f"accuracy is the estimate.")
    if kind == "ensemble":
        weights = ", ".join(f"trial {m['trial']}: {m['weight']:.2f}" for m in members or [])
        lines.append(f"- Ensemble (greedy selection on validation probabilities), weights {weights}.")
    return "\n".join(lines)
