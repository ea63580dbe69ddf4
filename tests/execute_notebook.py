"""Execute a notebook in a process of its own: python tests/execute_notebook.py IN OUT KERNEL CWD [--allow-errors].

The tests run notebooks through this script, with a hard time limit, rather than in the test
process: each run starts from a clean interpreter and event loop.
"""
import sys

import nbformat
from nbclient import NotebookClient


def main(argv):
    source, target, kernel, cwd = argv[:4]
    nb = nbformat.read(source, as_version=4)
    NotebookClient(nb, kernel_name=kernel, timeout=300, allow_errors="--allow-errors" in argv,
                   resources={"metadata": {"path": cwd}}).execute()
    nbformat.write(nb, target)


if __name__ == "__main__":
    main(sys.argv[1:])
