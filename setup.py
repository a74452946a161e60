"""Build the C extension cloudfiles_store._core from every C file under csrc/.

The folders are the layers: csrc/core (engine), csrc/backends/<name> (protocols),
csrc/util (pure helpers), csrc/python (the CPython types); includes name a header by its
path under csrc/ ("core/op.h").

Native libraries are found with pkg-config; a missing one stops the build with the
Debian package that provides it.
"""
import glob
import os
import shlex
import subprocess
import sys

from setuptools import Extension, setup

# pkg-config name -> Debian package providing it
NATIVE_LIBS = {
    "libcurl": "libcurl4-openssl-dev",
    "libcrypto": "libssl-dev",
    "libzstd": "libzstd-dev",
    "libdeflate": "libdeflate-dev",
    "zlib": "zlib1g-dev",  # streaming gzip (util/transcode.c): libdeflate has none
    "libbrotlidec": "libbrotli-dev",
    "libbrotlienc": "libbrotli-dev",
    "libcjson": "libcjson-dev",
    "expat": "libexpat1-dev",
}


def pkg_config(*args):
    try:
        out = subprocess.run(["pkg-config", *args], check=True, capture_output=True, text=True)
    except FileNotFoundError:
        sys.exit("cloudfiles_store: pkg-config not found; install it: apt-get install pkg-config")
    return shlex.split(out.stdout)


def native_flags():
    missing = []
    for name, deb in NATIVE_LIBS.items():
        if subprocess.run(["pkg-config", "--exists", name]).returncode != 0:
            missing.append(f"{name} (Debian package {deb})")
    if missing:
        sys.exit(
            "cloudfiles_store: missing native libraries: "
            + ", ".join(missing)
            + "\ninstall them with: apt-get install "
            + " ".join(sorted({NATIVE_LIBS[m.split()[0]] for m in missing}))
        )
    return pkg_config("--cflags", *NATIVE_LIBS), pkg_config("--libs", *NATIVE_LIBS)


cflags, libs = native_flags()
extra_compile = ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Wshadow", "-Wstrict-prototypes",
                 "-Wno-missing-field-initializers", "-Wno-cast-function-type", "-fvisibility=hidden"]
extra_compile += shlex.split(os.environ.get("CFS_EXTRA_CFLAGS", ""))
extra_link = shlex.split(os.environ.get("CFS_EXTRA_LDFLAGS", ""))

setup(
    ext_modules=[
        Extension(
            "cloudfiles_store._core",
            sources=sorted(glob.glob("csrc/**/*.c", recursive=True)),
            depends=sorted(glob.glob("csrc/**/*.h", recursive=True)),
            include_dirs=["csrc"],
            extra_compile_args=cflags + extra_compile,
            extra_link_args=libs + ["-lpthread", "-ldl"] + extra_link,
        )
    ],
)
