"""examples/ci/aofcrash-fuzz.yml, the CI recipe: valid YAML, aofcrash installed from its own
repository (a wheel built once, passed on as an artifact), and every step that can run here run
as the recipe writes it.

How the recipe's steps run here, offline and without GitHub: every job gets a fresh directory
(its workspace) and, at its ``setup-python`` step, a fresh virtual environment created without
pip (fast, no ensurepip). Its ``pip`` is a small script running the project environment's pip
on that interpreter (``pip --python``) with ``--no-index --no-build-isolation --no-deps``: no
package index, the build backend and the dependencies being the project environment's, seen
through a ``.pth`` file naming a directory of links to every package of the project
environment except aofcrash's own install. So aofcrash itself is only what the wheel holds,
installed as a copy (not editable) and run with no PYTHONPATH, from outside the checkout, by
the job's own ``aofcrash`` console script: a file missing from the wheel, a broken entry
point or an import of the checkout would fail here. Actions are simulated: ``checkout`` of
aofcrash's repository copies the source files a wheel is built from, ``upload-artifact`` and
``download-artifact`` copy directories as GitHub does (one sub-directory per artifact for a
``pattern``), ``setup-python`` and ``cache`` (nothing cached yet) do nothing more.

The only changes to the commands: ``--budget`` becomes 1 s and ``--workers 0`` (every core)
one worker, so the four shards take seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML (a dev dependency) reads the recipe")

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "examples" / "ci" / "aofcrash-fuzz.yml"
# What a wheel is built from (pyproject.toml's packages and readme).
SOURCE = ("pyproject.toml", "README.md", "faults", "reference", "harness")
RUN_NUMBER = "7"


def _recipe() -> dict[str, Any]:
    data = yaml.safe_load(RECIPE.read_text())
    assert isinstance(data, dict)
    return data


def _run_commands(job: dict[str, Any]) -> list[str]:
    return [" ".join(str(step["run"]).split()) for step in job["steps"] if "run" in step]


def test_the_ci_recipe_is_yaml_with_a_build_job_a_shard_matrix_and_a_merge_job() -> None:
    jobs = _recipe()["jobs"]
    assert list(jobs) == ["build", "fuzz", "report"]
    assert jobs["fuzz"]["needs"] == "build" and jobs["report"]["needs"] == "fuzz"
    assert jobs["fuzz"]["strategy"]["matrix"]["shard"] == [0, 1, 2, 3]
    (fuzz,) = [c for c in _run_commands(jobs["fuzz"]) if c.startswith("aofcrash fuzz")]
    assert "--shard ${{ matrix.shard }}/4" in fuzz  # the matrix's size
    assert any(c.startswith("aofcrash report --merge") for c in _run_commands(jobs["report"]))


def test_the_ci_recipe_installs_aofcrash_from_its_repository_never_from_a_package_index(
) -> None:
    installs = [c for job in _recipe()["jobs"].values() for c in _run_commands(job)
                if c.startswith("pip ")]
    assert installs == ["pip wheel --no-deps ./aofcrash -w dist",
                        "pip install dist/aofcrash-*.whl", "pip install dist/aofcrash-*.whl"]


# -- running the recipe ----------------------------------------------------------------------


def _dependencies_dir(where: Path) -> Path:
    """Links to everything the project environment has installed, but aofcrash itself."""
    site = Path(sysconfig.get_path("purelib"))
    links = where / "dependencies"
    links.mkdir()
    for entry in site.iterdir():
        name = entry.name.lower()
        if name.startswith(("aofcrash", "__editable__")) or name.endswith(".pth"):
            continue
        (links / entry.name).symlink_to(entry)
    return links


class _Runner:
    """Runs the recipe's jobs one step after another (see the module doc)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.artifacts = root / "artifacts"
        self.artifacts.mkdir()
        self.dependencies = _dependencies_dir(root)
        self.logs: list[str] = []

    def job(self, name: str, job: dict[str, Any], context: dict[str, str]) -> None:
        suffix = "-".join(v for k, v in context.items() if k.startswith("matrix."))
        workspace = self.root / "jobs" / (f"{name}-{suffix}" if suffix else name)
        workspace.mkdir(parents=True)
        python: Path | None = None
        for step in job["steps"]:
            if "uses" in step:
                python = self._action(step, workspace, context) or python
            else:
                assert python is not None, f"{name}: a run step before setup-python"
                self._run(step["run"], workspace, python, context)

    def _action(self, step: dict[str, Any], workspace: Path,
                context: dict[str, str]) -> Path | None:
        action = str(step["uses"]).split("@")[0]
        args = {k: _expand(str(v), context) for k, v in (step.get("with") or {}).items()}
        if action == "actions/checkout":
            if "repository" in step.get("with", {}):  # aofcrash's repository: its source
                dest = workspace / args.get("path", ".")
                dest.mkdir(parents=True, exist_ok=True)
                for name in SOURCE:
                    src = ROOT / name
                    if src.is_dir():
                        shutil.copytree(src, dest / name,
                                        ignore=shutil.ignore_patterns("__pycache__"))
                    else:
                        shutil.copy2(src, dest / name)
            # else: the user's implementation; none here (the recipe fuzzes the reference)
            return None
        if action == "actions/setup-python":
            return self._python(workspace / ".python")
        if action == "actions/cache":
            return None  # a first run: nothing cached yet
        if action == "actions/upload-artifact":
            src = workspace / args["path"]
            assert src.is_dir() and any(src.iterdir()), f"nothing to upload at {src}"
            shutil.copytree(src, self.artifacts / args["name"])
            return None
        if action == "actions/download-artifact":
            dest = workspace / args["path"]
            if "name" in args:
                shutil.copytree(self.artifacts / args["name"], dest, dirs_exist_ok=True)
            else:
                found = sorted(self.artifacts.glob(args["pattern"]))
                assert found, f"no artifact matches {args['pattern']}"
                for artifact in found:
                    shutil.copytree(artifact, dest / artifact.name)
            return None
        raise AssertionError(f"the test does not know the action {step['uses']}")

    def _python(self, venv: Path) -> Path:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        python = venv / "bin" / "python"
        purelib = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True, text=True, check=True).stdout.strip()
        (Path(purelib) / "_aofcrash_test_dependencies.pth").write_text(
            f"{self.dependencies}\n")
        pip = venv / "bin" / "pip"
        pip.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pip --python "{python}" '
                       '--disable-pip-version-check "$@" --no-index --no-build-isolation '
                       '--no-deps\n')
        pip.chmod(0o755)
        return python

    def _run(self, text: str, workspace: Path, python: Path, context: dict[str, str]) -> None:
        command = " ".join(_expand(text, context).split())
        command = re.sub(r"--budget \S+", "--budget 1s", command)
        command = command.replace("--workers 0", "--workers 1")
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        env["PATH"] = f"{python.parent}:/usr/local/bin:/usr/bin:/bin"
        done = subprocess.run(["bash", "-e", "-c", command], cwd=workspace, env=env,
                              capture_output=True, text=True, timeout=300, check=False)
        self.logs.append(f"$ {command}\n{done.stdout}{done.stderr}")
        assert done.returncode == 0, "\n".join(self.logs[-1:])


def _expand(text: str, context: dict[str, str]) -> str:
    def value(found: re.Match[str]) -> str:
        expression = found[1].strip()
        if expression not in context:
            raise AssertionError(f"the test does not know the expression {expression!r}")
        return context[expression]

    return re.sub(r"\$\{\{(.*?)\}\}", value, text)


def _needs_build_backend() -> None:
    """The wheel is built with this environment's setuptools (no index to fetch one from)."""
    import importlib.metadata

    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        version = "0"
    if int(version.split(".")[0]) < 77:
        pytest.skip(f"setuptools {version} cannot build aofcrash (pyproject.toml requires 77 "
                    "or later): scripts/bootstrap.sh installs the dev dependencies")


@pytest.mark.slow
def test_every_step_of_the_ci_recipe_runs_from_a_wheel_in_fresh_environments(
    tmp_path: Path,
) -> None:
    _needs_build_backend()
    jobs = _recipe()["jobs"]
    runner = _Runner(tmp_path)
    context = {"github.run_number": RUN_NUMBER, "github.run_id": "1",
               "vars.AOFCRASH_REPOSITORY || github.repository": "owner/aofcrash"}
    runner.job("build", jobs["build"], context)
    (wheel,) = (tmp_path / "artifacts" / "aofcrash-wheel").glob("aofcrash-*.whl")
    for shard in jobs["fuzz"]["strategy"]["matrix"]["shard"]:
        runner.job("fuzz", jobs["fuzz"], {**context, "matrix.shard": str(shard)})
    runner.job("report", jobs["report"], context)

    # aofcrash ran from each job's own environment: the wheel's copy and its console script
    # (the run steps' PATH has no other aofcrash, their interpreter no other harness).
    assert not (runner.dependencies / "harness").exists()
    for job in ("fuzz-0", "report"):
        venv = tmp_path / "jobs" / job / ".python"
        assert (venv / "bin" / "aofcrash").is_file()
        assert len(list(venv.glob("lib/python*/site-packages/harness/cli/_merge.py"))) == 1
    assert wheel.name.startswith("aofcrash-0.1.0-")
    fuzz_log = next(log for log in runner.logs if log.startswith("$ aofcrash fuzz"))
    assert "fuzz: " in fuzz_log and "no violation" in fuzz_log, fuzz_log

    # The merge found the four shards of one campaign and nothing wrong.
    merge_log = runner.logs[-1]
    assert merge_log.startswith("$ aofcrash report --merge"), merge_log
    assert "warning" not in merge_log and "no violation" in merge_log, merge_log
    assert "shards 0/4, 1/4, 2/4, 3/4" in merge_log, merge_log
    (merged,) = (tmp_path / "artifacts" / "aofcrash-report").glob("merged-*/report.json")
    assert merged.with_name("report.html").is_file()
