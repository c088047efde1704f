"""Builds the optional compiled OTLP decoder (collector/wire/compiled.pyx) at ``pip install``.

Everything else is declared in pyproject.toml. Without Cython or a working C compiler the
package still installs: the extension is left out with a warning and ``collector.wire`` uses its
pure-Python twin. ``AGENTWATCH_NO_COMPILE=1`` leaves it out on purpose.
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """A build_ext whose failure is a warning, not a failed install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as error:  # no compiler, missing headers, ...
            _skipped(error)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as error:
            _skipped(error)


def _skipped(error: BaseException) -> None:
    print(
        f"agentwatch: compiled OTLP decoder not built ({error}); collector.wire uses its "
        "Python twin",
        file=sys.stderr,
    )


def _extensions() -> list[Extension]:
    if os.environ.get("AGENTWATCH_NO_COMPILE"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError as error:
        _skipped(error)
        return []
    try:
        return cythonize(  # type: ignore[no-any-return]
            [
                Extension(
                    "collector.wire.compiled",
                    ["collector/wire/compiled.pyx"],
                    extra_compile_args=["-O3"],
                )
            ],
            compiler_directives={"language_level": 3},
        )
    except Exception as error:
        _skipped(error)
        return []


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
