"""`charseq sweep` on Optuna: a sweep on the default storage, two workers on one study,
pruning, failed trials, continuing a study, a dead worker's trial, and a real PostgreSQL
server. Skipped without the sweep extra (PostgreSQL's test without PostgreSQL)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytest

from conftest import run_cli

optuna = pytest.importorskip("optuna")

import charseq  # noqa: E402
from charseq import sweeps  # noqa: E402
from charseq.errors import UsageError  # noqa: E402
from charseq.installation import install_command  # noqa: E402
from charseq.sweeps import storage as sweep_storage, study as sweep_study, workers as sweep_workers  # noqa: E402

AWAY = tempfile.gettempdir()  # `python -m charseq` from here imports the installed package, not a checkout's
QUICK = ["--corpus", "alphabet", "--epochs", "12", "--hidden-size", "16"]


def sweep(*args, cwd: Path, ok: bool = True):
    """`charseq sweep ...` in `cwd` (a study's default storage is a file in the working directory)."""
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return run_cli("sweep", *args, ok=ok)
    finally:
        os.chdir(old)


def trials(cwd: Path, study: str = "charseq", storage: str | None = None) -> list:
    storage = storage or f"sqlite:///{cwd / 'charseq-sweeps.db'}"
    return optuna.load_study(study_name=study, storage=sweep_storage.open_storage(storage)).get_trials()


@pytest.mark.parametrize("spec,expected", [
    ("lr=log:1e-4:1e-2", sweeps.Param("lr", "log", 1e-4, 1e-2)),
    ("dropout=float:0:0.5", sweeps.Param("dropout", "float", 0.0, 0.5)),
    ("hidden-size=int:128:512:128", sweeps.Param("hidden_size", "int", 128, 512, 128)),
    ("optimizer=choice:adam,rmsprop", sweeps.Param("optimizer", "choice", choices=("adam", "rmsprop"))),
    ("batch-size=choice:16,32", sweeps.Param("batch_size", "choice", choices=(16, 32))),
    ("model=choice:gru,lstm:layers=2", sweeps.Param("model", "choice", choices=("gru", "lstm:layers=2"))),
    ("model.layers=int:1:3", sweeps.Param("model.layers", "int", 1, 3)),
    ("time-limit=choice:90s,5m", sweeps.Param("time_limit", "choice", choices=("90s", "5m"))),
    ("time-limit=choice:30,2.5", sweeps.Param("time_limit", "choice", choices=(30, 2.5))),
    ("lr=float:.5:1e1", sweeps.Param("lr", "float", 0.5, 10.0)),
])
def test_param_specs(spec, expected):
    assert sweeps.Param.parse(spec) == expected


@pytest.mark.parametrize("spec,words", [
    ("lr", "expected NAME=KIND:ARGS"),
    ("lr=uniform:0:1", "expected NAME=KIND:ARGS"),
    ("learning=log:1e-4:1e-2", "'learning' is not a training setting"),
    ("lr=log:0:1", "above 0"),
    ("lr=float:1:0", "LOW must be below HIGH"),
    ("lr=float:a:b", "are not float numbers"),
    ("lr=float:0:1:0.1", "float takes LOW:HIGH"),
    ("hidden-size=int:128:512:100", "divide HIGH - LOW"),
    ("optimizer=choice:adam,adam", "must be different"),
    ("time-limit=choice:1s,abc", "time-limit=choice:1s,abc': time_limit 'abc' is not a duration"),
    ("time-limit=choice:1s,\u0663", "is not a duration"),  # an Arabic-Indic 3: not a number here either
    ("hidden-size=int:\u0661:9", "are not int numbers"),
    ("lr=choice:1_000,2", "'1_000' is not a number"),
])
def test_bad_param_specs_say_what_is_wrong(spec, words):
    with pytest.raises(UsageError, match=words):
        sweeps.Param.parse(spec)


def test_a_small_sweep_on_the_default_storage_keeps_each_trial_and_reports_the_best(tmp_path):
    out = sweep(*QUICK, "--param", "lr=log:0.5:8", "--param", "optimizer=choice:sgd,adam", "--trials", "3",
                "--pruner", "none", cwd=tmp_path).output
    assert (tmp_path / "charseq-sweeps.db").is_file()
    done = trials(tmp_path)
    assert [t.state.name for t in done] == ["COMPLETE"] * 3
    for t in done:
        folder = tmp_path / "sweeps" / "charseq" / f"trial-{t.number:04d}"
        assert (folder / "model.npz").is_file()
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        assert json.loads(lines[-1])["loss"] == pytest.approx(t.value, rel=1e-6) or t.value > 0
        assert t.user_attrs["directory"] == os.path.realpath(folder)  # absolute: the report may be read elsewhere
    best = min(done, key=lambda t: t.value)
    assert f"best: trial {best.number}, loss {best.value:.4f}" in out
    report = json.loads(sweep("--report", "--json", cwd=tmp_path).output)
    assert report["best"]["number"] == best.number and len(report["trials"]) == 3


def test_the_same_command_again_continues_the_study(tmp_path):
    args = [*QUICK, "--param", "lr=log:0.5:8", "--pruner", "none", "--seed", "3"]
    sweep(*args, "--trials", "2", cwd=tmp_path)
    first = [(t.number, t.params, t.value) for t in trials(tmp_path)]
    sweep(*args, "--trials", "2", cwd=tmp_path)  # nothing more to do
    assert len(trials(tmp_path)) == 2
    sweep(*args, "--trials", "4", cwd=tmp_path)
    now = trials(tmp_path)
    assert [t.number for t in now] == [0, 1, 2, 3]
    assert [(t.number, t.params, t.value) for t in now[:2]] == first


def test_two_workers_share_one_study_without_duplicating_a_trial(tmp_path):
    sweep(*QUICK, "--param", "lr=log:0.5:8", "--trials", "6", "--jobs", "2", "--pruner", "none", cwd=tmp_path)
    done, surplus = _run_and_surplus(trials(tmp_path), 6)
    folders = {t.user_attrs["directory"] for t in done}
    assert len(folders) == 6  # every trial its own run
    assert len({t.params["lr"] for t in done}) == 6  # the workers did not draw the same points


def test_two_commands_as_two_machines_share_one_study(tmp_path):
    """Two separate `charseq sweep` processes (as on two machines) on one storage."""
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    command = [sys.executable, "-m", "charseq", "sweep", *QUICK, "--param", "lr=log:0.5:8", "--trials", "6",
               "--pruner", "none", "--storage", storage, "--dir", str(tmp_path / "runs"), "--threads", "1"]
    workers = [subprocess.Popen(command, cwd=AWAY, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
    _run_and_surplus(trials(tmp_path, storage=storage), 6)


def test_a_trial_is_surplus_only_when_enough_came_before_it(tmp_path):
    """The race two workers ran into on PostgreSQL: each asked for one more trial at once, and
    each found the other's new trial running. The earlier trial must still run."""
    storage = f"sqlite:///{tmp_path / 's.db'}"
    plan = sweeps.Sweep("race", [sweeps.Param.parse("lr=float:0.5:2")],
                        {"corpus": "alphabet", "epochs": 2, "hidden_size": 8}, trials=6, storage=storage,
                        directory=str(tmp_path / "runs"))
    study = optuna.create_study(study_name="race", storage=sweep_storage.open_storage(storage))
    for _ in range(5):
        study.tell(study.ask(), 1.0)
    sixth, seventh = study.ask(), study.ask()  # both running: two workers asked together
    run_trial = sweep_workers.objective(plan)
    assert run_trial(sixth) > 0  # ran: only five came before it
    with pytest.raises(RuntimeError):  # Study.stop outside optimize: here the sweep would stop
        run_trial(seventh)
    assert "already held 6 trials" in study.trials[6].user_attrs["failure"]


def test_a_signal_just_before_the_run_takes_the_signals_still_stops_the_trial(tmp_path, monkeypatch):
    """SIGTERM after the worker's last look, before the run's own handler: once lost, and the
    run trained on (CI's sweep that did not stop)."""
    storage = f"sqlite:///{tmp_path / 's.db'}"
    plan = sweeps.Sweep("late", [sweeps.Param.parse("lr=float:0.5:2")],
                        {"corpus": "alphabet", "epochs": 3000, "hidden_size": 8}, trials=1, storage=storage,
                        directory=str(tmp_path / "runs"))
    study = optuna.create_study(study_name="late", storage=sweep_storage.open_storage(storage))
    monkeypatch.setattr(sweep_workers._Stop, "exit_code", None)

    def signal_comes_now() -> None:
        sweep_workers._Stop.exit_code = 128 + signal.SIGTERM  # what the worker's handler notes

    monkeypatch.setattr(sweep_workers, "_stop_if_asked", signal_comes_now)
    with pytest.raises(sweep_workers.Interrupted) as stopped:
        sweep_workers.objective(plan)(study.ask())
    assert stopped.value.exit_code == 143


def _run_and_surplus(done: list, wanted: int) -> tuple[list, list]:
    """Trials 0..wanted-1 each ran once and completed; workers that finished together may
    each have asked for one more, recorded as failed, not run."""
    ran, surplus = done[:wanted], done[wanted:]
    assert [t.number for t in ran] == list(range(wanted)) and all(t.state.name == "COMPLETE" for t in ran)
    assert len(surplus) < 2 and all(t.state.name == "FAIL" and "not run" in t.user_attrs["failure"] and not t.params
                                    for t in surplus)
    return ran, surplus


def test_pruning_stops_a_hopeless_trial_early(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    plan = sweeps.Sweep("prune", [sweeps.Param.parse("lr=float:0.0001:8")],
                        {"corpus": "alphabet", "epochs": 12, "hidden_size": 16}, trials=5, storage=storage,
                        directory=str(tmp_path / "runs"))
    study = sweep_study.load_study(plan)
    for lr in (4.0, 5.0, 6.0, 7.0, 0.0001):  # four good runs, then one that barely learns
        study.enqueue_trial({"lr": lr})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sweep_workers.work(plan)
    # The sweep's callback reads the run through the door every callback has.
    assert not [w for w in caught if issubclass(w.category, charseq.errors.CallbackDeprecation)]
    done = trials(tmp_path, "prune", storage)
    assert [t.state.name for t in done] == ["COMPLETE"] * 4 + ["PRUNED"]
    hopeless = done[-1]
    # Reported at 0, 10, ... 50 percent of its twelve epochs (epochs 1 to 6), stopped half way.
    assert sorted(hopeless.intermediate_values) == [0, 10, 20, 30, 40, 50]
    metrics = (tmp_path / "runs" / "prune" / "trial-0004" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(metrics[-1])["epoch"] == 6
    rows, _ = sweep_study.report(storage, "prune")
    assert rows[-1].note == "pruned 50 % of the way through its run"
    assert all(sorted(t.intermediate_values)[-1] == 100 for t in done[:4])  # each to its end


def test_a_trial_at_the_end_of_its_run_is_not_pruned(tmp_path):
    """A trial whose first evaluation is its last (a short time limit, one epoch) has spent its
    time: it keeps its loss, however poor, rather than being pruned there."""
    storage = f"sqlite:///{tmp_path / 's.db'}"
    plan = sweeps.Sweep("end", [sweeps.Param.parse("lr=float:0.0001:8")],
                        {"corpus": "alphabet", "epochs": 1, "hidden_size": 16}, trials=5, storage=storage,
                        directory=str(tmp_path / "runs"))
    study = sweep_study.load_study(plan)
    for lr in (4.0, 5.0, 6.0, 7.0, 0.0001):
        study.enqueue_trial({"lr": lr})
    sweep_workers.work(plan)
    done = trials(tmp_path, "end", storage)
    assert [t.state.name for t in done] == ["COMPLETE"] * 5
    assert sorted(done[-1].intermediate_values) == [100]
    assert done[-1].value > max(t.value for t in done[:4])  # the poor trial, kept with its loss


@pytest.mark.parametrize("step,end,time_up,pruned", [
    (5, 10, False, True),    # half way: the pruner decides
    (10, 10, False, False),  # at its planned end
    (7, 10, True, False),    # its time limit cut it short: this evaluation is its last
])
def test_the_pruner_is_asked_only_before_a_trial_has_spent_its_time(step, end, time_up, pruned):
    from types import SimpleNamespace

    class Trial:  # a pruner that would stop every trial it is asked about
        def report(self, value, share):
            pass

        def should_prune(self):
            return True

    trainer = SimpleNamespace(end_step=end, step=step, time_up=time_up, stop_training=False,
                              config=SimpleNamespace(time_limit=60.0), wall_time=1.0)
    reporter = sweep_workers._Reporter(Trial())
    reporter.on_evaluation(trainer, {"val_loss": 2.0})
    assert (reporter.pruned, trainer.stop_training) == (pruned, pruned)
    assert reporter.reported == step * 100 // end // 10 * 10


@pytest.mark.parametrize("param,words", [
    ("lr=choice:1e35,0.01", "diverged"),  # Adam at 1e35: the gradient stops being finite
])
def test_a_failing_trial_is_recorded_with_its_reason_and_the_sweep_goes_on(tmp_path, param, words):
    out = sweep(*QUICK, "--optimizer", "adam", "--param", param, "--trials", "5", "--pruner", "none", "--seed", "0",
                cwd=tmp_path).output
    done = trials(tmp_path)
    assert len(done) == 5
    failed = [t for t in done if t.state.name == "FAIL"]
    bad = sweeps.Param.parse(param).choices[0]
    assert failed and all(t.params[param.split("=")[0]] == bad for t in failed)
    assert all(words in t.user_attrs["failure"] for t in failed)
    assert any(t.state.name == "COMPLETE" for t in done)
    assert "fail" in out and words[:30] in out


def test_a_worker_killed_mid_trial_leaves_no_trial_running_for_ever(tmp_path):
    env = {**os.environ, "CHARSEQ_SWEEP_HEARTBEAT": "1", "CHARSEQ_SWEEP_GRACE": "2"}
    storage = f"sqlite:///{tmp_path / 's.db'}"
    command = [sys.executable, "-m", "charseq", "sweep", "--corpus", "alphabet", "--epochs", "2500",
               "--hidden-size", "16", "--param", "lr=log:0.5:8", "--trials", "1", "--storage", storage, "--dir",
               str(tmp_path / "runs"), "--threads", "1", "--pruner", "none"]
    worker = subprocess.Popen(command, cwd=AWAY, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        time.sleep(0.1)
        try:
            if trials(tmp_path, storage=storage):
                break
        except KeyError:  # no study yet
            pass
    time.sleep(0.5)
    worker.send_signal(signal.SIGKILL)  # its last (and only) trial: nothing else would start to notice
    worker.wait()
    assert [t.state.name for t in trials(tmp_path, storage=storage)] == ["RUNNING"]
    time.sleep(3)  # past the grace period
    result = subprocess.run(command, cwd=AWAY, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    states = [t.state.name for t in trials(tmp_path, storage=storage)]
    assert states == ["FAIL", "COMPLETE"]  # the dead one is not counted: the same command ran another
    assert "its worker stopped without a word" in result.stdout


def test_without_optuna_it_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    result = run_cli("sweep", "--corpus", "alphabet", "--param", "lr=log:1:2", ok=False)
    assert result.exit_code == 1 and install_command("sweep") in result.output


@pytest.mark.parametrize("args,words", [
    (["--corpus", "alphabet"], "needs at least one --param"),
    (["--corpus", "alphabet", "--param", "lr=log:1:2", "--param", "lr=log:1:3"], "given twice"),
    (["--corpus", "alphabet", "--param", "lr=log:1:2", "--lr", "3"], "--lr is fixed and searched over"),
    (["--param", "lr=log:1:2"], "missing option --corpus"),
    (["--report", "--study", "nothing"], "no study 'nothing'"),
    (["--corpus", "alphabet", "--param", "lr=log:1:2", "--plot", "x.png"], "go with --report"),
])
def test_bad_sweeps_are_one_line(tmp_path, args, words):
    result = sweep(*args, cwd=tmp_path, ok=False)
    assert result.exit_code == 2 and words in result.output, result.output


def test_the_report_draws_the_history_with_the_plot_extra(tmp_path):
    pytest.importorskip("matplotlib")
    sweep(*QUICK, "--param", "lr=log:0.5:8", "--trials", "2", "--pruner", "none", cwd=tmp_path)
    sweep("--report", "--plot", "history.png", cwd=tmp_path)
    assert (tmp_path / "history.png").read_bytes()[:4] == b"\x89PNG"
    sweep("--report", "--plot", "history.png", cwd=tmp_path)  # its own picture: drawn again
    (tmp_path / "mine.png").write_bytes(b"a picture of the user's")
    result = sweep("--report", "--plot", "mine.png", cwd=tmp_path, ok=False)
    assert result.exit_code == 2 and "already exists" in result.output and "--force" not in result.output
    assert (tmp_path / "mine.png").read_bytes() == b"a picture of the user's"


# -- a real PostgreSQL server, started here -------------------------------------------------

def _postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / name).exists():
            return str(folder / name)
    return None


@pytest.fixture
def postgres(tmp_path):
    """A PostgreSQL server in a temporary folder, on a Unix socket there; its URL."""
    required = bool(os.environ.get("CHARSEQ_REQUIRE_POSTGRES"))  # CI: a missing server fails, not skips
    if not required:
        pytest.importorskip("psycopg")  # SQLAlchemy 2.1's driver for postgresql://
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    if not (initdb and pg_ctl):
        if required:
            pytest.fail("CHARSEQ_REQUIRE_POSTGRES is set and PostgreSQL is not installed")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="charseq-pg-"))
    data, socket_dir = folder / "data", folder
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL will not run as root: as its own user
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("PostgreSQL will not run as root, and there is no postgres user to run it as")
        if shutil.which("runuser") is None:
            pytest.skip("PostgreSQL will not run as root, and there is no runuser to change user")
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "charseq", "--auth=trust"], check=True,
                   capture_output=True, timeout=120)
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-w", "-l", str(folder / "log"), "-o",
                    f"-k {socket_dir} -c listen_addresses='' -p 5499", "start"], check=True, capture_output=True,
                   timeout=120)
    try:
        yield f"postgresql://charseq@/postgres?host={socket_dir}&port=5499"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True,
                       timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def test_a_study_on_a_postgresql_server_shared_by_two_processes(tmp_path, postgres):
    command = [sys.executable, "-m", "charseq", "sweep", *QUICK, "--param", "lr=log:0.5:8", "--trials", "6",
               "--pruner", "none", "--storage", postgres, "--study", "pg", "--dir", str(tmp_path / "runs"),
               "--threads", "1"]
    workers = [subprocess.Popen(command, cwd=AWAY, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
    _run_and_surplus(trials(tmp_path, "pg", postgres), 6)
    assert "best: trial" in out


# -- workers: each its own number from the storage, and its own draws ------------------------

def _two_machines(storage: str, runs: Path, seed: str = "7") -> list:
    """The README's multi-machine command, run at once by two processes (as on two machines)
    with the same --seed; the trials that ran."""
    slow = ["--corpus", "alphabet", "--epochs", "600", "--hidden-size", "16"]  # ~2 s a trial: both start
    command = [sys.executable, "-m", "charseq", "sweep", *slow, "--param", "lr=log:0.5:8", "--trials", "6",
               "--pruner", "none", "--storage", storage, "--study", "two", "--dir", str(runs), "--threads", "1",
               "--seed", seed]
    workers = [subprocess.Popen(command, cwd=AWAY, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
    return _run_and_surplus(optuna.load_study(study_name="two", storage=storage).get_trials(), 6)[0]


def _by_worker(done: list) -> dict[int, list[float]]:
    """Each worker's draws, by its number, in the order it drew them."""
    drawn: dict[int, list[float]] = {}
    for trial in done:
        drawn.setdefault(trial.user_attrs["worker"], []).append(trial.params["lr"])
    return drawn


def _same_draws_per_worker(first: dict[int, list[float]], again: dict[int, list[float]]) -> None:
    """Worker N draws the same settings, in the same order, in both studies: how many each
    worker ran depends on timing, so the shorter list is the start of the longer."""
    common = [n for n in first if n in again]
    assert common, (first, again)
    for n in common:
        shorter = min(len(first[n]), len(again[n]))
        assert first[n][:shorter] == again[n][:shorter], (n, first, again)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_two_machines_with_one_seed_never_draw_the_same_settings(tmp_path, kind, request):
    """Two machines that ran the README's command with the same --seed drew the same
    parameters (6 trials, 3 settings). Each worker now has a number from the storage and a
    sampler seeded from (seed, number): distinct draws, the same again in a fresh storage."""
    def storage(name: str) -> str:
        if kind == "sqlite":
            return f"sqlite:///{tmp_path / name}.db"
        server = request.getfixturevalue("postgres")  # one server, a fresh database for each sweep
        import sqlalchemy

        engine = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
        engine.dispose()
        return server.replace("/postgres?", f"/{name}?")

    done = _two_machines(storage("first"), tmp_path / "runs-first")
    assert len({t.params["lr"] for t in done}) == 6, [t.params for t in done]
    first = _by_worker(done)
    assert set(first) == {0, 1}, first  # both ran trials
    again = _by_worker(_two_machines(storage("again"), tmp_path / "runs-again"))
    _same_draws_per_worker(first, again)


JOIN = """
import sys, time
from pathlib import Path
from charseq import sweeps
from charseq.sweeps import roster, study
plan = sweeps.Sweep("race", [sweeps.Param.parse("lr=float:0.5:2")], {"corpus": "alphabet"}, storage=sys.argv[1])
loaded = study.load_study(plan)
Path(sys.argv[2] + ".ready." + sys.argv[3]).touch()
while not Path(sys.argv[2]).exists():
    time.sleep(0.002)
print(roster.join(loaded))
"""


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_workers_that_join_at_once_are_never_given_one_number(tmp_path, kind, request):
    storage = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else request.getfixturevalue("postgres")
    plan = sweeps.Sweep("race", [sweeps.Param.parse("lr=float:0.5:2")], {"corpus": "alphabet"}, storage=storage)
    sweep_study.load_study(plan)  # made, as the first command makes it
    go, count = tmp_path / "go", 6
    joining = [subprocess.Popen([sys.executable, "-c", JOIN, storage, str(go), str(n)], cwd=AWAY,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(count)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go.ready.*"))) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()  # all at once
    numbers = []
    for process in joining:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        numbers.append(int(out))
    assert sorted(numbers) == list(range(count))


def test_the_workers_of_one_command_have_numbers_of_their_own(tmp_path):
    out = sweep(*QUICK, "--param", "lr=log:0.5:8", "--trials", "6", "--jobs", "2", "--pruner", "none", "--seed", "7",
                "--threads", "1", cwd=tmp_path).stdout
    done, _ = _run_and_surplus(trials(tmp_path), 6)
    assert len({t.params["lr"] for t in done}) == 6
    assert {t.user_attrs["worker"] for t in done} <= {0, 1}
    header, *rows = out.splitlines()[: 1 + 6]
    assert header.split()[:3] == ["trial", "worker", "state"]
    assert [row.split()[1] for row in rows] == [str(t.user_attrs["worker"]) for t in done]
    sweep(*QUICK, "--param", "lr=log:0.5:8", "--trials", "8", "--pruner", "none", "--seed", "7", cwd=tmp_path)
    later = [t for t in trials(tmp_path)[6:] if t.params]  # (not a surplus trial of the first command's)
    assert len(later) == 2 and {t.user_attrs["worker"] for t in later} == {2}  # a worker of its own, not worker 0
    assert not {t.params["lr"] for t in later} & {t.params["lr"] for t in done}


def test_the_report_says_where_the_best_checkpoint_is_from_any_folder(tmp_path):
    sweep(*QUICK, "--param", "lr=log:0.5:8", "--trials", "2", "--pruner", "none", "--dir", "my runs", cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    storage = f"sqlite:///{tmp_path / 'charseq-sweeps.db'}"
    out = sweep("--report", "--storage", storage, cwd=elsewhere).stdout
    best = min((t for t in trials(tmp_path)), key=lambda t: t.value)
    (line,) = [line for line in out.splitlines() if line.startswith("checkpoint: ")]
    (pasted,) = shlex.split(line.removeprefix("checkpoint: "))  # as a shell reads it: one path
    expected = tmp_path / "my runs" / "charseq" / f"trial-{best.number:04d}" / "model.npz"
    assert Path(pasted).is_absolute() and Path(pasted).samefile(expected)
    report = sweep("--report", "--json", "--storage", storage, cwd=elsewhere).stdout
    assert Path(json.loads(report)["best"]["checkpoint"]).samefile(expected)
    old = os.getcwd()
    os.chdir(elsewhere)
    try:
        assert run_cli("generate", pasted, "--length", "20", "--seed", "0").output.strip()
    finally:
        os.chdir(old)
    import socket

    with pytest.MonkeyPatch.context() as patch:  # the report read on another machine than the one that ran it
        patch.setattr(socket, "gethostname", lambda: "another-machine")
        out = sweep("--report", "--storage", storage, cwd=elsewhere).stdout
    assert f"checkpoint: {line.removeprefix('checkpoint: ')} (on {socket.gethostname()}, which ran it)" in out
    expected.unlink()
    out = sweep("--report", "--storage", storage, cwd=elsewhere).stdout
    assert f"{line} (not there any more)" in out


def test_the_history_plot_numbers_its_trials_in_whole_numbers(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import charseq.cli

    sweep(*QUICK, "--param", "lr=log:0.5:8", "--trials", "2", "--pruner", "none", cwd=tmp_path)
    drawn = []
    save = charseq.cli.save_picture

    def keep(figure, *args, **kwargs):
        drawn.append(figure)
        return save(figure, *args, **kwargs)

    monkeypatch.setattr(charseq.cli, "save_picture", keep)
    sweep("--report", "--plot", "history.png", cwd=tmp_path)
    (figure,) = drawn
    (axes,) = figure.axes
    ticks = [tick for tick in axes.get_xticks() if axes.get_xlim()[0] <= tick <= axes.get_xlim()[1]]
    assert len(ticks) >= 2 and all(float(tick).is_integer() for tick in ticks), ticks


def test_every_other_training_option_holds_for_every_trial(tmp_path):
    sweep(*QUICK, "--param", "lr=log:0.5:8", "--trials", "2", "--pruner", "none", "--patience", "2",
          "--optimizer", "adam", "--callback", "checkpoint:every=5", cwd=tmp_path)
    import charseq

    for number in (0, 1):
        saved = charseq.load(tmp_path / "sweeps" / "charseq" / f"trial-{number:04d}" / "model.npz")
        names = [callback["name"] for callback in saved.run["callbacks"]]
        assert names == ["metrics", "early-stopping", "checkpoint"]
        assert saved.run["callbacks"][1]["options"]["patience"] == 2
        assert saved.model.hidden_size == 16 and saved.config["optimizer"] == "adam"
    result = sweep(*QUICK, "--param", "lr=log:0.5:8", "--callback", "metrics:path=m.jsonl", cwd=tmp_path, ok=False)
    assert result.exit_code == 2 and "leave out --callback metrics" in result.output


def test_a_study_refuses_a_command_that_searches_otherwise(tmp_path):
    sweep(*QUICK, "--param", "lr=log:0.5:8", "--trials", "1", "--pruner", "none", cwd=tmp_path)
    for changed in (["--param", "lr=log:0.1:8"], ["--param", "lr=log:0.5:8", "--epochs", "13"]):
        args = [*QUICK, *changed] if "--epochs" not in changed else [*QUICK[:2], *changed, *QUICK[4:]]
        result = sweep(*args, "--trials", "2", cwd=tmp_path, ok=False)
        assert result.exit_code == 2 and "was started with other" in result.output, result.output
    assert len(trials(tmp_path)) == 1
    sweep(*QUICK, "--param", "lr=log:0.5:8", "--trials", "2", "--pruner", "none", "--study", "other", cwd=tmp_path)


@pytest.mark.parametrize("param, words", [
    ("optimizer=choice:adam,foo", "--param optimizer: unknown optimizer 'foo'; known: sgd, adagrad, rmsprop, adam"),
    ("seed=choice:2.5,3", "--param seed: --seed must be a whole number, got 2.5"),
    ("batch-size=int:0:4", "--param batch-size: --batch-size must be a whole number of at least 1, got 0"),
    ("dropout=float:0.5:1", "--param dropout: --dropout must be in [0, 1), got 1.0"),
    ("model.layers=choice:1,x", "model 'rnn': layers must be a whole number, got 'x'"),  # (the alphabet's model)
    ("model.layers=int:1:100", "model 'rnn': layers must be at most 64, got 100"),
    ("model=choice:gru,foo", "unknown model 'foo'; known: gru, lstm, rnn, transformer"),
])
def test_a_value_no_trial_could_take_is_refused_before_the_sweep(tmp_path, param, words):
    """Each choice and each end of a range, as its setting takes it: refused in one line,
    before the study or its folder is made, rather than by the trials that draw it."""
    result = sweep(*QUICK, "--param", param, "--trials", "2", cwd=tmp_path, ok=False)
    assert result.exit_code == 2 and result.output.strip().splitlines() == [f"Error: {words}"]
    assert not (tmp_path / "charseq-sweeps.db").exists() and not (tmp_path / "sweeps").exists()


def test_values_are_checked_with_the_settings_each_searched_model_suggests(tmp_path):
    """The transformer trains at its own rate (3e-3) with weight decay 0.1: a rate that would
    flip its weights is refused before the sweep; a decay its rate allows is not."""
    result = sweep(*QUICK, "--param", "model=choice:gru,transformer", "--param", "lr=float:9:12", cwd=tmp_path,
                   ok=False)
    assert result.exit_code == 2 and result.output.strip().splitlines() == [
        "Error: --param lr: --weight-decay times --lr must be below 1 (each step shrinks the weights by that "
        "share), got 0.1 x 12; use a smaller --lr or --weight-decay (0: no decay)"]
    from charseq.sweeps.space import Param
    from charseq.sweeps.study import _check_values

    _check_values([Param.parse("weight-decay=float:100:300")], {"model": "transformer:layers=1"})  # 300 x 3e-3 < 1
    with pytest.raises(charseq.UsageError, match="got 300 x 0.004"):  # the generic rate
        _check_values([Param.parse("weight-decay=float:100:300")], {"model": "gru"})


def test_model_options_are_checked_for_each_model_searched(tmp_path):
    result = sweep(*QUICK, "--param", "model=choice:lstm,gru", "--param", "model.layers=int:0:2", cwd=tmp_path,
                   ok=False)
    assert result.exit_code == 2 and "model 'lstm': layers must be a whole number of at least 1, got 0" in result.output


def test_epochs_of_0_may_be_searched_beside_a_time_limit_and_a_trial_without_one_fails(tmp_path):
    """Each value is one a trial could take; a combination none can (no epochs and no time
    limit) fails its trial, recorded with its reason, and the sweep goes on."""
    out = sweep("--corpus", "alphabet", "--hidden-size", "16", "--param", "time-limit=choice:0.5s,0", "--param",
                "epochs=choice:0,2", "--trials", "6", "--pruner", "none", "--seed", "0", cwd=tmp_path).output
    done = trials(tmp_path)
    failed = [t for t in done if t.state.name == "FAIL"]
    assert failed and all(t.params == {"time_limit": 0, "epochs": 0} for t in failed)
    assert all("goes with --time-limit" in t.user_attrs["failure"] for t in failed)
    assert any(t.state.name == "COMPLETE" for t in done) and "fail" in out


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".hidden", "x\n", "x\ny"])
def test_a_study_name_cannot_leave_the_runs_folder(tmp_path, name):
    result = sweep(*QUICK, "--param", "lr=log:0.5:8", "--study", name, cwd=tmp_path, ok=False)
    assert result.exit_code == 2 and "a study's name is letters" in result.output
    assert not (tmp_path / "escape").exists()


def long_sweep(tmp_path: Path, jobs: str) -> tuple[subprocess.Popen, str]:
    """A sweep of runs too long to finish, in a session of its own, once each of its `jobs`
    workers is running a trial; the process and its storage."""
    storage = f"sqlite:///{tmp_path / 's.db'}"
    command = [sys.executable, "-m", "charseq", "sweep", "--corpus", "alphabet", "--epochs", "100000",
               "--hidden-size", "16", "--param", "lr=log:0.5:8", "--trials", "3", "--storage", storage, "--dir",
               str(tmp_path / "runs"), "--jobs", jobs, "--threads", "1", "--pruner", "none"]
    process = subprocess.Popen(command, cwd=AWAY, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    for _ in range(300):
        time.sleep(0.1)
        try:
            if len([t for t in trials(tmp_path, storage=storage) if t.state.name == "RUNNING"]) == int(jobs):
                break
        except KeyError:  # no study yet
            pass
    return process, storage


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_stops_a_sweep_quietly_and_records_why(tmp_path, jobs):
    worker, storage = long_sweep(tmp_path, jobs)
    time.sleep(0.5)
    os.killpg(worker.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole process group
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 130, err
    assert "Traceback" not in err
    states = trials(tmp_path, storage=storage)
    # Each trial is failed, and says why; a worker that could not stop within 10 s is killed,
    # and its trial is left to its heartbeat (the test above).
    interrupted = [t for t in states if t.state.name == "FAIL"]
    assert len(states) == int(jobs) and all(t.state.name in ("FAIL", "RUNNING") for t in states) and interrupted
    assert all(t.user_attrs["failure"] == "interrupted (Ctrl-C or a signal)" for t in interrupted)
    report = subprocess.run([sys.executable, "-m", "charseq", "sweep", "--report", "--storage", storage], cwd=AWAY,
                            capture_output=True, text=True, timeout=60)
    assert report.stdout.count("interrupted (Ctrl-C or a signal)") == len(interrupted)


@pytest.mark.parametrize("args,words", [
    (["--corpus", "text:missing.txt", "--param", "lr=log:1e-3:1e-2"], "does not exist"),
    (["--corpus", "alphabet", "--param", "hidden-size=float:16:32"], "hidden-size must be a whole number"),
    (["--corpus", "alphabet", "--param", "lr=log:1e-3:1e-2", "--callback", "bogus"], "bogus"),
    (["--corpus", "alphabet", "--param", "model.bogus=int:1:2"], "bogus"),
    (["--corpus", "alphabet", "--param", "lr=log:1e-3:1e-2", "--callback", "checkpoint:path=x.npz"],
     "the same checkpoint path"),
    (["--corpus", "alphabet", "--model", "rnn:layers=2", "--param", "model.layers=int:1:3"], "fixed in --model"),
    (["--corpus", "alphabet", "--param", "lr=choice:nan,1"], "finite number"),
])
def test_what_every_trial_would_fail_on_is_refused_before_any_trial(tmp_path, args, words):
    result = sweep(*args, "--trials", "2", cwd=tmp_path, ok=False)
    assert result.exit_code in (1, 2) and words in result.output, result.output
    assert "Traceback" not in result.output
    if (tmp_path / "charseq-sweeps.db").exists():
        try:
            assert trials(tmp_path) == []  # the study holds no failed trials for it
        except KeyError:
            pass


def test_runs_of_another_study_of_that_name_are_never_written_over(tmp_path):
    base = [*QUICK, "--param", "lr=log:0.5:8", "--trials", "1", "--pruner", "none"]
    sweep(*base, "--storage", "sqlite:///a.db", cwd=tmp_path)
    before = (tmp_path / "sweeps" / "charseq" / "trial-0000" / "model.npz").read_bytes()
    result = sweep(*base, "--storage", "sqlite:///b.db", cwd=tmp_path, ok=False)
    assert result.exit_code == 2 and "holds the runs of study 'charseq' in another storage" in result.output
    assert (tmp_path / "sweeps" / "charseq" / "trial-0000" / "model.npz").read_bytes() == before
    (tmp_path / "afile").write_text("x")
    result = sweep(*base, "--dir", "afile", cwd=tmp_path, ok=False)
    assert result.exit_code == 2 and "is a file, not a folder" in result.output


def test_a_study_charseq_did_not_make_is_not_taken_over(tmp_path):
    storage = f"sqlite:///{tmp_path / 'charseq-sweeps.db'}"
    optuna.create_study(study_name="theirs", storage=storage, direction="maximize")
    result = sweep(*QUICK, "--param", "lr=log:0.5:8", "--study", "theirs", cwd=tmp_path, ok=False)
    assert result.exit_code == 2 and "was not made by charseq sweep" in result.output


@pytest.mark.parametrize("args,words", [
    (["--report"], "charseq-sweeps.db does not exist"),
    (["--report", "--storage", "sqlite:///gone.db"], "gone.db does not exist"),
])
def test_a_report_creates_nothing(tmp_path, args, words):
    result = sweep(*args, cwd=tmp_path, ok=False)
    assert result.exit_code == 2 and words in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_report_refuses_a_plot_it_cannot_draw(tmp_path):
    sweep(*QUICK, "--param", "lr=log:0.5:8", "--trials", "1", "--pruner", "none", cwd=tmp_path)
    for plot, words in (("nodir/x.png", "its folder does not exist"), ("out.txt", "draw a .png, .pdf or .svg")):
        result = sweep("--report", "--plot", plot, cwd=tmp_path, ok=False)
        assert result.exit_code == 2 and words in result.output


@pytest.mark.parametrize("url,shown", [
    ("postgresql://bob:s3cret@host/db", "postgresql://bob:***@host/db"),
    ("postgresql://:s3cret@host/db", "postgresql://:***@host/db"),
    ("postgresql://bob:s3c@ret@host/db", "postgresql://bob:***@host/db"),
    ("postgresql://host/db?password=s3cret&sslmode=require", "postgresql://host/db?password=***&sslmode=require"),
    ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
])
def test_a_storage_password_is_never_shown(url, shown):
    assert sweeps.shown_url(url) == shown


def test_a_bad_heartbeat_setting_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARSEQ_SWEEP_HEARTBEAT", "abc")
    result = sweep(*QUICK, "--param", "lr=log:0.5:8", "--trials", "1", cwd=tmp_path, ok=False)
    assert result.exit_code == 2 and "CHARSEQ_SWEEP_HEARTBEAT must be a whole number" in result.output


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_sigterm_stops_the_workers_too_and_exits_143(tmp_path, jobs):
    parent, storage = long_sweep(tmp_path, jobs)
    parent.send_signal(signal.SIGTERM)  # to the parent alone, as systemd or kill would
    _, err = parent.communicate(timeout=60)
    assert parent.returncode == 143, err
    assert "Traceback" not in err
    time.sleep(1)
    alive = subprocess.run(["ps", "-s", str(parent.pid), "-o", "args="], capture_output=True, text=True).stdout
    assert [line for line in alive.splitlines() if "<defunct>" not in line] == []  # no worker running on its own
    states = [(t.state.name, t.user_attrs.get("failure")) for t in trials(tmp_path, storage=storage)]
    assert states and all(state == ("FAIL", sweep_workers.INTERRUPTED) for state in states), states


# -- a study's identity, its directory, and storages that cannot hold a study ---------------

SMALL = ["--corpus", "alphabet", "--epochs", "1", "--hidden-size", "8", "--param", "lr=log:1e-3:1e-2", "--pruner",
         "none"]
SECRET = "hunter2"


def _hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by its path there."""
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line(result) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_a_new_study_never_replaces_the_runs_of_one_whose_storage_is_gone(tmp_path):
    sweep(*SMALL, "--trials", "2", "--seed", "0", cwd=tmp_path)
    runs = tmp_path / "sweeps" / "charseq"
    before = _hashes(runs)
    assert "trial-0001/model.npz" in before
    (tmp_path / "charseq-sweeps.db").rename(tmp_path / "old.db")
    result = sweep(*SMALL, "--trials", "2", "--seed", "1", cwd=tmp_path, ok=False)
    last = result.output.strip().splitlines()[-1]
    assert result.exit_code == 2 and "holds the runs of an earlier study 'charseq'" in last, result.output
    assert "give another --dir or --study" in last
    assert _hashes(runs) == before
    with pytest.raises(KeyError):  # the study made for nothing is gone again
        trials(tmp_path)
    sweep(*SMALL, "--trials", "2", "--seed", "1", "--dir", "elsewhere", cwd=tmp_path)
    assert (tmp_path / "elsewhere" / "charseq" / "trial-0001" / "model.npz").is_file()


def test_a_storage_path_that_needs_percent_escapes_sweeps_and_reports(tmp_path):
    """SQLAlchemy decodes %20 in a URL's path: charseq reads the same file it does."""
    sweep(*SMALL, "--trials", "1", "--storage", "sqlite:///my%20sweeps.db", cwd=tmp_path)
    assert (tmp_path / "my sweeps.db").is_file()
    report = sweep("--report", "--json", "--storage", "sqlite:///my%20sweeps.db", cwd=tmp_path)
    assert [trial["state"] for trial in json.loads(report.output)["trials"]] == ["complete"]


def test_a_trial_fails_rather_than_replace_a_file_in_its_folder(tmp_path):
    sweep(*SMALL, "--trials", "1", "--storage", "sqlite:///a.db", "--dir", "a", cwd=tmp_path)
    sweep(*SMALL, "--trials", "1", "--storage", "sqlite:///b.db", "--dir", "b", cwd=tmp_path)
    planted = tmp_path / "b" / "charseq" / "trial-0001"  # where study b's next trial writes: study a's run
    shutil.copytree(tmp_path / "a" / "charseq" / "trial-0000", planted)
    before = _hashes(planted)
    sweep(*SMALL, "--trials", "2", "--storage", "sqlite:///b.db", "--dir", "b", cwd=tmp_path)
    done = trials(tmp_path, storage=f"sqlite:///{tmp_path / 'b.db'}")
    assert [t.state.name for t in done] == ["COMPLETE", "FAIL"]
    assert "model.npz" in done[1].user_attrs["failure"]
    assert _hashes(planted) == before


def test_a_study_and_directory_of_an_earlier_release_are_taken_on_once_and_only_theirs(tmp_path):
    sweep(*SMALL, "--trials", "1", cwd=tmp_path)
    storage = f"sqlite:///{tmp_path / 'charseq-sweeps.db'}"
    study = optuna.load_study(study_name="charseq", storage=storage)
    record = study.user_attrs["charseq.search"]
    study.set_user_attr("charseq.search", {k: v for k, v in record.items() if k != "identity"})  # as 0.x kept it
    marker = tmp_path / "sweeps" / "charseq" / "study.json"
    legacy = {k: v for k, v in json.loads(marker.read_text()).items() if k != "identity"}
    marker.write_text(json.dumps(legacy) + "\n")
    sweep(*SMALL, "--trials", "2", cwd=tmp_path)  # the same study: it gets an identity, and keeps its folder
    identity = optuna.load_study(study_name="charseq", storage=storage).user_attrs["charseq.search"]["identity"]
    assert json.loads(marker.read_text()) == {**legacy, "identity": identity}
    assert [t.state.name for t in trials(tmp_path)] == ["COMPLETE", "COMPLETE"]
    marker.write_text(json.dumps(legacy) + "\n")  # an earlier release's marker, and a new study in its storage
    (tmp_path / "charseq-sweeps.db").unlink()
    before = _hashes(marker.parent)
    result = sweep(*SMALL, "--trials", "2", cwd=tmp_path, ok=False)
    assert result.exit_code == 2 and "holds the runs of an earlier study" in result.output, result.output
    assert _hashes(marker.parent) == before


def test_a_study_another_process_is_making_is_waited_for(tmp_path):
    import threading

    storage = f"sqlite:///{tmp_path / 'charseq-sweeps.db'}"
    made = optuna.create_study(study_name="charseq", storage=storage)  # made; its search is not recorded yet
    later = 3.0
    record = threading.Timer(later, made.set_user_attr,
                             ("charseq.search", {"params": [], "train": {}, "identity": "f" * 32}))
    started = time.monotonic()
    record.start()
    try:
        result = sweep(*SMALL, "--trials", "1", cwd=tmp_path, ok=False)
    finally:
        record.cancel()
        record.join()
    assert result.exit_code == 2 and "was started with other" in result.output, result.output  # its maker's search
    assert time.monotonic() - started >= later
    assert trials(tmp_path) == [] and not (tmp_path / "sweeps").exists()


@pytest.mark.parametrize("storage", ["sqlite:///:memory:", "sqlite://", "sqlite:///", "sqlite+pysqlite:///:memory:",
                                     "sqlite:///file::memory:?cache=shared", "sqlite:///file:runs?mode=memory&uri=true",
                                     "sqlite:///%3Amemory%3A", "sqlite:///file:x.db?mode=memor%79&uri=true",
                                     "sqlite:///x.db?vfs=memdb&uri=true", "SQLITE:///:memory:",
                                     "sqlite:///file:a.db?mode=memor%2579&uri=true",  # SQLite decodes again
                                     "sqlite:///file:b.db?mod%2565=memory&uri=true", "sqlite:///file:%253Amemory%253A?uri=true",
                                     "sqlite:///file:g.db%3Fmode%3Dmemor%2579?uri=true",
                                     "sqlite:///file:c.db?vfs=memd%2562&uri=true"])
def test_a_storage_that_ends_with_the_process_is_refused_up_front(tmp_path, storage):
    for args in (SMALL, ["--report"]):
        result = sweep(*args, "--storage", storage, cwd=tmp_path, ok=False)
        assert result.exit_code == 2 and "is an SQLite database in memory" in _one_line(result)
    assert list(tmp_path.iterdir()) == []


def test_a_study_name_too_long_for_a_folder_is_refused_in_one_line(tmp_path):
    result = sweep(*SMALL, "--study", "a" * 300, cwd=tmp_path, ok=False)
    line = _one_line(result)
    assert result.exit_code == 2 and "a study's name is letters" in line and "at most 100" in line
    assert list(tmp_path.iterdir()) == []
    sweep(*SMALL, "--trials", "1", "--study", "b" * 100, cwd=tmp_path)  # the longest there may be
    assert (tmp_path / "sweeps" / ("b" * 100) / "trial-0000" / "model.npz").is_file()


@pytest.mark.parametrize("args", [SMALL, ["--report"]])
def test_a_storage_without_its_scheme_is_refused_without_its_password(tmp_path, args):
    result = sweep(*args, "--storage", f"user:{SECRET}@127.0.0.1", cwd=tmp_path, ok=False)
    assert result.exit_code == 2 and "the storage is not a URL" in _one_line(result)
    assert SECRET not in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url,shown", [
    (f"sqlite:////nonexistent/x.db?password={SECRET}", "sqlite:////nonexistent/x.db?password=***"),
    (f"user:{SECRET}@127.0.0.1", "user:***@127.0.0.1"),
    (f"postgresql://me@corp:{SECRET}@host/db", "postgresql://me@corp:***@host/db"),
    (f"postgresql://bob:a/{SECRET}@[::1]:5432/db?application_name=x@y",
     "postgresql://bob:***@[::1]:5432/db?application_name=x@y"),
    (f"mysql://bob@host/db?passwd={SECRET};charset=utf8mb4", "mysql://bob@host/db?passwd=***;charset=utf8mb4"),
    (f"postgresql://bob@host:5432/db?sslmode=require&PWD={SECRET}", "postgresql://bob@host:5432/db?sslmode=require&PWD=***"),
    ("postgresql://bob@host:5432/db?a=b%20c", "postgresql://bob@host:5432/db?a=b%20c"),
    (f"postgresql://bob@127.0.0.1:1/db?sslpass%77ord={SECRET}", "postgresql://bob@127.0.0.1:1/db?sslpass%77ord=***"),
    (f"postgresql://bob@h/db?sslpassword={SECRET}&pass%77ord={SECRET}",
     "postgresql://bob@h/db?sslpassword=***&pass%77ord=***"),
])
def test_a_password_is_masked_in_every_form_and_nothing_else_changes(url, shown):
    assert sweeps.shown_url(url) == shown


def test_a_storage_that_does_not_open_marks_no_directory_and_shows_no_password(tmp_path):
    result = sweep(*SMALL, "--storage", f"sqlite:////nonexistent/x.db?password={SECRET}", cwd=tmp_path, ok=False)
    assert result.exit_code == 1, result.output
    assert "cannot open the storage sqlite:////nonexistent/x.db?password=***:" in result.output
    assert SECRET not in result.output
    assert not (tmp_path / "sweeps").exists()


@pytest.mark.parametrize("where", ["opening", "loading"])
def test_a_drivers_error_that_quotes_the_url_shows_no_password(tmp_path, monkeypatch, where):
    storage = f"postgresql://bob:{SECRET}@db.example/sweeps"

    def fail(*args, **kwargs):
        raise RuntimeError(f"connection to {storage} failed: password {SECRET} was refused")

    if where == "opening":
        monkeypatch.setattr(optuna.storages, "RDBStorage", fail)
    else:
        monkeypatch.setattr(optuna.storages, "RDBStorage", lambda *args, **kwargs: object())
        monkeypatch.setattr(optuna, "create_study", fail)
    result = sweep(*SMALL, "--storage", storage, cwd=tmp_path, ok=False)
    assert result.exit_code == 1 and "postgresql://bob:***@db.example/sweeps failed" in result.output, result.output
    assert SECRET not in result.output


def test_a_worker_that_fails_says_so_in_one_line_without_a_password(monkeypatch, capsys):
    """A --jobs worker whose storage fails under it (a database deleted mid-sweep) prints
    one line and exits 1, never a traceback, in its threads too (Optuna's heartbeat)."""
    import threading

    plan = sweeps.Sweep("charseq", [sweeps.Param.parse("lr=log:1e-3:1e-2")], {"corpus": "alphabet"},
                        storage="postgresql://bob:s3cret@localhost/db")

    def lost(sweep):
        thread = threading.Thread(target=lambda: (_ for _ in ()).throw(RuntimeError("heartbeat: s3cret gone")))
        thread.start()
        thread.join()
        raise AssertionError("Should not reach.")

    monkeypatch.setattr(sweep_workers, "work", lost)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)  # put back after the test
    with pytest.raises(SystemExit) as ended:
        sweep_workers._worker_main(plan, 1)
    err = capsys.readouterr().err
    assert ended.value.code == 1 and "Traceback" not in err and "s3cret" not in err
    assert err.splitlines() == ["charseq: worker 1: RuntimeError: heartbeat: *** gone",
                                "charseq: worker 1: AssertionError: Should not reach."]


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_a_signal_while_a_trial_saves_its_last_checkpoint_stops_the_sweep(tmp_path, monkeypatch, signum, code):
    """The signal came as the trial's run had ended, during its save: the run finishes (its
    trial completes), and the sweep stops there instead of running trials 1, 2..."""
    from charseq.checkpoints import format as checkpoint_format

    save = checkpoint_format.save

    def signal_while_saving(path, checkpoint):
        if "trial-0000" in str(path):
            os.kill(os.getpid(), signum)
        return save(path, checkpoint)

    monkeypatch.setattr(checkpoint_format, "save", signal_while_saving)
    result = sweep(*SMALL, "--trials", "3", "--threads", "1", cwd=tmp_path, ok=False)
    assert result.exit_code == code, result.output
    assert "sweep interrupted" in result.output and "Traceback" not in result.output
    assert [t.state.name for t in trials(tmp_path)] == ["COMPLETE"]


def _md5(path: Path) -> str:
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("kind", ["another program's", "empty"])
def test_a_report_writes_nothing_into_a_database_that_holds_no_study(tmp_path, kind):
    """--report creates nothing: pointed at another program's SQLite file (or an empty one),
    Optuna made its 13 tables there."""
    import sqlite3

    other = tmp_path / "other_app.db"
    if kind == "empty":
        other.touch()
    else:
        with sqlite3.connect(other) as connection:
            connection.execute("CREATE TABLE precious (x)")
            connection.execute("INSERT INTO precious VALUES (1)")
        connection.close()
    before = _md5(other)
    for args in (["--report"], ["--report", "--json"], ["--report", "--study", "mine"]):
        result = sweep(*args, "--storage", "sqlite:///other_app.db", cwd=tmp_path, ok=False)
        assert result.exit_code == 2 and "holds no charseq sweep study" in _one_line(result), result.output
    assert _md5(other) == before and sorted(p.name for p in tmp_path.iterdir()) == ["other_app.db"]


def test_a_report_of_a_study_writes_nothing_to_its_storage(tmp_path):
    sweep(*SMALL, "--trials", "1", cwd=tmp_path)
    database = tmp_path / "charseq-sweeps.db"
    before = _md5(database)
    sweep("--report", cwd=tmp_path)
    sweep("--report", "--json", cwd=tmp_path)
    assert sweep("--report", "--study", "other", cwd=tmp_path, ok=False).exit_code == 2
    assert _md5(database) == before


def test_a_report_writes_nothing_into_a_postgresql_database_that_holds_no_study(postgres):
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("CREATE DATABASE otherapp"))
    engine.dispose()
    url = postgres.replace("/postgres?", "/otherapp?")
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("CREATE TABLE precious (x int)"))
    for database in (url, postgres):  # one with another program's table, one empty
        result = run_cli("sweep", "--report", "--storage", database, ok=False)
        assert result.exit_code == 2 and "holds no charseq sweep study" in _one_line(result), result.output
    tables = {name: sqlalchemy.inspect(e).get_table_names()
              for name, e in (("otherapp", engine), ("postgres", sqlalchemy.create_engine(postgres)))}
    assert tables == {"otherapp": ["precious"], "postgres": []}


def _row(number: int, value: float | None) -> sweep_study.Row:
    return sweep_study.Row(number, "complete" if value is not None else "fail", value, {}, None, "")


@pytest.mark.parametrize("rows,expected", [
    ([], [0]),  # no trial yet
    ([_row(0, None), _row(1, None)], [0, 1]),  # none completed
    ([_row(0, 2.0)], [0]),
    ([*(_row(n, None) for n in range(7)), _row(7, 2.0)], list(range(8))),  # one completed, numbered 7
    ([_row(0, 2.0), _row(1, 1.5)], [0, 1]),
    ([_row(n, 2.0) for n in range(4)], [0, 1, 2, 3]),
    ([_row(n, 3.0 - n / 100) for n in range(137)], None),  # many: some whole numbers, spread over them
])
def test_the_history_plot_ticks_only_the_trial_numbers_there_are(rows, expected):
    """MaxNLocator(integer=True) falls back to fractions with fewer than two whole numbers in
    view (-0.045...0.045 for one trial), and it ticked -1 left of trial 0."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from charseq.plugins.sweep import history_figure

    figure = history_figure(rows)
    try:
        (axes,) = figure.axes
        figure.canvas.draw()
        low, high = axes.get_xlim()
        ticks = [float(tick) for tick in axes.get_xticks() if low <= tick <= high]
        labels = [label.get_text() for label in axes.get_xticklabels() if low <= label.get_position()[0] <= high]
    finally:
        plt.close(figure)
    assert all(tick.is_integer() for tick in ticks) and min(ticks) >= 0, ticks
    assert low >= -0.5 and high <= max([row.number for row in rows], default=0) + 0.5
    if expected is not None:
        assert ticks == expected
    else:
        assert 3 <= len(ticks) <= 12 and max(ticks) <= 136
    assert all(label.lstrip("\N{MINUS SIGN}-").isdigit() for label in labels), labels


@pytest.mark.parametrize("lost", ["deleted", "copied"])
def test_a_lost_roster_never_gives_a_worker_number_that_ran_trials_again(tmp_path, lost):
    """Worker numbers lived only in the roster, STUDY:workers: with it deleted (optuna
    delete-study), or the study copied to another storage without it, the next worker was
    worker 0 again, and drew the settings worker 0 had drawn."""
    args = [*SMALL, "--seed", "7", "--threads", "1"]
    sweep(*args, "--trials", "2", cwd=tmp_path)
    storage = f"sqlite:///{tmp_path / 'charseq-sweeps.db'}"
    if lost == "deleted":
        optuna.delete_study(study_name="charseq:workers", storage=storage)
    else:
        copy = f"sqlite:///{tmp_path / 'copy.db'}"
        optuna.copy_study(from_study_name="charseq", from_storage=storage, to_storage=copy)
        storage = copy
        args += ["--storage", copy, "--dir", "copied"]
        shutil.copytree(tmp_path / "sweeps", tmp_path / "copied")
        marker = tmp_path / "copied" / "charseq" / "study.json"
        marker.write_text(json.dumps({**json.loads(marker.read_text()), "storage": str(tmp_path / "copy.db")}))
    sweep(*args, "--trials", "4", cwd=tmp_path)
    done = optuna.load_study(study_name="charseq", storage=storage).get_trials()
    assert [t.state.name for t in done] == ["COMPLETE"] * 4
    assert [t.user_attrs["worker"] for t in done] == [0, 0, 1, 1]
    assert not {t.params["lr"] for t in done[2:]} & {t.params["lr"] for t in done[:2]}


@pytest.mark.parametrize("corpus", ["text:-", "text:/dev/stdin"])
def test_a_corpus_on_standard_input_is_refused_before_it_is_read(tmp_path, corpus):
    """Each trial reads its corpus again, and standard input can be read once: every trial
    failed ("corpus text:- is empty") after the up-front check had read all of it."""
    text = "the quick brown fox jumps over the lazy dog\n" * 2000
    result = subprocess.run([sys.executable, "-m", "charseq", "sweep", "--corpus", corpus, *SMALL[2:], "--trials", "2"],
                            cwd=tmp_path, input=text, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert "standard input" in line and "save the text to a file" in line, line
    assert list(tmp_path.iterdir()) == []


def _sweep_of_two_workers(tmp_path: Path, **popen) -> tuple[subprocess.Popen, str]:
    """A sweep of two workers, in a session of its own, once both are running a trial of a
    few seconds; the process and its storage."""
    storage = f"sqlite:///{tmp_path / 's.db'}"
    command = [sys.executable, "-m", "charseq", "sweep", "--corpus", "alphabet", "--epochs", "1500",
               "--hidden-size", "16", "--param", "lr=log:0.5:8", "--trials", "2", "--storage", storage, "--dir",
               str(tmp_path / "runs"), "--jobs", "2", "--threads", "1", "--pruner", "none"]
    process = subprocess.Popen(command, cwd=AWAY, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, **popen)
    for _ in range(600):
        time.sleep(0.1)
        try:
            if len([t for t in trials(tmp_path, storage=storage) if t.state.name == "RUNNING"]) == 2:
                break
        except KeyError:  # no study yet
            pass
    return process, storage


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGINT], ids=["nohup", "background-job"])
def test_a_signal_ignored_when_the_sweep_starts_stays_ignored_by_every_worker(tmp_path, signum):
    """`nohup charseq sweep ... &` then kill -HUP exited 129; a script's background sweep
    (SIGINT ignored) stopped both workers on a group SIGINT, and said "2 of 2 workers ended
    with an error (exit codes 130, 130)"."""
    process, storage = _sweep_of_two_workers(tmp_path, preexec_fn=lambda: signal.signal(signum, signal.SIG_IGN))
    os.killpg(process.pid, signum)  # the whole group: the parent and both workers
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert [t.state.name for t in trials(tmp_path, storage=storage)][:2] == ["COMPLETE", "COMPLETE"]


def test_workers_stopped_by_a_signal_of_their_own_end_the_sweep_as_interrupted(tmp_path):
    """SIGTERM to the workers, not the parent (kill of their ids): the parent exits 143 as
    train would, not 1 with "workers ended with an error"."""
    process, storage = _sweep_of_two_workers(tmp_path)
    listed = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(process.pid)], capture_output=True, text=True)
    workers = [int(line.split()[0]) for line in listed.stdout.splitlines() if "multiprocessing.spawn" in line]
    assert len(workers) == 2, listed.stdout
    for pid in workers:
        os.kill(pid, signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "sweep interrupted" in err and "ended with an error" not in err and "Traceback" not in err
    states = [(t.state.name, t.user_attrs.get("failure")) for t in trials(tmp_path, storage=storage)]
    assert states == [("FAIL", sweep_workers.INTERRUPTED)] * 2


def test_a_dir_through_a_link_and_dot_dot_keeps_the_study_in_one_folder(tmp_path):
    """--dir lnk/../out (lnk a link): the marker went where the system resolves the path,
    and the trials where the text reads without `lnk/..`: two folders for one study."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "lnk").symlink_to(tmp_path / "a" / "b")
    sweep(*SMALL, "--trials", "1", "--dir", "lnk/../out", cwd=tmp_path)
    sweep(*SMALL, "--trials", "2", "--dir", "lnk/../out", cwd=tmp_path)
    folder = Path(os.path.realpath(tmp_path)) / "a" / "out" / "charseq"  # what `ls lnk/../out` shows
    assert sorted(p.name for p in folder.iterdir()) == ["study.json", "trial-0000", "trial-0001"]
    assert not (tmp_path / "out").exists()
    done = trials(tmp_path)
    assert [t.state.name for t in done] == ["COMPLETE", "COMPLETE"]
    assert [t.user_attrs["checkpoint"] for t in done] == [str(folder / f"trial-000{n}" / "model.npz") for n in (0, 1)]
    assert [t.user_attrs["directory"] for t in done] == [str(folder / f"trial-000{n}") for n in (0, 1)]


def test_the_json_report_says_where_the_best_checkpoint_is_and_each_trials_folder_absolutely(tmp_path):
    sweep(*SMALL, "--trials", "2", "--dir", "runs", cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    storage = f"sqlite:///{tmp_path / 'charseq-sweeps.db'}"
    report = json.loads(sweep("--report", "--json", "--storage", storage, cwd=elsewhere).stdout)
    import socket

    best = report["best"]
    assert best["host"] == socket.gethostname() and best["checkpoint_found"] == "here"
    for trial in report["trials"]:
        assert Path(trial["directory"]).is_absolute() and (Path(trial["directory"]) / "model.npz").is_file()
    Path(best["checkpoint"]).unlink()
    assert json.loads(sweep("--report", "--json", "--storage", storage, cwd=elsewhere).stdout)["best"][
        "checkpoint_found"] == "missing"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "gethostname", lambda: "another-machine")
        moved = json.loads(sweep("--report", "--json", "--storage", storage, cwd=elsewhere).stdout)["best"]
    assert moved["checkpoint_found"] == "elsewhere" and moved["host"] != "another-machine"


def test_a_report_treats_a_recorded_value_of_the_wrong_type_as_absent(tmp_path):
    """A trial's attributes are whatever the storage holds: a `checkpoint` of 5 was an
    internal TypeError."""
    import sqlite3

    sweep(*SMALL, "--trials", "2", cwd=tmp_path)
    planted = {0: {"checkpoint": 5, "directory": [1], "worker": "zero", "host": 7},
               1: {"worker": True, "failure": 3, "checkpoint": {"a": 1}}}
    with sqlite3.connect(tmp_path / "charseq-sweeps.db") as connection:  # (Optuna updates no finished trial)
        for number, attrs in planted.items():
            (trial_id,) = connection.execute("SELECT trial_id FROM trials JOIN studies USING (study_id) WHERE "
                                             "number = ? AND study_name = 'charseq'", (number,)).fetchone()
            for key, value in attrs.items():
                connection.execute("DELETE FROM trial_user_attributes WHERE trial_id = ? AND key = ?", (trial_id, key))
                connection.execute("INSERT INTO trial_user_attributes (trial_id, key, value_json) VALUES (?, ?, ?)",
                                   (trial_id, key, json.dumps(value)))
    connection.close()
    out = sweep("--report", cwd=tmp_path).stdout
    assert "checkpoint: " in out
    rows = json.loads(sweep("--report", "--json", cwd=tmp_path).stdout)["trials"]
    assert [(r["checkpoint"], r["directory"], r["worker"], r["host"], r["note"]) for r in rows] == [
        (None, None, None, None, ""), (None, rows[1]["directory"], None, rows[1]["host"], "")]


@pytest.mark.parametrize("name", ["charseq:workers", "a:b", "x\n"])
def test_a_report_refuses_a_name_no_sweep_could_have_made(tmp_path, name):
    sweep(*SMALL, "--trials", "1", cwd=tmp_path)
    result = sweep("--report", "--study", name, cwd=tmp_path, ok=False)
    assert result.exit_code == 2 and "a study's name is letters" in _one_line(result)


def test_a_roster_that_is_not_charseqs_is_refused_in_one_line(tmp_path):
    """A planted two-objective STUDY:workers made the sweep print Optuna's raw UserWarning."""
    optuna.create_study(study_name="r:workers", storage=f"sqlite:///{tmp_path / 'charseq-sweeps.db'}",
                        directions=["minimize", "minimize"])
    result = subprocess.run([sys.executable, "-m", "charseq", "sweep", *SMALL, "--trials", "1", "--study", "r"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "r:workers" in last and "not charseq's list of workers" in last, result.stderr
    assert "Warning" not in result.stderr and "Traceback" not in result.stderr


def test_each_trial_of_a_sweep_trains_for_the_time_limit_its_schedule_complete(tmp_path):
    """--time-limit holds for every trial (issue 23): each ends by its time, planned in steps,
    with its cosine schedule run to its end, and the epochs are the time's to decide."""
    import time

    began = time.monotonic()
    sweep("--corpus", "alphabet", "--hidden-size", "16", "--time-limit", "2s", "--schedule", "cosine",
          "--param", "lr=log:0.5:8",
          "--trials", "2", "--pruner", "none", "--seed", "1", cwd=tmp_path)
    assert time.monotonic() - began < 2 * (2 + 12)  # two trials of two seconds each, and a generous margin
    done = trials(tmp_path)
    assert [t.state.name for t in done] == ["COMPLETE"] * 2
    for t in done:
        model = tmp_path / "sweeps" / "charseq" / f"trial-{t.number:04d}" / "model.npz"
        training = charseq.load(model).training
        assert training["planned_steps"] == training["step"] > 100  # ended where its plan said, not by epochs
        last = json.loads((model.parent / "metrics.jsonl").read_text().splitlines()[-1])
        assert last["lr"] == pytest.approx(0.0, abs=1e-9)  # the cosine ran to its end (min-lr 0)


def test_a_sweep_searches_the_transformers_options(tmp_path):
    """`--param model.heads=choice:2,4` as the issue asks; a head count that cannot divide the
    width is refused before the sweep."""
    (tmp_path / "fox.txt").write_text("the quick brown fox jumps over the lazy dog. " * 60)
    args = ["--corpus", "text:fox.txt", "--model", "transformer:layers=1,context=16", "--hidden-size", "8",
            "--epochs", "2", "--trials", "3", "--pruner", "none"]
    sweep(*args, "--param", "model.heads=choice:2,4", "--param", "lr=log:1e-3:1e-2", cwd=tmp_path)
    drawn = [t for t in trials(tmp_path) if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(drawn) == 3
    for trial in drawn:
        saved = charseq.load(tmp_path / "sweeps" / "charseq" / f"trial-{trial.number:04d}" / "model.npz")
        assert saved.model.options() == {"layers": 1, "heads": trial.params["model.heads"], "context": 16}
        assert saved.config["lr"] != 3e-3 and saved.config["seq_len"] == 16  # the lr searched; its context
    result = sweep(*args, "--param", "model.heads=choice:2,3", "--study", "odd", cwd=tmp_path, ok=False)
    assert result.exit_code == 2 and "heads must divide the width (hidden size 8), got 3" in result.output
    # A searched width is built with the model's heads too, not only the first one drawn.
    unsized = [arg for i, arg in enumerate(args) if "--hidden-size" not in args[i - 1: i + 1]]
    result = sweep(*unsized, "--param", "hidden-size=choice:8,10", "--study", "wide", cwd=tmp_path, ok=False)
    assert result.exit_code == 2 and "heads must divide the width (hidden size 10), got 4" in result.output
