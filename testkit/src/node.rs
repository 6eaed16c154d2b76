//! Real `licensed` node processes: start one and wait until it serves, crash it with
//! SIGKILL, freeze it with SIGSTOP, stop it gracefully, restart it on the same ports and
//! data, skew its wall clock, give it a small disk, ask it for its status and send it
//! admin changes.
//!
//! # Clock skew
//!
//! A node with a clock offset runs with Debian's `libfaketime` preloaded. The `faketime`
//! command is not used: it forks and waits for the program, so its pid would not be the
//! node's, and SIGSTOP or SIGKILL sent to it would miss the node. Only the wall clock is
//! shifted (`FAKETIME_DONT_FAKE_MONOTONIC`), as on a machine whose clock is off: timers
//! and timeouts still run at the normal pace. The offset lives in a file next to the
//! node's log and can be changed while the node runs ([`NodeProcess::set_clock_offset`]).
//!
//! # Small disks
//!
//! A node may get a tmpfs of a fixed size as its data directory, so that it can be filled
//! up ([`NodeProcess::fill_disk`]). Mounting needs root (`CAP_SYS_ADMIN`). The tmpfs is
//! mounted for the lifetime of the [`NodeProcess`], so its content survives restarts like
//! a disk would, and is unmounted on drop.

use std::ffi::CString;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use licensed::cluster::admin::AdminClient;
use licensed::cluster::admin::ClusterStatus;
use licensed::transport::peer::{ClusterSecret, PeerDialer};
use tokio::process::Command;

use crate::error::{io_error, Error};
use crate::ports::free_port;
use crate::process::{Process, ReadySignal};

/// The cluster secret every node a test starts shares, unless the test says otherwise.
pub const TEST_CLUSTER_SECRET: &str = "testkit cluster secret, not for production";

/// What `licensed` prints on stdout once it serves clients (the address follows).
pub const READY_LINE_PREFIX: &str = "licensed listening on http://";
/// The start of the ready line of a plain or a TLS client port.
const READY_LINE_START: &str = "licensed listening on ";
/// How long [`NodeProcess::start`] waits for the ready line unless the spec says otherwise.
/// Static bootstrap waits for every peer, so the first node of a cluster may take a while.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeout of the status, health and readiness requests.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Name of the file that [`NodeProcess::fill_disk`] grows in the data directory.
const FILLER: &str = "testkit-disk-filler";
/// Where Debian and derivatives install libfaketime (multiarch dir first).
const FAKETIME_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime",
    "/usr/lib/aarch64-linux-gnu/faketime",
    "/usr/lib/faketime",
    "/usr/local/lib/faketime",
];

/// Everything needed to run one node. Ports are fixed at creation so that a restarted node
/// comes back at the address its peers know.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Node id (`--node-id`).
    pub id: u64,
    /// The `licensed` executable.
    pub binary: PathBuf,
    /// Client port on 127.0.0.1 (`--listen`). 0 lets the kernel choose at the first start;
    /// the port the node reports in its ready line is kept for later starts.
    pub api_port: u16,
    /// Node-to-node port on 127.0.0.1 (`--raft-listen`).
    pub raft_port: u16,
    /// Data directory (`--data-dir`). Its parent holds the node's log.
    pub data_dir: PathBuf,
    /// Further flags: `--peers`, `--join`, `--peer-route`, `--pool`, timings...
    pub args: Vec<String>,
    /// Extra environment variables (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
    /// Wall-clock offset in seconds; `Some(0)` runs under libfaketime without an offset, so
    /// that one can be set later without a restart.
    pub clock_offset_secs: Option<i64>,
    /// Size of a tmpfs to mount as the data directory (needs root).
    pub tmpfs_bytes: Option<u64>,
    /// The cluster's admin token: handed to the node (`LICENSED_ADMIN_TOKEN`) and sent by
    /// the admin helpers of [`NodeProcess`].
    pub admin_token: Option<String>,
    /// The cluster secret peers sign their requests with (given through the
    /// environment); [`TEST_CLUSTER_SECRET`] unless a test turns it off.
    pub cluster_secret: Option<String>,
    /// How long [`NodeProcess::start`] waits for the ready line.
    pub ready_timeout: Duration,
    /// Whether the node's stderr goes to the harness's stderr rather than its log.
    pub inherit_stderr: bool,
}

impl NodeSpec {
    /// A spec with free ports (see [`free_port`]), no extra flags, a real clock and the
    /// data directory on the disk it is on.
    pub fn new(
        id: u64,
        binary: impl Into<PathBuf>,
        data_dir: impl Into<PathBuf>,
    ) -> io::Result<Self> {
        Ok(Self::with_ports(
            id,
            binary,
            data_dir,
            free_port()?,
            free_port()?,
        ))
    }

    /// A spec with the given ports (0: the kernel's choice), otherwise like
    /// [`NodeSpec::new`].
    pub fn with_ports(
        id: u64,
        binary: impl Into<PathBuf>,
        data_dir: impl Into<PathBuf>,
        api_port: u16,
        raft_port: u16,
    ) -> Self {
        NodeSpec {
            id,
            binary: binary.into(),
            api_port,
            raft_port,
            data_dir: data_dir.into(),
            args: Vec::new(),
            env: Vec::new(),
            clock_offset_secs: None,
            tmpfs_bytes: None,
            admin_token: None,
            cluster_secret: Some(TEST_CLUSTER_SECRET.to_string()),
            ready_timeout: DEFAULT_READY_TIMEOUT,
            inherit_stderr: false,
        }
    }

    /// Adds one flag or value.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds flags and values.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the node.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs the node with its wall clock shifted by `secs` (negative: behind).
    pub fn clock_offset(mut self, secs: i64) -> Self {
        self.clock_offset_secs = Some(secs);
        self
    }

    /// Gives the node a tmpfs of `bytes` as its data directory.
    pub fn tmpfs(mut self, bytes: u64) -> Self {
        self.tmpfs_bytes = Some(bytes);
        self
    }

    /// Sets or (with `None`) removes the cluster secret.
    pub fn cluster_secret(mut self, secret: Option<&str>) -> Self {
        self.cluster_secret = secret.map(str::to_string);
        self
    }

    /// Sets the admin token (given to the node through the environment).
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = Some(token.into());
        self
    }

    /// Sets how long a start may take.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Sends the node's stderr to the harness's stderr (a test run shows it) instead of
    /// the log file.
    pub fn inherit_stderr(mut self, inherit: bool) -> Self {
        self.inherit_stderr = inherit;
        self
    }

    /// The client address.
    pub fn api_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.api_port))
    }

    /// The node-to-node address (what goes into `--peers` and `--join`).
    pub fn raft_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.raft_port))
    }

    /// Where the node's output goes: `node-ID.log` next to the data directory.
    pub fn log_path(&self) -> PathBuf {
        self.side_dir().join(format!("node-{}.log", self.id))
    }

    /// The libfaketime offset file, next to the log.
    fn clock_file(&self) -> PathBuf {
        self.side_dir().join(format!("node-{}.faketime", self.id))
    }

    fn side_dir(&self) -> &Path {
        self.data_dir
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
            .unwrap_or(&self.data_dir)
    }
}

/// The `--peers` value for a static cluster of these nodes: `1=127.0.0.1:R1,2=...`.
pub fn peers_arg(specs: &[NodeSpec]) -> String {
    specs
        .iter()
        .map(|spec| format!("{}={}", spec.id, spec.raft_addr()))
        .collect::<Vec<_>>()
        .join(",")
}

/// libfaketime's shared library: `$LIBFAKETIME` if set, else the multi-threaded build
/// from the usual install directories.
pub fn faketime_library() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("LIBFAKETIME") {
        return Some(PathBuf::from(path));
    }
    FAKETIME_DIRS
        .iter()
        .map(|dir| Path::new(dir).join("libfaketimeMT.so.1"))
        .find(|path| path.is_file())
}

/// A tmpfs mounted on a directory for as long as the value lives.
#[derive(Debug)]
struct TmpfsMount {
    path: CString,
}

impl TmpfsMount {
    fn mount(dir: &Path, bytes: u64) -> io::Result<TmpfsMount> {
        let path = CString::new(dir.as_os_str().as_bytes())?;
        let options = CString::new(format!("size={bytes},mode=0700"))?;
        // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                path.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(TmpfsMount { path })
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        // Lazy: a process killed a moment ago may still hold files open in it.
        // SAFETY: `path` is a valid NUL-terminated string.
        let rc = unsafe { libc::umount2(self.path.as_ptr(), libc::MNT_DETACH) };
        if rc != 0 {
            tracing::warn!(
                path = %self.path.to_string_lossy(),
                error = %io::Error::last_os_error(),
                "cannot unmount a node's tmpfs"
            );
        }
    }
}

/// One `licensed` node process, restartable. Not started on creation.
///
/// Start it from a runtime worker thread or the thread running `block_on`, not from
/// `spawn_blocking` (see [`Process`]). Dropping it kills the node.
#[derive(Debug)]
pub struct NodeProcess {
    spec: NodeSpec,
    process: Process,
    http: reqwest::Client,
    admin: AdminClient,
    /// Declared last: unmounted only after the child is gone.
    _tmpfs: Option<TmpfsMount>,
}

impl NodeProcess {
    /// Prepares the node: creates its data directory, mounts its tmpfs and writes its clock
    /// offset if the spec asks for them. Starts nothing.
    pub fn new(spec: NodeSpec) -> Result<NodeProcess, Error> {
        let name = format!("node {}", spec.id);
        std::fs::create_dir_all(&spec.data_dir).map_err(io_error(
            &name,
            format!("creating {}", spec.data_dir.display()),
        ))?;
        let tmpfs = spec
            .tmpfs_bytes
            .map(|bytes| TmpfsMount::mount(&spec.data_dir, bytes))
            .transpose()
            .map_err(io_error(
                &name,
                format!("mounting a tmpfs on {}", spec.data_dir.display()),
            ))?;
        if let Some(offset) = spec.clock_offset_secs {
            write_clock_offset(&spec.clock_file(), offset)
                .map_err(io_error(&name, "writing the clock offset".to_string()))?;
        }
        let http = reqwest::Client::builder()
            // Node addresses are loopback; an HTTP(S)_PROXY in the environment must not
            // capture the probes.
            .no_proxy()
            .timeout(PROBE_TIMEOUT)
            .build()
            .map_err(|source| Error::Http {
                name: name.clone(),
                url: String::new(),
                source,
            })?;
        // The harness holds the cluster's credentials, like an operator's tooling would.
        let dialer = PeerDialer::new(
            None,
            spec.cluster_secret
                .as_deref()
                .and_then(|secret| ClusterSecret::new(secret).ok()),
        );
        let admin = AdminClient::new(&spec.raft_addr().to_string(), spec.admin_token.clone())
            .and_then(|admin| admin.with_dialer(&dialer))
            .map_err(|source| Error::Admin {
                name: name.clone(),
                source,
            })?;
        let mut process = Process::new(name, spec.log_path());
        process.inherit_stderr(spec.inherit_stderr);
        Ok(NodeProcess {
            spec,
            process,
            http,
            admin,
            _tmpfs: tmpfs,
        })
    }

    /// The spec the node runs with.
    pub fn spec(&self) -> &NodeSpec {
        &self.spec
    }

    /// Changes the flags used from the next start on (e.g. new `--peer-route`s, or
    /// `--join` instead of `--peers`).
    pub fn set_args(&mut self, args: Vec<String>) {
        self.spec.args = args;
    }

    /// Sets (or, with `None`, removes) one environment variable from the next start on,
    /// e.g. `FAILPOINTS` for a crash point.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.spec.env.retain(|(k, _)| k != key);
        if let Some(value) = value {
            self.spec.env.push((key.to_string(), value.to_string()));
        }
    }

    /// Node id.
    pub fn id(&self) -> u64 {
        self.spec.id
    }

    /// The process underneath (signals, state, log).
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// Spawns the node and waits until it prints its ready line (or the spec's ready
    /// timeout passes: then it is killed). Output goes to [`NodeSpec::log_path`],
    /// appended, each run headed by a marker line.
    pub async fn start(&mut self) -> Result<(), Error> {
        let ready = self.spawn()?;
        let line = self
            .process
            .wait_started(ready, self.spec.ready_timeout)
            .await?;
        self.learn_api_port(&line);
        Ok(())
    }

    /// Spawns the node without waiting; the signal reports its ready line. With an API
    /// port of 0 only [`NodeProcess::start`] learns the port the kernel chose.
    pub fn spawn(&mut self) -> Result<ReadySignal, Error> {
        let command = self.command()?;
        self.process.spawn(command, Some(READY_LINE_START))
    }

    /// Keeps the client port a node started on port 0 reports.
    fn learn_api_port(&mut self, ready_line: &str) {
        if self.spec.api_port != 0 {
            return;
        }
        let addr = ready_line
            .strip_prefix(READY_LINE_START)
            .and_then(|rest| {
                rest.strip_prefix("http://")
                    .or_else(|| rest.strip_prefix("https://"))
            })
            .and_then(|addr| addr.trim().parse::<SocketAddr>().ok());
        if let Some(addr) = addr {
            self.spec.api_port = addr.port();
        }
    }

    /// The command line of one run.
    fn command(&self) -> Result<Command, Error> {
        let spec = &self.spec;
        let mut command = Command::new(&spec.binary);
        command
            .arg("--node-id")
            .arg(spec.id.to_string())
            .arg("--listen")
            .arg(spec.api_addr().to_string())
            .arg("--raft-listen")
            .arg(spec.raft_addr().to_string())
            .arg("--data-dir")
            .arg(&spec.data_dir)
            .args(&spec.args);
        // Every flag has a LICENSED_* twin; the harness's own environment must not leak
        // settings into the node behind the spec's back.
        for (key, _) in std::env::vars_os() {
            if key.as_bytes().starts_with(b"LICENSED_") {
                command.env_remove(key);
            }
        }
        // Logs go to a file: no colour escapes (the spec's env may still ask for them).
        command.env("NO_COLOR", "1");
        if let Some(token) = &spec.admin_token {
            // Through the environment rather than a flag: it stays out of `ps`.
            command.env("LICENSED_ADMIN_TOKEN", token);
        }
        if let Some(secret) = &spec.cluster_secret {
            command.env("LICENSED_CLUSTER_SECRET", secret);
        }
        command.envs(spec.env.iter().map(|(key, value)| (key, value)));
        if spec.clock_offset_secs.is_some() {
            let library = faketime_library().ok_or(Error::NoFaketime)?;
            command
                .env("LD_PRELOAD", library)
                // The offset is read from the file (and re-read every second), not from
                // FAKETIME, so that it can change while the node runs.
                .env_remove("FAKETIME")
                .env("FAKETIME_TIMESTAMP_FILE", spec.clock_file())
                .env("FAKETIME_CACHE_DURATION", "1")
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        Ok(command)
    }

    /// Sends SIGKILL (a crash) and waits until the process is gone. Nothing happens if it
    /// is not running.
    pub async fn kill9(&mut self) -> Result<(), Error> {
        self.process.kill9().await
    }

    /// Freezes the node (SIGSTOP): it keeps its sockets and its peers' connections but
    /// answers nothing, like a node stuck in a long GC pause or a paused VM. Returns once
    /// the kernel says it is stopped (see [`Process::sigstop`](crate::process::Process::sigstop)).
    pub fn sigstop(&mut self) -> Result<(), Error> {
        self.process.sigstop()
    }

    /// Resumes a frozen node (SIGCONT).
    pub fn sigcont(&mut self) -> Result<(), Error> {
        self.process.sigcont()
    }

    /// Whether the node is frozen by [`NodeProcess::sigstop`].
    pub fn is_stopped(&self) -> bool {
        self.process.is_stopped()
    }

    /// Asks the node to stop (SIGTERM: it hands leadership over and shuts down) and waits
    /// up to `timeout`; a frozen node is resumed so it can act on the signal. If it is
    /// still running then, it is killed and [`Error::StopTimeout`] returned.
    pub async fn sigterm_and_wait(&mut self, timeout: Duration) -> Result<ExitStatus, Error> {
        self.process.sigterm_and_wait(timeout).await
    }

    /// Kills the node if it runs (a crash, not a clean stop), then starts it again with
    /// the same ports, data and flags.
    pub async fn restart(&mut self) -> Result<(), Error> {
        self.kill9().await?;
        self.start().await
    }

    /// Deletes everything in the data directory (the directory itself stays: it may be a
    /// mount point). The node must not be running.
    pub fn wipe_data_dir(&mut self) -> Result<(), Error> {
        let name = self.process.name().to_string();
        if self.is_running() {
            return Err(Error::Running { name });
        }
        let dir = &self.spec.data_dir;
        let context = || format!("wiping {}", dir.display());
        for entry in std::fs::read_dir(dir).map_err(io_error(&name, context()))? {
            let path = entry.map_err(io_error(&name, context()))?.path();
            let removed = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(io_error(&name, format!("removing {}", path.display())))?;
        }
        Ok(())
    }

    /// Fills the data directory's file system until it has no space left; returns the bytes
    /// written. Meant for a tmpfs data directory (on a real disk it fills that disk).
    /// [`NodeProcess::free_disk`] undoes it.
    pub fn fill_disk(&self) -> Result<u64, Error> {
        let name = self.process.name();
        let path = self.spec.data_dir.join(FILLER);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_error(name, format!("creating {}", path.display())))?;
        let block = vec![0u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error(name, format!("filling {}", path.display()))(e)),
            }
        }
        Ok(written)
    }

    /// Removes what [`NodeProcess::fill_disk`] wrote.
    pub fn free_disk(&self) -> Result<(), Error> {
        let path = self.spec.data_dir.join(FILLER);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(
                self.process.name(),
                format!("removing {}", path.display()),
            )(e)),
            _ => Ok(()),
        }
    }

    /// Shifts the node's wall clock to `secs` from the real time. A node started with a
    /// clock offset in its spec picks the change up within about a second; otherwise it
    /// applies from the next start. Returns whether the running node follows at once.
    pub fn set_clock_offset(&mut self, secs: i64) -> Result<bool, Error> {
        let live = self.spec.clock_offset_secs.is_some() && self.process.is_started();
        if !live && faketime_library().is_none() {
            return Err(Error::NoFaketime);
        }
        write_clock_offset(&self.spec.clock_file(), secs).map_err(io_error(
            self.process.name(),
            "writing the clock offset".to_string(),
        ))?;
        self.spec.clock_offset_secs = Some(secs);
        Ok(live)
    }

    /// Whether the process is alive (frozen counts as alive). Notices a crash.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Whether it was started and not yet seen to end, frozen or not (no system call).
    pub fn is_started(&self) -> bool {
        self.process.is_started()
    }

    /// How the last run ended, once known (after a kill, a stop, or
    /// [`NodeProcess::is_running`] noticing an exit).
    pub fn last_exit(&self) -> Option<ExitStatus> {
        self.process.last_exit()
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The scheduler state letter of the process (see [`crate::proc_state`]).
    pub fn proc_state(&self) -> Option<char> {
        self.process.proc_state()
    }

    /// How many times the node was started.
    pub fn starts(&self) -> u32 {
        self.process.starts()
    }

    /// `http://127.0.0.1:PORT`, the base of the client API.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.spec.api_addr())
    }

    /// The client address.
    pub fn api_addr(&self) -> SocketAddr {
        self.spec.api_addr()
    }

    /// The node-to-node address peers know the node by.
    pub fn raft_addr(&self) -> SocketAddr {
        self.spec.raft_addr()
    }

    /// The node's log file.
    pub fn log_path(&self) -> PathBuf {
        self.spec.log_path()
    }

    /// The last `lines` lines of the node's log (all runs).
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// The admin client of this node (with the spec's admin token).
    pub fn admin(&self) -> &AdminClient {
        &self.admin
    }

    /// The node's view of the cluster (`GET /cluster/admin/status`: members, leader, term,
    /// log indexes).
    pub async fn status(&self) -> Result<ClusterStatus, Error> {
        let status = self.admin.status();
        match tokio::time::timeout(PROBE_TIMEOUT, status).await {
            Ok(answer) => answer.map_err(|source| self.admin_error(source)),
            Err(_) => Err(self.timeout("status answer", PROBE_TIMEOUT)),
        }
    }

    /// Whether `GET /readyz` answers 200: the node knows a leader and has applied what is
    /// committed. Any failure counts as not ready.
    pub async fn ready(&self) -> bool {
        self.probe("/readyz").await
    }

    /// Whether `GET /healthz` answers 200 (the process serves at all).
    pub async fn healthy(&self) -> bool {
        self.probe("/healthz").await
    }

    async fn probe(&self, path: &str) -> bool {
        let url = format!("{}{path}", self.api_url());
        matches!(
            self.http.get(url).send().await,
            Ok(response) if response.status().is_success()
        )
    }

    /// Polls [`NodeProcess::ready`] until it holds or `timeout` passes.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.ready().await {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Asks the cluster, through this node, to add node `id` reachable at `raft_addr`
    /// (learner, then voter once caught up). Returns the cluster's message.
    pub async fn add_member(
        &self,
        id: u64,
        raft_addr: SocketAddr,
        timeout: Duration,
    ) -> Result<String, Error> {
        let addr = raft_addr.to_string();
        self.timed("answer to the add", timeout, self.admin.add(id, &addr))
            .await
    }

    /// Asks the cluster, through this node, to remove node `id`; `force` allows leaving
    /// fewer healthy voters than a quorum.
    pub async fn remove_member(
        &self,
        id: u64,
        force: bool,
        timeout: Duration,
    ) -> Result<String, Error> {
        self.timed(
            "answer to the removal",
            timeout,
            self.admin.remove(id, force),
        )
        .await
    }

    /// Asks the cluster, through this node, to hand leadership to node `to`.
    pub async fn transfer_leader(&self, to: u64, timeout: Duration) -> Result<String, Error> {
        self.timed(
            "answer to the transfer",
            timeout,
            self.admin.transfer_leader(to),
        )
        .await
    }

    /// Chaos builds only: arms crash point `name` (`apply-before`, `log-append-after`,
    /// ...) on the running node with a `fail` action (`panic`, `1*off->panic`, ...), with
    /// the spec's admin token. A `panic` action ends the process when the point is reached.
    pub async fn arm_failpoint(&self, name: &str, action: &str) -> Result<(), Error> {
        self.timed(
            "answer to arming the failpoint",
            PROBE_TIMEOUT,
            self.admin.arm_failpoint(name, action),
        )
        .await
        .map(drop)
    }

    /// Chaos builds only: clears crash point `name` on the running node.
    pub async fn clear_failpoint(&self, name: &str) -> Result<(), Error> {
        self.timed(
            "answer to clearing the failpoint",
            PROBE_TIMEOUT,
            self.admin.clear_failpoint(name),
        )
        .await
        .map(drop)
    }

    /// An admin call bounded by `timeout`.
    async fn timed(
        &self,
        what: &str,
        timeout: Duration,
        call: impl std::future::Future<Output = Result<String, licensed::cluster::admin::AdminError>>,
    ) -> Result<String, Error> {
        match tokio::time::timeout(timeout, call).await {
            Ok(answer) => answer.map_err(|source| self.admin_error(source)),
            Err(_) => Err(self.timeout(what, timeout)),
        }
    }

    fn admin_error(&self, source: licensed::cluster::admin::AdminError) -> Error {
        Error::Admin {
            name: self.process.name().to_string(),
            source,
        }
    }

    fn timeout(&self, what: &str, timeout: Duration) -> Error {
        Error::Timeout {
            name: self.process.name().to_string(),
            what: what.to_string(),
            timeout,
        }
    }
}

/// Writes a libfaketime offset (`+Ns` / `-Ns`) atomically, so a reader never sees half.
fn write_clock_offset(path: &Path, secs: i64) -> io::Result<()> {
    let staging = path.with_extension("faketime.new");
    std::fs::write(&staging, format!("{secs:+}s\n"))?;
    std::fs::rename(&staging, path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::ExitStatusExt;
    use std::sync::OnceLock;

    use super::*;
    use crate::licensed_binary;
    use crate::process::proc_state;

    /// A stand-in for `licensed`: prints the ready line with the `--listen` address, then
    /// becomes `sleep` (same pid, so signals reach it). `FAKE_MODE` varies the behaviour.
    const FAKE_NODE: &str = r#"#!/bin/sh
listen=""
while [ $# -gt 0 ]; do
  case "$1" in
    --listen) listen="$2"; shift ;;
  esac
  shift
done
case "$FAKE_MODE" in
  silent) exec sleep 30 ;;
  fail) echo "fake node: failing on purpose" >&2; exit 3 ;;
  clock)
    echo "licensed listening on http://$listen"
    while :; do echo "clock $(date +%s)"; sleep 0.2; done ;;
esac
echo "licensed listening on http://$listen"
exec sleep 30
"#;

    /// Writes the fake node next to the test executable, once per test process. Every
    /// test gets it before spawning anything, so no fork can inherit the file's write
    /// handle and make its exec fail with "text file busy"; the rename keeps runs of
    /// other test processes, which may be executing the old copy, unaffected.
    fn fake_binary() -> PathBuf {
        static FAKE: OnceLock<PathBuf> = OnceLock::new();
        FAKE.get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            let dir = exe.parent().unwrap();
            let path = dir.join("fake-licensed-node.sh");
            let staging = dir.join(format!("fake-licensed-node.sh.{}", std::process::id()));
            std::fs::write(&staging, FAKE_NODE).unwrap();
            std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::rename(&staging, &path).unwrap();
            path
        })
        .clone()
    }

    fn spec(dir: &tempfile::TempDir, id: u64) -> NodeSpec {
        NodeSpec::new(
            id,
            fake_binary(),
            dir.path().join(format!("node-{id}")).join("data"),
        )
        .unwrap()
        .ready_timeout(Duration::from_secs(10))
    }

    async fn started(spec: NodeSpec) -> NodeProcess {
        let mut node = NodeProcess::new(spec).unwrap();
        node.start().await.unwrap();
        node
    }

    /// Polls the state letter of `pid` until it is one of `states` (None: gone).
    async fn wait_state(pid: u32, states: &[Option<char>]) -> Option<char> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let state = proc_state(pid);
            if states.contains(&state) || tokio::time::Instant::now() >= deadline {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn spec_addresses_and_peers() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (spec(&dir, 1), spec(&dir, 2));
        assert_eq!(a.api_addr().port(), a.api_port);
        assert_ne!(a.raft_port, b.raft_port);
        assert_eq!(
            peers_arg(&[a.clone(), b.clone()]),
            format!("1=127.0.0.1:{},2=127.0.0.1:{}", a.raft_port, b.raft_port)
        );
        assert_eq!(a.log_path(), dir.path().join("node-1").join("node-1.log"));
    }

    #[tokio::test]
    async fn start_waits_for_the_ready_line_and_logs_output() {
        let dir = tempfile::tempdir().unwrap();
        let mut node = started(spec(&dir, 1)).await;
        assert!(node.is_running());
        assert!(node.pid().is_some());
        assert_eq!(
            node.api_url(),
            format!("http://127.0.0.1:{}", node.spec().api_port)
        );
        assert!(node.spec().data_dir.is_dir());
        let log = std::fs::read_to_string(node.log_path()).unwrap();
        assert!(log.contains("start #1 of node 1"), "{log}");
        assert!(
            log.contains(&format!("{READY_LINE_PREFIX}{}", node.api_addr())),
            "{log}"
        );
        // Nothing listens: probes fail softly.
        assert!(!node.ready().await);
        assert!(node.status().await.is_err());
    }

    #[tokio::test]
    async fn a_node_that_exits_early_reports_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut node = NodeProcess::new(spec(&dir, 1).env("FAKE_MODE", "fail")).unwrap();
        match node.start().await {
            Err(Error::ExitedEarly {
                status, log_tail, ..
            }) => {
                assert_eq!(status.code(), Some(3));
                assert!(log_tail.contains("failing on purpose"), "{log_tail}");
            }
            other => panic!("expected an early exit, got {other:?}"),
        }
        assert!(!node.is_running());
        assert_eq!(node.last_exit().and_then(|s| s.code()), Some(3));
    }

    #[tokio::test]
    async fn a_silent_node_times_out_and_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(&dir, 1)
            .env("FAKE_MODE", "silent")
            .ready_timeout(Duration::from_millis(300));
        let mut node = NodeProcess::new(spec).unwrap();
        assert!(matches!(node.start().await, Err(Error::NotReady { .. })));
        assert!(!node.is_running());
        assert_eq!(
            node.last_exit().and_then(|s| s.signal()),
            Some(libc::SIGKILL)
        );
    }

    #[tokio::test]
    async fn stop_continue_and_kill() {
        let dir = tempfile::tempdir().unwrap();
        let mut node = started(spec(&dir, 1)).await;
        let pid = node.pid().unwrap();

        node.sigstop().unwrap();
        assert!(node.is_stopped());
        assert_eq!(wait_state(pid, &[Some('T')]).await, Some('T'));
        assert!(node.is_running(), "a frozen node is still running");

        node.sigcont().unwrap();
        assert!(!node.is_stopped());
        assert_eq!(
            wait_state(pid, &[Some('S'), Some('R')])
                .await
                .map(|s| s != 'T'),
            Some(true)
        );

        node.sigstop().unwrap();
        node.kill9().await.unwrap();
        assert!(!node.is_running());
        assert_eq!(node.pid(), None);
        assert_eq!(proc_state(pid), None, "reaped, not a zombie");
        assert_eq!(
            node.last_exit().and_then(|s| s.signal()),
            Some(libc::SIGKILL)
        );
        // Idempotent; signals need a running node.
        node.kill9().await.unwrap();
        assert!(matches!(node.sigstop(), Err(Error::NotRunning { .. })));
    }

    #[tokio::test]
    async fn sigterm_stops_even_a_frozen_node() {
        let dir = tempfile::tempdir().unwrap();
        let mut node = started(spec(&dir, 1)).await;
        node.sigstop().unwrap();
        let status = node.sigterm_and_wait(Duration::from_secs(5)).await.unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        assert!(!node.is_running());
        assert!(matches!(
            node.sigterm_and_wait(Duration::from_secs(1)).await,
            Err(Error::NotRunning { .. })
        ));
    }

    #[tokio::test]
    async fn restart_keeps_ports_and_data() {
        let dir = tempfile::tempdir().unwrap();
        let mut node = started(spec(&dir, 1)).await;
        let first = node.pid().unwrap();
        std::fs::write(node.spec().data_dir.join("state"), "kept").unwrap();
        node.restart().await.unwrap();
        assert_ne!(node.pid(), Some(first));
        assert_eq!(node.starts(), 2);
        assert!(node.spec().data_dir.join("state").is_file());
        let log = std::fs::read_to_string(node.log_path()).unwrap();
        assert_eq!(log.matches(READY_LINE_PREFIX).count(), 2);
    }

    #[tokio::test]
    async fn wipe_needs_a_stopped_node_and_keeps_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let mut node = started(spec(&dir, 1)).await;
        let data = node.spec().data_dir.clone();
        std::fs::create_dir_all(data.join("raft-log")).unwrap();
        std::fs::write(data.join("raft-log").join("000001.log"), "x").unwrap();
        std::fs::write(data.join("vote"), "x").unwrap();
        assert!(matches!(node.wipe_data_dir(), Err(Error::Running { .. })));
        node.kill9().await.unwrap();
        node.wipe_data_dir().unwrap();
        assert!(data.is_dir());
        assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn dropping_the_handle_kills_the_child() {
        let dir = tempfile::tempdir().unwrap();
        let node = started(spec(&dir, 1)).await;
        let pid = node.pid().unwrap();
        drop(node);
        // Killed; reaped by tokio in the background, a zombie until then.
        assert_eq!(wait_state(pid, &[None]).await, None);
    }

    #[tokio::test]
    async fn children_die_with_the_thread_that_started_them() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(&dir, 1);
        // A runtime on its own thread that "forgets" its node, as a harness calling
        // `process::exit` would: only the parent-death signal can end the child.
        let pid = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let node = started(spec).await;
                let pid = node.pid().unwrap();
                std::mem::forget(node);
                pid
            })
        })
        .join()
        .unwrap();
        let state = wait_state(pid, &[None, Some('Z')]).await;
        assert!(matches!(state, None | Some('Z')), "state {state:?}");
        // Reap the zombie: its parent (this process) never waits for a forgotten child.
        // SAFETY: waiting for a known child pid.
        unsafe {
            libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
        }
    }

    #[tokio::test]
    async fn clock_offset_shifts_the_wall_clock_and_can_change_live() {
        if faketime_library().is_none() {
            eprintln!("libfaketime not installed; skipping");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(&dir, 1).env("FAKE_MODE", "clock").clock_offset(3600);
        let mut node = started(spec).await;
        let real = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64
        };
        let last_clock = |node: &NodeProcess| -> Option<i64> {
            node.log_tail(5)
                .lines()
                .rev()
                .find_map(|line| line.strip_prefix("clock ")?.parse().ok())
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let skew = last_clock(&node).unwrap() - real();
        assert!((3590..=3610).contains(&skew), "skew {skew}");

        assert!(node.set_clock_offset(-3600).unwrap());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let skew = last_clock(&node).unwrap() - real();
        assert!((-3610..=-3590).contains(&skew), "skew {skew}");
        node.kill9().await.unwrap();
    }

    #[tokio::test]
    async fn tmpfs_data_dir_fills_up_and_is_unmounted() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("not root; skipping the tmpfs test");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(&dir, 1).tmpfs(1024 * 1024);
        let data = spec.data_dir.clone();
        let mounted = |path: &Path| {
            std::fs::read_to_string("/proc/self/mounts")
                .unwrap()
                .lines()
                .any(|line| line.split_whitespace().nth(1) == path.to_str())
        };
        let mut node = match NodeProcess::new(spec) {
            Ok(node) => node,
            Err(e) => {
                eprintln!("cannot mount a tmpfs here ({e}); skipping");
                return;
            }
        };
        assert!(mounted(&data));
        node.start().await.unwrap();
        let written = node.fill_disk().unwrap();
        assert!(written <= 1024 * 1024, "{written}");
        assert!(std::fs::write(data.join("more"), [0u8; 8192]).is_err());
        node.free_disk().unwrap();
        std::fs::write(data.join("more"), [0u8; 8192]).unwrap();
        node.kill9().await.unwrap();
        drop(node);
        assert!(!mounted(&data));
    }

    /// Starts the real binary as a one-node cluster (`cargo test --workspace` builds it;
    /// `LICENSED_BIN` overrides where it is looked for).
    #[tokio::test]
    async fn real_single_node() {
        let binary = licensed_binary().unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().unwrap();
        let spec = NodeSpec::new(1, binary, dir.path().join("node-1").join("data"))
            .unwrap()
            .args([
                "--heartbeat-ms",
                "50",
                "--election-min-ms",
                "150",
                "--election-max-ms",
                "300",
            ])
            .ready_timeout(Duration::from_secs(30));
        let mut node = NodeProcess::new(spec).unwrap();
        node.start().await.unwrap();
        assert!(
            node.wait_ready(Duration::from_secs(10)).await,
            "{}",
            node.log_tail(20)
        );
        assert!(node.healthy().await);
        let status = node.status().await.unwrap();
        assert_eq!(status.leader, Some(1), "{status:?}");
        let status = node
            .sigterm_and_wait(Duration::from_secs(10))
            .await
            .unwrap();
        assert!(status.success(), "{status:?}\n{}", node.log_tail(20));
        node.restart().await.unwrap();
        assert!(
            node.wait_ready(Duration::from_secs(10)).await,
            "{}",
            node.log_tail(20)
        );
    }
}
