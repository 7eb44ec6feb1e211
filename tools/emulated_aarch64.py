"""Run part of the Python test suite on an emulated aarch64 Python (qemu-user).

    python tools/emulated_aarch64.py [--cache-dir /tmp/edge-sdk-aarch64] [--cpu cortex-a72] [--rebuild]

Steps, each timed:

1. root: Debian bookworm's arm64 `python3` and its libraries, downloaded by
   `debootstrap --foreign` (stage 1 only) from the mirror apt uses and unpacked
   with `dpkg-deb -x` (no chroot, no binfmt_misc);
2. site-packages: aarch64 wheels of the SDK's dependencies and pytest, at the
   versions this (x86) Python has, installed with `pip install --target`;
3. the aarch64 native core, cross-built by `tools/cross_build.py`;
4. the tests, under `qemu-aarch64 -cpu cortex-a72` (ARMv8.0 NEON kernels) and
   `-cpu neoverse-n1` (dot-product kernels), with `EDGE_SDK_NATIVE_LIB` set to
   the cross-built library, the checkout on PYTHONPATH (never installed), and
   `EDGE_SDK_EXPECT_ISA` telling `tests/test_emulated_arm.py` which kernel set
   the CPU must select.

Steps 1 and 2 are cached under the cache directory and reused while their
inputs (mirror, package versions) stay the same. Needs debootstrap, qemu-user
and gcc-aarch64-linux-gnu (`.ci/run` installs them). `bin/python3` in the cache
directory is a host shell script that starts the emulated Python (CPU from
`EDGE_SDK_QEMU_CPU`) and is also its `sys.executable`, so tests that start a
subprocess with `sys.executable` run it emulated too.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = Path("/tmp/edge-sdk-aarch64")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
PY = "python3.11"

# cpu -> kernel set the native core must select there
CPUS = {"cortex-a72": "neon", "neoverse-n1": "dotprod"}

# What depends on the architecture: the native core (kernels, buffers, thread
# pool), the numpy int8 reference, aarch64 wheels of numpy/gguf/tokenizers
# (dequantization, token ids), seeded sampling and generation end to end.
TESTS = (
    "tests/test_emulated_arm.py",
    "tests/test_native_kernels.py",
    "tests/test_native_buffers.py",
    "tests/test_native_pool.py",
    "tests/test_reference.py",
    "tests/test_import.py",
    "tests/test_tokenizer.py",
    "tests/test_sampling.py",
    "tests/test_generate.py",
    "tests/test_streaming.py",
    "tests/test_constraints.py",
)
# the real model takes minutes per test under emulation; the x86 run covers it
PYTEST_ARGS = ("-q", "-p", "no:cacheprovider", "-m", "not real_model")

# Installed as aarch64 wheels; pinned to the versions of this Python when it has them.
PACKAGES = ("numpy", "cffi", "gguf", "tokenizers", "safetensors", "jinja2", "pyserial", "jsonschema", "llguidance",
            "pytest")
WHEEL_TAGS = (
    "--only-binary=:all:", "--implementation", "cp", "--python-version", "311",
    "--abi", "cp311", "--abi", "abi3", "--abi", "none",
    "--platform", "manylinux_2_17_aarch64", "--platform", "manylinux2014_aarch64",
    "--platform", "manylinux_2_27_aarch64", "--platform", "manylinux_2_28_aarch64",
    "--platform", "manylinux_2_31_aarch64",
    "--platform", "manylinux_2_34_aarch64",
)


class StepError(RuntimeError):
    """A step failed; the message says which and why."""


def _run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    except FileNotFoundError as e:
        raise StepError(f"{what}: {cmd[0]} is not installed ({e})") from e
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise StepError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc


def debian_mirror() -> str:
    """The Debian mirror apt is configured with (deb822 `.sources` or one-line `.list`), else deb.debian.org.

    Example::

        >>> debian_mirror()
        'http://deb.debian.org/debian'
    """
    env = os.environ.get("EDGE_SDK_DEBIAN_MIRROR")
    if env:
        return env
    apt = Path("/etc/apt")
    files = [apt / "sources.list"] + sorted((apt / "sources.list.d").glob("*.list")) + sorted(
        (apt / "sources.list.d").glob("*.sources"))
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        if f.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
                suites = fields.get("Suites", "").split()
                if SUITE in suites and fields.get("Enabled", "yes") != "no":
                    return fields["URIs"].split()[0]
        else:
            for line in text.splitlines():
                m = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
                if m and m.group(2) == SUITE:
                    return m.group(1)
    return DEFAULT_MIRROR


def ensure_root(cache: Path, mirror: str) -> Path:
    """Debian arm64 python3 with its libraries unpacked under cache/root (reused when complete)."""
    root = cache / "root"
    stamp = root / ".edge-sdk-root"
    want = f"{SUITE} {mirror}\n"
    if stamp.is_file() and stamp.read_text() == want:
        return root
    boot, tmp = cache / "debootstrap", cache / "root.tmp"
    for d in (boot, tmp, root):
        shutil.rmtree(d, ignore_errors=True)
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    _run([debootstrap, "--arch=arm64", "--foreign", "--variant=minbase", "--include=python3",
          SUITE, str(boot), mirror], "debootstrap (arm64, stage 1)")
    debs = sorted((boot / "var/cache/apt/archives").glob("*.deb"))
    if not any(d.name.startswith("python3.11-minimal_") for d in debs):
        raise StepError(f"debootstrap downloaded {len(debs)} packages but not python3.11-minimal")
    tmp.mkdir(parents=True)
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(tmp)], f"unpacking {deb.name}")
    # qemu -L falls back to host paths that the root lacks: give the emulated
    # Python empty site dirs so it never reads the host's x86 packages or .pth files.
    for d in ("usr/local/lib/python3.11/dist-packages", "usr/lib/python3/dist-packages"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    if not (tmp / "usr/bin" / PY).is_file():
        raise StepError(f"the unpacked root has no usr/bin/{PY}")
    tmp.rename(root)
    shutil.rmtree(boot, ignore_errors=True)
    stamp.write_text(want)
    return root


def requirements() -> list[str]:
    """PACKAGES pinned to this Python's versions where installed, so both sides run the same code."""
    out = []
    for name in PACKAGES:
        try:
            out.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(name)
    return out


def ensure_site(cache: Path, reqs: list[str]) -> Path:
    """aarch64 wheels of reqs (and their dependencies) in cache/site-packages (reused when unchanged)."""
    site = cache / "site-packages"
    stamp = site / ".edge-sdk-requirements"
    want = "\n".join(reqs) + "\n"
    if stamp.is_file() and stamp.read_text() == want:
        return site
    tmp = cache / "site-packages.tmp"
    for d in (tmp, site):
        shutil.rmtree(d, ignore_errors=True)
    _run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-warn-script-location",
          "--target", str(tmp), *WHEEL_TAGS, *reqs], "pip install (aarch64 wheels)")
    tmp.rename(site)
    stamp.write_text(want)
    return site


def write_launcher(cache: Path, root: Path) -> Path:
    """cache/bin/python3: a host script that runs the emulated Python under qemu (CPU from EDGE_SDK_QEMU_CPU)."""
    launcher = cache / "bin" / "python3"
    launcher.parent.mkdir(parents=True, exist_ok=True)
    launcher.write_text(
        "#!/bin/sh\n"
        "# argv[0] is this script, so the emulated sys.executable starts emulated subprocesses\n"
        f'exec qemu-aarch64 -cpu "${{EDGE_SDK_QEMU_CPU:-neoverse-n1}}" -L "{root}" -0 "$0" '
        f'"{root}/usr/bin/{PY}" "$@"\n')
    launcher.chmod(0o755)
    return launcher


def cross_build(cache: Path) -> Path:
    """The aarch64 native core, built by tools/cross_build.py into cache/native."""
    out = cache / "native"
    _run([sys.executable, str(REPO / "tools" / "cross_build.py"), "--arch", "aarch64", "-o", str(out)],
         "cross build (aarch64)", cwd=REPO)
    return out / "libedge_sdk.so"


def qemu_env(cache: Path, site: Path, lib: Path, cpu: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "EDGE_SDK_")) and k not in ("VIRTUAL_ENV", "QEMU_LD_PREFIX")}
    env.update(
        PYTHONPATH=f"{REPO}{os.pathsep}{site}",
        PYTHONPYCACHEPREFIX=str(cache / "pycache"),
        EDGE_SDK_NATIVE_LIB=str(lib),
        EDGE_SDK_EXPECT_ISA=CPUS[cpu],
        EDGE_SDK_QEMU_CPU=cpu,
    )
    return env


def run_tests(cache: Path, launcher: Path, site: Path, lib: Path, cpu: str) -> tuple[int, str]:
    """pytest on TESTS under qemu -cpu cpu: (exit code, last summary line)."""
    cmd = [str(launcher), "-m", "pytest", *PYTEST_ARGS, "--basetemp", str(cache / f"pytest-{cpu}"), *TESTS]
    print(f"   EDGE_SDK_QEMU_CPU={cpu} EDGE_SDK_EXPECT_ISA={CPUS[cpu]} {' '.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, cwd=REPO, env=qemu_env(cache, site, lib, cpu), capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        print(out[-8000:])
    lines = [ln for ln in out.strip().splitlines() if ln.strip()]
    return proc.returncode, lines[-1] if lines else "(no output)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("EDGE_SDK_AARCH64_CACHE", DEFAULT_CACHE)))
    ap.add_argument("--cpu", action="append", choices=sorted(CPUS), help="only this qemu CPU (repeatable)")
    ap.add_argument("--rebuild", action="store_true", help="recreate the cached root and site-packages")
    args = ap.parse_args(argv)
    cache = args.cache_dir.resolve()
    if args.rebuild:
        for d in ("root", "site-packages"):
            shutil.rmtree(cache / d, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    if shutil.which("qemu-aarch64") is None:
        print("qemu-aarch64 not found: apt-get install qemu-user", file=sys.stderr)
        return 1

    def step(name: str, fn, *a):
        t0 = time.monotonic()
        res = fn(*a)
        print(f"== {name}: {time.monotonic() - t0:.1f} s", flush=True)
        return res

    try:
        mirror = debian_mirror()
        root = step(f"arm64 root from {mirror} ({cache / 'root'})", ensure_root, cache, mirror)
        site = step(f"aarch64 site-packages ({cache / 'site-packages'})", ensure_site, cache, requirements())
        launcher = write_launcher(cache, root)
        lib = step("cross build of the native core (aarch64)", cross_build, cache)
    except StepError as e:
        print(f"emulated aarch64: {e}", file=sys.stderr)
        return 1
    failed = []
    for cpu in args.cpu or list(CPUS):
        t0 = time.monotonic()
        rc, summary = run_tests(cache, launcher, site, lib, cpu)
        print(f"== tests under -cpu {cpu} ({CPUS[cpu]} kernels): {summary} [{time.monotonic() - t0:.1f} s]",
              flush=True)
        if rc != 0:
            failed.append(cpu)
    if failed:
        print(f"emulated aarch64: tests failed under {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
