"""A real caller: Podman 4.3 (through conmon) with pyrun as its OCI runtime, and the same
commands with runc where the comparison is cheap.

Podman runs with its own root/runroot/tmpdir, cgroupfs and file events (no systemd here),
and the containers.conf of docs/orchestrators.md (pyrun registered with
runtime_supports_json; default_ulimits, since the bounding set lacks CAP_SYS_RESOURCE: see
../shared/CALLERS.md). One store for the module: Podman calls are slow."""
import os
import shutil
import subprocess

import pytest

from tests.conftest import PYRUN
from tests.orchestrators import podman as podman_harness

RUNC = shutil.which("runc")
CGROUP_V1 = "/sys/fs/cgroup"
CAP_SYS_RESOURCE = 24


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    why = podman_harness.missing()
    if why:
        pytest.skip(why)
    pm = podman_harness.Podman(str(tmp_path_factory.mktemp("podman")), PYRUN)
    pm.import_busybox()
    yield pm
    pm.teardown()


@pytest.fixture(autouse=True)
def clean_podman(podman):
    """A failed test leaves no container behind for the next one to trip on."""
    yield
    podman("pod", "rm", "-a", "-f", "-t", "0", check=False)
    podman("rm", "-a", "-f", "-t", "0", check=False)


def runtimes() -> list[str]:
    """pyrun, then runc when it is installed (the oracle)."""
    return [PYRUN] + ([RUNC] if RUNC else [])


def run(podman, *args, runtime=None, check=False, input=None):
    return podman("run", "--rm", *args, runtime=runtime, check=check, input=input)


def start(podman, name, *args, runtime=None, cmd=("sleep", "1000")):
    """A detached container; its host pid."""
    podman("run", "-d", "--name", name, *args, podman_harness.IMAGE, *cmd, runtime=runtime)
    return int(podman.inspect(name, "{{.State.Pid}}"))


def wait_for_file(podman, name, path, runtime=None, tries=100):
    """Until `path` exists in the container (its process made it: it is past its setup)."""
    for _ in range(tries):
        if podman("exec", name, "test", "-e", path, runtime=runtime, check=False).returncode == 0:
            return
    raise AssertionError(f"{name}: {path} never appeared")


def cgroup_file(podman, name, controller, filename) -> str:
    """A control file of the container's cgroup, read on the host."""
    cid = podman.inspect(name, "{{.Id}}")
    with open(os.path.join(CGROUP_V1, controller, "libpod_parent", f"libpod-{cid}", filename)) as f:
        return f.read().strip()


def ns_link(pid, ns) -> str:
    return os.readlink(f"/proc/{pid}/ns/{ns}")


def pyrun_ids() -> set[str]:
    """The containers pyrun knows under its default root (the one Podman's calls use)."""
    p = subprocess.run([PYRUN, "list", "-q"], capture_output=True, text=True)
    return set(p.stdout.split())


# -- run, stdio, errors ------------------------------------------------------------

def test_podman_run_passes_output_and_exit_status(podman):
    for runtime in runtimes():
        p = run(podman, podman_harness.IMAGE, "sh", "-c", "echo hello via pyrun; id -u; exit 3",
                runtime=runtime)
        assert p.returncode == 3, (runtime, p.stderr)
        assert p.stdout.splitlines() == ["hello via pyrun", "0"], runtime


def test_podman_run_stdin_and_terminal(podman):
    for runtime in runtimes():
        p = run(podman, "-i", podman_harness.IMAGE, "sh", "-c", "cat; test -t 0 || echo no-tty",
                runtime=runtime, input="line one\nline two\n")
        assert p.returncode == 0, (runtime, p.stderr)
        assert p.stdout.splitlines() == ["line one", "line two", "no-tty"], runtime
        p = run(podman, "-t", podman_harness.IMAGE, "sh", "-c", "tty; test -t 1 && echo is-tty",
                runtime=runtime)
        assert p.returncode == 0, (runtime, p.stderr)
        assert p.stdout.split() == ["/dev/pts/0", "is-tty"], runtime


def test_podman_errors_reach_the_user_as_clean_messages(podman, tmp_path):
    for runtime in runtimes():
        p = run(podman, podman_harness.IMAGE, "/nonexistent", runtime=runtime)
        assert p.returncode == 127, (runtime, p.stderr)
    # runtime_supports_json (the docs' snippet) is what makes the line clean: Podman then
    # reads pyrun's JSON error from --log, and shows its msg.
    lines = run(podman, podman_harness.IMAGE, "/nonexistent").stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"Error: {PYRUN}: "), lines
    assert "/nonexistent" in lines[0] and "no such file or directory" in lines[0], lines
    assert "level=" not in lines[0] and "time=" not in lines[0] and "msg=" not in lines[0], lines
    # Without the registration Podman passes no --log-format=json, and the user gets the
    # raw text log line: the snippet matters.
    bare = tmp_path / "no-json.conf"
    bare.write_text(open(podman.conf).read().replace(', "pyrun"]', "]"))
    p = podman("run", "--rm", podman_harness.IMAGE, "/nonexistent", check=False, conf=str(bare))
    assert p.returncode == 127 and "level=error" in p.stderr, p.stderr


def test_podman_without_default_ulimits_fails_as_runc_does(podman, tmp_path):
    """The bounding set here lacks CAP_SYS_RESOURCE: Podman's default 1048576 nofile limit
    cannot be set by any runtime, and pyrun says so as runc does (exit 126)."""
    if _bounding_set() >> CAP_SYS_RESOURCE & 1:
        pytest.skip("this host has CAP_SYS_RESOURCE: Podman's default ulimits can be set")
    conf = tmp_path / "no-ulimits.conf"
    conf.write_text("".join(l for l in open(podman.conf) if not l.startswith("default_ulimits")))
    for runtime in runtimes():
        p = podman("run", "--rm", podman_harness.IMAGE, "true", runtime=runtime, check=False,
                   conf=str(conf))
        assert p.returncode == 126, (runtime, p.stderr)
        assert "operation not permitted" in p.stderr.lower(), (runtime, p.stderr)
    assert "RLIMIT_NOFILE" in p.stderr or "rlimit" in p.stderr.lower(), p.stderr


def _bounding_set() -> int:
    with open("/proc/self/status") as f:
        return next(int(l.split()[1], 16) for l in f if l.startswith("CapBnd:"))


# -- exec, signals, pause, kill, rm ---------------------------------------------

def test_podman_detached_exec_ps_top_stop_rm(podman):
    start(podman, "or-exec")
    p = podman("exec", "or-exec", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '")
    assert p.stdout.strip() == "sleep 1000"
    assert podman("exec", "or-exec", "sh", "-c", "exit 5", check=False).returncode == 5
    p = podman("exec", "-t", "or-exec", "sh", "-c", "test -t 1 && echo is-tty")
    assert p.stdout.strip() == "is-tty"
    p = podman("exec", "-i", "or-exec", "cat", input="to exec\n")
    assert p.stdout == "to exec\n"
    assert "or-exec" in podman("ps", "--format", "{{.Names}}").stdout.split()
    assert "sleep 1000" in podman("top", "or-exec", "args").stdout
    podman("stop", "-t", "1", "or-exec")
    assert podman.inspect("or-exec", "{{.State.Status}}") == "exited"
    podman("rm", "or-exec")
    assert "or-exec" not in podman("ps", "-a", "--format", "{{.Names}}").stdout.split()


def test_podman_signals_reach_the_container(podman):
    script = "trap 'echo got-usr1; exit 7' USR1; trap 'echo got-term; exit 9' TERM; " \
             "touch /tmp/ready; while :; do sleep 0.1; done"
    for runtime in runtimes():
        for signal, word, status in (("USR1", "got-usr1", 7), ("TERM", "got-term", 9)):
            name = f"or-sig-{signal.lower()}"
            start(podman, name, runtime=runtime, cmd=("sh", "-c", script))
            wait_for_file(podman, name, "/tmp/ready", runtime=runtime)
            podman("kill", "-s", signal, name, runtime=runtime)
            assert podman("wait", name, runtime=runtime).stdout.strip() == str(status), runtime
            assert podman("logs", name, runtime=runtime).stdout.split() == [word], runtime
            podman("rm", name, runtime=runtime)
        # stop: SIGTERM first, then (pid 1 ignores it without a handler) SIGKILL
        start(podman, "or-sig-stop", runtime=runtime)
        podman("stop", "-t", "1", "or-sig-stop", runtime=runtime)
        assert podman.inspect("or-sig-stop", "{{.State.ExitCode}}") == "137", runtime
        podman("rm", "or-sig-stop", runtime=runtime)


def test_podman_pause_unpause_and_kill_a_paused_container(podman):
    for runtime in runtimes():
        start(podman, "or-pause", runtime=runtime)
        podman("pause", "or-pause", runtime=runtime)
        assert podman.inspect("or-pause", "{{.State.Status}}") == "paused", runtime
        assert cgroup_file(podman, "or-pause", "freezer", "freezer.state") == "FROZEN", runtime
        podman("unpause", "or-pause", runtime=runtime)
        assert podman.inspect("or-pause", "{{.State.Status}}") == "running", runtime
        assert cgroup_file(podman, "or-pause", "freezer", "freezer.state") == "THAWED", runtime
        assert podman("exec", "or-pause", "true", runtime=runtime, check=False).returncode == 0
        podman("pause", "or-pause", runtime=runtime)
        podman("kill", "-s", "KILL", "or-pause", runtime=runtime)  # to a frozen cgroup
        assert podman("wait", "or-pause", runtime=runtime).stdout.strip() == "137", runtime
        assert podman.inspect("or-pause", "{{.State.Status}}") == "exited", runtime
        podman("rm", "or-pause", runtime=runtime)


def test_podman_rm_force_in_every_state(podman):
    podman("create", "--name", "or-rm-created", podman_harness.IMAGE, "sleep", "1000")
    start(podman, "or-rm-running")
    start(podman, "or-rm-paused")
    podman("pause", "or-rm-paused")
    start(podman, "or-rm-exited", cmd=("true",))
    podman("wait", "or-rm-exited")
    names = ["or-rm-created", "or-rm-running", "or-rm-paused", "or-rm-exited"]
    ids = {podman.inspect(n, "{{.Id}}") for n in names}
    podman("rm", "-f", "-t", "0", *names)
    left = podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert not set(names) & set(left), left
    assert not ids & pyrun_ids(), "pyrun still holds state of a removed container"


def test_podman_restart(podman):
    for runtime in runtimes():
        first = start(podman, "or-restart", runtime=runtime)
        podman("exec", "or-restart", "touch", "/tmp/before", runtime=runtime)
        podman("restart", "-t", "0", "or-restart", runtime=runtime)
        assert podman.inspect("or-restart", "{{.State.Status}}") == "running", runtime
        again = int(podman.inspect("or-restart", "{{.State.Pid}}"))
        assert again != first and os.path.exists(f"/proc/{again}"), runtime
        # the same container (its rootfs kept), a new init
        p = podman("exec", "or-restart", "sh", "-c", "test -e /tmp/before && cat /proc/1/cmdline",
                   runtime=runtime)
        assert p.stdout.split("\0")[0] == "sleep", runtime
        podman("rm", "-f", "-t", "0", "or-restart", runtime=runtime)


def test_podman_healthcheck(podman):
    for runtime in runtimes():
        # interval 0: no timer (that needs systemd); `healthcheck run` runs the check by exec
        start(podman, "or-health", "--health-cmd", "test -e /tmp/ok", "--health-interval", "0",
              runtime=runtime)
        assert podman("healthcheck", "run", "or-health", runtime=runtime, check=False).returncode == 1
        podman("exec", "or-health", "touch", "/tmp/ok", runtime=runtime)
        podman("healthcheck", "run", "or-health", runtime=runtime)
        assert podman.inspect("or-health", "{{.State.Health.Status}}") == "healthy", runtime
        podman("rm", "-f", "-t", "0", "or-health", runtime=runtime)


def test_podman_stats(podman):
    import json
    for runtime in runtimes():
        start(podman, "or-stats", "--memory", "64m", runtime=runtime,
              cmd=("sh", "-c", "sleep 1000 & sleep 1000 & wait"))
        stats = json.loads(podman("stats", "--no-stream", "--format", "json", "or-stats",
                                  runtime=runtime).stdout)
        assert [s["name"] for s in stats] == ["or-stats"], stats
        assert stats[0]["pids"] == "3", (runtime, stats)  # sh and its two sleeps
        assert stats[0]["mem_usage"].endswith("/ 67.11MB"), (runtime, stats)
        podman("rm", "-f", "-t", "0", "or-stats", runtime=runtime)


# -- pods and shared namespaces -----------------------------------------------------

def test_podman_pod_shares_network_ipc_uts(podman):
    for runtime in runtimes():
        podman("pod", "create", "--name", "or-pod", runtime=runtime)
        member = start(podman, "or-pod-a", "--pod", "or-pod", runtime=runtime)
        infra_id = podman("pod", "inspect", "--format", "{{.InfraContainerID}}", "or-pod").stdout.strip()
        infra = int(podman.inspect(infra_id, "{{.State.Pid}}"))
        for ns in ("net", "ipc", "uts"):
            assert ns_link(member, ns) == ns_link(infra, ns), (runtime, ns)
        p = run(podman, "--pod", "or-pod", podman_harness.IMAGE, "sh", "-c",
                "for ns in net ipc uts; do readlink /proc/self/ns/$ns; done; hostname",
                runtime=runtime, check=True)
        assert p.stdout.split()[:3] == [ns_link(infra, ns) for ns in ("net", "ipc", "uts")], runtime
        assert p.stdout.split()[3] == "or-pod", runtime
        assert podman("pod", "ps", "--format", "{{.Name}} {{.Status}}").stdout.split() == ["or-pod", "Running"]
        podman("pod", "rm", "-f", "-t", "0", "or-pod", runtime=runtime)
        assert not os.path.exists(f"/proc/{member}/ns"), runtime


NS_FLAGS = {"ipc": "--ipc", "pid": "--pid", "net": "--network", "uts": "--uts"}


@pytest.mark.parametrize("ns", sorted(NS_FLAGS))
def test_podman_namespace_of_another_container_and_of_the_host(podman, ns):
    for runtime in runtimes():
        target = start(podman, "or-ns-target", runtime=runtime)
        for mode, want in (("container:or-ns-target", ns_link(target, ns)),
                           ("host", ns_link(os.getpid(), ns))):  # Podman's, so ours
            p = run(podman, NS_FLAGS[ns], mode, podman_harness.IMAGE, "readlink", f"/proc/self/ns/{ns}",
                    runtime=runtime)
            assert p.returncode == 0, (runtime, mode, p.stderr)
            assert p.stdout.strip() == want, (runtime, mode)
        if ns == "ipc":  # a joined IPC namespace still gets a /dev/mqueue of its own mount
            p = run(podman, "--ipc", "container:or-ns-target", podman_harness.IMAGE, "sh", "-c",
                    "grep ' /dev/mqueue ' /proc/self/mounts", runtime=runtime)
            assert p.stdout.split()[2:3] == ["mqueue"], (runtime, p.stdout, p.stderr)
        podman("rm", "-f", "-t", "0", "or-ns-target", runtime=runtime)


# -- resources -------------------------------------------------------------------

RESOURCE_FLAGS = ["--memory", "64m", "--pids-limit", "50", "--cpus", "0.5", "--cpuset-cpus", "0",
                  "--device", "/dev/null:/dev/or-null"]
READ_LIMITS = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
               "/sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us "
               "/sys/fs/cgroup/cpuset/cpuset.cpus; echo x > /dev/or-null && echo wrote; "
               "stat -c '%t:%T' /dev/or-null")


def test_podman_resource_flags_take_effect(podman):
    outputs = {}
    for runtime in runtimes():
        p = run(podman, *RESOURCE_FLAGS, podman_harness.IMAGE, "sh", "-c", READ_LIMITS, runtime=runtime)
        assert p.returncode == 0, (runtime, p.stderr)
        outputs[runtime] = p.stdout.split()
    assert outputs[PYRUN] == ["67108864", "50", "50000", "100000", "0", "wrote", "1:3"], outputs
    if RUNC:
        assert outputs[PYRUN] == outputs[RUNC]


def test_podman_pids_limit_is_enforced(podman):
    forks = "for i in 1 2 3 4 5 6; do sleep 100 & done; echo forked"
    for runtime in runtimes():
        p = run(podman, "--pids-limit", "4", podman_harness.IMAGE, "sh", "-c", forks, runtime=runtime)
        assert "can't fork" in p.stderr, (runtime, p.stdout, p.stderr)
        p = run(podman, "--pids-limit", "20", podman_harness.IMAGE, "sh", "-c", forks, runtime=runtime)
        assert p.stdout.strip() == "forked" and "can't fork" not in p.stderr, (runtime, p.stderr)


def test_podman_memory_limit_is_enforced(podman):
    for runtime in runtimes():
        # 64 MiB held by the shell in a 16 MiB cgroup (no swap here): the OOM killer ends it
        p = run(podman, "--memory", "16m", "--memory-swap", "16m", podman_harness.IMAGE, "sh", "-c",
                "x=$(head -c 67108864 /dev/zero | tr '\\0' x); echo survived", runtime=runtime)
        assert p.returncode == 137 and "survived" not in p.stdout, (runtime, p.returncode, p.stderr)


def test_podman_update_changes_a_running_container(podman):
    for runtime in runtimes():
        start(podman, "or-update", "--memory", "64m", "--cpus", "0.5", runtime=runtime)
        podman("update", "--memory", "128m", "--cpus", "0.25", "or-update", runtime=runtime)
        assert cgroup_file(podman, "or-update", "memory", "memory.limit_in_bytes") == str(128 << 20)
        assert cgroup_file(podman, "or-update", "cpu", "cpu.cfs_quota_us") == "25000", runtime
        p = podman("exec", "or-update", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                   runtime=runtime)
        assert p.stdout.strip() == str(128 << 20), runtime
        podman("rm", "-f", "-t", "0", "or-update", runtime=runtime)


def test_podman_exec_gets_the_containers_oom_score_adj(podman):
    """Podman's exec process is the container's process spec with new args: its
    oomScoreAdj applies to the exec'd process too, as runc applies it."""
    for runtime in runtimes():
        start(podman, "or-oom", "--oom-score-adj", "500", runtime=runtime)
        p = podman("exec", "or-oom", "cat", "/proc/self/oom_score_adj", "/proc/1/oom_score_adj",
                   runtime=runtime)
        assert p.stdout.split() == ["500", "500"], runtime
        podman("rm", "-f", "-t", "0", "or-oom", runtime=runtime)
