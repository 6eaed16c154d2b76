//! The pods of a Helm-rendered StatefulSet, run as real `licensed` processes the way
//! Kubernetes would run them, for the chart's acceptance test (`tests/kubernetes.rs`).
//!
//! - [`render`]: the chart rendered with the real Helm library (`deploy/validate.sh
//!   --render`), as JSON objects.
//! - [`enter_pod_network`]: moves the calling thread (and every thread and process it starts
//!   afterwards) into a network namespace of its own with a bridge, the pod network.
//! - [`StatefulSet`]: the controller. Pods get exactly the rendered container's command,
//!   arguments (with `$(VAR)` expanded as the kubelet does) and environment (field and
//!   Secret references resolved), each in network, mount and UTS namespaces of its own:
//!   its own address on the bridge, its hostname (the pod name), a read-only root made of
//!   the binary and its libraries, its volumes (a directory per claim that outlives the
//!   pod, Secrets and ConfigMaps laid out and updated as the kubelet does), run as the pod's
//!   user. The headless Service's DNS names resolve through the pods' `/etc/hosts`.
//!   Pods are created, deleted (SIGTERM, then SIGKILL after the grace period) and
//!   replaced in the StatefulSet's orders: `Parallel` creation and deletion, rolling
//!   updates from the highest ordinal down, each waiting for the previous pod to be ready
//!   for `minReadySeconds`.
//!
//! Needs root (namespaces, mounts), `ip` (iproute2), `unshare` and `chroot`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use tokio::process::Command;

use crate::{licensed_binary, Process};

/// The pod network: 10.77.0.0/24 on a bridge inside the test's own network namespace.
const BRIDGE: &str = "pods0";
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// Pod ORDINAL's address is 10.77.0.(10 + ORDINAL).
const FIRST_POD_HOST: u8 = 10;
/// What the image sets (deploy/image/build.sh): the container runtime starts from it.
const IMAGE_ENV: &[(&str, &str)] = &[
    ("PATH", "/usr/local/bin"),
    ("LICENSED_DATA_DIR", "/data"),
    ("LICENSED_RAFT_LISTEN", "0.0.0.0:22023"),
    ("NO_COLOR", "1"),
];
/// How often readiness is probed.
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// The chart rendered with `values` (files merged in order on top of values.yaml) by the
/// real Helm library, through `deploy/validate.sh --render` (which installs it once).
pub fn render(values: &[&Path]) -> Result<Vec<Value>, String> {
    let root = repo_root();
    let output = StdCommand::new("bash")
        .arg(root.join("deploy/validate.sh"))
        .arg("--render")
        .args(values)
        .output()
        .map_err(|e| format!("running deploy/validate.sh --render: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "deploy/validate.sh --render failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("rendered objects: {e}"))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Moves the calling thread into a new network namespace holding the pod network's bridge
/// (10.77.0.1/24). Call it before starting the tokio runtime, on the thread that builds
/// it: threads and processes started from this thread afterwards are in the namespace too.
pub fn enter_pod_network() -> Result<(), String> {
    // SAFETY: plain system call; it changes only the calling thread's network namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "unshare(CLONE_NEWNET): {} (the pod network needs root)",
            std::io::Error::last_os_error()
        ));
    }
    let gateway = format!("{GATEWAY}/24");
    for args in [
        vec!["link", "set", "lo", "up"],
        vec!["link", "add", BRIDGE, "type", "bridge"],
        vec!["addr", "add", &gateway, "dev", BRIDGE],
        vec!["link", "set", BRIDGE, "up"],
    ] {
        ip(&args)?;
    }
    Ok(())
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = StdCommand::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The address of pod `ordinal` on the pod network.
pub fn pod_ip(ordinal: usize) -> Ipv4Addr {
    let host = u8::try_from(ordinal)
        .ok()
        .and_then(|o| o.checked_add(FIRST_POD_HOST))
        .expect("ordinal fits the pod network");
    Ipv4Addr::new(10, 77, 0, host)
}

/// The MAC address of pod `ordinal`'s interface: locally administered, the last four
/// bytes its IP address.
pub fn pod_mac(ordinal: usize) -> String {
    let [a, b, c, d] = pod_ip(ordinal).octets();
    format!("02:00:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// A rendered release: the StatefulSet and the Secrets and ConfigMaps its pods read.
#[derive(Debug, Clone)]
pub struct Release {
    objects: Vec<Value>,
}

impl Release {
    /// Wraps rendered objects (see [`render`]).
    pub fn new(objects: Vec<Value>) -> Result<Release, String> {
        let release = Release { objects };
        release.statefulset()?;
        Ok(release)
    }

    fn statefulset(&self) -> Result<&Value, String> {
        self.objects
            .iter()
            .find(|o| o["kind"] == "StatefulSet")
            .ok_or_else(|| "no StatefulSet rendered".to_string())
    }

    fn object(&self, kind: &str, name: &str) -> Result<&Value, String> {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .ok_or_else(|| format!("no {kind} {name} rendered"))
    }

    /// The keys of Secret or ConfigMap `name`, decoded.
    fn data(&self, kind: &str, name: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let object = self.object(kind, name)?;
        let mut data = BTreeMap::new();
        if let Some(map) = object["data"].as_object() {
            for (key, value) in map {
                let text = value.as_str().unwrap_or_default();
                let bytes = if kind == "Secret" {
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .map_err(|e| format!("{kind} {name} key {key}: {e}"))?
                } else {
                    text.as_bytes().to_vec()
                };
                data.insert(key.clone(), bytes);
            }
        }
        if let Some(map) = object["stringData"].as_object() {
            for (key, value) in map {
                let text = value.as_str().unwrap_or_default();
                data.insert(key.clone(), text.as_bytes().to_vec());
            }
        }
        Ok(data)
    }

    /// The StatefulSet's name (the pods are NAME-ORDINAL).
    pub fn name(&self) -> String {
        self.statefulset()
            .ok()
            .and_then(|s| s["metadata"]["name"].as_str())
            .unwrap_or_default()
            .to_string()
    }

    /// `spec.replicas`.
    pub fn replicas(&self) -> usize {
        self.statefulset()
            .ok()
            .and_then(|s| s["spec"]["replicas"].as_u64())
            .and_then(|r| usize::try_from(r).ok())
            .unwrap_or(1)
    }

    fn namespace(&self) -> String {
        self.statefulset()
            .ok()
            .and_then(|s| s["metadata"]["namespace"].as_str())
            .unwrap_or("default")
            .to_string()
    }

    fn pod_spec(&self) -> Result<&Value, String> {
        Ok(&self.statefulset()?["spec"]["template"]["spec"])
    }

    fn container(&self) -> Result<&Value, String> {
        let spec = self.pod_spec()?;
        spec["containers"]
            .get(0)
            .ok_or_else(|| "the StatefulSet has no container".to_string())
    }

    fn seconds(&self, value: &Value, default: u64) -> Duration {
        Duration::from_secs(value.as_u64().unwrap_or(default))
    }

    /// `terminationGracePeriodSeconds` (30 s when absent, as in Kubernetes).
    pub fn termination_grace(&self) -> Duration {
        let spec = self.pod_spec().ok();
        self.seconds(
            spec.map_or(&Value::Null, |s| &s["terminationGracePeriodSeconds"]),
            30,
        )
    }

    /// `minReadySeconds`.
    pub fn min_ready(&self) -> Duration {
        let spec = self.statefulset().ok();
        self.seconds(
            spec.map_or(&Value::Null, |s| &s["spec"]["minReadySeconds"]),
            0,
        )
    }

    /// The container's `command` and `args`, and its environment for pod `ordinal`: the
    /// image's, the runtime's `HOSTNAME`, then the container's `env` in order (field and
    /// Secret/ConfigMap references resolved), with `$(VAR)` expanded in the arguments.
    fn invocation(&self, ordinal: usize) -> Result<(Vec<String>, Environment), String> {
        let container = self.container()?;
        let pod = format!("{}-{ordinal}", self.name());
        let mut env: Vec<(String, String)> = IMAGE_ENV
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.push(("HOSTNAME".into(), pod.clone()));
        for var in container["env"].as_array().into_iter().flatten() {
            let name = var["name"].as_str().unwrap_or_default().to_string();
            let value = if let Some(value) = var["value"].as_str() {
                expand(value, &env)
            } else if let Some(path) = var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                match path {
                    "metadata.name" => pod.clone(),
                    "metadata.namespace" => self.namespace(),
                    "status.podIP" => pod_ip(ordinal).to_string(),
                    other => return Err(format!("env {name}: field {other} is not supported")),
                }
            } else if let Some(kind_ref) = ["secretKeyRef", "configMapKeyRef"]
                .into_iter()
                .find(|k| var["valueFrom"][*k].is_object())
            {
                let reference = &var["valueFrom"][kind_ref];
                let kind = if kind_ref == "secretKeyRef" {
                    "Secret"
                } else {
                    "ConfigMap"
                };
                let object = reference["name"].as_str().unwrap_or_default();
                let key = reference["key"].as_str().unwrap_or_default();
                let data = self.data(kind, object)?;
                let bytes = data
                    .get(key)
                    .ok_or_else(|| format!("env {name}: {kind} {object} has no key {key}"))?;
                String::from_utf8_lossy(bytes).into_owned()
            } else {
                return Err(format!("env {name}: unsupported source {var}"));
            };
            env.retain(|(k, _)| *k != name);
            env.push((name, value));
        }
        let mut argv: Vec<String> = Vec::new();
        for part in ["command", "args"] {
            for arg in container[part].as_array().into_iter().flatten() {
                argv.push(expand(arg.as_str().unwrap_or_default(), &env));
            }
        }
        Ok((argv, env))
    }

    /// The container's `readinessProbe` HTTP path and port number.
    fn readiness(&self) -> Result<(String, u16), String> {
        let container = self.container()?;
        let probe = &container["readinessProbe"]["httpGet"];
        let path = probe["path"].as_str().unwrap_or("/readyz").to_string();
        let port = match &probe["port"] {
            Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
            Value::String(name) => container["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == name.as_str())
                .and_then(|p| p["containerPort"].as_u64())
                .and_then(|p| u16::try_from(p).ok()),
            _ => None,
        };
        Ok((path, port.ok_or("readiness probe without a port")?))
    }

    /// The container port named `name`.
    pub fn port(&self, name: &str) -> u16 {
        self.container()
            .ok()
            .and_then(|c| c["ports"].as_array())
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(0)
    }

    /// The user, groups and root-filesystem mode of the container.
    fn security(&self) -> Result<(String, String, bool), String> {
        let pod = &self.pod_spec()?["securityContext"];
        let container = &self.container()?["securityContext"];
        let pick = |key: &str| container[key].as_u64().or_else(|| pod[key].as_u64());
        let uid = pick("runAsUser").unwrap_or(0);
        let gid = pick("runAsGroup").unwrap_or(0);
        let groups = match pod["fsGroup"].as_u64() {
            Some(fs_group) => format!("{gid},{fs_group}"),
            None => gid.to_string(),
        };
        let read_only = container["readOnlyRootFilesystem"]
            .as_bool()
            .unwrap_or(false);
        Ok((format!("{uid}:{gid}"), groups, read_only))
    }

    fn fs_group(&self) -> Option<u64> {
        self.pod_spec().ok()?["securityContext"]["fsGroup"].as_u64()
    }

    /// What each volume mount of the container holds: (volume name, mount path, read-only,
    /// source).
    fn mounts(&self) -> Result<Vec<(String, String, bool, VolumeSource)>, String> {
        let container = self.container()?;
        let volumes = self.pod_spec()?["volumes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let claims: Vec<String> = self.statefulset()?["spec"]["volumeClaimTemplates"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        let mut mounts = Vec::new();
        for mount in container["volumeMounts"].as_array().into_iter().flatten() {
            let name = mount["name"].as_str().unwrap_or_default().to_string();
            let path = mount["mountPath"].as_str().unwrap_or_default().to_string();
            let read_only = mount["readOnly"].as_bool().unwrap_or(false);
            let source = if claims.contains(&name) {
                VolumeSource::Claim
            } else {
                let volume = volumes
                    .iter()
                    .find(|v| v["name"] == name.as_str())
                    .ok_or_else(|| format!("volume mount {name} has no volume"))?;
                if volume["emptyDir"].is_object() {
                    VolumeSource::EmptyDir
                } else if volume["secret"].is_object() || volume["configMap"].is_object() {
                    let (kind, source) = if volume["secret"].is_object() {
                        ("Secret", &volume["secret"])
                    } else {
                        ("ConfigMap", &volume["configMap"])
                    };
                    let object = source["secretName"]
                        .as_str()
                        .or_else(|| source["name"].as_str())
                        .unwrap_or_default();
                    let data = self.data(kind, object)?;
                    let mut files = BTreeMap::new();
                    match source["items"].as_array() {
                        Some(items) => {
                            for item in items {
                                let key = item["key"].as_str().unwrap_or_default();
                                let path = item["path"].as_str().unwrap_or(key);
                                let bytes = data.get(key).ok_or_else(|| {
                                    format!("volume {name}: {kind} {object} has no key {key}")
                                })?;
                                files.insert(path.to_string(), bytes.clone());
                            }
                        }
                        None => files = data,
                    }
                    let mode = source["defaultMode"].as_u64().unwrap_or(0o644);
                    VolumeSource::Projected { files, mode }
                } else {
                    return Err(format!("volume {name}: unsupported kind {volume}"));
                }
            };
            mounts.push((name, path, read_only, source));
        }
        Ok(mounts)
    }
}

/// A container's environment, in order.
type Environment = Vec<(String, String)>;

/// Where a volume's content comes from.
#[derive(Debug, Clone, PartialEq)]
enum VolumeSource {
    /// The StatefulSet's claim for this ordinal: outlives the pod.
    Claim,
    /// Empty at each pod's start.
    EmptyDir,
    /// Files of a Secret or ConfigMap, kept up to date by the kubelet.
    Projected {
        files: BTreeMap<String, Vec<u8>>,
        mode: u64,
    },
}

/// `$(VAR)` replaced by VAR's value when VAR is defined before, as Kubernetes does.
fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find(')') {
            Some(end) => {
                let name = &after[..end];
                match env.iter().rev().find(|(k, _)| k == name) {
                    Some((_, value)) => out.push_str(value),
                    None => {
                        let _ = write!(out, "$({name})");
                    }
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// One running pod.
struct Pod {
    process: Process,
    /// The release revision its template came from.
    revision: u64,
    /// Its projected volumes' directories, updated in place on a new revision.
    projected: Vec<(PathBuf, VolumeSource)>,
}

/// A StatefulSet controller over real processes (see the module docs).
pub struct StatefulSet {
    dir: tempfile::TempDir,
    binary: PathBuf,
    release: Release,
    revision: u64,
    pods: BTreeMap<usize, Pod>,
    created: u64,
    client: reqwest::Client,
}

impl StatefulSet {
    /// A controller for `release`, with no pod yet. Call [`enter_pod_network`] first.
    pub fn new(release: Release) -> Result<StatefulSet, String> {
        let dir = tempfile::Builder::new()
            .prefix("licensed-pods.")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let binary = licensed_binary().map_err(|e| e.to_string())?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        let set = StatefulSet {
            dir,
            binary,
            release,
            revision: 1,
            pods: BTreeMap::new(),
            created: 0,
            client,
        };
        set.write_hosts()?;
        std::fs::write(set.dir.path().join("pod.sh"), include_str!("pod.sh"))
            .map_err(|e| format!("pod.sh: {e}"))?;
        Ok(set)
    }

    /// The release the controller currently applies.
    pub fn release(&self) -> &Release {
        &self.release
    }

    /// Pod `ordinal`'s name.
    pub fn pod_name(&self, ordinal: usize) -> String {
        format!("{}-{ordinal}", self.release.name())
    }

    /// Pod `ordinal`'s address for the container port named `port` (`api`, `raft`).
    pub fn addr(&self, ordinal: usize, port: &str) -> SocketAddr {
        SocketAddr::from((pod_ip(ordinal), self.release.port(port)))
    }

    /// The ordinals with a pod.
    pub fn ordinals(&self) -> Vec<usize> {
        self.pods.keys().copied().collect()
    }

    /// The headless Service's DNS name of each pod the StatefulSet may have (up to 8),
    /// mapped to its address, as the cluster DNS would answer.
    fn write_hosts(&self) -> Result<(), String> {
        let spec = self.release.statefulset()?;
        let service = spec["spec"]["serviceName"].as_str().unwrap_or_default();
        let namespace = self.release.namespace();
        let mut hosts = String::from("127.0.0.1\tlocalhost\n");
        for ordinal in 0..8 {
            let pod = self.pod_name(ordinal);
            let _ = writeln!(
                hosts,
                "{}\t{pod}.{service}.{namespace}.svc.cluster.local {pod}.{service}.{namespace}.svc {pod}.{service}",
                pod_ip(ordinal)
            );
        }
        // Written in place: the pods' /etc/hosts is a bind mount of this very file.
        std::fs::write(self.dir.path().join("hosts"), hosts).map_err(|e| format!("hosts: {e}"))
    }

    fn claim_dir(&self, ordinal: usize) -> PathBuf {
        self.dir
            .path()
            .join("claims")
            .join(format!("data-{}", self.pod_name(ordinal)))
    }

    /// Deletes pod `ordinal`'s claim (its data), as `kubectl delete pvc` would.
    pub fn delete_claim(&mut self, ordinal: usize) -> Result<(), String> {
        if self.pods.contains_key(&ordinal) {
            return Err(format!("pod {ordinal} still uses its claim"));
        }
        let dir = self.claim_dir(ordinal);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("deleting {}: {e}", dir.display())),
        }
    }

    /// Creates pod `ordinal` from the current release (not waiting for readiness).
    async fn create(&mut self, ordinal: usize) -> Result<(), String> {
        let (argv, env) = self.release.invocation(ordinal)?;
        let (user, groups, read_only) = self.release.security()?;
        let fs_group = self.release.fs_group();
        self.created += 1;
        let serial = self.created;
        let pod_dir = self
            .dir
            .path()
            .join("pods")
            .join(format!("{ordinal}-{serial}"));
        let root = pod_dir.join("root");
        std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        let mut mounts = String::new();
        let mut projected = Vec::new();
        for (name, path, read_only, source) in self.release.mounts()? {
            let dir = match &source {
                VolumeSource::Claim => {
                    let dir = self.claim_dir(ordinal);
                    if !dir.exists() {
                        std::fs::create_dir_all(&dir).map_err(|e| format!("claim: {e}"))?;
                        // fsGroup: the volume belongs to the pod's group.
                        chown(&dir, &user, fs_group)?;
                    }
                    dir
                }
                VolumeSource::EmptyDir => {
                    let dir = pod_dir.join("volumes").join(&name);
                    std::fs::create_dir_all(&dir).map_err(|e| format!("emptyDir: {e}"))?;
                    chown(&dir, &user, fs_group)?;
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777))
                        .map_err(|e| format!("emptyDir: {e}"))?;
                    dir
                }
                VolumeSource::Projected { .. } => {
                    let dir = pod_dir.join("volumes").join(&name);
                    project(&dir, &source, fs_group)?;
                    projected.push((dir.clone(), source.clone()));
                    dir
                }
            };
            let mode = if read_only { "ro" } else { "rw" };
            let _ = writeln!(mounts, "{}\t{path}\t{mode}", dir.display());
        }
        let mounts_file = pod_dir.join("mounts");
        std::fs::write(&mounts_file, mounts).map_err(|e| format!("mounts: {e}"))?;
        let env_file = pod_dir.join("env");
        let env_text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(&env_file, env_text).map_err(|e| format!("env: {e}"))?;

        let pod_name = self.pod_name(ordinal);
        let mut command = Command::new("unshare");
        command
            .args(["--net", "--mount", "--uts", "--", "bash"])
            .arg(self.dir.path().join("pod.sh"))
            .arg("--")
            .args(&argv)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("POD_NAME", &pod_name)
            .env("POD_IP", format!("{}/24", pod_ip(ordinal)))
            .env("POD_ROOT", &root)
            .env("POD_BINARY", &self.binary)
            .env("POD_HOSTS", self.dir.path().join("hosts"))
            .env("POD_MOUNTS", &mounts_file)
            .env("POD_ENV", &env_file)
            .env("POD_USER", &user)
            .env("POD_GROUPS", &groups)
            .env("POD_READ_ONLY", if read_only { "1" } else { "0" });
        let mut process = Process::new(&pod_name, pod_dir.join("log"));
        process
            .spawn(command, None)
            .map_err(|e| format!("starting pod {pod_name}: {e}"))?;
        let pid = process.pid().ok_or("the pod exited at once")?;
        wait_for_own_network(pid).await?;
        // The pod's end of a veth pair goes into its network namespace as eth0; this end
        // joins the bridge. Its MAC address follows from its IP address, so a pod that
        // replaces another under the same address is reached at once: with a fresh MAC,
        // the harness and the other pods kept sending to the old one for up to a minute
        // (their neighbour entries stayed "reachable"), which stalled readiness probes.
        let outside = format!("veth{serial}");
        let pid = pid.to_string();
        let mac = pod_mac(ordinal);
        ip(&[
            "link", "add", &outside, "type", "veth", "peer", "name", "eth0", "address", &mac,
            "netns", &pid,
        ])?;
        ip(&["link", "set", &outside, "master", BRIDGE, "up"])?;
        self.pods.insert(
            ordinal,
            Pod {
                process,
                revision: self.revision,
                projected,
            },
        );
        Ok(())
    }

    /// Deletes pod `ordinal`: SIGTERM, then SIGKILL after the grace period. Returns whether
    /// it stopped within the grace period.
    pub async fn delete_pod(&mut self, ordinal: usize) -> Result<bool, String> {
        let grace = self.release.termination_grace();
        let Some(mut pod) = self.pods.remove(&ordinal) else {
            return Ok(true);
        };
        match pod.process.sigterm_and_wait(grace).await {
            Ok(_) => Ok(true),
            Err(crate::Error::StopTimeout { .. }) => Ok(false),
            Err(crate::Error::NotRunning { .. }) => Ok(true),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Whether pod `ordinal`'s readiness probe passes now.
    pub async fn is_ready(&self, ordinal: usize) -> bool {
        let Ok((path, port)) = self.release.readiness() else {
            return false;
        };
        let url = format!("http://{}:{port}{path}", pod_ip(ordinal));
        matches!(self.client.get(url).send().await, Ok(r) if r.status().is_success())
    }

    /// Waits until pod `ordinal` is ready, then for `minReadySeconds` more (as a rolling
    /// update does before it moves on).
    pub async fn wait_ready(&mut self, ordinal: usize, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.is_ready(ordinal).await {
                break;
            }
            let name = self.pod_name(ordinal);
            if let Some(pod) = self.pods.get_mut(&ordinal) {
                if !pod.process.is_running() {
                    return Err(format!("pod {name} exited: {}", pod.process.log_tail(30)));
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "pod {} not ready within {timeout:?}: {}",
                    self.pod_name(ordinal),
                    self.log_tail(ordinal, 30)
                ));
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
        tokio::time::sleep(self.release.min_ready()).await;
        Ok(())
    }

    /// The end of pod `ordinal`'s log (its stderr and stdout).
    pub fn log_tail(&self, ordinal: usize, lines: usize) -> String {
        self.pods
            .get(&ordinal)
            .map(|p| p.process.log_tail(lines))
            .unwrap_or_default()
    }

    /// Brings the pods to `release` as the controller would after `helm upgrade`: the
    /// kubelet updates the projected Secret and ConfigMap files of the running pods; pods
    /// beyond the new replica count are deleted at once and missing ones created at once
    /// (`Parallel`); then, if the pod template changed, the remaining old pods are
    /// replaced from the highest ordinal down, each new one ready for `minReadySeconds`
    /// before the next.
    pub async fn apply(&mut self, release: Release, timeout: Duration) -> Result<(), String> {
        let template_changed = template(&self.release) != template(&release);
        self.release = release;
        if template_changed {
            self.revision += 1;
        }
        self.write_hosts()?;
        self.sync_projected()?;
        let replicas = self.release.replicas();
        let excess: Vec<usize> = self
            .pods
            .keys()
            .copied()
            .filter(|o| *o >= replicas)
            .collect();
        for ordinal in excess.iter().rev() {
            self.delete_pod(*ordinal).await?;
        }
        let missing: Vec<usize> = (0..replicas)
            .filter(|o| !self.pods.contains_key(o))
            .collect();
        for &ordinal in &missing {
            self.create(ordinal).await?;
        }
        for &ordinal in &missing {
            self.wait_ready(ordinal, timeout).await?;
        }
        let stale: Vec<usize> = self
            .pods
            .iter()
            .filter(|(_, pod)| pod.revision != self.revision)
            .map(|(o, _)| *o)
            .collect();
        for ordinal in stale.into_iter().rev() {
            self.replace(ordinal, timeout).await?;
        }
        Ok(())
    }

    /// Deletes pod `ordinal` and creates it again from the current release, waiting until
    /// it is ready (a rolling update's step, or `kubectl delete pod`).
    pub async fn replace(&mut self, ordinal: usize, timeout: Duration) -> Result<(), String> {
        self.delete_pod(ordinal).await?;
        self.create(ordinal).await?;
        self.wait_ready(ordinal, timeout).await
    }

    /// A rolling restart (`kubectl rollout restart`): every pod replaced, highest ordinal
    /// first, each ready for `minReadySeconds` before the next.
    pub async fn rolling_restart(&mut self, timeout: Duration) -> Result<(), String> {
        for ordinal in self.ordinals().into_iter().rev() {
            self.replace(ordinal, timeout).await?;
        }
        Ok(())
    }

    /// The kubelet's update of the running pods' Secret and ConfigMap volumes to the
    /// current release's content.
    fn sync_projected(&mut self) -> Result<(), String> {
        let mounts = self.release.mounts()?;
        let fs_group = self.release.fs_group();
        for pod in self.pods.values_mut() {
            for (dir, source) in pod.projected.iter_mut() {
                let name = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if let Some((_, _, _, new)) = mounts.iter().find(|(n, ..)| *n == name) {
                    if new != source {
                        project(dir, new, fs_group)?;
                        *source = new.clone();
                    }
                }
            }
        }
        Ok(())
    }
}

/// Waits until process `pid` has its own network namespace (`unshare` has run), so its
/// network interface is moved into the pod's namespace, not this one.
async fn wait_for_own_network(pid: u32) -> Result<(), String> {
    let ours = std::fs::read_link("/proc/thread-self/ns/net").map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::read_link(format!("/proc/{pid}/ns/net")) {
            Ok(theirs) if theirs != ours => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("pod process {pid}: {e}")),
        }
        if Instant::now() > deadline {
            return Err(format!(
                "pod process {pid} did not enter a network namespace"
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The parts of a release that make a new pod revision: the StatefulSet's pod template.
fn template(release: &Release) -> Value {
    release
        .statefulset()
        .map(|s| s["spec"]["template"].clone())
        .unwrap_or(Value::Null)
}

fn chown(path: &Path, user: &str, group: Option<u64>) -> Result<(), String> {
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or(0);
    let gid = group
        .and_then(|g| u32::try_from(g).ok())
        .or_else(|| user.split(':').nth(1).and_then(|g| g.parse().ok()))
        .unwrap_or(0);
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| format!("chown {}: {e}", path.display()))
}

/// Writes a Secret or ConfigMap volume the way the kubelet does: the files in a
/// timestamped directory, `..data` a symlink to it, each file a symlink through `..data`,
/// and an update swaps `..data` atomically (a reader sees the old or the new set, whole).
fn project(dir: &Path, source: &VolumeSource, fs_group: Option<u64>) -> Result<(), String> {
    let VolumeSource::Projected { files, mode } = source else {
        return Ok(());
    };
    let err = |what: &str, e: std::io::Error| format!("{} {what}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(|e| err("create", e))?;
    let stamp = format!("..{}", chrono::Utc::now().format("%Y_%m_%d_%H_%M_%S.%f"));
    let version = dir.join(&stamp);
    std::fs::create_dir(&version).map_err(|e| err("version", e))?;
    for (path, bytes) in files {
        let file = version.join(path);
        std::fs::write(&file, bytes).map_err(|e| err("write", e))?;
        let mode = u32::try_from(*mode).unwrap_or(0o644);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode))
            .map_err(|e| err("mode", e))?;
        if let Some(group) = fs_group.and_then(|g| u32::try_from(g).ok()) {
            std::os::unix::fs::chown(&file, Some(0), Some(group)).map_err(|e| err("chown", e))?;
        }
    }
    let data = dir.join("..data");
    let old = std::fs::read_link(&data).ok();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&stamp, &tmp).map_err(|e| err("symlink", e))?;
    std::fs::rename(&tmp, &data).map_err(|e| err("swap", e))?;
    for path in files.keys() {
        let link = dir.join(path);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(path), &link)
                .map_err(|e| err("link", e))?;
        }
    }
    if let Some(old) = old {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_mac_address_follows_from_its_ip_address() {
        assert_eq!(pod_ip(2).to_string(), "10.77.0.12");
        assert_eq!(pod_mac(2), "02:00:0a:4d:00:0c");
        assert_ne!(pod_mac(0), pod_mac(1));
    }

    #[test]
    fn expands_defined_variables_only() {
        let env = vec![
            ("POD_NAME".to_string(), "licensed-2".to_string()),
            ("NS".to_string(), "licensing".to_string()),
        ];
        assert_eq!(
            expand("--advertise=$(POD_NAME).h.$(NS).svc:1", &env),
            "--advertise=licensed-2.h.licensing.svc:1"
        );
        assert_eq!(expand("$(UNKNOWN)-x", &env), "$(UNKNOWN)-x");
        assert_eq!(expand("tail $(", &env), "tail $(");
    }

    #[test]
    fn projected_volumes_swap_their_content_atomically() {
        let dir = tempfile::tempdir().expect("dir");
        let volume = dir.path().join("pool");
        let first = VolumeSource::Projected {
            files: BTreeMap::from([("pool.json".to_string(), b"[1]".to_vec())]),
            mode: 0o440,
        };
        project(&volume, &first, None).expect("first");
        assert_eq!(
            std::fs::read(volume.join("pool.json")).expect("read"),
            b"[1]"
        );
        let second = VolumeSource::Projected {
            files: BTreeMap::from([("pool.json".to_string(), b"[2]".to_vec())]),
            mode: 0o440,
        };
        project(&volume, &second, None).expect("second");
        assert_eq!(
            std::fs::read(volume.join("pool.json")).expect("read"),
            b"[2]"
        );
        let versions = std::fs::read_dir(&volume)
            .expect("list")
            .filter(|e| {
                let name = e.as_ref().expect("entry").file_name();
                let name = name.to_string_lossy();
                name.starts_with("..") && name != "..data"
            })
            .count();
        assert_eq!(versions, 1, "the old version is removed");
    }
}
