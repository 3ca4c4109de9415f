"""The Dockerfile and .dockerignore, read statically and by building what they would build."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from tests.deploy.spec import ROOT, Instruction, dockerfile_instructions, dockerignore_allows

DOCKERFILE = dockerfile_instructions((ROOT / "Dockerfile").read_text())
DOCKERIGNORE = (ROOT / ".dockerignore").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
FINAL_STAGE = max(i.stage for i in DOCKERFILE)


def final(keyword: str) -> list[Instruction]:
    """The final stage's instructions with this keyword."""
    return [i for i in DOCKERFILE if i.stage == FINAL_STAGE and i.keyword == keyword]


def test_every_stage_is_a_slim_python_311() -> None:
    """Each FROM is python:3.11-slim (the runtime carries no compiler)."""
    bases = [i.arguments.split()[0] for i in DOCKERFILE if i.keyword == "FROM"]
    assert bases and all(base.startswith("python:3.11-slim") for base in bases)


def test_runs_as_a_non_root_user_created_in_the_image() -> None:
    """The last USER is a numeric non-root uid that the image creates."""
    user = final("USER")[-1].arguments.split(":")[0]
    assert user.isdigit() and int(user) != 0, user
    assert any(f"--uid {user}" in i.arguments for i in final("RUN"))


def test_entrypoint_is_the_hopline_console_script() -> None:
    """ENTRYPOINT ["hopline"] in exec form, the script pyproject.toml installs."""
    assert final("ENTRYPOINT")[-1].exec_form() == ["hopline"]
    assert "hopline" in PYPROJECT["project"]["scripts"]


def test_stop_signal_is_sigterm() -> None:
    """STOPSIGNAL SIGTERM: the signal hopline drains on (tests/deploy/test_services.py)."""
    assert final("STOPSIGNAL")[-1].arguments == "SIGTERM"


def test_dependencies_are_installed_before_the_source_is_copied() -> None:
    """Layer caching: only pyproject.toml is copied before the dependency install."""
    builder = [i for i in DOCKERFILE if i.stage == 0]
    copies = [n for n, i in enumerate(builder) if i.keyword == "COPY"]
    first_copy, source_copy = copies[0], copies[1]
    assert builder[first_copy].arguments.split()[:-1] == ["pyproject.toml"]
    deps = [n for n, i in enumerate(builder) if "pip install -r" in i.arguments]
    assert deps and first_copy < deps[0] < source_copy
    assert builder[source_copy].arguments == ". ."
    install = [n for n, i in enumerate(builder) if "pip install --no-deps ." in i.arguments]
    assert install and install[0] > source_copy


def test_dependency_list_is_the_one_in_pyproject(tmp_path: Path) -> None:
    """The RUN's requirements.txt step, run by sh next to pyproject.toml, lists its dependencies."""
    run = next(i for i in DOCKERFILE if i.keyword == "RUN" and "requirements.txt" in i.arguments)
    step, _, rest = run.arguments.partition(" && ")
    assert step.endswith("> requirements.txt") and rest.startswith(
        "pip install -r requirements.txt"
    )
    shutil.copy2(ROOT / "pyproject.toml", tmp_path)
    path = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    subprocess.run(["sh", "-c", step], cwd=tmp_path, env={"PATH": path}, check=True)
    requirements = (tmp_path / "requirements.txt").read_text().splitlines()
    assert requirements == PYPROJECT["project"]["dependencies"]


def test_dockerignore_sends_the_packages_and_nothing_local() -> None:
    """Every package pyproject.toml ships gets in; .venv, .git, tests and caches stay out."""
    for pattern in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        assert dockerignore_allows(f"{package}/__init__.py", DOCKERIGNORE), package
    assert dockerignore_allows("pyproject.toml", DOCKERIGNORE)
    for path in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", ".env", "bench/x.json"):
        assert not dockerignore_allows(path, DOCKERIGNORE), path
    assert not dockerignore_allows("gateway/__pycache__/server.cpython-311.pyc", DOCKERIGNORE)


def test_build_context_builds_a_wheel_with_every_module(tmp_path: Path) -> None:
    """`pip install .` on what .dockerignore lets through ships all modules and the script."""
    context = tmp_path / "context"
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    sent = [path for path in tracked if dockerignore_allows(path, DOCKERIGNORE)]
    for path in sent:
        if (ROOT / path).is_file():
            (context / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / path, context / path)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            tmp_path / "wheels",
            context,
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "wheels").glob("hopline-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p for p in sent if p.endswith((".py", ".tcss")) and not p.startswith("tests/")}
    assert shipped and shipped <= names, shipped - names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "hopline = hopline.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
