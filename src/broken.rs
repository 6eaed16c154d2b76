//! Chaos builds only: deliberately broken servers ("mutants"), chosen with
//! `LICENSED_BROKEN=<mode>`, so the chaos suite can prove that its checker catches each
//! class of bug. Each mode is one small change at the spot it breaks, behind
//! `#[cfg(feature = "failpoints")]` and [`is`]; a normal build contains none of them.
//!
//! The variable is read once, when the node starts ([`init`]): an unknown mode refuses to
//! start rather than run a server that is correct by accident.

use std::str::FromStr;
use std::sync::OnceLock;

/// The environment variable naming the broken mode.
pub const ENV: &str = "LICENSED_BROKEN";

/// One deliberately broken behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// Reads are answered from the local ledger without the read index: stale on a
    /// lagging or cut-off node (`app/reads.rs`).
    StaleReads,
    /// A write is answered from the leader's local ledger as if applied, while its Raft
    /// entry is proposed in the background: an acknowledged write can be lost
    /// (`cluster/forward.rs`, `ack_before_commit`).
    AckBeforeCommit,
    /// The state machine ignores a borrow's `requestId` when it looks for an earlier
    /// borrow with the same id: a client's retry borrows twice (`state/ledger.rs`).
    SkipDedup,
    /// The capacity check grants `count + 1` overlapping borrows (`borrow/check.rs`).
    CapacityOffByOne,
    /// The log store acknowledges appended entries without syncing the WAL: they survive
    /// `kill -9` (they are in the OS page cache) but not a power cut
    /// (`raft/log_store.rs`).
    SkipFlushWal,
    /// A batch of writes forwarded by a follower is applied twice on the leader, the
    /// second time as new borrows (`cluster/forward.rs`).
    ApplyForwardedTwice,
}

impl Broken {
    /// Every mode, in the order the docs list them.
    pub const ALL: [Broken; 6] = [
        Broken::StaleReads,
        Broken::AckBeforeCommit,
        Broken::SkipDedup,
        Broken::CapacityOffByOne,
        Broken::SkipFlushWal,
        Broken::ApplyForwardedTwice,
    ];

    /// The mode's name as `LICENSED_BROKEN` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Broken::StaleReads => "stale-reads",
            Broken::AckBeforeCommit => "ack-before-commit",
            Broken::SkipDedup => "skip-dedup",
            Broken::CapacityOffByOne => "capacity-off-by-one",
            Broken::SkipFlushWal => "skip-flush-wal",
            Broken::ApplyForwardedTwice => "apply-forwarded-twice",
        }
    }
}

/// `LICENSED_BROKEN` names no known mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ENV}={given:?} is not a known broken mode (known: {known})")]
pub struct UnknownMode {
    /// What the variable said.
    pub given: String,
    /// The known modes, comma separated.
    pub known: String,
}

impl FromStr for Broken {
    type Err = UnknownMode;

    fn from_str(value: &str) -> Result<Broken, UnknownMode> {
        Broken::ALL
            .into_iter()
            .find(|mode| mode.name() == value)
            .ok_or_else(|| UnknownMode {
                given: value.to_string(),
                known: Broken::ALL.map(Broken::name).join(", "),
            })
    }
}

/// The mode a value of `LICENSED_BROKEN` asks for: `None` when unset or empty.
pub fn parse(value: Option<&str>) -> Result<Option<Broken>, UnknownMode> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(name) => name.parse().map(Some),
    }
}

/// The mode of this process, read from the environment once.
static MODE: OnceLock<Option<Broken>> = OnceLock::new();

fn from_env() -> Result<Option<Broken>, UnknownMode> {
    parse(std::env::var(ENV).ok().as_deref())
}

/// Reads `LICENSED_BROKEN` for good, refusing an unknown mode, and warns loudly when the
/// server is about to run deliberately broken. Called when a node starts.
pub fn init() -> Result<Option<Broken>, UnknownMode> {
    let wanted = from_env()?;
    let mode = *MODE.get_or_init(|| wanted);
    if let Some(mode) = mode {
        tracing::warn!(
            mode = mode.name(),
            "THIS SERVER IS DELIBERATELY BROKEN ({ENV}={}): for testing the chaos suite only, never for real use",
            mode.name()
        );
    }
    Ok(mode)
}

/// This process's broken mode, if any. Cheap: one atomic load once read. A process that
/// never called [`init`] (a unit test) reads the environment on first use and treats an
/// unknown mode as none.
pub fn mode() -> Option<Broken> {
    *MODE.get_or_init(|| from_env().unwrap_or(None))
}

/// Whether this process runs broken in `mode`.
pub fn is(mode: Broken) -> bool {
    self::mode() == Some(mode)
}

/// Runs one unit test again in a child process with `LICENSED_BROKEN=mode` (the mode is
/// global to a process, and the other tests of this binary run unbroken). Returns `true`
/// in the child, which then runs the test's body; in the parent it waits for the child
/// and panics if the child failed. `test` is the test's path in this crate
/// (`module::tests::name`).
#[cfg(test)]
pub(crate) fn in_child_with(mode: Broken, test: &str) -> bool {
    const CHILD: &str = "LICENSED_TEST_BROKEN_CHILD";
    if std::env::var_os(CHILD).is_some() {
        assert!(is(mode), "the child runs with {ENV}={}", mode.name());
        return true;
    }
    let output = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", test, "--test-threads=1", "--nocapture"])
        .env(CHILD, "1")
        .env(ENV, mode.name())
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{test} with {ENV}={} failed or did not run: {}\n{stdout}\n{}",
        mode.name(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_parses_from_its_name() {
        for mode in Broken::ALL {
            assert_eq!(parse(Some(mode.name())), Ok(Some(mode)));
        }
        assert_eq!(parse(Some(" skip-dedup ")), Ok(Some(Broken::SkipDedup)));
    }

    #[test]
    fn unset_or_empty_is_no_mode() {
        assert_eq!(parse(None), Ok(None));
        assert_eq!(parse(Some("")), Ok(None));
    }

    #[test]
    fn an_unknown_mode_is_refused_with_the_known_ones() {
        let error = parse(Some("stale-read")).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("LICENSED_BROKEN=\"stale-read\""),
            "{message}"
        );
        for mode in Broken::ALL {
            assert!(message.contains(mode.name()), "{message}");
        }
    }
}
