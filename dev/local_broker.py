"""A real single-node Apache Kafka broker (KRaft) owned by the project.

Tests and local development need a broker that behaves exactly like production
Kafka (transactions, SASL, ACLs, outages), so this module runs the genuine
Kafka server jars (fetched once by Maven into ``dev/kafka/target/libs``) as a
child JVM, instead of relying on Docker or a mock.

Everything a broker owns lives under one ``home`` directory::

    home/server.properties   generated broker config
    home/log4j2.properties   logging config (console -> broker.log)
    home/broker.log          JVM stdout/stderr and Kafka log output
    home/data/               KRaft metadata log and topic partitions
    home/state.json          pid, ports, flags (never passwords), for ``attach``
    home/tls/                throw-away CA, server cert/key, broker JAAS file
"""

from __future__ import annotations

import base64
import datetime as dt
import errno
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from connectors.errors import LakeportError

__all__ = [
    "BrokerError",
    "ListenerSpec",
    "LocalBroker",
    "ScramUser",
    "ensure_broker_jars",
    "render_properties",
]

HOST = "127.0.0.1"
SECURE_HOST = "localhost"  # advertised name of the SASL_SSL listener: matches the cert SAN
PLAIN_LISTENER = "PLAINTEXT"
CONTROLLER_LISTENER = "CONTROLLER"
SECURE_LISTENER = "SECURE"
SCRAM_MECHANISM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 4096
NODE_ID = 1
KAFKA_MAIN = "kafka.Kafka"
STORAGE_TOOL_MAIN = "kafka.tools.StorageTool"  # still the class behind kafka-storage.sh in 4.4
STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
HEAP_OPTS = ("-Xms256m", "-Xmx1g")
# Kafka's own defaults (kafka-run-class.sh); pass e.g. "-XX:TieredStopAtLevel=1" via
# LocalBroker.jvm_options to trade steady-state speed for ~0.5-1 s faster start-up.
JVM_OPTS = ("-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35")
LOG_TAIL_LINES = 30
MVN_TIMEOUT_S = 900.0
FORMAT_TIMEOUT_S = 120.0

_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")
_log = logging.getLogger(__name__)


class BrokerError(LakeportError):
    """The local broker could not be prepared, started, found or stopped."""


@dataclass(frozen=True)
class ScramUser:
    """A SASL user known to the secure listener (SCRAM-SHA-512 and PLAIN)."""

    username: str
    password: str = field(repr=False)  # keep secrets out of reprs and test output

    def __post_init__(self) -> None:
        # Names go into JAAS option keys and --add-scram; reject what would need quoting.
        if not _NAME_RE.match(self.username):
            raise BrokerError(
                f"invalid SCRAM username {self.username!r}: use letters, digits, '.', '_' or '-'"
            )
        if not self.password or any(c in self.password for c in '"\\\n\r'):
            raise BrokerError(
                f"invalid password for {self.username!r}: must be non-empty and "
                "contain no double quote, backslash or newline"
            )


@dataclass(frozen=True)
class ListenerSpec:
    """One Kafka listener; server.properties is derived from a list of these."""

    name: str
    protocol: str  # PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
    port: int
    bind_host: str = HOST
    advertised_host: str | None = HOST  # None: not advertised (controller listener)

    @property
    def listener(self) -> str:
        return f"{self.name}://{self.bind_host}:{self.port}"

    @property
    def advertised(self) -> str | None:
        if self.advertised_host is None:
            return None
        return f"{self.name}://{self.advertised_host}:{self.port}"


def project_root_dir() -> Path:
    """The repository root (this file lives in ``<root>/dev/``)."""
    return Path(__file__).resolve().parent.parent


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _file_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        data = path.read_bytes()[-64_000:]
    except OSError:
        return f"(no log at {path})"
    return _tail(data.decode("utf-8", errors="replace"), lines) or f"({path} is empty)"


def _java_executable() -> str:
    """Prefer $JAVA_HOME/bin/java, as Kafka's own scripts do, then PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if not found:
        raise BrokerError(
            "java not found (neither $JAVA_HOME/bin/java nor `java` on PATH): "
            "install a JDK 17+ to run the local Kafka broker"
        )
    return found


def _has_jars(libs: Path) -> bool:
    return (
        libs.is_dir() and any(libs.glob("kafka_2.13-*.jar")) and any(libs.glob("kafka-tools-*.jar"))
    )


def ensure_broker_jars(project_root: Path | None = None) -> Path:
    """Return ``dev/kafka/target/libs``, running Maven once to fetch the Kafka jars if missing.

    The jars are not vendored in git (about 54 MB); Maven Central is the one
    source of truth for the broker version pinned in ``dev/kafka/pom.xml``.
    """
    root = project_root if project_root is not None else project_root_dir()
    kafka_dir = root / "dev" / "kafka"
    libs = kafka_dir / "target" / "libs"
    if _has_jars(libs):
        return libs
    pom = kafka_dir / "pom.xml"
    if not pom.is_file():
        raise BrokerError(f"{pom} not found: cannot fetch the Kafka broker jars")
    mvn = shutil.which("mvn")
    if not mvn:
        raise BrokerError(
            f"Kafka broker jars are missing from {libs} and `mvn` is not on PATH: "
            f"install Maven 3.8+ and run `mvn -B -f {pom} package` once"
        )
    _java_executable()  # Maven needs it too; fail with the clearer message
    cmd = [mvn, "-q", "-B", "-f", str(pom), "package"]
    (kafka_dir / "target").mkdir(exist_ok=True)
    with (kafka_dir / "target" / ".fetch.lock").open("w") as lock:
        # Parallel test workers must not run two Maven copies into the same dir.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _has_jars(libs):
            return libs
        return _run_maven(cmd, libs)


def _run_maven(cmd: list[str], libs: Path) -> Path:
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=MVN_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        raise BrokerError(
            f"`{' '.join(cmd)}` did not finish within {MVN_TIMEOUT_S:.0f}s; output tail:\n{_tail(out)}"
        ) from exc
    if proc.returncode != 0 or not _has_jars(libs):
        raise BrokerError(
            f"`{' '.join(cmd)}` failed (exit code {proc.returncode}) to fetch the Kafka jars "
            f"into {libs}; output tail:\n{_tail(proc.stdout + proc.stderr)}"
        )
    return libs


def render_properties(props: Mapping[str, str]) -> str:
    """Render a Java ``.properties`` file; multi-line values (PEM) are escaped."""

    def esc(value: str) -> str:
        value = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        return "\\" + value if value.startswith((" ", "\t")) else value

    return "".join(f"{key}={esc(value)}\n" for key, value in props.items())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _check_port_free(port: int) -> None:
    """Fail fast instead of letting the JVM die on a bind error later."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # The JVM sets SO_REUSEADDR, so TIME_WAIT leftovers (e.g. after kill()) are fine.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise BrokerError(
                    f"port {port} on {HOST} is already in use: stop what uses it, or pick a free"
                    f" port: make demo LAKEPORT_BOOTSTRAP={HOST}:<port> (or lakeport broker start"
                    " --port <port>, with LAKEPORT_BOOTSTRAP set to match)"
                ) from exc
            raise BrokerError(f"cannot bind port {port} on {HOST}: {exc}") from exc


def _port_accepts(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _pid_alive(pid: int, home: Path) -> bool:
    """True if ``pid`` is a live (non-zombie) Kafka JVM for this home, not a reused pid."""
    proc_dir = Path("/proc") / str(pid)
    if proc_dir.is_dir():
        try:
            stat = (proc_dir / "stat").read_text()
            state = stat.rsplit(")", 1)[1].split()[0]
            cmdline = (proc_dir / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X") and KAFKA_MAIN in cmdline and str(home) in cmdline
    try:  # no procfs (macOS): best effort
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _scram_argument(user: ScramUser) -> str:
    """``--add-scram`` value with a pre-salted password, so no password lands in argv."""
    salt = secrets.token_bytes(24)
    salted = hashlib.pbkdf2_hmac("sha512", user.password.encode(), salt, SCRAM_ITERATIONS)
    b64 = base64.b64encode
    return (
        f"{SCRAM_MECHANISM}=[name={user.username},iterations={SCRAM_ITERATIONS},"
        f'salt="{b64(salt).decode()}",saltedpassword="{b64(salted).decode()}"]'
    )


def _write_private(path: Path, text: str) -> None:
    """Write a file readable by the owner only (keys, JAAS with passwords)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _generate_tls(tls_dir: Path) -> None:
    """Create a throw-away CA and a server cert for localhost/127.0.0.1 as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    tls_dir.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    not_before, not_after = now - dt.timedelta(days=1), now + dt.timedelta(days=825)

    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lakeport local broker CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SECURE_HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(SECURE_HOST), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    pem = serialization.Encoding.PEM
    (tls_dir / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    # Full chain: clients that only trust the CA can still build the path.
    (tls_dir / "server-chain.pem").write_bytes(cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    # Unencrypted PKCS#8: Kafka's inline PEM keystore (ssl.keystore.key) accepts it
    # without ssl.key.password; the file-based PEM keystore would demand an encrypted key.
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    _write_private(tls_dir / "server-key.pem", key_pem)


LOG4J2_PROPERTIES = """\
# Generated by dev/local_broker.py: console (-> broker.log), quiet by default.
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.target = SYSTEM_OUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
logger.broker.name = kafka.server.BrokerServer
logger.broker.level = INFO
logger.controller.name = kafka.server.ControllerServer
logger.controller.level = INFO
logger.appinfo.name = org.apache.kafka.common.utils.AppInfoParser
logger.appinfo.level = INFO
logger.storage.name = org.apache.kafka.storage.internals.log.LogManager
logger.storage.level = WARN
"""


@dataclass
class LocalBroker:
    """A single-node KRaft broker+controller whose whole state lives in ``home``.

    ``start()`` formats storage on first use only, so ``kill()``/``stop()`` then
    ``start()`` restarts on the same data and the same ports (outage tests).
    SCRAM users are created at format time; on an already formatted home the
    ``users`` given here are not re-created (their credentials persist in the
    metadata log).
    """

    home: Path
    port: int | None = None
    secure: bool = False
    users: tuple[ScramUser, ...] = ()
    controller_port: int | None = field(default=None, repr=False)
    secure_port: int | None = field(default=None, repr=False)
    project_root: Path | None = field(default=None, repr=False)
    jvm_options: tuple[str, ...] = field(default=(), repr=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _pid: int | None = field(default=None, init=False, repr=False)
    _user_names: tuple[str, ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        self.home = Path(self.home).resolve()
        self.users = tuple(self.users)
        if self.users and not self.secure:
            raise BrokerError("users need secure=True: they only exist on the SASL_SSL listener")
        names = [u.username for u in self.users]
        if len(set(names)) != len(names):
            raise BrokerError(f"duplicate usernames in {names}")
        self._user_names = tuple(names)

    # ----------------------------------------------------------------- paths
    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        return self.home / "broker.log"

    @property
    def state_file(self) -> Path:
        return self.home / "state.json"

    @property
    def properties_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def tls_dir(self) -> Path:
        return self.home / "tls"

    @property
    def jaas_file(self) -> Path:
        return self.tls_dir / "broker_jaas.conf"

    @property
    def ca_file(self) -> Path:
        """PEM of the throw-away CA that signed the secure listener's certificate."""
        if not self.secure:
            raise BrokerError("ca_file exists only for a secure broker (secure=True)")
        return self.tls_dir / "ca.pem"

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def user_names(self) -> tuple[str, ...]:
        """Usernames of the secure listener (also known after ``attach``, unlike passwords)."""
        return self._user_names

    def is_formatted(self) -> bool:
        return (self.data_dir / "meta.properties").is_file()

    # ------------------------------------------------------------ addresses
    @property
    def bootstrap_servers(self) -> str:
        """PLAINTEXT bootstrap, ``127.0.0.1:PORT`` (no auth; ANONYMOUS is a super user)."""
        if self.port is None:
            raise BrokerError("broker port not assigned yet: call start() or attach() first")
        return f"{HOST}:{self.port}"

    @property
    def secure_bootstrap_servers(self) -> str:
        """SASL_SSL bootstrap, ``localhost:PORT`` so TLS hostname verification passes."""
        if not self.secure:
            raise BrokerError("no secure listener: create the broker with secure=True")
        if self.secure_port is None:
            raise BrokerError("secure port not assigned yet: call start() or attach() first")
        return f"{SECURE_HOST}:{self.secure_port}"

    def client_config(
        self, user: ScramUser | None = None, *, mechanism: str = SCRAM_MECHANISM
    ) -> dict[str, str]:
        """librdkafka settings: PLAINTEXT without ``user``, else SASL_SSL as ``user``.

        ``mechanism`` may be ``PLAIN`` to exercise the PLAIN path of the same listener.
        """
        if user is None:
            return {"bootstrap.servers": self.bootstrap_servers}
        if mechanism not in (SCRAM_MECHANISM, "PLAIN"):
            raise BrokerError(
                f"unsupported SASL mechanism {mechanism!r}: use {SCRAM_MECHANISM} or PLAIN"
            )
        return {
            "bootstrap.servers": self.secure_bootstrap_servers,
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": mechanism,
            "sasl.username": user.username,
            "sasl.password": user.password,
            "ssl.ca.location": str(self.ca_file),
            "ssl.endpoint.identification.algorithm": "https",
            # "localhost" may also resolve to ::1 where nothing listens.
            "broker.address.family": "v4",
        }

    # ---------------------------------------------------------- config build
    def listener_specs(self) -> list[ListenerSpec]:
        """All listeners; extend here (or override) to open more of them."""
        if self.port is None or self.controller_port is None:
            raise BrokerError("ports not assigned yet")
        specs = [
            ListenerSpec(PLAIN_LISTENER, "PLAINTEXT", self.port),
            ListenerSpec(
                CONTROLLER_LISTENER, "PLAINTEXT", self.controller_port, advertised_host=None
            ),
        ]
        if self.secure:
            if self.secure_port is None:
                raise BrokerError("secure port not assigned yet")
            specs.append(
                ListenerSpec(
                    SECURE_LISTENER, "SASL_SSL", self.secure_port, advertised_host=SECURE_HOST
                )
            )
        return specs

    def server_properties(self) -> dict[str, str]:
        """The broker configuration as an ordered dict (rendered to server.properties)."""
        specs = self.listener_specs()
        props: dict[str, str] = {
            "process.roles": "broker,controller",
            "node.id": str(NODE_ID),
            "controller.quorum.bootstrap.servers": f"{HOST}:{self.controller_port}",
            "controller.listener.names": CONTROLLER_LISTENER,
            "inter.broker.listener.name": PLAIN_LISTENER,
            "listeners": ",".join(s.listener for s in specs),
            "advertised.listeners": ",".join(s.advertised for s in specs if s.advertised),
            "listener.security.protocol.map": ",".join(f"{s.name}:{s.protocol}" for s in specs),
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "delete.topic.enable": "true",
            "log.retention.check.interval.ms": "30000",
            # Sample events carry fixed timestamps in the past; time-based retention would
            # delete them within a minute. Tests simulate retention with delete_records.
            "log.retention.ms": "-1",
            "log.flush.offset.checkpoint.interval.ms": "5000",
            # After kill() the restarted controller waits for the dead broker's session to
            # expire before the new incarnation may register: keep that short (default 9 s).
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "3000",
        }
        if self.secure:
            props.update(self._secure_properties())
        return props

    def _secure_properties(self) -> dict[str, str]:
        prefix = f"listener.name.{SECURE_LISTENER.lower()}"
        chain = (self.tls_dir / "server-chain.pem").read_text()
        key = (self.tls_dir / "server-key.pem").read_text()
        return {
            "sasl.enabled.mechanisms": f"{SCRAM_MECHANISM},PLAIN",
            f"{prefix}.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            # PLAIN users come from the JAAS file (secure.KafkaServer section) so
            # that no password is written into server.properties.
            f"{prefix}.ssl.keystore.type": "PEM",
            f"{prefix}.ssl.keystore.certificate.chain": chain,
            f"{prefix}.ssl.keystore.key": key,
            "authorizer.class.name": STANDARD_AUTHORIZER,
            "super.users": "User:ANONYMOUS;User:admin",
            "allow.everyone.if.no.acl.found": "true",
        }

    def _jaas_text(self) -> str:
        entries = "".join(f'\n    user_{u.username}="{u.password}"' for u in self.users)
        return (
            f"{SECURE_LISTENER.lower()}.KafkaServer {{\n"
            f"  org.apache.kafka.common.security.plain.PlainLoginModule required{entries};\n"
            "};\n"
        )

    # ------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 60.0) -> None:
        """Format (first time only), launch the JVM and wait until metadata is served."""
        self.home.mkdir(parents=True, exist_ok=True)
        self._adopt_previous_state()
        if self.is_running():
            raise BrokerError(
                f"a broker is already running for {self.home} (pid {self._pid}) "
                f"on {self.bootstrap_servers}; stop() it first"
            )
        java = _java_executable()
        libs = ensure_broker_jars(self.project_root)
        self._assign_ports()
        for port in self._ports():
            _check_port_free(port)

        first_time = not self.is_formatted()
        if self.secure:
            if first_time or not (self.tls_dir / "ca.pem").is_file():
                _generate_tls(self.tls_dir)
            if first_time or not self.jaas_file.is_file():
                _write_private(self.jaas_file, self._jaas_text())
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.home / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        _write_private(self.properties_file, render_properties(self.server_properties()))
        if first_time:
            self._format_storage(java, libs)

        cmd = [
            java,
            *HEAP_OPTS,
            *JVM_OPTS,
            *self.jvm_options,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.home}",
        ]
        if self.secure:
            cmd.append(f"-Djava.security.auth.login.config={self.jaas_file}")
        cmd += ["-cp", f"{libs}{os.sep}*", KAFKA_MAIN, str(self.properties_file)]

        with self.log_file.open("ab") as log:
            log.write(
                f"\n===== lakeport: starting broker at {dt.datetime.now():%Y-%m-%d %H:%M:%S} =====\n".encode()
            )
            log.flush()
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop()/kill() reach the whole JVM
            )
        self._pid = self._proc.pid
        self._write_state()
        try:
            self._wait_ready(timeout)
        except BaseException:
            self._terminate(signal.SIGKILL, 10.0)
            self._write_state()
            raise

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful shutdown (SIGTERM), escalating to SIGKILL after ``timeout``."""
        self._adopt_previous_state()
        if not self.is_running():
            self._pid = None
            self._proc = None
            self._write_state()
            return
        if not self._terminate(signal.SIGTERM, timeout):
            self._terminate(signal.SIGKILL, 10.0)
        self._write_state()

    def kill(self) -> None:
        """Hard-kill the JVM (SIGKILL) to simulate a crash; data stays for a later ``start()``."""
        self._adopt_previous_state()
        if self.is_running():
            self._terminate(signal.SIGKILL, 10.0)
        self._pid = None
        self._proc = None
        self._write_state()

    def is_running(self) -> bool:
        """True while the broker JVM for this home is alive (it may not be ready yet)."""
        if self._proc is not None and self._proc.poll() is None:
            return True
        self._adopt_previous_state()  # another handle may have (re)started it
        return self._pid is not None and _pid_alive(self._pid, self.home)

    @classmethod
    def attach(cls, home: Path, project_root: Path | None = None) -> LocalBroker:
        """Rebuild a handle from ``home/state.json`` (e.g. for ``lakeport broker status/stop``).

        Passwords are never stored, so the handle knows user names only; ``start()``
        on it restarts with the existing data, TLS material and JAAS file.
        """
        home = Path(home).resolve()
        state = cls._read_state_file(home / "state.json")
        broker = cls(
            home=home,
            port=state.get("port"),
            secure=bool(state.get("secure", False)),
            controller_port=state.get("controller_port"),
            secure_port=state.get("secure_port"),
            project_root=project_root,
        )
        broker._pid = state.get("pid")
        broker._user_names = tuple(state.get("users", ()))
        return broker

    # ------------------------------------------------------------- internals
    def _ports(self) -> list[int]:
        ports = [self.port, self.controller_port]
        if self.secure:
            ports.append(self.secure_port)
        return [p for p in ports if p is not None]

    def _assign_ports(self) -> None:
        taken: set[int] = set()
        if self.port is None:
            self.port = _free_port()
        taken.add(self.port)
        while self.controller_port is None or self.controller_port in taken:
            self.controller_port = _free_port()
        taken.add(self.controller_port)
        if self.secure:
            while self.secure_port is None or self.secure_port in taken:
                self.secure_port = _free_port()

    @staticmethod
    def _read_state_file(path: Path) -> dict[str, Any]:
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise BrokerError(
                f"no broker state at {path}: was start() ever run for this home?"
            ) from exc
        except (OSError, ValueError) as exc:
            raise BrokerError(f"unreadable broker state {path}: {exc}") from exc
        if not isinstance(state, dict):
            raise BrokerError(f"unreadable broker state {path}: not a JSON object")
        return state

    def _adopt_previous_state(self) -> None:
        """Reuse ports and learn about a live pid from a previous start on this home."""
        if self._proc is not None and self._proc.poll() is not None:
            # Our child died (kill(), crash, or stopped by another process): forget it
            # and trust state.json, where another handle may have started a new one.
            self._proc = None
            self._pid = None
        if not self.state_file.is_file():
            return
        state = self._read_state_file(self.state_file)
        if self.port is None:
            self.port = state.get("port")
        if self.controller_port is None:
            self.controller_port = state.get("controller_port")
        if self.secure and self.secure_port is None:
            self.secure_port = state.get("secure_port")
        if self._proc is None:
            self._pid = state.get("pid")
        if not self._user_names:
            self._user_names = tuple(state.get("users", ()))

    def _write_state(self) -> None:
        running = self.is_running()
        state = {
            "pid": self._pid if running else None,
            "port": self.port,
            "controller_port": self.controller_port,
            "secure": self.secure,
            "secure_port": self.secure_port if self.secure else None,
            "bootstrap_servers": f"{HOST}:{self.port}",
            "secure_bootstrap_servers": (
                f"{SECURE_HOST}:{self.secure_port}" if self.secure else None
            ),
            "users": list(self._user_names),  # names only, never passwords
            "log_file": str(self.log_file),
        }
        tmp = self.state_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.state_file)
        if not running:
            self._pid = None
            self._proc = None

    def _format_storage(self, java: str, libs: Path) -> None:
        cmd = [
            java,
            "-Xmx256m",
            "-cp",
            f"{libs}{os.sep}*",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            STORAGE_TOOL_MAIN,
            "format",
            "--config",
            str(self.properties_file),
            "--cluster-id",
            _random_cluster_id(),
            "--standalone",  # Kafka 4.x dynamic quorum: this node is the only voter
        ]
        for user in self.users:
            cmd += ["--add-scram", _scram_argument(user)]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=FORMAT_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise BrokerError(
                f"kafka storage format did not finish within {FORMAT_TIMEOUT_S:.0f}s"
            ) from exc
        if proc.returncode != 0 or not self.is_formatted():
            raise BrokerError(
                f"formatting KRaft storage in {self.data_dir} failed (exit code "
                f"{proc.returncode}):\n{_tail(proc.stdout + proc.stderr)}"
            )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        quiet = logging.getLogger(f"{__name__}.probe")
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False
        admin: AdminClient | None = None
        last_error = "no answer yet"
        while True:
            rc = self._proc.poll() if self._proc is not None else None
            if rc is not None:
                raise BrokerError(
                    f"Kafka broker exited early with exit code {rc}; last lines of "
                    f"{self.log_file}:\n{_file_tail(self.log_file)}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerError(
                    f"Kafka broker on {self.bootstrap_servers} not ready after {timeout:.0f}s "
                    f"({last_error}); killed it. Last lines of {self.log_file}:\n"
                    f"{_file_tail(self.log_file)}"
                )
            if self.port is not None and _port_accepts(self.port):
                if admin is None:
                    settings: dict[str, Any] = {
                        "bootstrap.servers": self.bootstrap_servers,
                        "logger": quiet,
                    }
                    admin = AdminClient(settings)
                try:
                    md = admin.list_topics(timeout=max(0.2, min(1.0, remaining)))
                    if NODE_ID in md.brokers and (
                        not self.secure or (self.secure_port and _port_accepts(self.secure_port))
                    ):
                        return
                    last_error = "metadata without this broker yet"
                except KafkaException as exc:
                    last_error = str(exc)
            time.sleep(0.1)

    def _terminate(self, sig: signal.Signals, timeout: float) -> bool:
        """Signal the broker's process group and wait; True if it is gone."""
        pid = self._proc.pid if self._proc is not None else self._pid
        if pid is None:
            return True
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError as exc:
            raise BrokerError(f"not allowed to signal broker pid {pid}: {exc}") from exc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None:
                try:
                    self._proc.wait(timeout=0.1)
                    return True
                except subprocess.TimeoutExpired:
                    continue
            if not _pid_alive(pid, self.home):
                return True
            time.sleep(0.1)
        return not self.is_running()


def _random_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding.

    Like Kafka's own `Uuid.randomUuid`, never one that starts with `-`: the storage tool would
    read it as an option (`argument --cluster-id/-t: expected one argument`), 1 start in 64.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
