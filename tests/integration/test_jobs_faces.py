"""Jobs through the faces people use: the ``himalia jobs`` command (a real subprocess with a
user's token in its environment, as in a terminal of their JupyterLab) and ``%schedule`` in a
real IPython shell, both against one real platform whose runner executes the notebooks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from himalia.sdk import Client, Jobs
from himalia_testing import Platform, wait_for

pytestmark = pytest.mark.timeout(900)
SCOPES = ["access:services!service=himalia", "read:users:name!user", "read:users:groups!user",
          "read:roles:users!user"]
ENDED = ("succeeded", "failed", "timed_out", "cancelled")


def notebook(*cells: str, parameters: str = "n = 3\nlabel = 'x'") -> dict:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(parameters)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, *(nbformat.v4.new_code_cell(c) for c in cells)]
    nb.metadata["kernelspec"] = {"name": "himalia", "display_name": "Python 3 (himalia)", "language": "python"}
    return json.loads(nbformat.writes(nb))


@pytest.fixture(scope="module")
def platform(proxy_bin):
    p = Platform(None, proxy_bin)
    try:
        p.start()
        yield p
    finally:
        p.close()


class Person:
    """A scientist with a hub token, using the CLI and the SDK as that token allows."""

    def __init__(self, platform: Platform, name: str, workdir: Path):
        self.platform, self.name, self.workdir = platform, name, workdir
        assert platform.api("POST", f"/users/{name}").status_code == 201
        platform.set_role(name, "scientist")
        r = platform.api("POST", f"/users/{name}/tokens", json={"note": "jobs faces", "scopes": SCOPES})
        assert r.status_code == 201, r.text
        self.token = r.json()["token"]
        self.api_url = f"{platform.url}/services/himalia/"
        self.jobs = Jobs(self.client())

    def client(self) -> Client:
        return Client(self.api_url, self.token, timeout=60)

    def himalia(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """``himalia jobs ARGS`` as in a terminal of this person's server (no state directory)."""
        return himalia_jobs(*args, env={"HIMALIA_API_URL": self.api_url,
                                        "JUPYTERHUB_API_TOKEN": self.token},
                            cwd=self.workdir, timeout=timeout)

    def ok(self, *args: str) -> str:
        done = self.himalia(*args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    def file(self, name: str, nb: dict) -> str:
        path = self.workdir / name
        path.write_text(json.dumps(nb))
        return str(path)

    def run_state(self, run_id: int, states=ENDED, timeout: float = 120) -> dict:
        found = {}

        def reached():
            found.update(self.jobs.run_info(run_id))
            return found["state"] in states

        wait_for(reached, timeout, what=f"run {run_id} to be {'/'.join(states)}")
        return found


def himalia_jobs(*args: str, env: dict, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real ``himalia jobs`` command, with only ``env``'s platform variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HIMALIA_", "JUPYTERHUB_"))}
    return subprocess.run([sys.executable, "-m", "himalia.hub", "jobs", *args], capture_output=True,
                          text=True, timeout=timeout, env={**clean, **env}, cwd=cwd)


@pytest.fixture(scope="module")
def ada(platform, unique_name_module, tmp_path_factory):
    return Person(platform, unique_name_module("jf"), tmp_path_factory.mktemp("ada"))


def error_line(done: subprocess.CompletedProcess) -> str:
    """The CLI's error: the last line on stderr (a progress bar may come before it)."""
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = [line for line in re.split(r"[\r\n]", done.stderr) if line.strip()]
    assert lines and lines[-1].startswith("himalia: "), done.stderr
    return lines[-1]


def queued_run(stdout: str) -> int:
    found = re.search(r"Run (\d+) of \S+ queued", stdout)
    assert found, stdout
    return int(found.group(1))


# -- the command line --------------------------------------------------------------------------
def test_create_from_a_local_notebook_then_run_and_follow_it(ada):
    path = ada.file("report.ipynb", notebook("total = n * 2\nprint('label', label, 'total', total)"))
    out = ada.ok("create", "report", path, "--param", "n=4")
    assert "Created job report" in out and "n: int = 4" in out and "label: str = \"x\"" in out

    done = ada.himalia("run", "report", "--param", "label=typed", "--follow")
    assert done.returncode == 0, (done.stdout, done.stderr)
    run_id = queued_run(done.stdout)
    assert f"Run {run_id} of report succeeded" in done.stdout
    info = ada.jobs.run_info(run_id)
    assert info["state"] == "succeeded" and info["parameters"] == {"label": "typed"}
    total = info["progress"]["cells_total"]
    assert total == 3 and f"{total}/{total}" in done.stderr  # the bar reached the last cell
    assert "label typed total 8" in ada.jobs.output(run_id).decode()

    logs = ada.ok("logs", str(run_id))
    assert "==> runner.log <==" in logs and "succeeded" in logs


def test_a_failing_notebook_exits_1_with_the_failing_cell_on_one_line(ada):
    path = ada.file("broken.ipynb", notebook("x = 1", "raise ValueError('bad data ' + label)", "never = True"))
    ada.ok("create", "broken", path)
    done = ada.himalia("run", "broken", "--follow")
    line = error_line(done)
    run_id = queued_run(done.stdout)
    reason = ada.jobs.run_info(run_id)["reason"]
    assert re.fullmatch(r"ValueError: bad data x \(in the cell that starts \"raise ValueError\('bad data ' "
                        r"\+ label\)\", In \[\d+\]\)", reason), reason
    assert line == f"himalia: run {run_id} of broken failed: {reason} (himalia jobs logs {run_id})"
    # rerun --follow runs the same version again, and fails the same way.
    again = ada.himalia("rerun", str(run_id), "--follow")
    rerun_id = queued_run(again.stdout)
    assert rerun_id != run_id and reason in error_line(again)
    assert ada.jobs.run_info(rerun_id)["trigger"] == "rerun"


def test_bad_input_is_one_line_naming_the_field_and_creates_nothing(ada):
    path = ada.file("ok.ipynb", notebook("y = n + 1"))
    cases = [
        (("--cron", "every day"), "himalia: schedule: 'every day' is not a cron expression"),
        (("--timezone", "Mars/Olympus"), "himalia: timezone: unknown time zone 'Mars/Olympus'"),
        (("--param", "n=three"), "himalia: parameters.n: must be a int"),
        (("--param", "nope=1"), "himalia: parameters.nope: unknown parameter 'nope'"),
    ]
    for extra, start in cases:
        done = ada.himalia("create", "refused", path, *extra)
        assert done.stdout == "" and done.stderr.count("\n") == 1, (extra, done.stderr)
        assert error_line(done).startswith(start), (extra, done.stderr)
    assert "refused" not in [j["name"] for j in ada.jobs.list()]
    missing = ada.himalia("show", "no-such-job")
    assert error_line(missing) == "himalia: Job 'no-such-job' does not exist (or is not yours)."


def test_list_show_pause_resume_cancel_and_delete(ada):
    path = ada.file("sleepy.ipynb", notebook("import time\ntime.sleep(120)"))
    ada.ok("create", "sleepy", path, "--cron", "0 3 * * *", "--timezone", "Europe/Paris",
           "--timeout", "600", "--retries", "1")
    listed = ada.ok("list")
    row = next(line for line in listed.splitlines() if " sleepy " in line)
    assert "0 3 * * * (Europe/Paris)" in row and "scheduled" in row and " 03:00" in row
    assert "sleepy" in [j["name"] for j in json.loads(ada.ok("list", "--json"))]

    assert "Paused job sleepy" in ada.ok("pause", "sleepy")
    shown = json.loads(ada.ok("show", "sleepy", "--json"))
    assert shown["job"]["paused"] is True and shown["job"]["next_runs"] == []
    assert "next run" in ada.ok("resume", "sleepy") and not ada.jobs.get("sleepy")["paused"]

    run_id = queued_run(ada.ok("run", "sleepy"))
    ada.run_state(run_id, states=("running",))
    refused = ada.himalia("delete", "sleepy")
    assert error_line(refused) == f"himalia: Run {run_id} of this job is running: cancel it first."
    assert "is being cancelled" in ada.ok("cancel", str(run_id))
    assert ada.run_state(run_id, timeout=60)["state"] == "cancelled"
    again = ada.himalia("cancel", str(run_id))
    assert error_line(again) == f"himalia: run {run_id} has already ended (cancelled)"

    text = ada.ok("show", "sleepy")
    assert "schedule:   0 3 * * * (Europe/Paris)" in text and "retries: 1" in text
    row = next(line for line in text.splitlines() if line.startswith(f"{run_id} "))
    assert row.split()[:3] == [str(run_id), "cancelled", "manual"]
    assert "runner.log" in ada.ok("logs", str(run_id))

    assert "Deleted job sleepy" in ada.ok("delete", "sleepy")
    assert "sleepy" not in ada.ok("list")
    assert error_line(ada.himalia("logs", str(run_id))) == f"himalia: Run {run_id} does not exist (or is not yours)."


def test_on_the_platforms_machine_the_state_directory_acts_as_admin(ada, platform):
    ada.jobs.create("audited", notebook=notebook("pass"))
    state = ("--state-dir", str(platform.state_dir))
    listed = himalia_jobs("list", *state, env={}, cwd=ada.workdir)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if " audited " in line)
    assert row.split()[1:3] == ["audited", ada.name]  # everyone's jobs, with their owners
    shown = himalia_jobs("show", f"{ada.name}/audited", *state, env={}, cwd=ada.workdir)
    assert shown.returncode == 0 and f"owner {ada.name}" in shown.stdout, shown.stderr
    path = ada.file("mine.ipynb", notebook("pass"))
    refused = himalia_jobs("create", "mine", path, *state, env={}, cwd=ada.workdir)
    assert "a job belongs to the person who creates it" in error_line(refused)


# -- %schedule ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def home(ada, platform) -> Path:
    """Ada's home, as the runner makes it the first time one of her runs needs her account."""
    job = ada.jobs.create("first", notebook=notebook("pass"))
    assert ada.run_state(ada.jobs.run(job["id"])["id"])["state"] == "succeeded"
    path = Path(f"/home/{platform.user_prefix}{ada.name}")
    assert path.is_dir()
    return path


def place(home: Path, relative: str, nb: dict) -> None:
    """A notebook in the home, owned by its account, as if saved from JupyterLab."""
    account = home.stat()
    target = home / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    os.chown(target.parent, account.st_uid, account.st_gid)
    target.write_text(json.dumps(nb))
    os.chown(target, account.st_uid, account.st_gid)


@pytest.fixture
def ip(ada, monkeypatch):
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "himalia.magics")
    shell.magics_manager.registry["JobMagics"].client_factory = ada.client
    return shell


def test_schedule_the_current_notebook_with_a_cron_and_run_it_now(ada, home, ip, monkeypatch):
    place(home, "work/daily.ipynb", notebook("print('n is', n, label)"))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("JPY_SESSION_NAME", str(home / "work" / "daily.ipynb"))
    with capture_output() as shown:
        ip.run_line_magic("schedule", "--cron '0 6 * * 1-5' --tz Europe/Paris --param n=7 "
                                      "--param label=weekday --timeout 300 --now")
    text = shown.outputs[0].data["text/plain"]
    html = shown.outputs[0].data["text/html"]
    assert "Job 'daily'" in text and "from work/daily.ipynb" in text
    assert "schedule: 0 6 * * 1-5 in Europe/Paris" in text and "next runs (Europe/Paris): " in text
    assert "n: int = 7" in text and "label: str = 'weekday'" in text and "save the notebook" in text
    assert "<td><code>n</code></td><td>int</td>" in html

    job = ada.jobs.get("daily")
    assert job["source_path"] == "work/daily.ipynb" and job["timezone"] == "Europe/Paris"
    assert job["timeout_seconds"] == 300 and len(job["next_runs"]) == 3
    assert all("T06:00:00+0" in t for t in job["next_runs"])
    runs = ada.jobs.runs("daily")
    assert len(runs) == 1 and re.search(rf"run {runs[0]['id']} (queued|running)", text)
    assert ada.run_state(runs[0]["id"])["state"] == "succeeded"
    assert "n is 7 weekday" in ada.jobs.output(runs[0]["id"]).decode()


def test_schedule_a_path_without_cron_creates_the_job_only(ada, home, ip):
    place(home, "work/adhoc report.ipynb", notebook("z = n"))
    with capture_output() as shown:
        ip.run_line_magic("schedule", "'work/adhoc report.ipynb'")
    assert "Job 'adhoc-report'" in shown.outputs[0].data["text/plain"]
    assert "schedule: none" in shown.outputs[0].data["text/plain"]
    job = ada.jobs.get("adhoc-report")
    assert job["schedule"] is None and job["next_runs"] == []
    assert ada.jobs.runs(job["id"]) == []


def test_schedule_refusals_are_usage_errors_with_the_apis_message(ada, home, ip):
    place(home, "work/checked.ipynb", notebook("z = n"))
    cases = [
        ("work/checked.ipynb --name c1 --cron 'every day'", r"^%schedule: schedule: 'every day' is not a cron"),
        ("work/checked.ipynb --name c2 --param n=three", r"^%schedule: parameters\.n: must be a int"),
        ("work/missing.ipynb --name c3", r"^%schedule: path: work/missing\.ipynb does not exist in your home"),
        ("work/checked.ipynb --name 'bad name!'", r"^%schedule: name: use 1-100 letters"),
    ]
    for line, message in cases:
        with pytest.raises(UsageError, match=message):
            ip.run_line_magic("schedule", line)
    assert not {"c1", "c2", "c3"} & {j["name"] for j in ada.jobs.list()}


def test_the_job_runs_the_file_as_saved_when_it_was_scheduled(ada, home, ip):
    place(home, "work/snap.ipynb", notebook("print('version one')"))
    with capture_output():
        ip.run_line_magic("schedule", "work/snap.ipynb --name snap")
    place(home, "work/snap.ipynb", notebook("print('version two')"))
    run = ada.jobs.run("snap")
    assert ada.run_state(run["id"])["state"] == "succeeded"
    out = ada.jobs.output(run["id"]).decode()
    assert "version one" in out and "version two" not in out
    # The CLI sees the magic's job too, with its notebook's path.
    assert "notebook:   work/snap.ipynb" in ada.ok("show", "snap")
