"""Vendor the JavaScript and fonts the built pages need, so they work offline and from disk.

MathJax (math), the Jupyter widgets HTML manager with RequireJS (interactive figures) and the
Devanagari subset of Noto Sans Devanagari with its SIL Open Font License (the digits ० to ९ of
captions and tables, used by ``_theme/book.css``) are taken from their npm packages, pinned by
version and checked against the registry's SHA-512 integrity hash, and unpacked into
``_vendor/``. ``_config.yml`` serves that folder as static files (``mathjax_path``,
``nb_ipywidgets_js``), so no page fetches anything from a CDN.

axe-core, the accessibility engine the browser test runs over every page, is vendored the same
way into ``_build/test-vendor/`` (:func:`vendor_test_tools`): the test injects it, the site
never serves it.

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
    NpmPackage(
        "@fontsource/noto-sans-devanagari", "5.3.0",
        "7khYmipS/5KAUUmrO1DKir8yL8XI00d0+ZE9BqbS8XF1jzObv6CpPOk3UeYxF+Pvi8bx9bBvprBCOcbx/eQWTQ==",
        keep=("files/noto-sans-devanagari-devanagari-400-normal.woff2", "LICENSE"),
        strip="files/", target="fonts",
    ),
)

#: Used by the tests only, unpacked outside the served folders.
TEST_VENDOR = ROOT / "_build" / "test-vendor"
TEST_PACKAGES = (
    NpmPackage(
        "axe-core", "4.14.1",
        "FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ==",
        keep=("axe.min.js", "LICENSE"), strip="", target="axe-core",
    ),
)


def stamp_text(packages: tuple[NpmPackage, ...] = PACKAGES) -> str:
    return "\n".join(f"{p.name}@{p.version} {p.sha512}" for p in packages) + "\n"


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


def unpack(package: NpmPackage, data: bytes, folder: Path = VENDOR) -> int:
    """Extract the kept files into ``folder/<target>/``; returns how many."""
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
            destination = folder / package.target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(archive.extractfile(member).read())
            count += 1
    return count


def vendor(packages: tuple[NpmPackage, ...] = PACKAGES, folder: Path = VENDOR) -> Path:
    """Fill ``folder`` unless it already holds exactly the pinned ``packages``."""
    stamp = folder / ".packages"
    if stamp.exists() and stamp.read_text() == stamp_text(packages):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    for package in packages:
        count = unpack(package, fetch(package), folder)
        print(f"vendored {package.name}@{package.version}: {count} files", flush=True)
    stamp.write_text(stamp_text(packages))
    return folder


def vendor_test_tools() -> Path:
    """The path of the vendored ``axe.min.js`` (axe-core), for the browser test."""
    return vendor(TEST_PACKAGES, TEST_VENDOR) / "axe-core" / "axe.min.js"


if __name__ == "__main__":
    vendor()
    sys.exit(0)
