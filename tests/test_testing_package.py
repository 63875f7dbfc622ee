"""bridgenet.testing: the pytest side in a package of its own, which the core never imports.

The older module names (``bridgenet.fixtures``, ``bridgenet.pytest_plugin``)
go on working: the same objects, and the plugin registered once however it
is asked for.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import bridgenet
from bridgenet import fixtures
from bridgenet.testing import factories, janitor, networks, processes, reach, settings

SOURCE_ROOT = Path(bridgenet.__file__).resolve().parent.parent
SHIMS = ("fixtures", "pytest_plugin", "reach", "faults")
"""Modules of the core directory that are older names of bridgenet.testing's modules."""
CORE = sorted([p.stem for p in (SOURCE_ROOT / "bridgenet").glob("*.py") if p.stem not in SHIMS + ("__main__",)]
              + [f"runners.{p.stem}" for p in (SOURCE_ROOT / "bridgenet" / "runners").glob("*.py")])


def test_the_core_imports_neither_pytest_nor_bridgenet_testing() -> None:
    code = ("import sys\n"
            f"for m in {CORE!r}:\n"
            "    __import__('bridgenet' if m == '__init__' else 'bridgenet.' + m)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pytest', '_pytest')"
            " or m.startswith('bridgenet.testing')))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={"PYTHONPATH": str(SOURCE_ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_runners_never_names_the_sandbox_module() -> None:
    # sandbox.py imports runners; runners only knows what its guard needs (runners.Isolated).
    import ast

    for path in (SOURCE_ROOT / "bridgenet" / "runners").glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not {m for m in imported if m and m.lstrip(".").endswith("sandbox")}, (path, imported)


def test_the_older_reach_module_offers_the_same_objects() -> None:
    from bridgenet import reach as old

    for name in old.__all__:
        assert getattr(old, name) is getattr(reach, name), name
    assert old._describe is reach._describe  # private names too, looked up lazily


def test_no_file_of_the_package_is_long() -> None:
    for path in [*(SOURCE_ROOT / "bridgenet" / "testing").glob("*.py"), *(SOURCE_ROOT / "bridgenet" / "runners").glob("*.py")]:
        assert len(path.read_text().splitlines()) <= 500, path


def test_the_older_module_offers_the_same_objects() -> None:
    homes = (factories, janitor, networks, processes, settings)
    for name in fixtures.__all__:
        home = next(m for m in homes if hasattr(m, name))
        assert getattr(fixtures, name) is getattr(home, name), name


ONE_TEST = "def test_it(bridgenet_sandbox):\n    assert bridgenet_sandbox.pristine\n"


@pytest.mark.real
@pytest.mark.parametrize("args", [
    ["-p", "bridgenet.pytest_plugin"],
    ["-p", "bridgenet.testing.plugin"],
    ["-p", "bridgenet.pytest_plugin", "-p", "bridgenet.testing.plugin"],
    ["-p", "bridgenet.testing.plugin", "-p", "bridgenet.pytest_plugin"],
])
def test_the_plugin_is_registered_once_whatever_name_asks_for_it(pytester: pytest.Pytester,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  args: list[str]) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(test_one=ONE_TEST)
    result = pytester.runpytest_inprocess(*args, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["bridgenet: sandbox scope function, *"])
    assert result.stdout.str().count("bridgenet: sandbox scope") == 1


def test_the_older_plugin_module_still_names_the_fixtures() -> None:
    from bridgenet import pytest_plugin
    from bridgenet.testing import plugin

    assert pytest_plugin.bridgenet_tutorial is plugin.bridgenet_tutorial
    assert pytest_plugin.pytest_plugins == ["bridgenet.testing.plugin"]
    assert "bridgenet_tutorial" not in dir(pytest_plugin)  # so pytest sees the fixtures once
    with pytest.raises(AttributeError):
        pytest_plugin.no_such_name  # noqa: B018


def test_every_module_imports_on_its_own() -> None:
    """Seen: `import bridgenet.snapshots` first failed (snapshots -> state -> snapshots)."""
    import subprocess
    import sys

    names = sorted(f"bridgenet.{'.'.join(p.relative_to(SOURCE_ROOT / 'bridgenet').with_suffix('').parts)}"
                   for p in (SOURCE_ROOT / "bridgenet").rglob("*.py") if p.stem not in ("__init__", "__main__"))
    script = (
        "import importlib, sys\n"
        "bad = []\n"
        f"for name in {names!r}:\n"
        "    for m in [m for m in sys.modules if m == 'bridgenet' or m.startswith('bridgenet.')]:\n"
        "        del sys.modules[m]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as e:\n"
        "        bad.append(f'{name}: {e!r}')\n"
        "print('\\n'.join(bad))\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=SOURCE_ROOT,
                       env={**__import__("os").environ, "PYTHONPATH": str(SOURCE_ROOT)}, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "", r.stdout + r.stderr
