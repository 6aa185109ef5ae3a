"""`switchboard plugins new` makes a package that installs, passes its own tests and shows in `plugins list`.

The packages are installed as an author would (pip, the package's own
pyproject.toml), without network or build isolation, into a folder put on
the path of the processes that use them; their generated tests (the contract
tests, and a platform started on embedded NATS and PostgreSQL) run in a
pytest of their own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from switchboard.cli.main import main

KINDS = {"source": "acme", "destination": "acme-hook", "ai-provider": "acmeai"}


def run(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_a_new_plugin_of_each_kind_installs_passes_its_tests_and_is_listed(tmp_path: Path) -> None:
    for kind, name in KINDS.items():
        package = tmp_path / f"switchboard-{name}"
        assert main(["plugins", "new", kind, name, "--directory", str(package)]) == 0
        assert {p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file()} == {
            "pyproject.toml", "README.md", f"switchboard_{name.replace('-', '_')}/__init__.py",
            f"tests/test_{name.replace('-', '_')}.py"}

    site = tmp_path / "site"
    installed = run("-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(site), *(str(tmp_path / f"switchboard-{name}") for name in KINDS.values()),
                    cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}

    tested = run("-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "pytest"),
                 *(f"switchboard-{name}/tests" for name in KINDS.values()), cwd=tmp_path, env=env, timeout=240)
    assert tested.returncode == 0, tested.stdout[-6000:] + tested.stderr[-2000:]
    summary = tested.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "skipped" not in summary, summary

    listed = run("-m", "switchboard.cli", "plugins", "list", "--json", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    for kind, name in KINDS.items():
        assert {"kind": kind, "name": name, "from": f"switchboard-{name} 0.1.0 (entry point)"} in rows


@pytest.mark.parametrize("args,message", [
    (["source", "Acme"], "invalid source type name 'Acme'"),
    (["source", "acme--pay"], "invalid source type name"),
    (["destination", "9lives"], "invalid destination name"),
    (["ai-provider", "acme-ai"], "SWITCHBOARD_AI_<NAME>_"),
    (["source", "stripe"], "a built-in source type is already named 'stripe'"),
    (["destination", "webhook"], "a built-in destination is already named 'webhook'"),
    (["ai-provider", "local"], "a built-in AI provider is already named 'local'"),
])
def test_bad_names_are_refused_with_exit_code_2(args: list[str], message: str, tmp_path: Path, capsys) -> None:
    assert main(["plugins", "new", *args, "--directory", str(tmp_path / "plugin")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "plugin").exists()


def test_a_directory_in_use_is_refused_and_left_alone(tmp_path: Path, capsys) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    assert main(["plugins", "new", "source", "acme", "--directory", str(used)]) == 2
    assert "already exists and is not an empty directory" in capsys.readouterr().err
    assert [p.name for p in used.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["plugins", "new", "source", "acme", "--directory", str(empty)]) == 0
    assert (empty / "switchboard_acme" / "__init__.py").is_file()
