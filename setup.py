"""Only the compiled kernel lives here; everything else about the package is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "index_format._norm_scan",
            sources=["index_format/_norm_scan.c"],
            extra_compile_args=["-O3", "-std=gnu11"],
            # Without a C compiler or Python headers the install still works: index_format.norm_scan falls back to
            # its numpy scan (same answers, slower) and logs a warning.
            optional=True,
        )
    ]
)
