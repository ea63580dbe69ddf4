"""The worker side of the grader's boundary: everything that runs in the processes where a
submission's code runs. The grading process imports only `wire` and `channel` from here (the
formats both sides speak) and `policy` (the rule the screening applies); it runs the rest from a
private copy of this folder, never from the course tree.

    forkserver.py  imports PyTorch once; forks a worker per request, hands the grader its channel
    serve.py       the warden, the keeper (loads the notebook) and the call processes
    isolation.py   namespaces, private /tmp, /dev and /proc, cgroups, limits, no privileges
    recording.py   banned callables and operators noted where they execute
    probes.py      trusted code around a call: gradients, modules, seeds, detectors
    policy.py      what notebook code may import and touch
    channel.py     length-prefixed JSON frames with deadlines
    wire.py        how values cross: JSON with tensors as bytes, never pickle
"""
