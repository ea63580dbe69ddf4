"""Execute a notebook in a process of its own: python -m coursetools.execute_notebook IN OUT KERNEL CWD [--allow-errors].

The tests run notebooks through this script, with a hard time limit, rather than in the test
process: each run starts from a clean interpreter and event loop.
"""
import sys
from queue import Empty
from time import monotonic

import nbformat
from nbclient import NotebookClient

CELL_TIMEOUT = 300


class PromptNotebookClient(NotebookClient):
    """nbclient that waits for each cell's reply in one-second slices.

    Under load, after cells that open widget comms, the shell socket's readiness event was
    sometimes missed: the reply sat unread until the cell's whole timeout ran out (300 s per
    explorer cell, seen on chapters 2, 4 and 6 when the tests ran two at a time). A poll that
    times out looks at the socket once more, so a short slice turns that stall into one second.
    """

    async def async_start_new_kernel_client(self):
        client = await super().async_start_new_kernel_client()
        channel = client.shell_channel
        get_msg = channel.get_msg

        async def get_msg_in_slices(timeout=None):
            deadline = None if timeout is None else monotonic() + timeout
            while True:
                left = 1.0 if deadline is None else max(0.0, min(1.0, deadline - monotonic()))
                try:
                    return await get_msg(timeout=left)
                except Empty:
                    if deadline is not None and monotonic() >= deadline:
                        raise

        channel.get_msg = get_msg_in_slices
        return client


def main(argv):
    source, target, kernel, cwd = argv[:4]
    nb = nbformat.read(source, as_version=4)
    PromptNotebookClient(nb, kernel_name=kernel, timeout=CELL_TIMEOUT, allow_errors="--allow-errors" in argv,
                         resources={"metadata": {"path": cwd}}).execute()
    nbformat.write(nb, target)


if __name__ == "__main__":
    main(sys.argv[1:])
