"""A real single-node Slurm cluster for the tests: Debian's munge, MariaDB, slurmdbd, slurmctld and slurmd, each
started here as a plain child process with all its configuration and state under one folder, and stopped by its
process id when the block ends, whatever happened inside it.

    with SlurmCluster(folder) as cluster:
        subprocess.run(["sbatch", ...], env=cluster.env)   # every client needs cluster.env's SLURM_CONF

Accounting (slurmdbd + MariaDB) is there because submitit reads job states through `sacct`: without it, a job that
ends without writing its result (cancelled, killed) is never seen to end, and `job.result()` waits forever.

Nothing here needs systemd, cgroups or a free /etc: the daemons run in the foreground (-D/-F), listen on free
loopback ports, and find each other through the files written here. The packages come from `.ci/install-slurm`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

# The executables that a cluster needs, with the package that brings each (Debian's names).
BINARIES = {
    "munged": "munge", "mungekey": "munge", "mariadbd": "mariadb-server", "mariadb-install-db": "mariadb-server",
    "slurmdbd": "slurmdbd", "slurmctld": "slurmctld", "slurmd": "slurmd", "sinfo": "slurm-client",
    "sacctmgr": "slurm-client", "sacct": "slurm-client", "scancel": "slurm-client", "squeue": "slurm-client",
    "srun": "slurm-client",
}
CLUSTER_NAME = "posattn"
PARTITION = "debug"
NODE_NAME = "node0"


def missing_binaries() -> list[str]:
    """The executables of BINARIES that are not on PATH (nor in /usr/sbin, which a non-root PATH may lack)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [name for name in BINARIES if shutil.which(name, path=path) is None]


def _free_port() -> int:
    """A TCP port free on loopback now (the kernel's pick). Not reserved: a daemon that loses the race fails to
    start and says so in its log, which bring-up then shows."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(what: str, ready, timeout: float, logs: list[Path], interval: float = 0.2):
    """Poll `ready()` until it returns something true; on timeout fail with the tails of `logs`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = ready()
        if value:
            return value
        time.sleep(interval)
    tails = "\n".join(f"--- {log} ---\n{_tail(log)}" for log in logs)
    raise RuntimeError(f"the test Slurm cluster: {what} not ready after {timeout:.0f} s\n{tails}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class SlurmCluster:
    """A single-node Slurm cluster with accounting, its state under `folder` (created; short paths: munge's and
    MariaDB's Unix sockets live there too, and a socket's path is limited to 107 bytes).

    Inside the block: `env` is os.environ plus what a Slurm client needs (SLURM_CONF), `partition` the one
    partition's name, `cpus` the node's CPUs. On exit every job is cancelled and waited for, then every daemon is
    stopped by its pid (TERM, then KILL past `stop_timeout`)."""

    def __init__(self, folder, stop_timeout: float = 10.0):
        self.folder = Path(folder).absolute()
        self.stop_timeout = stop_timeout
        self.partition = PARTITION
        self.node = NODE_NAME
        self.env: dict[str, str] = {}
        self.cpus = 1
        self.work: Path | None = None  # a folder for the jobs' files, where the tests' fixture makes one
        self._daemons: list[tuple[str, subprocess.Popen]] = []  # in the order started; stopped in reverse

    # ---- the block ----

    def __enter__(self) -> "SlurmCluster":
        try:
            self._start()
        except BaseException:
            self._stop_daemons()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self.cancel_all_jobs()
        finally:
            self._stop_daemons()

    def run(self, *command: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster; its completed process (text)."""
        return subprocess.run(command, env=self.env, capture_output=True, text=True, check=check, timeout=timeout)

    def jobs(self) -> list[str]:
        """The ids of the jobs Slurm still holds (pending, running, completing), array tasks one by one."""
        out = self.run("squeue", "-h", "-r", "-o", "%i", check=False)
        return out.stdout.split() if out.returncode == 0 else []

    def cancel_all_jobs(self, timeout: float = 30) -> None:
        """Cancel every job and wait until Slurm holds none: a job's processes are not slurmd's children (slurmstepd
        daemonises), so they must be gone before the daemons go, or nothing would end them."""
        if not self._running("slurmctld"):
            return
        try:
            jobs = self.jobs()
            if jobs:
                self.run("scancel", *jobs, check=False)
            deadline = time.monotonic() + timeout
            while self.jobs() and time.monotonic() < deadline:
                time.sleep(0.5)
        except subprocess.TimeoutExpired:  # slurmctld stuck: the daemons are stopped all the same
            pass

    # ---- bring-up ----

    def _start(self) -> None:
        missing = missing_binaries()
        if missing:
            raise FileNotFoundError(f"not installed: {', '.join(missing)} (run .ci/install-slurm)")
        f = self.folder
        for name in ("munge", "munge-run", "mysql", "mysql/run", "ctld", "spool", "log"):
            (f / name).mkdir(parents=True, exist_ok=True)
        # munged wants its socket's folder (and those above it) open to all and its key's folder closed to others.
        f.chmod(0o755)
        (f / "munge-run").chmod(0o755)
        (f / "munge").chmod(0o700)
        log = f / "log"
        ports = {name: _free_port() for name in ("mysql", "slurmdbd", "slurmctld", "slurmd")}
        munge_socket = f / "munge-run/munge.socket"

        # munge: the key, then the daemon. Every Slurm daemon and client authenticates through it.
        key = f / "munge/munge.key"
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True, capture_output=True)
        self._daemon("munged", ["munged", "--foreground", "--force", f"--socket={munge_socket}",
                                f"--key-file={key}", f"--pid-file={f}/munge-run/munged.pid",
                                f"--seed-file={f}/munge/munged.seed", f"--log-file={log}/munged.log"])

        # MariaDB: a data folder of its own, on a loopback port; the init file (run at every start) gives slurmdbd a
        # password user, since root's default Unix-socket login does not work over TCP.
        password = secrets.token_hex(8)
        data = f / "mysql/data"
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
                        "--skip-test-db", "--auth-root-authentication-method=socket", "--innodb-log-file-size=8M"],
                       check=True, capture_output=True, timeout=120)
        init = f / "mysql/init.sql"
        init.write_text(f"CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '{password}';\n"
                        "GRANT ALL ON *.* TO 'slurm'@'127.0.0.1';\n")
        self._daemon("mariadbd", ["mariadbd", "--no-defaults", f"--datadir={data}", "--user=root",
                                  "--bind-address=127.0.0.1", f"--port={ports['mysql']}",
                                  f"--socket={f}/mysql/run/mysqld.sock", f"--pid-file={f}/mysql/run/mysqld.pid",
                                  f"--init-file={init}", f"--log-error={log}/mariadbd.log",
                                  "--skip-name-resolve", "--innodb-buffer-pool-size=16M", "--innodb-log-file-size=8M"])
        _wait_for("MariaDB", lambda: _port_open(ports["mysql"]), 60, [log / "mariadbd.log"])

        # The node's real CPUs and memory, as slurmd itself sees them (else it drains the node as too small).
        node_line = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
        hardware = re.search(r"(CPUs=.*RealMemory=\d+)", node_line).group(1)
        self.cpus = int(re.search(r"CPUs=(\d+)", hardware).group(1))
        host = socket.gethostname().split(".")[0]  # slurmctld only runs on the host SlurmctldHost names

        slurmdbd_conf = f / "slurmdbd.conf"
        slurmdbd_conf.write_text(
            f"AuthType=auth/munge\nAuthInfo=socket={munge_socket}\nDbdHost=localhost\nDbdAddr=127.0.0.1\n"
            f"DbdPort={ports['slurmdbd']}\nSlurmUser=root\nLogFile={log}/slurmdbd.log\n"
            f"PidFile={f}/slurmdbd.pid\nStorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\n"
            f"StoragePort={ports['mysql']}\nStorageUser=slurm\nStoragePass={password}\n"
            f"StorageLoc=slurm_acct_db\n"
        )
        slurmdbd_conf.chmod(0o600)  # slurmdbd refuses a config that others can read: it holds a password

        slurm_conf = f / "slurm.conf"
        slurm_conf.write_text(
            f"ClusterName={CLUSTER_NAME}\nSlurmctldHost={host}(127.0.0.1)\nSlurmUser=root\n"
            f"SlurmctldPort={ports['slurmctld']}\nSlurmdPort={ports['slurmd']}\n"
            # cred_expire: a requeued job may start again only once its old credential has expired (120 s default).
            f"AuthType=auth/munge\nAuthInfo=socket={munge_socket},cred_expire=10\nCredType=cred/munge\n"
            f"StateSaveLocation={f}/ctld\nSlurmdSpoolDir={f}/spool\n"
            f"SlurmctldPidFile={f}/slurmctld.pid\nSlurmdPidFile={f}/slurmd.pid\n"
            f"SlurmctldLogFile={log}/slurmctld.log\nSlurmdLogFile={log}/slurmd.log\n"
            # No cgroups here (no systemd, maybe none mounted): processes tracked through /proc, no task binding.
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\n"
            "MpiDefault=none\nMailProg=/bin/true\nSchedulerType=sched/backfill\nSelectType=select/cons_tres\n"
            "SelectTypeParameters=CR_Core\nReturnToService=2\n"
            # submitit's jobs ignore SIGTERM: a cancelled job is killed 5 s after it, not 30.
            "KillWait=5\nInactiveLimit=0\nMinJobAge=60\nSchedulerParameters=sched_interval=2\n"
            "AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\n"
            f"AccountingStoragePort={ports['slurmdbd']}\n"
            # Names the munge socket slurmctld reaches slurmdbd through (it is not the default one).
            f"AccountingStoragePass={munge_socket}\n"
            f"NodeName={self.node} NodeHostname={host} NodeAddr=127.0.0.1 {hardware} State=UNKNOWN\n"
            f"PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP\n"
        )
        self.env = dict(os.environ, SLURM_CONF=str(slurm_conf))

        self._daemon("slurmdbd", ["slurmdbd", "-D"], env={"SLURM_CONF": str(slurm_conf)})
        _wait_for("slurmdbd", lambda: _port_open(ports["slurmdbd"]), 60, [log / "slurmdbd.log"])
        # The cluster in the accounting database before slurmctld registers with it (-i: no confirmation prompt).
        self.run("sacctmgr", "-i", "add", "cluster", CLUSTER_NAME, timeout=60)

        self._daemon("slurmctld", ["slurmctld", "-D", "-i"])
        _wait_for("slurmctld", lambda: _port_open(ports["slurmctld"]), 60, [log / "slurmctld.log"])
        self._daemon("slurmd", ["slurmd", "-D", "-N", self.node])

        def node_idle():
            state = self.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.strip()
            return state == "idle"

        _wait_for("the node (sinfo: idle)", node_idle, 60, [log / "slurmctld.log", log / "slurmd.log"], 0.5)

    def _daemon(self, name: str, command: list[str], env: dict | None = None) -> None:
        """Start `command` in the foreground of a child process (its own session: a Ctrl-C meant for pytest does not
        reach it first), output to log/NAME.out; remember its pid."""
        out = open(self.folder / "log" / f"{name}.out", "ab")
        environment = dict(self.env or os.environ, **(env or {}))
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=environment, start_new_session=True)
        out.close()
        self._daemons.append((name, process))
        time.sleep(0.1)
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited at once ({process.returncode}):\n"
                               f"{_tail(self.folder / 'log' / f'{name}.out')}\n{_tail(self.folder / 'log' / f'{name}.log')}")

    def _running(self, name: str) -> bool:
        return any(n == name and p.poll() is None for n, p in self._daemons)

    @property
    def pids(self) -> dict[str, int]:
        """The daemons still running, by name."""
        return {name: p.pid for name, p in self._daemons if p.poll() is None}

    # ---- shutdown ----

    def _stop_daemons(self) -> None:
        """TERM each daemon by its pid, newest first (slurmd before slurmctld before slurmdbd before its database
        before munge, which they all need to say goodbye), then KILL whichever has not exited in time. The database's
        files (some 100 MB) go with it; the logs stay."""
        while self._daemons:
            name, process = self._daemons.pop()
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        shutil.rmtree(self.folder / "mysql" / "data", ignore_errors=True)


@contextlib.contextmanager
def cluster_for_tests(state_folder, work_folder):
    """The test suite's cluster (the `slurm_cluster` fixture): skipped where Slurm is not installed, and failing
    there under CI (`CI` set), which must run these tests. Inside, SLURM_CONF is set in os.environ, since submitit
    runs Slurm's commands with this process's environment, and `cluster.work` is a folder for the jobs' files,
    created empty and removed at the end: under the repository, not /tmp, which the study refuses for Slurm (node
    local on a real cluster), or, where the repository itself is under a temporary folder, under ~/.cache."""
    import pytest

    from hf_posattn.study.slurm import check_shared_folder

    missing = missing_binaries()
    if missing:
        reason = (f"Slurm is not installed here ({', '.join(missing)} missing): `.ci/install-slurm` installs it "
                  f"(Debian's packages, as root)")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    work = Path(work_folder)
    try:
        check_shared_folder(work)
    except ValueError:
        work = Path.home() / ".cache" / "hf_posattn-slurm-tests"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        with SlurmCluster(state_folder) as cluster, pytest.MonkeyPatch.context() as patch:
            patch.setenv("SLURM_CONF", cluster.env["SLURM_CONF"])
            cluster.work = work
            yield cluster
    finally:
        shutil.rmtree(work, ignore_errors=True)
