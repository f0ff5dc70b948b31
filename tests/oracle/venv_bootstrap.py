"""venv_bootstrap.py - run a script inside tests/oracle/.venv, with torch, safetensors, numpy,
diffusers (the FLUX oracle, tests/oracle/flux_fixtures.py; pinned: its fixtures record the version)
and transformers with its tokenizers (the text encoders' oracle).

Used by tests/oracle/attention_fixtures.py, tests/oracle/flux_fixtures.py and bench/torch_peer.py:

    import venv_bootstrap
    venv_bootstrap.ensure()   # returns only inside the venv, with the packages importable

Outside the venv it creates tests/oracle/.venv if missing (python3 -m venv), installs the packages
from PyPI with the venv's pip when they are not importable there, and re-executes the calling
script with the venv's python (same arguments). Plain `torch` from PyPI is large (it brings CUDA
libraries along); the CPU-only wheel index of PyTorch is not reachable from this project's
machines, so the plain package it is. Set CLEARDIT_ORACLE_VENV to use another venv directory.
"""
import os
import subprocess
import sys
from pathlib import Path

VENV = Path(os.environ.get("CLEARDIT_ORACLE_VENV") or Path(__file__).resolve().parent / ".venv")
# transformers, tokenizers, sentencepiece and protobuf: the text encoders' and tokenizers' oracles
# (t5_fixtures.py, clip_text_fixtures.py, pipeline_fixtures.py, the spm/clip generators)
PACKAGES = ["torch", "safetensors", "numpy", "diffusers==0.42.1", "transformers==5.25.0", "tokenizers",
            "sentencepiece", "protobuf", "gguf"]
_IMPORT_CHECK = "import torch, safetensors, numpy, diffusers, transformers, tokenizers, sentencepiece, gguf"


def _venv_python() -> Path:
    return VENV / "bin" / "python"


def _inside_venv() -> bool:
    try:
        return Path(sys.prefix).resolve() == VENV.resolve()
    except OSError:
        return False


def _say(msg: str) -> None:
    print(f"[venv_bootstrap] {msg}", file=sys.stderr, flush=True)


def ensure() -> None:
    """Returns when running inside the venv with the packages importable; else re-executes."""
    if _inside_venv():
        try:
            import torch, safetensors, numpy, diffusers  # noqa: F401,E401
            return
        except ImportError as e:
            _say(f"missing inside the venv ({e}); installing {' '.join(PACKAGES)}")
            subprocess.check_call([sys.executable, "-m", "pip", "install", *PACKAGES])
            return
    py = _venv_python()
    if not py.exists():
        try:
            import venv  # noqa: F401
            import ensurepip  # noqa: F401
        except ImportError:
            sys.exit("venv_bootstrap: Python's venv module (with ensurepip) is missing; on Debian run "
                     "'apt-get install python3-venv' and try again")
        _say(f"creating {VENV}")
        r = subprocess.run([sys.executable, "-m", "venv", str(VENV)])
        if r.returncode != 0 or not py.exists():
            sys.exit(f"venv_bootstrap: 'python3 -m venv {VENV}' failed; on Debian run "
                     "'apt-get install python3-venv' and try again")
    if subprocess.run([str(py), "-c", _IMPORT_CHECK], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode != 0:
        _say(f"installing {' '.join(PACKAGES)} into {VENV} (torch is large: several minutes)")
        subprocess.check_call([str(py), "-m", "pip", "install", "--quiet", *PACKAGES])
    script = os.path.abspath(sys.argv[0])
    os.execv(str(py), [str(py), script, *sys.argv[1:]])
