//! The README's shell blocks run as written, in order, against real processes.
//!
//! Every ```` ```sh ```` block of `README.md` carries a marker on the line before it:
//! `<!-- readme-test: run -->`, or `<!-- readme-test: skip: <reason> -->` for what cannot
//! run here. Runnable blocks go through `bash -eo pipefail` in one scratch directory
//! (with a copy of `deploy/`), with the built `licensed` and `licensectl` first on `PATH`
//! and two shell functions:
//! - `cargo run --bin NAME -- ARGS` runs the built `NAME` (building is this suite's job);
//! - `licensed ...` starts a server in the background, as a reader would in another
//!   terminal. After the block the test waits until every server it started is ready; a
//!   block that starts servers first stops the ones started before (they share ports).
//!
//! Every block must exit 0. When a ```` ```json ```` sample follows a block, each JSON
//! value the block prints must have the sample's shape: no member the sample lacks, no
//! sample member missing (except the ones the protocol makes optional), the same types.
//! A sample string ending in `…` stands for a value (`"6f1c…"`): its first occurrence
//! binds it to what the server answered, later blocks get that value in its place and
//! later samples must show the same value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The start of a marker line.
const MARKER: &str = "<!-- readme-test:";
/// Members the protocol omits when empty (docs/protocol.md §3).
const OPTIONAL_MEMBERS: &[&str] = &[
    "validFrom",
    "validUntil",
    "borrowedIntervals",
    "userInfo",
    "returnedAt",
    // License administration (extension): optional license fields, the last page.
    "maxBorrowDuration",
    "maxBorrowed",
    "maxPerHost",
    "nextCursor",
];
/// How long a started server may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// What `licensed` prints once it serves clients.
const READY_LINE: &str = "licensed listening on http://";

/// One fenced block of the README.
#[derive(Debug)]
struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    /// The info string (`sh`, `json`, ...).
    lang: String,
    /// The marker before it, if any (`run`, `skip: reason`).
    marker: Option<String>,
    /// The lines inside the fences.
    text: String,
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    let mut last_marker: Option<(usize, String)> = None;
    for (index, line) in readme.lines().enumerate() {
        let number = index + 1;
        if let Some(block) = open.as_mut() {
            if line.starts_with("```") {
                blocks.push(open.take().expect("open block"));
            } else {
                block.text.push_str(line);
                block.text.push('\n');
            }
            continue;
        }
        if let Some(rest) = line.trim().strip_prefix(MARKER) {
            let marker = rest.trim_end_matches("-->").trim().to_string();
            last_marker = Some((number, marker));
        } else if let Some(lang) = line.strip_prefix("```") {
            let marker = last_marker
                .take()
                .filter(|(at, _)| *at + 1 == number)
                .map(|(_, marker)| marker);
            open = Some(Block {
                line: number,
                lang: lang.trim().to_string(),
                marker,
                text: String::new(),
            });
        }
    }
    assert!(open.is_none(), "README.md ends inside a fenced block");
    blocks
}

/// A server a block started: its pid and where its stdout goes.
struct Started {
    pid: u32,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// The servers the README started; killed when the test ends, however it ends.
#[derive(Default)]
struct Servers(Vec<Started>);

impl Servers {
    /// Stops every server gracefully (SIGTERM, then SIGKILL after 30 s).
    fn stop_all(&mut self) {
        for server in &self.0 {
            let _ = kill(&[&server.pid.to_string()]);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.0.iter().any(|s| alive(s.pid)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        for server in self.0.drain(..) {
            let _ = kill(&["-9", &server.pid.to_string()]);
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for server in &self.0 {
            let _ = kill(&["-9", &server.pid.to_string()]);
        }
    }
}

/// `kill ARGS`, quietly: the process may be gone already.
fn kill(args: &[&str]) -> std::io::Result<std::process::ExitStatus> {
    Command::new("kill")
        .args(args)
        .stderr(std::process::Stdio::null())
        .status()
}

fn alive(pid: u32) -> bool {
    // A zombie is not alive: the server was started by a shell that is gone, so init
    // reaps it, but only eventually.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The shell prelude: `cargo run` and `licensed` as the module doc says.
const PRELUDE: &str = r#"
cargo() {
  if [ "${1-}" = run ] && [ "${2-}" = --bin ]; then
    local name="$3"; shift 3
    if [ "${1-}" = "--" ]; then shift; fi
    "$name" "$@"
  else
    echo "README test: only 'cargo run --bin NAME -- ARGS' runs here, not 'cargo $*'" >&2
    return 97
  fi
}
licensed() {
  local n
  n=$(wc -l < "$README_SERVERS")
  command licensed "$@" > "$README_LOGS/server-$n.out" 2> "$README_LOGS/server-$n.err" &
  echo "$! $README_LOGS/server-$n.out $README_LOGS/server-$n.err" >> "$README_SERVERS"
}
"#;

/// Whether a block starts servers.
fn starts_servers(script: &str) -> bool {
    script
        .lines()
        .map(str::trim_start)
        .any(|line| line.starts_with("licensed ") || line.starts_with("cargo run --bin licensed "))
}

/// Compares `actual` with the README's `sample` (see the module doc).
fn check_shape(
    sample: &Value,
    actual: &Value,
    path: &str,
    bindings: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    match (sample, actual) {
        (Value::Object(sample), Value::Object(actual)) => {
            for (key, value) in actual {
                let expected = sample.get(key).ok_or_else(|| {
                    format!("{path}.{key} is in the answer but not in the README's sample")
                })?;
                check_shape(expected, value, &format!("{path}.{key}"), bindings)?;
            }
            match sample
                .keys()
                .find(|key| !actual.contains_key(*key) && !OPTIONAL_MEMBERS.contains(&key.as_str()))
            {
                Some(missing) => Err(format!(
                    "{path}.{missing} is in the sample but not in the answer"
                )),
                None => Ok(()),
            }
        }
        // Each item has the shape of one of the sample's items.
        (Value::Array(sample), Value::Array(actual)) if !sample.is_empty() => {
            actual.iter().enumerate().try_for_each(|(i, item)| {
                let path = format!("{path}[{i}]");
                let mut reasons = Vec::new();
                for candidate in sample {
                    let mut trial = bindings.clone();
                    match check_shape(candidate, item, &path, &mut trial) {
                        Ok(()) => {
                            *bindings = trial;
                            return Ok(());
                        }
                        Err(reason) => reasons.push(reason),
                    }
                }
                Err(reasons.join("; "))
            })
        }
        (Value::Array(_), Value::Array(_)) => Ok(()),
        (Value::String(sample), Value::String(actual)) => {
            if sample.ends_with('…') && sample.chars().count() > 1 {
                match bindings.get(sample) {
                    Some(bound) if bound != actual => Err(format!(
                        "{path}: {sample:?} stood for {bound:?} earlier, the answer has {actual:?}"
                    )),
                    Some(_) => Ok(()),
                    None => {
                        bindings.insert(sample.clone(), actual.clone());
                        Ok(())
                    }
                }
            } else {
                Ok(())
            }
        }
        (Value::Number(_), Value::Number(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, Value::Null) => Ok(()),
        _ => Err(format!(
            "{path}: the sample has {sample}, the answer {actual}"
        )),
    }
}

/// The JSON values of a sample block, which may span lines.
fn sample_values(text: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("a JSON sample of README.md does not parse: {e}\n{text}"))
}

/// Every JSON value a block printed: the whole output when it is JSON (`licensectl --json`
/// prints it over several lines), else line by line (curl prints answers without a newline
/// between them; lines that are not JSON, such as tables, are skipped).
fn json_values(text: &str) -> Vec<Value> {
    let whole: Result<Vec<Value>, _> = serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .collect();
    if let Ok(values) = whole {
        return values;
    }
    text.lines()
        .filter(|line| line.trim_start().starts_with('{') || line.trim_start().starts_with('['))
        .flat_map(|line| {
            serde_json::Deserializer::from_str(line)
                .into_iter::<Value>()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

#[test]
fn every_shell_block_of_the_readme_is_marked_and_the_runnable_ones_run_as_written() {
    let readme_path = std::env::var_os("README_TEST_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("README.md"));
    let readme = std::fs::read_to_string(&readme_path).expect("read README.md");
    let blocks = blocks(&readme);

    // Every shell block says whether it runs here, and why not.
    let mut unmarked = Vec::new();
    for block in blocks.iter().filter(|b| b.lang == "sh") {
        match block.marker.as_deref() {
            Some("run") => {}
            Some(skip)
                if skip
                    .strip_prefix("skip:")
                    .is_some_and(|r| !r.trim().is_empty()) => {}
            other => unmarked.push(format!("line {}: {other:?}", block.line)),
        }
    }
    assert!(
        unmarked.is_empty(),
        "shell blocks need `{MARKER} run -->` or `{MARKER} skip: <reason> -->` on the line before: {unmarked:?}"
    );

    let licensed = licensed_testkit::licensed_binary().expect("the licensed binary");
    let bin_dir = licensed.parent().expect("binary dir").to_path_buf();
    assert!(
        bin_dir.join("licensectl").exists(),
        "no licensectl beside {}: build it first (cargo build --bins)",
        licensed.display()
    );
    let scratch = tempfile::tempdir().expect("scratch dir");
    let work = scratch.path().join("work");
    copy_dir(&repo().join("deploy"), &work.join("deploy"));
    let logs = scratch.path().join("logs");
    std::fs::create_dir_all(&logs).expect("logs dir");
    let servers_file = logs.join("servers");
    std::fs::write(&servers_file, "").expect("servers file");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let mut servers = Servers::default();
    let mut bindings: BTreeMap<String, String> = BTreeMap::new();
    let mut ran = 0;
    for (index, block) in blocks.iter().enumerate() {
        if block.lang != "sh" || block.marker.as_deref() != Some("run") {
            continue;
        }
        let mut script = block.text.clone();
        for (placeholder, value) in &bindings {
            script = script.replace(placeholder.as_str(), value);
        }
        if starts_servers(&script) {
            servers.stop_all();
        }
        let before = std::fs::read_to_string(&servers_file)
            .expect("servers")
            .lines()
            .count();
        let mut command = Command::new("bash");
        command
            .args(["-eo", "pipefail", "-c", &format!("{PRELUDE}\n{script}")])
            .current_dir(&work)
            .env("PATH", &path)
            .env("README_SERVERS", &servers_file)
            .env("README_LOGS", &logs)
            .env("NO_COLOR", "1");
        for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("LICENSED_")) {
            command.env_remove(key);
        }
        let output = command.output().expect("run bash");
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert!(
            output.status.success(),
            "README.md line {}: the block failed ({})\n--- block\n{script}--- stdout\n{stdout}\n--- stderr\n{stderr}",
            block.line,
            output.status
        );

        eprintln!("--- README.md line {}\n{stdout}", block.line);

        // Servers the block started must come up.
        let listed = std::fs::read_to_string(&servers_file).expect("servers");
        for line in listed.lines().skip(before) {
            let mut parts = line.split_whitespace();
            let (Some(pid), Some(out), Some(err)) = (parts.next(), parts.next(), parts.next())
            else {
                panic!("bad server line {line:?}");
            };
            servers.0.push(Started {
                pid: pid.parse().expect("pid"),
                stdout: PathBuf::from(out),
                stderr: PathBuf::from(err),
            });
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        for server in servers.0.iter() {
            loop {
                if std::fs::read_to_string(&server.stdout)
                    .unwrap_or_default()
                    .contains(READY_LINE)
                {
                    break;
                }
                assert!(
                    alive(server.pid) && Instant::now() < deadline,
                    "README.md line {}: a server did not become ready\n--- its log\n{}",
                    block.line,
                    tail(&server.stderr)
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }

        // Answers have the shape of the sample that follows the block.
        if let Some(sample) = blocks.get(index + 1).filter(|next| next.lang == "json") {
            let expected = sample_values(&sample.text);
            let actual = json_values(&stdout);
            assert!(
                actual.len() >= expected.len(),
                "README.md line {}: {} JSON answer(s), the sample shows {}:\n{stdout}",
                block.line,
                actual.len(),
                expected.len()
            );
            for (expected, actual) in expected.iter().zip(&actual) {
                if let Err(reason) = check_shape(expected, actual, "$", &mut bindings) {
                    panic!(
                        "README.md line {}: {reason}\n--- answer\n{actual}\n--- sample\n{expected}",
                        block.line
                    );
                }
            }
        }
        ran += 1;
    }
    servers.stop_all();
    assert!(ran > 0, "no runnable block in README.md");
    eprintln!("README: {ran} blocks ran, placeholders bound: {bindings:?}");
}
