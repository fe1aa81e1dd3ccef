"""A real single-node OpenSearch with the k-NN plugin, for tests, benchmarks and the local demo.

Everything comes from Maven Central, the one place the project's machines can download Java
artifacts from: the ``integ-test-zip`` distribution (no bundled JDK, only the transport module),
the k-NN plugin zip, and the ``lang-painless`` jars. k-NN declares ``extended.plugins=lang-painless``
and the integ-test distribution lacks that module, so ``fetch`` lays it out from the jars before
installing the plugin. The k-NN zip on Maven Central carries no native libraries: a ``faiss`` or
``nmslib`` index kills the JVM when the plugin first builds a graph (an ``UnsatisfiedLinkError`` at the
first refresh, fatal to OpenSearch). A faiss index that builds none
(``index.knn.advanced.approximate_threshold: -1``) works, searched exactly in Java: tests/faiss_node.py.

A second flavour adds the security plugin (``fetch(secured=True)``), as fine-grained access control
runs it on Amazon OpenSearch Service: the plugin's own demo configuration (its installer, run once at
fetch time) with TLS between nodes and basic authentication over plain HTTP on loopback, so tests can
apply the deployment's roles and role mappings and then act as each function's identity.

    python -m devtools.opensearch_node fetch [--secured]          # prepare .cache/opensearch/ once
    python -m devtools.opensearch_node run --port 9200 [--secured]  # a node in the foreground until Ctrl-C
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from urllib.parse import quote

from opensearchpy import OpenSearch
from opensearchpy.exceptions import TransportError

OPENSEARCH_VERSION = "2.19.1"
KNN_VERSION = "2.19.1.0"  # Maven Central has no k-NN zip for 2.19.2 or 2.19.3
SECURITY_VERSION = "2.19.1.0"
ADMIN_USER = "admin"
ADMIN_PASSWORD = "Xq7-vLm2#pRt9wZs"
"""The secured node's administrator (its demo configuration's ``admin``): a node bound to 127.0.0.1 for
tests only. The installer refuses weak passwords, so this one is long and mixed, and it is fixed because
the installer hashes it into the cached install."""
DEFAULT_CACHE_DIR = Path(__file__).resolve().parents[1] / ".cache" / "opensearch"

_log = logging.getLogger(__name__)

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.simsearch</groupId>
  <artifactId>opensearch-test-node</artifactId>
  <version>0</version>
  <dependencies>
    <dependency>
      <groupId>org.opensearch.distribution.integ-test-zip</groupId>
      <artifactId>opensearch</artifactId>
      <version>{opensearch}</version>
      <type>zip</type>
    </dependency>
    <dependency>
      <groupId>org.opensearch.plugin</groupId>
      <artifactId>opensearch-knn</artifactId>
      <version>{knn}</version>
      <type>zip</type>
    </dependency>
{security}    <dependency>
      <!-- the painless module: this jar with antlr4-runtime, asm-* and painless-spi, minus the
           server and its libraries, which the distribution's lib/ already holds -->
      <groupId>org.opensearch.plugin</groupId>
      <artifactId>lang-painless</artifactId>
      <version>{opensearch}</version>
      <exclusions>
        <exclusion>
          <groupId>org.opensearch</groupId>
          <artifactId>opensearch</artifactId>
        </exclusion>
      </exclusions>
    </dependency>
  </dependencies>
</project>
"""
_SECURITY_DEPENDENCY = """    <dependency>
      <groupId>org.opensearch.plugin</groupId>
      <artifactId>opensearch-security</artifactId>
      <version>{version}</version>
      <type>zip</type>
    </dependency>
"""
_COPY_DEPENDENCIES = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"

# What the full distribution ships as modules/lang-painless/plugin-descriptor.properties (2.19 names
# the class PainlessPlugin; later versions PainlessModulePlugin).
_PAINLESS_DESCRIPTOR = f"""description=An easy, safe and fast scripting language for OpenSearch
version={OPENSEARCH_VERSION}
name=lang-painless
classname=org.opensearch.painless.PainlessPlugin
java.version=11
opensearch.version={OPENSEARCH_VERSION}
custom.foldername=
extended.plugins=
has.native.controller=false
"""
_PAINLESS_POLICY = """grant {
  // painless compiles each script to a class in its own loader
  permission java.lang.RuntimePermission "createClassLoader";
  permission java.lang.RuntimePermission "getClassLoader";
};
"""
_PREPARED_MARKER = ".simsearch-prepared"
_PREPARED_CONTENT = f"opensearch {OPENSEARCH_VERSION} + opensearch-knn {KNN_VERSION} + lang-painless\n"
_SECURED_CONTENT = _PREPARED_CONTENT + f"+ opensearch-security {SECURITY_VERSION} (demo configuration)\n"
_SECURITY_PLUGIN = Path("plugins") / "opensearch-security"
_DEMO_BEGIN = "######## Start OpenSearch Security Demo Configuration ########"
_DEMO_END = "######## End OpenSearch Security Demo Configuration ########"
_DEMO_FILES = ("esnode.pem", "esnode-key.pem", "root-ca.pem", "kirk.pem", "kirk-key.pem")
_DEMO_REPLACED = re.compile(r"^plugins\.security\.ssl\.http\.enabled:")  # our own value follows

_JAVA_RELEASE_VERSION = re.compile(r'^JAVA_VERSION="(?:1\.)?(\d+)', re.MULTILINE)
_SUPPORTED_JAVA = range(11, 24)  # 2.19 installs a Security Manager, which Java 24 removed
# Lines of the distribution's jvm.options that write into the (shared, read-only) install
# directory or fix the heap; the node's own values replace them.
_REPLACED_JVM_OPTIONS = re.compile(r"-Xm[sx]|gc\.log|HeapDump|ErrorFile")
_PR_SET_PDEATHSIG = 1


class OpenSearchNodeError(Exception):
    """The distribution could not be prepared, or a node did not start or died."""


def fetch(cache_dir: Path = DEFAULT_CACHE_DIR, *, secured: bool = False) -> Path:
    """Return the prepared install directory, downloading and preparing it only if it is missing.

    ``secured`` selects the flavour with the security plugin and its demo configuration. Safe to call
    from several processes at once: one prepares, the others wait on a lock. The directory appears by
    an atomic rename, so an interrupted run leaves nothing half-prepared.
    """
    home = cache_dir / f"opensearch-{OPENSEARCH_VERSION}{'-secured' if secured else ''}"
    content = _SECURED_CONTENT if secured else _PREPARED_CONTENT
    if _is_prepared(home, content):
        return home
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(cache_dir / ".lock"):
        if _is_prepared(home, content):
            return home
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".staging-") as staging:
            staged_home = _prepare(Path(staging), secured=secured)
            (staged_home / _PREPARED_MARKER).write_text(content)
            shutil.rmtree(home, ignore_errors=True)  # left by an older version of this module
            staged_home.rename(home)
    return home


def java_home() -> Path:
    """The JDK that runs the node: ``OPENSEARCH_JAVA_HOME``, else ``JAVA_HOME``, else ``java`` on PATH."""
    configured = os.environ.get("OPENSEARCH_JAVA_HOME") or os.environ.get("JAVA_HOME")
    if configured:
        home = Path(configured)
    else:
        java = shutil.which("java")
        if java is None:
            raise OpenSearchNodeError("no java on PATH: install Java 17 or set OPENSEARCH_JAVA_HOME")
        home = Path(java).resolve().parents[1]
    release = home / "release"
    found = _JAVA_RELEASE_VERSION.search(release.read_text()) if release.is_file() else None
    if found is None or int(found[1]) not in _SUPPORTED_JAVA:
        raise OpenSearchNodeError(
            f"{home} is not a JDK {_SUPPORTED_JAVA.start}-{_SUPPORTED_JAVA.stop - 1} (from {release}); "
            f"OpenSearch {OPENSEARCH_VERSION} needs one: set OPENSEARCH_JAVA_HOME"
        )
    return home


class OpenSearchNode:
    """One single-node cluster bound to 127.0.0.1, with its config, data and logs in a temporary directory.

    Use it as a context manager; ``stop`` also runs at interpreter exit, and on Linux the kernel
    sends the node SIGTERM if the thread that started it dies, so no JVM outlives a killed test run.
    Start it from a thread that lives as long as the node (the main thread, in tests and benchmarks).
    """

    def __init__(
        self,
        *,
        home: Path,
        http_port: int = 0,
        heap: str = "512m",
        cpus: Collection[int] | None = None,
        startup_timeout_s: float = 180.0,
        stop_timeout_s: float = 30.0,
    ) -> None:
        """Describe the node; ``http_port=0`` lets it pick a free port, read back from its ports file.
        ``cpus`` keeps the node (the JVM and every thread it starts) on those cores, so that a benchmark
        can leave the ones it measures on to the work it measures; None: any core."""
        self._home = home
        self._http_port = http_port
        self._heap = heap
        self._cpus = None if cpus is None else frozenset(cpus)
        self._startup_timeout_s = startup_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._url: str | None = None

    @property
    def secured(self) -> bool:
        """Whether the install carries the security plugin (``fetch(secured=True)``)."""
        return (self._home / _SECURITY_PLUGIN).is_dir()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` of the running node."""
        if self._url is None:
            raise OpenSearchNodeError("the node is not running: call start() or use it in a with block")
        return self._url

    @property
    def admin_url(self) -> str:
        """``url`` with the administrator's credentials on a secured node; ``url`` itself otherwise."""
        if not self.secured:
            return self.url
        return self.url.replace("http://", f"http://{ADMIN_USER}:{quote(ADMIN_PASSWORD, safe='')}@", 1)

    @property
    def console_log(self) -> Path:
        """What the node prints, including JVM errors from before its logging starts."""
        if self._workdir is None:
            raise OpenSearchNodeError("the node is not running: call start() or use it in a with block")
        return self._workdir / "console.log"

    def __enter__(self) -> OpenSearchNode:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the node and return once cluster health is yellow or green.

        Raises:
            OpenSearchNodeError: the node exited or was not ready in time; the message ends with its log.
        """
        if self._process is not None:
            raise OpenSearchNodeError(f"the node is already running at {self._url}")
        self._workdir = Path(tempfile.mkdtemp(prefix="simsearch-opensearch-"))
        atexit.register(self.stop)
        try:
            self._process = self._launch(self._workdir)
            self._url = self._wait_until_ready(self._workdir)
        except BaseException:
            self.stop()
            raise
        _log.info("OpenSearch %s with k-NN %s is ready at %s", OPENSEARCH_VERSION, KNN_VERSION, self._url)

    def wait(self) -> None:
        """Block while the node runs; a node never exits by itself, so returning means it died."""
        if self._process is None:
            raise OpenSearchNodeError("the node is not running: call start() or use it in a with block")
        code = self._process.wait()
        raise OpenSearchNodeError(f"the node exited with code {code}:\n{self._console_tail()}")

    def stop(self) -> None:
        """SIGTERM the node, SIGKILL it after ``stop_timeout_s``, and delete its directory; idempotent."""
        atexit.unregister(self.stop)
        if self._process is not None:
            _terminate(self._process, grace_s=self._stop_timeout_s)
            self._process = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        self._url = None

    def _launch(self, workdir: Path) -> subprocess.Popen[bytes]:
        user = _unprivileged_user()
        home = _private_copy(self._home, workdir / "opensearch") if user else self._home
        for name in ("config", "data", "logs", "tmp"):
            (workdir / name).mkdir()
        _write_config(
            workdir,
            dist_config=home / "config",
            settings=_node_settings(workdir, self._http_port, secured=self.secured),
            heap=self._heap,
        )
        if user:
            _give_to(user, workdir)
        env = {
            **os.environ,
            "OPENSEARCH_JAVA_HOME": str(java_home()),
            "OPENSEARCH_PATH_CONF": str(workdir / "config"),
            "OPENSEARCH_TMPDIR": str(workdir / "tmp"),
        }
        env.pop("OPENSEARCH_JAVA_OPTS", None)  # jvm.options alone decides, so every run is the same
        with (workdir / "console.log").open("wb") as console:
            return subprocess.Popen(
                [str(home / "bin" / "opensearch")],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us, not the JVM: stop() shuts it down in order
                user=user.pw_uid if user else None,
                group=user.pw_gid if user else None,
                extra_groups=[] if user else None,
                preexec_fn=_before_exec(self._cpus),
            )

    def _wait_until_ready(self, workdir: Path) -> str:
        deadline = time.monotonic() + self._startup_timeout_s
        ports_file = workdir / "logs" / "http.ports"  # written by the node once HTTP is bound
        url: str | None = None
        while time.monotonic() < deadline:
            self._raise_if_exited()
            if url is None and ports_file.is_file():
                url = "http://" + ports_file.read_text().split()[0]
            if url is not None and _is_healthy(
                url, auth=(ADMIN_USER, ADMIN_PASSWORD) if self.secured else None
            ):
                return url
            time.sleep(0.25)
        raise OpenSearchNodeError(
            f"the node was not ready within {self._startup_timeout_s:.0f}s:\n{self._console_tail()}"
        )

    def _raise_if_exited(self) -> None:
        if self._process is not None and (code := self._process.poll()) is not None:
            raise OpenSearchNodeError(
                f"the node exited with code {code} while starting:\n{self._console_tail()}"
            )

    def _console_tail(self, lines: int = 40) -> str:
        if self._workdir is None:
            return ""
        with contextlib.suppress(OSError):
            text = (self._workdir / "console.log").read_text(errors="replace")
            # stack frames would push the exception messages, which name the cause, out of the tail
            messages = [line for line in text.splitlines() if not line.lstrip().startswith(("at ", "..."))]
            return "\n".join(messages[-lines:])
        return ""


def _is_prepared(home: Path, content: str) -> bool:
    marker = home / _PREPARED_MARKER
    return marker.is_file() and marker.read_text() == content


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _prepare(staging: Path, *, secured: bool) -> Path:
    artifacts = staging / "artifacts"
    _download(staging / "pom.xml", artifacts, secured=secured)
    _extract(artifacts / f"opensearch-{OPENSEARCH_VERSION}.zip", staging)
    home = staging / f"opensearch-{OPENSEARCH_VERSION}"
    _lay_out_painless_module(home / "modules" / "lang-painless", jars=sorted(artifacts.glob("*.jar")))
    plugins = [f"opensearch-knn-{KNN_VERSION}.zip"]
    if secured:
        plugins.append(f"opensearch-security-{SECURITY_VERSION}.zip")
    env = {**os.environ, "OPENSEARCH_JAVA_HOME": str(java_home())}
    for plugin in plugins:
        _check_call(
            [str(home / "bin" / "opensearch-plugin"), "install", "--batch", (artifacts / plugin).as_uri()],
            env=env,
        )
    if secured:
        # -y accept, -i allow any host, -s skip the "security index exists" check: a fresh install
        installer = home / _SECURITY_PLUGIN / "tools" / "install_demo_configuration.sh"
        _check_call(
            ["bash", str(installer), "-y", "-i", "-s"],
            env={**env, "OPENSEARCH_INITIAL_ADMIN_PASSWORD": ADMIN_PASSWORD},
        )
    _make_readable_by_all(home)  # a root caller runs the node as nobody
    return home


def _download(pom: Path, into: Path, *, secured: bool) -> None:
    security = _SECURITY_DEPENDENCY.format(version=SECURITY_VERSION) if secured else ""
    pom.write_text(_POM.format(opensearch=OPENSEARCH_VERSION, knn=KNN_VERSION, security=security))
    _log.info(
        "fetching OpenSearch %s and k-NN %s with Maven (first run only)", OPENSEARCH_VERSION, KNN_VERSION
    )
    _check_call(["mvn", "-B", "-q", "-f", str(pom), _COPY_DEPENDENCIES, f"-DoutputDirectory={into}"])


def _extract(archive: Path, into: Path) -> None:
    """Unzip keeping each entry's Unix mode, which ``zipfile`` drops (bin/ must stay executable)."""
    with zipfile.ZipFile(archive) as bundle:
        for entry in bundle.infolist():
            path = Path(bundle.extract(entry, into))
            if mode := (entry.external_attr >> 16) & 0o777:
                path.chmod(mode)


def _lay_out_painless_module(module: Path, *, jars: Sequence[Path]) -> None:
    if not any(jar.name.startswith("lang-painless-") for jar in jars):
        raise OpenSearchNodeError(
            f"Maven did not deliver the lang-painless jar; got {[j.name for j in jars]}"
        )
    module.mkdir()
    for jar in jars:
        shutil.copyfile(jar, module / jar.name)
    (module / "plugin-descriptor.properties").write_text(_PAINLESS_DESCRIPTOR)
    (module / "plugin-security.policy").write_text(_PAINLESS_POLICY)


def _make_readable_by_all(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        executable = path.is_dir() or mode & 0o100
        path.chmod(mode | 0o444 | (0o111 if executable else 0))


def _check_call(command: list[str], *, env: Mapping[str, str] | None = None) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    except FileNotFoundError as error:
        raise OpenSearchNodeError(f"{command[0]} is not installed; fetch needs Maven and Java 17") from error
    except subprocess.CalledProcessError as error:
        output = (error.stdout + error.stderr).strip().splitlines()[-40:]
        raise OpenSearchNodeError(
            f"{' '.join(command)} exited with {error.returncode}:\n" + "\n".join(output)
        ) from error


def _node_settings(workdir: Path, http_port: int, *, secured: bool) -> dict[str, object]:
    settings: dict[str, object] = {
        "cluster.name": "simsearch-dev",
        "node.name": "simsearch-dev",
        "network.host": "127.0.0.1",  # loopback only: the production bootstrap checks stay warnings
        "http.port": http_port,
        "transport.port": 0,
        "node.portsfile": True,  # logs/http.ports tells which free port the node took: no port race
        "discovery.type": "single-node",
        "path.data": str(workdir / "data"),
        "path.logs": str(workdir / "logs"),
        # dev disks run nearly full; the flood-stage watermark would make every index read-only
        "cluster.routing.allocation.disk.threshold_enabled": False,
    }
    if secured:  # basic authentication over plain HTTP on loopback: clients need no CA bundle
        settings["plugins.security.ssl.http.enabled"] = False
    return settings


def _write_config(workdir: Path, *, dist_config: Path, settings: Mapping[str, object], heap: str) -> None:
    config = workdir / "config"
    lines = [f"{name}: {json.dumps(value)}" for name, value in settings.items()]  # JSON values are YAML
    if (dist_config / "opensearch-security").is_dir():
        lines += _demo_security_settings(dist_config / "opensearch.yml")
        for name in _DEMO_FILES:
            shutil.copyfile(dist_config / name, config / name)
        shutil.copytree(dist_config / "opensearch-security", config / "opensearch-security")
    (config / "opensearch.yml").write_text("\n".join([*lines, ""]))
    shutil.copyfile(dist_config / "log4j2.properties", config / "log4j2.properties")
    dist_options = (dist_config / "jvm.options").read_text().splitlines()
    kept = [line for line in dist_options if not _REPLACED_JVM_OPTIONS.search(line)]
    own = [f"-Xms{heap}", f"-Xmx{heap}", f"-XX:ErrorFile={workdir / 'logs' / 'hs_err_pid%p.log'}"]
    (config / "jvm.options").write_text("\n".join([*kept, *own, ""]))


def _demo_security_settings(dist_yml: Path) -> list[str]:
    """The settings the security plugin's demo installer appended to the distribution's opensearch.yml."""
    text = dist_yml.read_text()
    if _DEMO_BEGIN not in text or _DEMO_END not in text:
        raise OpenSearchNodeError(f"{dist_yml} holds no demo security configuration: delete the cache, fetch")
    block = text.split(_DEMO_BEGIN, 1)[1].split(_DEMO_END, 1)[0]
    return [line for line in block.splitlines() if not _DEMO_REPLACED.match(line)]


def _unprivileged_user() -> pwd.struct_passwd | None:
    """``nobody`` when we are root: OpenSearch refuses to run as root and no setting overrides that."""
    return pwd.getpwnam("nobody") if os.geteuid() == 0 else None


def _private_copy(home: Path, into: Path) -> Path:
    """Hard-link the install into the node's directory, which ``nobody`` can reach wherever the cache is."""

    def link_or_copy(source: str, target: str) -> None:
        try:
            os.link(source, target)
        except OSError:  # another filesystem
            shutil.copy2(source, target)

    shutil.copytree(home, into, copy_function=link_or_copy)
    return into


def _give_to(user: pwd.struct_passwd, workdir: Path) -> None:
    """Hand the node what it writes; the private install stays root's (its files are the cache's inodes)."""
    os.chown(workdir, user.pw_uid, user.pw_gid)
    for name in ("config", "data", "logs", "tmp"):
        for path in [workdir / name, *(workdir / name).rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)


def _before_exec(cpus: frozenset[int] | None) -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to SIGTERM the node when its parent dies, even by SIGKILL, and to run
    it on ``cpus`` only (inherited by every thread and process it starts)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork: the child only calls it

    def set_up_child() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if cpus is not None:
            os.sched_setaffinity(0, cpus)

    return set_up_child


def _is_healthy(url: str, *, auth: tuple[str, str] | None) -> bool:
    client = OpenSearch(hosts=[url], http_auth=auth, timeout=10)
    try:
        health = client.cluster.health()
    except TransportError:  # not listening yet, or no cluster manager elected yet (503)
        return False
    finally:
        client.close()
    return health.get("status") in ("green", "yellow")


def _terminate(process: subprocess.Popen[bytes], *, grace_s: float) -> None:
    if process.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)  # the whole session: bin/opensearch and the JVM it execs
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait_s)
            return


def _serve(port: int, *, secured: bool) -> None:
    def stop_on_sigterm(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds through the with block, so the node is stopped cleanly

    signal.signal(signal.SIGTERM, stop_on_sigterm)
    with OpenSearchNode(home=fetch(secured=secured), http_port=port) as node:
        if node.secured:
            print(f"administrator: {ADMIN_USER} / {ADMIN_PASSWORD} (basic authentication)", flush=True)
        print(f"log: {node.console_log}; Ctrl-C stops the node and deletes its data", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            node.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """``fetch`` prepares the cached install; ``run`` serves a node in the foreground."""
    parser = argparse.ArgumentParser(
        prog="python -m devtools.opensearch_node", description="A real OpenSearch node with k-NN for tests."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fetching = commands.add_parser(
        "fetch", help=f"download and prepare OpenSearch into {DEFAULT_CACHE_DIR} unless there"
    )
    run = commands.add_parser("run", help="start a node on 127.0.0.1 and keep it up until Ctrl-C")
    run.add_argument("--port", type=int, default=9200, help="HTTP port (0: any free port); default 9200")
    for command in (fetching, run):
        command.add_argument(
            "--secured", action="store_true", help="the flavour with the security plugin (demo configuration)"
        )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("opensearch").setLevel(logging.ERROR)  # one line per readiness probe otherwise
    try:
        if args.command == "fetch":
            started = time.monotonic()
            home = fetch(secured=args.secured)
            print(f"{home} is ready ({time.monotonic() - started:.1f}s)")
        else:
            _serve(args.port, secured=args.secured)
    except OpenSearchNodeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
