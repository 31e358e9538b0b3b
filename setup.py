"""Build pacofr's C core (pacofr._C) from csrc/.

oneDNN (Debian's libdnnl-dev) is linked when a probe program compiles and links against it;
otherwise the extension builds with the portable GEMM back end only and says so, here and in
pacofr.build_info(). PACOFR_DNNL=0 forces the portable build, PACOFR_DNNL=1 makes a missing
oneDNN an error. DNNL_ROOT points at a oneDNN install outside the default paths.
PACOFR_SANITIZE=1 builds with AddressSanitizer and UndefinedBehaviorSanitizer (float-cast-overflow
included, every report fatal) for .ci/sanitize; such a build needs the ASan runtime preloaded
into Python (LD_PRELOAD), so never install it as the normal build.
"""
import os
import sys
import tempfile
from glob import glob

import numpy
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fsanitize=float-cast-overflow",
                  "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g", "-O1"]
PROBE = "#include <dnnl.h>\nint main(void) { return dnnl_version()->major < 2; }\n"


def dnnl_dirs():
    root = os.environ.get("DNNL_ROOT")
    if not root:
        return [], []
    return [os.path.join(root, "include")], [os.path.join(root, "lib"), os.path.join(root, "lib64")]


class BuildExt(build_ext):
    def probe_dnnl(self, include_dirs, library_dirs):
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "probe.c")
            with open(src, "w") as f:
                f.write(PROBE)
            try:
                objs = self.compiler.compile([src], output_dir=tmp, include_dirs=include_dirs)
                self.compiler.link_executable(objs, "probe", output_dir=tmp, libraries=["dnnl"],
                                              library_dirs=library_dirs)
            except Exception:
                return False
        return True

    def build_extensions(self):
        mode = os.environ.get("PACOFR_DNNL", "auto")
        inc, lib = dnnl_dirs()
        found = mode != "0" and self.probe_dnnl(inc, lib)
        if mode == "1" and not found:
            raise RuntimeError("PACOFR_DNNL=1 but oneDNN was not found: apt-get install libdnnl-dev "
                               "(or set DNNL_ROOT)")
        for ext in self.extensions:
            if found:
                ext.define_macros.append(("PF_HAVE_DNNL", "1"))
                ext.libraries.append("dnnl")
                ext.include_dirs += inc
                ext.library_dirs += lib
                ext.runtime_library_dirs += [d for d in lib if os.path.isdir(d)]
        if os.environ.get("PACOFR_SANITIZE") == "1":
            for ext in self.extensions:  # after -O3, so -O1 wins
                ext.extra_compile_args += SANITIZE_FLAGS
                ext.extra_link_args += SANITIZE_FLAGS
            print("pacofr: building with " + " ".join(SANITIZE_FLAGS), file=sys.stderr)
        if found:
            print("pacofr: building with oneDNN", file=sys.stderr)
        else:
            print("pacofr: oneDNN not found (apt-get install libdnnl-dev); building with the "
                  "portable GEMM back end only", file=sys.stderr)
        super().build_extensions()


ext = Extension(
    "pacofr._C",
    sources=sorted(glob("csrc/**/*.c", recursive=True)),
    depends=sorted(glob("csrc/**/*.h", recursive=True) + glob("csrc/**/*.inc", recursive=True)),
    include_dirs=["csrc", numpy.get_include()],
    extra_compile_args=["-O3", "-std=gnu11", "-fopenmp", "-fvisibility=hidden", "-fno-math-errno", "-fno-trapping-math",
                        "-Wall", "-Wno-unknown-pragmas"],
    extra_link_args=["-fopenmp"],
)

setup(ext_modules=[ext], cmdclass={"build_ext": BuildExt})
