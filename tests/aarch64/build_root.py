"""Build an arm64 Debian bookworm root with edgereg's base dependencies, for qemu-user.

What it makes (cached under ``<repo>/.cache/aarch64/<recipe hash>/``, built once)::

    root/                  python3.11 and its runtime libraries, from Debian's arm64 .debs
    site/                  numpy, opencv-python-headless, click, ai-edge-litert (+ their
                           dependencies) from manylinux aarch64 wheels: the newest versions
    site-numpy1/           the same with numpy<2 (pip then settles on OpenCV 4.11): the pin a
                           Raspberry Pi OS venv with --system-site-packages needs so that the
                           apt-installed picamera2 (simplejpeg, built for numpy 1) still works
    profiles/pi4/, pi5/    a view of root/ (symlinks) plus a Raspberry Pi /proc/cpuinfo and
                           /sys/devices/system/cpu/ for that board
    manifest.json          exact .deb and wheel versions, the hash inputs

How:

* **.debs**: ``apt-get`` with a private state directory (its own sources list, lists, cache
  and an empty dpkg status) set to ``APT::Architecture=arm64`` resolves the closure of
  :data:`DEB_PACKAGES` and downloads it; ``dpkg-deb -x`` unpacks each into ``root/``. The
  host's dpkg is untouched (no ``dpkg --add-architecture``) and no root is needed.
* **wheels**: the host pip (``pip install --target site/``) with explicit ``--platform``
  tags for glibc 2.36 (bookworm) down to manylinux2014, NEWEST FIRST (pip otherwise settles
  on old versions that happen to have a matching wheel), ``--python-version 3.11
  --implementation cp --only-binary=:all:``. The requirements are read from
  ``pyproject.toml``'s ``[project].dependencies``: exactly the base install, no TensorFlow.
* **CPU profile**: qemu-aarch64's ``-L PREFIX`` looks every absolute path a guest opens up
  under PREFIX first and falls back to the host path when it is not there. So a regular
  file ``PREFIX/proc/cpuinfo`` is what the guest reads as ``/proc/cpuinfo`` (qemu 7.2 does
  not emulate it for aarch64), with no mount and no root. The same goes for the
  ``/sys/devices/system/cpu`` files that XNNPACK's cpuinfo and glibc read. Everything else
  in a profile is a symlink into the shared ``root/``. Absolute symlinks inside the .debs
  are rewritten to relative ones, or they would resolve on the host.

Run as a script to build (or find) the cache and print its location.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the test is skipped/failed with a clear reason
    tomllib = None  # type: ignore[assignment]

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "aarch64"

#: Debian sources for the arm64 root. Override the mirror with EDGEREG_DEBIAN_MIRROR and
#: EDGEREG_DEBIAN_SECURITY_MIRROR (e.g. a local proxy); the suites stay bookworm.
DEBIAN_MIRROR = os.environ.get("EDGEREG_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SECURITY_MIRROR = os.environ.get(
    "EDGEREG_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security"
)
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
SUITES = (
    (DEBIAN_MIRROR, "bookworm"),
    (DEBIAN_MIRROR, "bookworm-updates"),
    (SECURITY_MIRROR, "bookworm-security"),
)
#: apt resolves their dependency closure (libc6, libssl3, libffi8, zlib1g, ...).
#: libstdc++6 and libgcc-s1 are what manylinux wheels (LiteRT, OpenCV) expect from the system.
DEB_PACKAGES = ("python3.11-minimal", "libpython3.11-stdlib", "libstdc++6", "libgcc-s1")
#: Documentation is not needed to run anything; dropping it keeps the cache small.
PRUNE = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
)

#: Extra pins per wheel set (see the module docstring); "site" is the plain base install.
SITES = {"site": (), "site-numpy1": ("numpy<2",)}

PYTHON_VERSION = "3.11"
#: bookworm has glibc 2.36. Newest first.
PLATFORMS = tuple(f"manylinux_2_{v}_aarch64" for v in range(36, 16, -1)) + (
    "manylinux2014_aarch64",
)

#: Raspberry Pi 4 Model B (BCM2711, 4x Cortex-A72 r0p3) under 64-bit Raspberry Pi OS.
PI4_CORE = """\
processor\t: {n}
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3
"""
PI4_TAIL = """\
Hardware\t: BCM2835
Revision\t: c03114
Serial\t\t: 1000000000000000
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""
#: Raspberry Pi 5 Model B (BCM2712, 4x Cortex-A76 r4p1) under 64-bit Raspberry Pi OS.
PI5_CORE = """\
processor\t: {n}
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x4
CPU part\t: 0xd0b
CPU revision\t: 1
"""
PI5_TAIL = """\
Revision\t: d04170
Serial\t\t: 0000000000000000
Model\t\t: Raspberry Pi 5 Model B Rev 1.0
"""


@dataclass(frozen=True)
class Profile:
    """A board: the qemu CPU model and what /proc and /sys say about it."""

    name: str
    qemu_cpu: str
    cpu_part: str
    midr: str
    max_khz: int
    cpuinfo: str
    #: (level, type, size, shared by all cores) for /sys/devices/system/cpu/cpuN/cache/
    caches: tuple[tuple[int, str, str, bool], ...]
    cores: int = 4


PROFILES = {
    "pi4": Profile(
        "pi4",
        "cortex-a72",
        "0xd08",
        "0x00000000410fd083",
        1800000,
        "\n".join(PI4_CORE.format(n=n) for n in range(4)) + "\n" + PI4_TAIL,
        (
            (1, "Data", "32K", False),
            (1, "Instruction", "48K", False),
            (2, "Unified", "1024K", True),
        ),
    ),
    "pi5": Profile(
        "pi5",
        "cortex-a76",
        "0xd0b",
        "0x00000000414fd0b1",
        2400000,
        "\n".join(PI5_CORE.format(n=n) for n in range(4)) + "\n" + PI5_TAIL,
        (
            (1, "Data", "64K", False),
            (1, "Instruction", "64K", False),
            (2, "Unified", "512K", False),
            (3, "Unified", "2048K", True),
        ),
    ),
}


class BuildError(RuntimeError):
    """The root could not be built; ``fetch`` says whether the network/apt step failed."""

    def __init__(self, message: str, fetch: bool = False) -> None:
        super().__init__(message)
        self.fetch = fetch


@dataclass(frozen=True)
class Built:
    """Where a finished build lives."""

    dir: Path
    root: Path
    site: Path
    manifest: dict

    def site_dir(self, name: str = "site") -> Path:
        return self.dir / name

    def profile_root(self, name: str) -> Path:
        return self.dir / "profiles" / name


def requirements() -> list[str]:
    """The base install's requirements, exactly as ``pyproject.toml`` states them."""
    if tomllib is None:
        raise BuildError("reading pyproject.toml needs Python 3.11 or newer (tomllib)")
    with open(REPO / "pyproject.toml", "rb") as f:
        return list(tomllib.load(f)["project"]["dependencies"])


def recipe_hash() -> str:
    """Hash of everything that decides the build: this file and the requirements."""
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    h.update(json.dumps([requirements(), SITES]).encode())
    return h.hexdigest()[:16]


def missing_tools() -> list[str]:
    """Host programs the build and the run need that are not on PATH."""
    need = ("apt-get", "dpkg-deb", "qemu-aarch64-static")
    return [t for t in need if shutil.which(t) is None]


def _run(cmd: list[str], what: str, fetch: bool = False, **kw) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kw)
    except subprocess.TimeoutExpired:
        msg = f"{what}: timed out after 900 s ({' '.join(cmd[:3])} ...)"
        raise BuildError(msg, fetch) from None
    if p.returncode != 0:
        tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-15:])
        raise BuildError(f"{what} failed (exit {p.returncode}):\n{tail}", fetch)
    return p.stdout


def _apt_options(state: Path) -> list[str]:
    opts = {
        "APT::Architecture": "arm64",
        "APT::Architectures::": "arm64",
        "APT::Install-Recommends": "false",
        "Dir::State": str(state / "state"),
        "Dir::State::status": str(state / "status"),
        "Dir::Cache": str(state / "cache"),
        "Dir::Etc": str(state / "etc"),
        "Dir::Etc::sourcelist": str(state / "etc" / "sources.list"),
        "Acquire::Languages": "none",
        "Debug::NoLocking": "1",
        "pkgCacheFile::Generate": "1",
    }
    if os.geteuid() == 0:
        # apt drops to the _apt user to download, which cannot write into this private tree.
        opts["APT::Sandbox::User"] = "root"
    return [f"-o{k}={v}" for k, v in opts.items()]


def fetch_debs(state: Path) -> list[Path]:
    """Resolve and download the arm64 .debs with a private apt state; returns the files."""
    for d in ("state/lists/partial", "cache/archives/partial", "etc/apt.conf.d"):
        (state / d).mkdir(parents=True, exist_ok=True)
    for d in ("sources.list.d", "preferences.d", "trusted.gpg.d"):
        (state / "etc" / d).mkdir(parents=True, exist_ok=True)
    (state / "status").write_text("")
    (state / "etc" / "sources.list").write_text(
        "".join(f"deb [arch=arm64 signed-by={KEYRING}] {m} {s} main\n" for m, s in SUITES)
    )
    opts = _apt_options(state)
    # The host's apt.conf still applies (a proxy, say); the options above override its dirs.
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(
        ["apt-get", *opts, "update", "--error-on=any"],  # a failed fetch is an error, not a warning
        "apt-get update (arm64 package lists)",
        True,
        env=env,
    )
    _run(
        ["apt-get", *opts, "install", "-y", "--download-only", *DEB_PACKAGES],
        "apt-get install --download-only (arm64 .debs)",
        True,
        env=env,
    )
    debs = sorted((state / "cache" / "archives").glob("*.deb"))
    if not debs:
        raise BuildError("apt-get downloaded no .deb files", True)
    return debs


def unpack_debs(debs: list[Path], root: Path) -> None:
    """``dpkg-deb -x`` each package into ``root``; make absolute symlinks relative; prune docs."""
    root.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(root)], f"dpkg-deb -x {deb.name}")
    for rel in PRUNE:
        shutil.rmtree(root / rel, ignore_errors=True)
    # No ldconfig ran: an empty cache makes the arm64 ld.so search its default directories
    # instead of reading the host's (x86-64) /etc/ld.so.cache through the -L fallback.
    (root / "etc" / "ld.so.cache").write_bytes(b"")
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            link = Path(dirpath) / name
            if link.is_symlink():
                target = os.readlink(link)
                if target.startswith("/"):
                    link.unlink()
                    link.symlink_to(os.path.relpath(root / target.lstrip("/"), link.parent))


def install_wheels(site: Path, pins: tuple[str, ...] = ()) -> None:
    """aarch64 wheels of the base requirements (+ ``pins``) into ``site`` (never TensorFlow)."""
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-warn-conflicts"]
    cmd += ["--disable-pip-version-check", "--no-compile", "--target", str(site)]
    cmd += ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp"]
    for tag in PLATFORMS:
        cmd += ["--platform", tag]
    _run(cmd + requirements() + list(pins), f"pip install of aarch64 wheels ({site.name})", True)
    names = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    if any(n.startswith(("tensorflow", "keras", "tflite_runtime")) for n in names):
        raise BuildError(f"the base install pulled in TensorFlow/Keras: {sorted(names)}")


def make_profile(root: Path, out: Path, prof: Profile) -> None:
    """A prefix for ``qemu -L``: symlinks to ``root`` plus this board's /proc and /sys files."""
    out.mkdir(parents=True)
    for entry in root.iterdir():
        (out / entry.name).symlink_to(os.path.relpath(entry, out))
    proc = out / "proc"
    proc.mkdir()
    (proc / "cpuinfo").write_text(prof.cpuinfo)
    cpu = out / "sys" / "devices" / "system" / "cpu"
    cpu.mkdir(parents=True)
    span = f"0-{prof.cores - 1}"
    for name in ("possible", "present", "online"):
        (cpu / name).write_text(span + "\n")
    (cpu / "offline").write_text("\n")
    (cpu / "kernel_max").write_text("3\n")
    for n in range(prof.cores):
        files = {
            "online": "1",
            "cpufreq/cpuinfo_max_freq": str(prof.max_khz),
            "cpufreq/cpuinfo_min_freq": "600000",
            "cpufreq/scaling_max_freq": str(prof.max_khz),
            "cpufreq/scaling_cur_freq": str(prof.max_khz),
            "regs/identification/midr_el1": prof.midr,
            "topology/physical_package_id": "0",
            "topology/cluster_id": "0",
            "topology/core_id": str(n),
            "topology/core_siblings_list": span,
            "topology/package_cpus_list": span,
            "topology/cluster_cpus_list": span,
            "topology/thread_siblings_list": str(n),
            "topology/core_cpus_list": str(n),
        }
        for i, (level, kind, size, shared) in enumerate(prof.caches):
            files[f"cache/index{i}/level"] = str(level)
            files[f"cache/index{i}/type"] = kind
            files[f"cache/index{i}/size"] = size
            files[f"cache/index{i}/coherency_line_size"] = "64"
            files[f"cache/index{i}/shared_cpu_list"] = span if shared else str(n)
        for rel, text in files.items():
            f = cpu / f"cpu{n}" / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(text + "\n")


def _wheels(site: Path) -> list[str]:
    return sorted(p.name.removesuffix(".dist-info") for p in site.glob("*.dist-info"))


@contextlib.contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build(cache: Path = CACHE) -> Built:
    """The cached build for the current recipe, building it first if needed."""
    key = recipe_hash()
    final = cache / key
    with _lock(cache / "build.lock"):
        if not (final / "manifest.json").is_file():
            work = cache / f"{key}.partial"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            debs = fetch_debs(work / "apt")
            unpack_debs(debs, work / "root")
            for name, pins in SITES.items():
                install_wheels(work / name, pins)
            for prof in PROFILES.values():
                make_profile(work / "root", work / "profiles" / prof.name, prof)
            manifest = {
                "recipe": key,
                "requirements": requirements(),
                "platforms": list(PLATFORMS),
                "debs": [d.name for d in debs],
                "wheels": _wheels(work / "site"),
                "wheel_sets": {name: _wheels(work / name) for name in SITES},
            }
            shutil.rmtree(work / "apt")  # the downloaded .debs are unpacked; drop them
            (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            shutil.rmtree(final, ignore_errors=True)
            work.rename(final)
            for old in cache.iterdir():  # earlier recipes: not needed any more
                if old.is_dir() and old.name != key:
                    shutil.rmtree(old, ignore_errors=True)
    manifest = json.loads((final / "manifest.json").read_text())
    return Built(final, final / "root", final / "site", manifest)


def qemu_command(built: Built, profile: str, argv: list[str]) -> tuple[list[str], dict]:
    """The command line and environment that run the root's python3.11 as ``profile``."""
    prof = PROFILES[profile]
    prefix = built.profile_root(profile)
    cmd = ["qemu-aarch64-static", "-L", str(prefix), str(prefix / "usr/bin/python3.11"), *argv]
    env = {
        "QEMU_CPU": prof.qemu_cpu,
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    return cmd, env


if __name__ == "__main__":
    b = build()
    print(json.dumps({"dir": str(b.dir), **b.manifest}, indent=2))
