"""Vendor the JavaScript the built pages need, so they work offline and straight from disk.

MathJax (math) and the Jupyter widgets HTML manager with RequireJS (interactive figures) are
taken from their npm packages, pinned by version and checked against the registry's SHA-512
integrity hash, and unpacked into ``_vendor/``. ``_config.yml`` serves that folder as static
files (``mathjax_path``, ``nb_ipywidgets_js``), so no page fetches anything from a CDN.

Only the standard library is used: a machine with Python and access to the npm registry is
enough (no node or npm). Tarballs are kept in ``_build/npm/`` so later builds need no network.

    python tools/vendor_js.py
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import shutil
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "_vendor"
TARBALLS = ROOT / "_build" / "npm"
REGISTRY = "https://registry.npmjs.org"


@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    sha512: str  # the registry's dist.integrity, base64
    keep: tuple[str, ...]  # glob patterns, relative to the package root
    strip: str  # leading folder removed from kept paths
    target: str  # folder under _vendor/

    @property
    def url(self) -> str:
        return f"{REGISTRY}/{self.name}/-/{self.name.split('/')[-1]}-{self.version}.tgz"


PACKAGES = (
    NpmPackage(
        "mathjax", "3.2.2",
        "Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
        keep=("es5/tex-mml-chtml.js", "es5/output/chtml/fonts/woff-v2/*",
              "es5/input/tex/extensions/*", "es5/a11y/*", "es5/ui/*", "es5/adaptors/*"),
        strip="es5/", target="mathjax",
    ),
    NpmPackage(
        "@jupyter-widgets/html-manager", "1.0.7",
        "2xGwS7vVd2RGlKMiSqj1vYv2X59V73ygefUodhzy9Bho0mswWT/yo3Cg7MaYOqwozQjNo5k3rbJ3cETXWUwJ/g==",
        keep=("dist/embed-amd.js", "dist/*.embed.js", "dist/*.woff", "dist/*.woff2",
              "dist/*.ttf", "dist/*.eot", "dist/*.svg", "LICENSE"),
        strip="dist/", target="widgets",
    ),
    NpmPackage(
        "requirejs", "2.3.7",
        "DouTG8T1WanGok6Qjg2SXuCMzszOo0eHeH9hDZ5Y4x8Je+9JB38HdTLT4/VA8OaUhBa0JPVHJ0pyBkM1z+pDsw==",
        keep=("require.js",), strip="", target="widgets",
    ),
)


def stamp_text() -> str:
    return "\n".join(f"{p.name}@{p.version} {p.sha512}" for p in PACKAGES) + "\n"


def fetch(package: NpmPackage) -> bytes:
    """The package's tarball, from _build/npm/ or the registry, checked against its hash."""
    cached = TARBALLS / f"{package.target}-{package.name.replace('/', '_')}-{package.version}.tgz"
    if cached.exists():
        data = cached.read_bytes()
    else:
        print(f"downloading {package.url}", flush=True)
        try:
            with urllib.request.urlopen(package.url, timeout=120) as response:
                data = response.read()
        except OSError as error:
            raise SystemExit(
                f"cannot download {package.url} ({error}). The book's pages need this file to "
                "render math and widgets offline; connect to the npm registry once and rebuild."
            ) from error
    digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != package.sha512:
        cached.unlink(missing_ok=True)
        raise SystemExit(f"{package.url}: sha512 {digest} does not match the pinned "
                         f"{package.sha512}; refusing to use it.")
    TARBALLS.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(data)
    return data


def unpack(package: NpmPackage, data: bytes) -> int:
    """Extract the kept files into _vendor/<target>/; returns how many."""
    import io

    count = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            path = member.name.removeprefix("package/")
            if not member.isfile() or not any(fnmatch.fnmatch(path, p) for p in package.keep):
                continue
            relative = path.removeprefix(package.strip)
            if ".." in Path(relative).parts:
                continue
            destination = VENDOR / package.target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(archive.extractfile(member).read())
            count += 1
    return count


def vendor() -> Path:
    """Fill _vendor/ unless it already holds exactly the pinned packages."""
    stamp = VENDOR / ".packages"
    if stamp.exists() and stamp.read_text() == stamp_text():
        return VENDOR
    shutil.rmtree(VENDOR, ignore_errors=True)
    for package in PACKAGES:
        count = unpack(package, fetch(package))
        print(f"vendored {package.name}@{package.version}: {count} files", flush=True)
    stamp.write_text(stamp_text())
    return VENDOR


if __name__ == "__main__":
    vendor()
    sys.exit(0)
