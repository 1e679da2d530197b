"""A runtime-agnostic conformance suite for the OCI runtime-spec's MUST/SHOULD requirements.

It drives any binary with runc's command line (pyrun, runc, crun, ...) through its CLI only, with
busybox-static bundles whose config.json the suite writes itself, and decides every case by what
the container observes (the output of busybox commands) or what the host sees (/proc, cgroup
files, files a hook wrote), never by the runtime's exit code alone.

    python -m conformance --runtime PATH [--report FILE.json] [-k PATTERN] [-j JOBS]

Nothing here imports runtime/ (the suite must judge any runtime the same way).
"""
