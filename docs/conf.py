"""Sphinx configuration for jxent's documentation.

Build (warnings are errors; the notebooks are executed, ~40 s on 2 CPU cores):

    pip install -e '.[docs]'
    sphinx-build -W --keep-going -b html docs docs/_build/html
    python docs/check_coverage.py docs/_build/html
"""

import atexit
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import jxent

project = "jxent"
author = "the jxent authors"
copyright = "the jxent authors"
version = release = jxent.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",  # Markdown pages (MyST) and executed notebooks
]

# docs/notebooks is a symlink to ../notebooks: the notebooks have one home.
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**/.ipynb_checkpoints"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# -- autodoc / napoleon: Google-style docstrings -------------------------------
autosummary_generate = False  # the tables link to the entries on the same page
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autoclass_content = "class"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True
python_use_unqualified_type_names = True
# Every cross-reference must resolve, so a docstring's :func:`name` that points
# nowhere fails the build. Names outside jxent (type hints from jax, numpy,
# typing, collections.abc) have no inventory offline: they are left unlinked.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(jax|jaxlib|numpy|np|optax|flax|collections|typing|builtins|contextlib)(\..*)?"),
]
add_module_names = True

# -- MyST and notebook execution -------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
# The notebooks are committed without outputs (tests/test_notebooks.py insists):
# run every one at build time, in a scratch directory, and fail the build on error.
nb_execution_mode = "force"
nb_execution_in_temp = True
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

# Run the notebooks on this interpreter, whatever kernelspecs the machine has
# (as tests/test_notebooks.py does): a "python3" kernelspec pointing at
# sys.executable, first on JUPYTER_PATH.
_kernels = Path(tempfile.mkdtemp(prefix="jxent-docs-kernels-"))
atexit.register(shutil.rmtree, _kernels, ignore_errors=True)
(_kernels / "kernels" / "python3").mkdir(parents=True)
(_kernels / "kernels" / "python3" / "kernel.json").write_text(
    json.dumps(
        {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3",
            "language": "python",
        }
    )
)
os.environ["JUPYTER_PATH"] = os.pathsep.join(
    [str(_kernels), *filter(None, [os.environ.get("JUPYTER_PATH")])]
)
os.environ.setdefault("MPLCONFIGDIR", str(_kernels / "matplotlib"))
# ipykernel 6's debugger otherwise prints a frozen-modules warning per notebook.
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")

# -- HTML ----------------------------------------------------------------------
html_theme = "furo"
html_title = f"jxent {release}"
html_static_path = []


# -- Signatures: name jax.typing.ArrayLike instead of spelling out its union -----
def _short_array_like(app, what, name, obj, options, signature, return_annotation):
    import jax.typing
    from sphinx.util.typing import stringify_annotation

    def shorten(text):
        if text is None:
            return None
        for mode in ("smart", "fully-qualified-except-typing", "fully-qualified"):
            text = text.replace(
                stringify_annotation(jax.typing.ArrayLike, mode), "~jax.typing.ArrayLike"
            )
        return text

    return shorten(signature), shorten(return_annotation)


def setup(app):
    app.connect("autodoc-process-signature", _short_array_like)
