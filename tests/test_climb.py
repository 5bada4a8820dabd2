"""honed climb: the acceptance rule (simulated where the truth is known, and on a tiny model), the outputs,
resume after kill -9, and the bad inputs (one line, exit 2, the climb folder left as it was)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from scipy import stats

from honed.cli import main
from honed.climb.acceptance import accepts, clearly_losing, paired
from honed.climb.spec import parse_budget
from honed.errors import HonedError
from honed.recipe import load_recipe
from honed.tune.study import sqlalchemy_url
from tests.conftest import REPO, text_rows, tiny_recipe

ALPHA = 0.1


def test_paired_difference_matches_scipys_paired_t_test() -> None:
    a, b = [0.81, 0.83, 0.80, 0.84], [0.80, 0.80, 0.79, 0.82]
    diff = paired(a, b, ALPHA)
    expected = stats.ttest_rel(a, b, alternative="greater")
    assert diff.p == pytest.approx(expected.pvalue)
    d = np.subtract(a, b)
    half = stats.t.ppf(1 - ALPHA, 3) * d.std(ddof=1) / 2.0
    assert (diff.mean, diff.low, diff.high) == pytest.approx((d.mean(), d.mean() - half, d.mean() + half))
    flipped = paired(a, b, ALPHA, sign=-1.0)  # a metric to minimise: the same pairs are a loss
    assert flipped.mean == pytest.approx(-d.mean()) and flipped.p == pytest.approx(1 - expected.pvalue)


@pytest.mark.parametrize("effect", [0.0, 0.02])
def test_acceptance_rate_is_alpha_under_noise_and_the_t_tests_power_under_a_real_gain(effect: float) -> None:
    """3 seeds, paired differences with sd 0.01: with no effect the rule accepts about alpha of the time
    (the false-acceptance rate it promises); with +0.02 as often as the noncentral t distribution says."""
    rng = np.random.default_rng(0)
    n, sd, trials = 3, 0.01, 4000
    accepted = 0
    for _ in range(trials):
        seed_effect = rng.normal(0.8, 0.03, n)  # the seeds' own spread cancels in the pairs
        base = seed_effect + rng.normal(0, sd / np.sqrt(2), n)
        cand = seed_effect + effect + rng.normal(0, sd / np.sqrt(2), n)
        accepted += accepts(paired(list(cand), list(base), ALPHA), ALPHA, n)[0]
    critical = stats.t.ppf(1 - ALPHA, n - 1)
    expected = stats.nct.sf(critical, n - 1, effect / (sd / np.sqrt(n))) if effect else ALPHA
    assert accepted / trials == pytest.approx(expected, abs=0.025)


def test_rule_refuses_incomplete_or_worse_and_stops_clear_losers() -> None:
    assert accepts(paired([0.8], [0.7], ALPHA), ALPHA, 3) == (False, "only 1 of 3 pairs finished")
    ok, why = accepts(paired([0.7, 0.71, 0.72], [0.8, 0.8, 0.8], ALPHA), ALPHA, 3)
    assert not ok and "not an improvement" in why
    assert accepts(paired([0.81, 0.81], [0.80, 0.80], ALPHA), ALPHA, 2)[0]  # the same gain on every pair
    assert clearly_losing(-0.02, 0.01) and not clearly_losing(-0.005, 0.01) and not clearly_losing(-0.5, None)


@pytest.mark.parametrize("text,seconds", [("3h", 10800), ("90m", 5400), ("45s", 45), ("600", 600), (1.5, 1.5)])
def test_budget_strings(text: object, seconds: float) -> None:
    assert parse_budget(text) == seconds


def climb_tree(tiny_bert: str, data: Path, **climb: object) -> dict:
    tree = tiny_recipe(tiny_bert, data, data.parent / "unused", optim__lr=1e-5, train__epochs=4)
    tree.pop("output_dir")
    tree["report"] = {"enabled": False}
    tree["climb"] = {"stages": {"optimisation": {"max_candidates": 2}}, "seeds": 2, "pairing": "seeds",
                     "lr_find": False, "candidates": [
                         {"stage": "optimisation", "name": "lr 3e-3", "overrides": {"optim.lr": 3e-3}, "group": "lr"},
                         {"stage": "optimisation", "name": "eval batch 4", "overrides": {"train.eval_batch_size": 4}},
                     ], **climb}
    return tree


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "reviews.csv"
    text_rows(160).to_csv(path, index=False)
    return path


def test_a_real_gain_is_kept_and_a_change_that_changes_nothing_is_not(tiny_bert: str, data: Path,
                                                                       tmp_path: Path) -> None:
    """Truth known: lr 1e-5 leaves the tiny model at chance, 3e-3 learns the words; the eval batch size
    changes no prediction. The ladder, leaderboard, best recipe and best model say so."""
    from honed.climb.run import climb

    out = tmp_path / "climb"
    result = climb(climb_tree(tiny_bert, data), output=out)
    ladder = result.summary["ladder"]
    assert [r["change"] for r in ladder] == ["baseline", "lr 3e-3"]
    assert ladder[1]["delta_val"]["mean"] > 0.2 and ladder[1]["delta_val"]["p"] < ALPHA
    board = pd.read_csv(out / "leaderboard.csv")
    noop = board[board["change"] == "eval batch 4"].iloc[0]
    assert not noop["accepted"] and noop["delta_val"] == 0.0 and "not an improvement" in noop["reason"]
    screened, kept = board[(board["change"] == "lr 3e-3")].itertuples()  # p not below alpha / 2 screened: verified
    assert ALPHA / 2 <= screened.p < ALPHA and kept.accepted and kept.reason.startswith("on fresh pairs: ")
    best = load_recipe(yaml.safe_load((out / "best_recipe.yaml").read_text()))
    assert best.optim.lr == 3e-3 and best.data.train == str((out / "data" / "train.csv").resolve())
    assert (out / "best_model" / "labels.json").is_file() or (out / "best_model" / "config.json").is_file()
    assert "lr 3e-3" in (out / "climb.html").read_text()
    saved = json.loads((out / "climb.json").read_text())
    assert saved["honesty"]["accepted"] == 1 and saved["stopped"] == "done"
    again = climb(climb_tree(tiny_bert, data), output=out)  # a finished climb re-run trains nothing new
    runs = optuna.load_study(study_name="climb-tiny", storage=f"sqlite:///{out / 'climb.db'}").trials
    assert len(runs) == 10 and again.summary["ladder"] == ladder  # 2 baseline, 2x2 screening, 2x2 fresh pairs


def test_the_stages_first_change_skips_fresh_pairs_only_past_a_bonferroni_bound(tiny_bert: str, data: Path,
                                                                                 tmp_path: Path) -> None:
    """Screened alone (1 candidate), lr 3e-3's screening p is below alpha / 1: kept on its screening runs. Screened
    beside the no-op (2 candidates, the test above) the same p is not below alpha / 2: re-run on fresh pairs."""
    from honed.climb.run import climb

    out = tmp_path / "climb"
    result = climb(climb_tree(tiny_bert, data, stages={"optimisation": {"max_candidates": 1}}), output=out)
    (screened, kept) = result.summary["candidates"]
    assert screened["delta_val"]["p"] < ALPHA / 1 and kept["accepted"] and kept["phase"] == "combine"
    assert kept["reason"] == (f"kept on the screening pairs: p {screened['delta_val']['p']:.4f} < {ALPHA:g}/1 "
                              "candidates screened, so no fresh pairs are needed")
    assert kept["val"] == screened["val"] and [r["change"] for r in result.summary["ladder"]] == ["baseline", "lr 3e-3"]
    runs = optuna.load_study(study_name="climb-tiny", storage=f"sqlite:///{out / 'climb.db'}").trials
    assert len(runs) == 4  # 2 baseline, 2 of lr 3e-3: no fresh pairs


def test_kill_9_mid_climb_then_the_same_command_resumes_without_redoing_runs(tiny_bert: str, data: Path,
                                                                                tmp_path: Path) -> None:
    out = tmp_path / "climb"
    recipe = tmp_path / "climb.yaml"
    recipe.write_text(yaml.safe_dump(climb_tree(tiny_bert, data)))
    command = [sys.executable, "-c", "from honed.cli import main; raise SystemExit(main())", "climb", str(recipe),
               "--output", str(out), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    storage = f"sqlite:///{out / 'climb.db'}"
    first = None
    deadline = time.time() + 240
    while first is None and time.time() < deadline and process.poll() is None:
        time.sleep(0.5)
        first = _first_finished(out / "climb.db")
    assert first is not None, "no run finished before the deadline"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert main(["climb", str(recipe), "--output", str(out), "--quiet"]) == 0
    trials = optuna.load_study(study_name="climb-tiny", storage=storage).trials
    complete = [t.user_attrs["key"] for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete.count(first) == 1 and len(complete) == len(set(complete)) == 10
    assert json.loads((out / "climb.json").read_text())["ladder"][1]["change"] == "lr 3e-3"


def _first_finished(db: Path) -> str | None:
    """The run key of the first finished trial, read-only (opening the study here could race the climb's own
    creation of the database's tables)."""
    if not db.is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            row = con.execute("SELECT a.value_json FROM trials t JOIN trial_user_attributes a ON a.trial_id = "
                              "t.trial_id WHERE t.state = 'COMPLETE' AND a.key = 'key' ORDER BY t.number").fetchone()
    except sqlite3.OperationalError:  # no tables yet, or locked for a moment
        return None
    return None if row is None else json.loads(row[0])


def _children(pid: int) -> list[int]:
    """The live child processes of `pid` (read from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def test_sigterm_to_a_climb_with_workers_stops_them_and_gives_their_runs_back(tiny_bert: str, data: Path,
                                                                               tmp_path: Path) -> None:
    out = tmp_path / "climb"
    recipe = tmp_path / "climb.yaml"
    recipe.write_text(yaml.safe_dump(climb_tree(tiny_bert, data)))
    command = [sys.executable, "-c", "from honed.cli import main; raise SystemExit(main())", "climb", str(recipe),
               "--output", str(out), "--quiet", "--workers", "2"]
    process = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    workers: list[int] = []
    deadline = time.time() + 240
    while len(workers) < 2 and time.time() < deadline and process.poll() is None:
        time.sleep(0.5)
        workers = _children(process.pid)
    assert len(workers) == 2, "the climb never ran two workers"
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(timeout=180) == 143, process.stderr.read()
    time.sleep(1.0)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]  # no orphan left running
    trials = optuna.load_study(study_name="climb-tiny", storage=f"sqlite:///{out / 'climb.db'}").trials
    assert not [t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING]  # given back: retried
    assert json.loads((out / "climb.json").read_text())["stopped"] == "interrupted"


BAD = [
    ({"climb": {}}, [], "climb: the section is empty"),
    ({"climb": {"stages": ["dat"]}}, [], "unknown stage 'dat'"),
    ({"climb": {"stages": {"data": {"enabled": False}}}}, [], "no stage is enabled"),
    ({"climb": {"budget": "soon"}}, [], "climb.budget: cannot read 'soon'"),
    ({}, ["--budget", "0"], "--budget: the budget must be more than zero"),
    ({}, ["--trials", "0"], "--trials: expected a number of runs of 1 or more"),
    ({"climb": {"sedes": 3}}, [], "climb.sedes: unknown setting (did you mean 'seeds'?)"),
    ({"climb": {"candidates": [{"name": "x", "overrides": {"optim.lrr": 1e-3}}]}}, [], "climb.candidates.0"),
    ({"climb": {"candidates": [{"name": "t", "techniques": [{"name": "emma"}]}]}}, [], "unknown technique 'emma'"),
    ({}, ["--storage", "postgresql://nobody@127.0.0.1:1/none"], "cannot open the climb's database"),
    ({"climb": {"transfer": "nowhere.csv", "single_model": True, "pairing": "seeds"}}, [],
     "climb.transfer: file 'nowhere.csv' not found"),
    ({"climb": {"transfer": "nowhere.csv"}}, [], "climb.transfer: the rows are for distilling a kept ensemble"),
    ({"climb": {"transfer": "nowhere.csv", "single_model": True}}, [], "climb.transfer: the rows are for"),  # folds
    ({"climb": {"transfer": "nowhere.csv", "single_model": True, "pairing": "seeds", "stages": ["optimisation"]}},
     [], "climb.transfer: the rows are for distilling"),  # no ensemble stage
]


@pytest.mark.parametrize("change,flags,message", BAD)
def test_bad_input_is_one_line_exit_2_and_the_folder_stays(change: dict, flags: list[str], message: str,
                                                           tiny_bert: str, data: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    tree = {**climb_tree(tiny_bert, data), **change}
    if not change:
        tree.pop("climb")
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(yaml.safe_dump(tree))
    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["climb", str(recipe), "--output", str(out), "--quiet", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize("attr,value,message", [("metric", "macro_f1", "made for val macro_f1"),
                                                ("fingerprint", "another", "made for another recipe")])
def test_a_study_made_for_another_recipe_or_metric_is_refused(attr: str, value: str, message: str, tiny_bert: str,
                                                              data: Path, tmp_path: Path) -> None:
    from honed.climb.run import climb
    from honed.climb.store import Store

    out = tmp_path / "climb"
    out.mkdir()
    url = f"sqlite:///{out / 'climb.db'}"
    study = Store(url, "climb-tiny", "fingerprint", "accuracy").study
    study.set_user_attr(attr, value)
    study.tell(study.ask(), 0.5)  # a study with a finished run is another climb's; an empty one is taken over
    with pytest.raises(HonedError, match=message):
        climb(climb_tree(tiny_bert, data), output=out)
    assert sorted(p.name for p in out.iterdir()) == ["climb.db"]


def _shared(tiny_bert: str, data: Path, out: Path, storage: str | None) -> None:
    from honed.climb.run import climb

    tree = climb_tree(tiny_bert, data, study_name=f"climb-{out.name}-{os.getpid()}-{time.time_ns()}")
    result = climb(tree, output=out, workers=2, storage=storage)
    assert [r["change"] for r in result.summary["ladder"]] == ["baseline", "lr 3e-3"]
    url = sqlalchemy_url(storage or f"sqlite:///{out / 'climb.db'}")  # psycopg2 where psycopg 3 is absent
    complete = [t for t in optuna.load_study(study_name=tree["climb"]["study_name"], storage=url).trials
                if t.state == optuna.trial.TrialState.COMPLETE]
    overlapping = [(a, b) for a in complete for b in complete if a.user_attrs["owner"] != b.user_attrs["owner"]
                   and a.datetime_start < b.datetime_complete and b.datetime_start < a.datetime_complete]
    assert len(complete) == 10 and overlapping  # two processes ran runs at the same time


def test_two_worker_processes_share_the_runs(tiny_bert: str, data: Path, tmp_path: Path) -> None:
    _shared(tiny_bert, data, tmp_path / "sqlite", None)


def test_two_worker_processes_share_one_postgres_climb(tiny_bert: str, data: Path, tmp_path: Path) -> None:
    url = os.environ.get("HONED_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("no PostgreSQL server: run .ci/run (it starts one), or set HONED_TEST_POSTGRES_URL")
    _shared(tiny_bert, data, tmp_path / "pg", url)


def test_a_stage_limit_spreads_over_groups_and_a_broken_proposer_is_left_out() -> None:
    from honed.climb.stages import spread
    from honed.proposals import PROPOSERS, Change, Situation, proposals

    changes = [Change("lr a", group="lr"), Change("lr b", group="lr"), Change("lr c", group="lr"),
               Change("cosine", group="schedule"), Change("ema")]
    assert [c.name for c in spread(changes)] == ["lr a", "cosine", "ema", "lr b", "lr c"]

    def broken(s: Situation) -> list[Change]:
        raise RuntimeError("boom")

    PROPOSERS["model"].insert(0, broken)
    try:
        errors: list[str] = []
        s = Situation(recipe=load_recipe({}), kind="text", task="classification", train_rows=10)
        proposals("model", s, errors)  # the other model proposers still answer
        assert errors == [f"{__name__}.broken: RuntimeError: boom"]
        with pytest.raises(RuntimeError):
            proposals("model", s)  # without an error list, a broken proposer is the caller's to see
    finally:
        PROPOSERS["model"].remove(broken)


def test_a_climb_stopped_mid_screening_lists_the_candidates_it_has_scores_for(tiny_bert: str, data: Path,
                                                                              tmp_path: Path) -> None:
    """Budget of 3 runs: the baseline's 2 seeds and the first candidate's first seed. The leaderboard shows that
    candidate's score, undecided, rather than nothing; the candidate never run is listed as pending."""
    from honed.climb.run import climb

    out = tmp_path / "climb"
    result = climb(climb_tree(tiny_bert, data), output=out, trials=3)
    assert result.summary["stopped"] == "budget"
    board = pd.read_csv(out / "leaderboard.csv")
    assert list(board["change"]) == ["lr 3e-3"] and list(board["reason"]) == [
        "not decided: the climb stopped during screening"]
    first = optuna.load_study(study_name="climb-tiny", storage=f"sqlite:///{out / 'climb.db'}").trials[2]
    assert board["val"][0].startswith(f"{first.value:.4f}") and not bool(board["accepted"][0])
    assert result.summary["next"][0] == "the rest of stage optimisation"
