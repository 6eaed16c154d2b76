//! Any child process the kit runs: spawned with its output in a log file, watched for a
//! ready line, signalled, and never outliving the harness.
//!
//! Children never outlive the harness: [`Process`] kills its child on drop (which also runs
//! when a test panics), and the child is made to receive SIGKILL from the kernel when the
//! thread that started it dies (`PR_SET_PDEATHSIG`), which covers `process::exit` and a
//! harness that is itself killed.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::{io_error, Error};

/// How many log lines errors quote.
pub(crate) const LOG_TAIL_LINES: usize = 40;
/// How much of the end of a log file is read to quote its last lines.
const LOG_TAIL_BYTES: u64 = 64 * 1024;

/// Reports the ready line of one run of a [`Process`].
#[derive(Debug)]
pub struct ReadySignal {
    name: String,
    log_path: PathBuf,
    line: oneshot::Receiver<String>,
}

impl ReadySignal {
    /// Waits up to `timeout` for the ready line and returns it. Fails when the process
    /// closes its output first (it is going away) or the time runs out; the process is
    /// left as it is either way.
    pub async fn wait(self, timeout: Duration) -> Result<String, Error> {
        match tokio::time::timeout(timeout, self.line).await {
            Ok(Ok(line)) => Ok(line),
            Ok(Err(_)) => Err(Error::NoReadyLine {
                log_tail: read_tail(&self.log_path, LOG_TAIL_LINES).unwrap_or_default(),
                name: self.name,
            }),
            Err(_) => Err(Error::Timeout {
                name: self.name,
                what: "ready line".to_string(),
                timeout,
            }),
        }
    }
}

/// One child process, restartable: each [`Process::spawn`] starts a new run of a command.
///
/// Its stdout is copied line by line into its log file (appended, each run headed by a
/// marker line), and so is its stderr unless [`Process::inherit_stderr`] says otherwise.
///
/// Spawn it from a runtime worker thread or the thread running `block_on`, not from
/// `spawn_blocking`: the kernel's parent-death signal fires when the *thread* that spawned
/// the child ends, and blocking-pool threads end when idle.
#[derive(Debug)]
pub struct Process {
    name: String,
    log_path: PathBuf,
    inherit_stderr: bool,
    child: Option<Child>,
    /// Copies the child's stdout into the log; ends when the child closes its stdout.
    stdout_task: Option<JoinHandle<()>>,
    /// Whether we sent SIGSTOP and no SIGCONT since.
    stopped: bool,
    /// How the previous run ended, when known.
    last_exit: Option<ExitStatus>,
    /// How many times it was spawned.
    starts: u32,
}

impl Process {
    /// A process called `name` in messages, logging to `log_path`. Starts nothing.
    pub fn new(name: impl Into<String>, log_path: impl Into<PathBuf>) -> Process {
        Process {
            name: name.into(),
            log_path: log_path.into(),
            inherit_stderr: false,
            child: None,
            stdout_task: None,
            stopped: false,
            last_exit: None,
            starts: 0,
        }
    }

    /// Lets the child write its stderr to the harness's stderr instead of the log (from
    /// the next spawn on), so that a test run shows it.
    pub fn inherit_stderr(&mut self, inherit: bool) {
        self.inherit_stderr = inherit;
    }

    /// The name used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Spawns one run of `command` without waiting for it. Its stdin, stdout and stderr,
    /// process group, kill-on-drop and parent-death signal are set here. The returned
    /// signal fires when a stdout line starts with `ready_prefix` (never without one).
    pub fn spawn(
        &mut self,
        mut command: Command,
        ready_prefix: Option<&str>,
    ) -> Result<ReadySignal, Error> {
        if self.is_running() {
            return Err(Error::Running {
                name: self.name.clone(),
            });
        }
        let name = self.name.clone();
        self.starts += 1;
        let log_path = &self.log_path;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(io_error(&name, format!("opening {}", log_path.display())))?;
        writeln!(log, "===== start #{} of {name} =====", self.starts)
            .map_err(io_error(&name, format!("writing {}", log_path.display())))?;
        if self.inherit_stderr {
            command.stderr(Stdio::inherit());
        } else {
            let stderr = log
                .try_clone()
                .map_err(io_error(&name, "duplicating the log handle".to_string()))?;
            command.stderr(Stdio::from(stderr));
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group: a Ctrl-C in the harness's terminal is the harness's
            // to handle, not something that stops children behind its back.
            .process_group(0);
        // SAFETY: the hook only makes async-signal-safe system calls (see `die_with_parent`).
        unsafe {
            command.pre_exec(die_with_parent(std::process::id()));
        }
        let program = command
            .as_std()
            .get_program()
            .to_string_lossy()
            .into_owned();
        let mut child = command
            .spawn()
            .map_err(io_error(&name, format!("starting {program}")))?;
        let (ready_tx, ready_rx) = oneshot::channel();
        let prefix = ready_prefix.map(str::to_string);
        self.stdout_task = child.stdout.take().map(|stdout| {
            tokio::spawn(copy_stdout(
                stdout,
                tokio::fs::File::from_std(log),
                prefix,
                ready_tx,
            ))
        });
        self.stopped = false;
        self.child = Some(child);
        Ok(ReadySignal {
            name,
            log_path: self.log_path.clone(),
            line: ready_rx,
        })
    }

    /// Spawns `command` and waits until it prints a line starting with `ready_prefix`
    /// (returned); see [`Process::wait_started`] for the failures.
    pub async fn start(
        &mut self,
        command: Command,
        ready_prefix: &str,
        timeout: Duration,
    ) -> Result<String, Error> {
        let ready = self.spawn(command, Some(ready_prefix))?;
        self.wait_started(ready, timeout).await
    }

    /// Waits for the ready line of the run just spawned. If the process exits first,
    /// [`Error::ExitedEarly`]; if `timeout` passes first, it is killed and
    /// [`Error::NotReady`] returned. Both quote the end of the log.
    pub async fn wait_started(
        &mut self,
        ready: ReadySignal,
        timeout: Duration,
    ) -> Result<String, Error> {
        let name = self.name.clone();
        let Some(child) = self.child.as_mut() else {
            return Err(Error::NotRunning { name });
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let exited = tokio::select! {
            line = ready.line => match line {
                Ok(line) => return Ok(line),
                // Stdout closed without the line: the process is going away.
                Err(_) => tokio::time::timeout_at(deadline, child.wait()).await.ok(),
            },
            status = child.wait() => Some(status),
            _ = tokio::time::sleep_until(deadline) => None,
        };
        match exited {
            Some(status) => {
                let status =
                    status.map_err(io_error(&name, "waiting for the process".to_string()))?;
                self.forget_child(Some(status)).await;
                Err(Error::ExitedEarly {
                    name,
                    status,
                    log_tail: self.log_tail(LOG_TAIL_LINES),
                })
            }
            None => {
                self.kill9().await?;
                Err(Error::NotReady {
                    name,
                    timeout,
                    log_tail: self.log_tail(LOG_TAIL_LINES),
                })
            }
        }
    }

    /// Sends SIGKILL (a crash) and waits until the process is gone. Nothing happens if it
    /// is not running.
    pub async fn kill9(&mut self) -> Result<(), Error> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        // SIGKILL ends a stopped process too.
        let _ = child.start_kill();
        let status = child.wait().await.map_err(io_error(
            &self.name,
            "waiting for the killed process".to_string(),
        ))?;
        self.forget_child(Some(status)).await;
        Ok(())
    }

    /// Freezes the process (SIGSTOP): it keeps its sockets and its peers' connections but
    /// answers nothing, like a process stuck in a long GC pause or a paused VM. Returns
    /// once the kernel says it is stopped (at most 5 s): the signal is asynchronous, and on
    /// a loaded machine the process could still answer a message sent right after it.
    pub fn sigstop(&mut self) -> Result<(), Error> {
        self.signal(libc::SIGSTOP)?;
        self.stopped = true;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.proc_state().is_some_and(|state| state != 'T')
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Resumes a frozen process (SIGCONT).
    pub fn sigcont(&mut self) -> Result<(), Error> {
        self.signal(libc::SIGCONT)?;
        self.stopped = false;
        Ok(())
    }

    /// Whether the process is frozen by [`Process::sigstop`].
    pub fn is_stopped(&self) -> bool {
        self.stopped && self.child.is_some()
    }

    /// Asks the process to stop (SIGTERM) and waits up to `timeout`; a frozen process is
    /// resumed so it can act on the signal. If it is still running then, it is killed and
    /// [`Error::StopTimeout`] returned.
    pub async fn sigterm_and_wait(&mut self, timeout: Duration) -> Result<ExitStatus, Error> {
        let name = self.name.clone();
        self.signal(libc::SIGTERM)?;
        if self.stopped {
            self.sigcont()?;
        }
        let Some(child) = self.child.as_mut() else {
            return Err(Error::NotRunning { name });
        };
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(status) => {
                let status =
                    status.map_err(io_error(&name, "waiting for the process".to_string()))?;
                self.forget_child(Some(status)).await;
                Ok(status)
            }
            Err(_) => {
                self.kill9().await?;
                Err(Error::StopTimeout { name, timeout })
            }
        }
    }

    /// Whether the process is alive (frozen counts as alive). Notices a crash.
    pub fn is_running(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                self.last_exit = Some(status);
                self.child = None;
                self.stopped = false;
                false
            }
            Err(_) => false,
        }
    }

    /// Whether a run was spawned and not yet seen to end (without asking the kernel; see
    /// [`Process::is_running`]).
    pub fn is_started(&self) -> bool {
        self.child.is_some()
    }

    /// How the last run ended, once known (after a kill, a stop, or
    /// [`Process::is_running`] noticing an exit).
    pub fn last_exit(&self) -> Option<ExitStatus> {
        self.last_exit
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// The scheduler state letter from `/proc/PID/stat` (`S` sleeping, `R` running,
    /// `T` stopped, `Z` zombie, ...), while the process exists.
    pub fn proc_state(&self) -> Option<char> {
        self.pid().and_then(proc_state)
    }

    /// How many times it was spawned.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the log (all runs).
    pub fn log_tail(&self, lines: usize) -> String {
        read_tail(&self.log_path, lines).unwrap_or_default()
    }

    fn signal(&mut self, signal: libc::c_int) -> Result<(), Error> {
        let name = self.name.clone();
        let not_running = || Error::NotRunning { name: name.clone() };
        if !self.is_running() {
            return Err(not_running());
        }
        let pid = self.pid().ok_or_else(not_running)?;
        let pid = libc::pid_t::try_from(pid).map_err(|_| not_running())?;
        // SAFETY: plain system call. The child is not reaped yet (we hold it), so the pid
        // cannot belong to another process.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(io_error(&self.name, format!("sending signal {signal}"))(
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// Forgets a finished child; waits briefly for its output to reach the log.
    async fn forget_child(&mut self, status: Option<ExitStatus>) {
        self.child = None;
        self.stopped = false;
        if status.is_some() {
            self.last_exit = status;
        }
        if let Some(task) = self.stdout_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // Reaping is left to tokio (`kill_on_drop`).
            let _ = child.start_kill();
        }
    }
}

/// Copies the child's stdout into the log and reports the ready line.
async fn copy_stdout(
    stdout: ChildStdout,
    mut log: tokio::fs::File,
    ready_prefix: Option<String>,
    ready: oneshot::Sender<String>,
) {
    let mut lines = BufReader::new(stdout).lines();
    let mut ready = ready_prefix.is_some().then_some(ready);
    while let Ok(Some(line)) = lines.next_line().await {
        let _ = log.write_all(line.as_bytes()).await;
        let _ = log.write_all(b"\n").await;
        // Flushed line by line: stderr goes to the same file straight from the child.
        let _ = log.flush().await;
        if ready_prefix
            .as_deref()
            .is_some_and(|prefix| line.starts_with(prefix))
        {
            if let Some(ready) = ready.take() {
                let _ = ready.send(line);
            }
        }
    }
}

/// The `pre_exec` hook: the child gets SIGKILL when the thread that spawned it ends.
///
/// Runs between fork and exec, so it only makes async-signal-safe system calls and does
/// not allocate.
fn die_with_parent(parent: u32) -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
    move || {
        // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and nothing else.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) } == -1 {
            return Err(io::Error::last_os_error());
        }
        // The parent may have died before the prctl: then no signal would ever come.
        // SAFETY: getppid cannot fail.
        let ppid = unsafe { libc::getppid() };
        if u32::try_from(ppid).ok() != Some(parent) {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(())
    }
}

/// The state letter of a process, from `/proc/PID/stat` (None once it is gone).
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may contain anything; the state follows the last ')'.
    let (_, after) = stat.rsplit_once(')')?;
    after.trim_start().chars().next()
}

/// The last `lines` lines of a file, reading at most its last [`LOG_TAIL_BYTES`].
fn read_tail(path: &Path, lines: usize) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    Ok(all[all.len().saturating_sub(lines)..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_state_reads_past_odd_command_names() {
        assert!(matches!(proc_state(std::process::id()), Some('R' | 'S')));
        assert_eq!(proc_state(u32::MAX), None);
    }
}
