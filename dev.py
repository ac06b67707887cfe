#!/usr/bin/env python3
"""Developer entry point: the README's two commands.

    python3 dev.py demo   # the offline demo call (creates or reuses .venv)
    python3 dev.py test   # every gate: ruff, format, mypy --strict, stub check, API reference,
                          # pytest + coverage
    python3 dev.py docs   # only the API reference (pdoc) into build/api-reference/
    python3 dev.py setup  # only create or update .venv

Only the standard library is used here, so this runs on a fresh machine with Python 3.11+.
The virtualenv lives in ``.venv`` next to this file and is reinstalled only when
``pyproject.toml`` changes (a hash is kept in ``.venv/.dev-stamp``). It holds every extra plus
``pipecat`` (so protobuf 6: pipecat-ai requires protobuf<7) and runs the whole suite with
coverage. ``test`` also runs the stub check and the media suites in ``.venv-protobuf7``
(``.[all]`` on protobuf 7), so the stubs are proven on both protobuf majors.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys

if sys.version_info < (3, 11):  # noqa: UP036 - say it plainly instead of failing on tomllib
    sys.exit("webex_byova needs Python 3.11 or newer")

import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
#: The main environment: every extra and pipecat-ai, which needs protobuf<7 (so protobuf 6).
MAIN_EXTRAS = "all,pipecat"
#: Dev tools the main environment cannot hold: grpcio-tools 1.85 requires protobuf>=7.35.
_MAIN_SKIP = frozenset({"grpcio-tools"})
#: A second environment on protobuf 7 without pipecat: the committed stubs are generated and
#: checked there (grpcio-tools), and the media suites pass there too.
COMPAT_VENV = ROOT / ".venv-protobuf7"
COMPAT_PINS = ("protobuf>=7.35.1,<8",)
COMPAT_EXTRAS = "all"
COMPAT_TESTS = ("tests/media", "tests/proxy", "tests/media_audio")
#: Dev tools the compat environment does not need (they only lint/type-check).
_COMPAT_SKIP = frozenset({"mypy", "ruff"})
SRC = ROOT / "src"
API_REFERENCE = ROOT / "build" / "api-reference"  # gitignored (build/)
#: Packages whose ``__all__`` names lazily imported classes (behind the optional extras): pdoc
#: does not call a module ``__getattr__`` and would warn. Their modules are documented one by
#: one, and every public name is on the ``webex_byova`` page.
DOCS_SKIP = frozenset({"webex_byova.storage", "webex_byova.media.proxy"})


def _venv_python(venv_dir: Path = VENV) -> Path:
    return venv_dir / ("Scripts" if os.name == "nt" else "bin") / "python"


def _run(*args: str | os.PathLike[str], env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], cwd=ROOT, check=True, env=env)


def _ensure(venv_dir: Path, extras: str, requirements: list[str]) -> Path:
    """Create or reuse ``venv_dir`` with ``.[extras]`` and ``requirements``.

    It is reinstalled only when ``pyproject.toml``, the requirements or the Python change (a
    hash is kept in ``<venv>/.dev-stamp``).
    """
    pyproject = (ROOT / "pyproject.toml").read_bytes()
    key = pyproject + sys.version.encode() + extras.encode() + "\n".join(requirements).encode()
    digest = hashlib.sha256(key).hexdigest()
    python = _venv_python(venv_dir)
    stamp = venv_dir / ".dev-stamp"
    if python.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return python
    if not python.exists():
        print(f"creating virtualenv in {venv_dir}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run(*pip, "-e", f".[{extras}]", *requirements)
    stamp.write_text(digest)
    return python


def _dev_group(skip: frozenset[str] = frozenset()) -> list[str]:
    """The ``dev`` dependency group, without the distributions named in ``skip``."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = pyproject["dependency-groups"]["dev"]
    return [req for req in reqs if re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0] not in skip]


def ensure_venv() -> Path:
    """Create ``.venv`` if needed: the package with every extra, pipecat and the dev group."""
    return _ensure(VENV, MAIN_EXTRAS, _dev_group(_MAIN_SKIP))


def ensure_compat_venv() -> Path:
    """``.venv-protobuf7``: every extra but pipecat, the test tools and grpcio-tools."""
    return _ensure(COMPAT_VENV, COMPAT_EXTRAS, [*_dev_group(_COMPAT_SKIP), *COMPAT_PINS])


def _bin(name: str) -> Path:
    return _venv_python().parent / name


def run_compat_tests() -> int:
    """The media suites again on protobuf 7 (no coverage: the main run measures that)."""
    python = ensure_compat_venv()
    cmd = [str(python), "-m", "pytest", "-W", "error", "-q", "-p", "no:cacheprovider"]
    cmd += COMPAT_TESTS
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, check=False).returncode


def ensure_redis_server() -> None:
    """The storage tests run a real redis-server; install Debian's package when we can."""
    if shutil.which("redis-server"):
        return
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        print("installing redis-server (Debian package) for the Redis storage tests", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True, env=env)
        # Debian starts its own service; the tests start their own on a free port instead.
        subprocess.run(["service", "redis-server", "stop"], check=False, capture_output=True)
        return
    print(
        "redis-server is not installed and cannot be installed automatically; "
        "install it (e.g. `apt-get install redis-server`) so the Redis storage tests can run",
        file=sys.stderr,
    )


def public_modules() -> list[str]:
    """Every module of the package without a ``_``-prefixed part, the package first."""
    names = []
    for path in sorted((SRC / "webex_byova").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if any(part.startswith("_") for part in parts):
            continue
        name = ".".join(parts)
        if name not in DOCS_SKIP:
            names.append(name)
    return sorted(names, key=lambda n: (n != "webex_byova", n))


def docs_command(python: str | os.PathLike[str], output: Path) -> list[str]:
    """The pdoc run that builds the API reference from the docstrings (warnings are errors)."""
    return [
        str(python),
        "-W",
        "error",
        "-m",
        "pdoc",
        "--docformat",
        "google",
        "--no-show-source",
        "--footer-text",
        "webex_byova API reference",
        "--output-directory",
        str(output),
        *public_modules(),
    ]


def build_docs(python: Path, output: Path = API_REFERENCE) -> None:
    """Build the API reference into ``output`` (replaced), failing on any pdoc warning."""
    if output.exists():
        shutil.rmtree(output)
    _run(*docs_command(python, output))
    print(f"API reference: {output / 'index.html'}", flush=True)


def cmd_docs(_extra: list[str]) -> int:
    build_docs(ensure_venv())
    return 0


def cmd_test(extra: list[str]) -> int:
    python = ensure_venv()
    ensure_redis_server()
    _run(_bin("ruff"), "check", ".")
    _run(_bin("ruff"), "format", "--check", ".")
    _run(_bin("mypy"))
    if (ROOT / "scripts" / "gen_proto.py").exists():
        # grpcio-tools needs protobuf 7: the stubs are generated in the protobuf 7 environment.
        _run(ensure_compat_venv(), "scripts/gen_proto.py", "--check")
    build_docs(python)
    env = dict(os.environ)
    env["WEBEX_BYOVA_API_REFERENCE"] = str(API_REFERENCE)  # tests/cli/test_api_reference.py
    cmd = [
        str(python),
        "-m",
        "pytest",
        "-W",
        "error",
        "--cov=webex_byova",
        "--cov-report=term",
        *extra,
    ]
    print("+", " ".join(cmd), flush=True)
    main_rc = subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode
    if extra:  # a targeted run (``dev.py test tests/x``) skips the second environment
        return main_rc
    compat_rc = run_compat_tests()
    return main_rc or compat_rc


def cmd_setup(_extra: list[str]) -> int:
    ensure_venv()
    ensure_compat_venv()
    return 0


def cmd_demo(extra: list[str]) -> int:
    ensure_venv()
    return subprocess.run([str(_bin("byova")), "demo", *extra], cwd=ROOT, check=False).returncode


def main(argv: list[str]) -> int:
    commands = {"test": cmd_test, "demo": cmd_demo, "docs": cmd_docs, "setup": cmd_setup}
    if not argv or argv[0] not in commands:
        print(__doc__)
        return 2
    try:
        return int(commands[argv[0]](argv[1:]) or 0)
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
