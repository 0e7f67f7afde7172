//! The deployment files, checked: the systemd unit's user and hardening, the Kubernetes
//! manifests' structure (containers, ports, probes, volumes, what the Service and the
//! NetworkPolicy open), and every config that ships or deploys accepted by `tollgate check-config`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Runs `tollgate check-config --config PATH` in a scratch directory, with no tollgate variables.
fn check_config(path: &Path) -> Output {
    let scratch = tempfile::tempdir().expect("create a temp dir");
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["check-config", "--config"])
        .arg(path)
        .current_dir(scratch.path())
        .env_remove("TOLLGATE_CONFIG")
        .env_remove("TOLLGATE_ADMIN_URL")
        .env_remove("TOLLGATE_ADMIN_TOKEN")
        .output()
        .expect("run the tollgate binary")
}

fn assert_check_config_accepts(path: &Path) {
    let out = check_config(path);
    assert_eq!(
        out.status.code(),
        Some(0),
        "check-config {}:\nstdout: {}\nstderr: {}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Seconds in a duration such as `30s`, `2m` or a bare number of seconds.
fn seconds(text: &str) -> u64 {
    let text = text.trim();
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = digits
        .parse()
        .unwrap_or_else(|_| panic!("not a duration: {text:?}"));
    match unit {
        "" | "s" => n,
        "m" | "min" => n * 60,
        "h" => n * 3600,
        _ => panic!("unexpected duration unit in {text:?}"),
    }
}

/// The port of a `host:port` address.
fn port_of(bind: &str) -> u16 {
    bind.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not an address: {bind:?}"))
}

// ---------------------------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------------------------

/// A unit file: section → key → every assignment, in order (systemd lets a key repeat, and an
/// empty assignment resets a list).
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// Parses the INI-like unit syntax: `[Section]`, `Key=Value`, `#`/`;` comments, and lines
/// continued with a trailing backslash.
fn parse_unit(text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section = String::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';'))
        {
            continue;
        }
        if let Some(body) = line.strip_suffix('\\') {
            pending.push_str(body);
            pending.push(' ');
            continue;
        }
        let line = format!("{pending}{line}");
        pending.clear();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            unit.entry(section.clone()).or_default();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not `Key=Value`: {line:?}"));
        assert!(
            !section.is_empty(),
            "an assignment before any section: {line:?}"
        );
        unit.entry(section.clone())
            .or_default()
            .entry(key.trim().to_string())
            .or_default()
            .push(value.trim().to_string());
    }
    unit
}

fn unit() -> Unit {
    parse_unit(&read("deploy/systemd/tollgate@.service"))
}

/// Every assignment of `key` in `[section]`.
fn values<'a>(unit: &'a Unit, section: &str, key: &str) -> &'a [String] {
    unit.get(section)
        .and_then(|s| s.get(key))
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The single assignment of `key` in `[section]`.
fn value<'a>(unit: &'a Unit, section: &str, key: &str) -> &'a str {
    match values(unit, section, key) {
        [one] => one,
        [] => panic!("[{section}] {key}= is missing"),
        many => panic!(
            "[{section}] {key}= is assigned {} times: {many:?}",
            many.len()
        ),
    }
}

#[test]
fn the_systemd_unit_runs_unprivileged_and_hardened() {
    let unit = unit();
    let s = "Service";
    assert_eq!(
        value(&unit, s, "ExecStart"),
        "/usr/local/bin/tollgate serve --config /etc/tollgate/tollgate.toml"
    );
    assert_eq!(
        values(&unit, s, "DynamicUser"),
        ["yes"],
        "a user of its own"
    );
    assert_eq!(
        values(&unit, s, "User"),
        ["tollgate"],
        "one named user for every instance: only one user's sockets may share a port"
    );
    assert_eq!(
        value(&unit, s, "Type"),
        "notify",
        "start returns once the instance serves, so an upgrade stops the old one only then"
    );
    assert!(values(&unit, s, "User").iter().all(|u| u != "root"));
    assert_eq!(value(&unit, s, "StateDirectory"), "tollgate");
    assert_eq!(
        value(&unit, s, "WorkingDirectory"),
        "/var/lib/tollgate",
        "relative store and token paths land in the state directory"
    );
    for (key, want) in [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("LimitNOFILE", "65536"),
        // The admin API's threads may run real-time (limits::favour_this_thread), else at
        // nice -10 (limits::ADMIN_NICE), without a capability.
        ("LimitRTPRIO", "1"),
        ("RestrictRealtime", "no"),
        ("LimitNICE", "30"),
        ("Restart", "on-failure"),
        ("KillSignal", "SIGTERM"),
        ("EnvironmentFile", "-/etc/tollgate/env"),
    ] {
        assert_eq!(value(&unit, s, key), want, "[Service] {key}=");
    }
    assert_eq!(
        values(&unit, s, "CapabilityBoundingSet"),
        [""],
        "no capabilities at all"
    );
    let families: BTreeSet<&str> = value(&unit, s, "RestrictAddressFamilies")
        .split_whitespace()
        .collect();
    assert_eq!(
        families,
        BTreeSet::from(["AF_INET", "AF_INET6", "AF_UNIX"]),
        "RestrictAddressFamilies"
    );
    assert_eq!(seconds(value(&unit, s, "TimeoutStopSec")), 45);
    assert!(
        values(&unit, s, "ReadWritePaths").is_empty(),
        "nothing writable beyond the state directory"
    );
    assert_eq!(value(&unit, "Install", "WantedBy"), "multi-user.target");
}

#[test]
fn the_systemd_unit_fits_the_shipped_controller_config() {
    let unit = unit();
    let config: toml::Table = read("config/telegraf-controller.toml")
        .parse()
        .expect("config/telegraf-controller.toml is TOML");

    // Under ProtectSystem=strict only the state directory is writable: every path tollgate
    // writes must resolve into it from WorkingDirectory.
    for (table, key) in [("store", "path"), ("admin", "token_file")] {
        let path = config[table][key]
            .as_str()
            .unwrap_or_else(|| panic!("{table}.{key} is a string"));
        assert!(
            Path::new(path).is_relative() || path.starts_with("/var/lib/tollgate/"),
            "{table}.{key} = {path:?} would not be writable under the unit"
        );
    }

    // The stop timeout leaves room above the drain.
    let grace = config
        .get("server")
        .and_then(|s| s.get("shutdown_grace"))
        .and_then(toml::Value::as_str)
        .map_or(30, seconds);
    let stop = seconds(value(&unit, "Service", "TimeoutStopSec"));
    assert!(
        stop > grace,
        "TimeoutStopSec {stop}s must exceed shutdown_grace {grace}s"
    );

    let listeners = config["listener"].as_array().expect("[[listener]] tables");
    // Binding below 1024 needs exactly CAP_NET_BIND_SERVICE; these ports need nothing.
    let privileged = listeners
        .iter()
        .any(|l| port_of(l["bind"].as_str().expect("bind is a string")) < 1024);
    let ambient = values(&unit, "Service", "AmbientCapabilities").join(" ");
    if privileged {
        assert_eq!(ambient.trim(), "CAP_NET_BIND_SERVICE");
    } else {
        assert!(
            ambient.trim().is_empty(),
            "no port below 1024: no ambient capability ({ambient:?})"
        );
    }
    // One descriptor per client connection at least.
    let connections: i64 = listeners
        .iter()
        .map(|l| {
            l.get("max_connections")
                .and_then(toml::Value::as_integer)
                .unwrap_or(16384)
        })
        .sum();
    let limit: i64 = value(&unit, "Service", "LimitNOFILE")
        .parse()
        .expect("a number");
    assert!(
        limit >= connections,
        "LimitNOFILE {limit} below the listeners' {connections} connections"
    );
}

// ---------------------------------------------------------------------------------------------
// The shipped configs
// ---------------------------------------------------------------------------------------------

#[test]
fn the_shipped_configs_pass_check_config() {
    for rel in ["config/tollgate.toml", "config/telegraf-controller.toml"] {
        assert_check_config_accepts(&root().join(rel));
    }
}

#[test]
fn the_controller_config_takes_the_controllers_ports() {
    let config: toml::Table = read("config/telegraf-controller.toml")
        .parse()
        .expect("config/telegraf-controller.toml is TOML");
    let listeners = config["listener"].as_array().expect("[[listener]] tables");
    let find = |name: &str| {
        listeners
            .iter()
            .find(|l| l["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("a listener named {name:?}"))
    };
    let ui = find("ui");
    assert_eq!(ui["bind"].as_str(), Some("0.0.0.0:8888"));
    assert_eq!(ui["upstream"].as_str(), Some("http://127.0.0.1:18888"));
    assert_eq!(ui["profile"].as_str(), Some("telegraf-controller"));
    let heartbeat = find("heartbeat");
    assert_eq!(heartbeat["bind"].as_str(), Some("0.0.0.0:8000"));
    assert_eq!(
        heartbeat["upstream"].as_str(),
        Some("http://127.0.0.1:18000")
    );
    assert_eq!(
        config["admin"]["bind"]
            .as_str()
            .map(|b| b.starts_with("127.0.0.1:")),
        Some(true),
        "on a host, the admin port stays on loopback"
    );
}

// ---------------------------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------------------------

/// Every document of every `deploy/kubernetes/*.yaml`, with the file it came from.
fn manifests() -> Vec<(String, Yaml)> {
    let dir = root().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a manifest");
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for doc in
            YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{name} is not YAML: {e}"))
        {
            if doc.is_null() {
                continue;
            }
            assert!(
                doc["apiVersion"].as_str().is_some() && doc["kind"].as_str().is_some(),
                "{name}: every document has apiVersion and kind"
            );
            docs.push((name.clone(), doc));
        }
    }
    docs
}

/// The documents of `kind`.
fn of_kind(docs: &[(String, Yaml)], kind: &str) -> Vec<Yaml> {
    docs.iter()
        .filter(|(_, d)| d["kind"].as_str() == Some(kind))
        .map(|(_, d)| d.clone())
        .collect()
}

/// The one document of `kind`.
fn one(docs: &[(String, Yaml)], kind: &str) -> Yaml {
    let found = of_kind(docs, kind);
    assert_eq!(found.len(), 1, "exactly one {kind}");
    found.into_iter().next().expect("checked above")
}

fn list(y: &Yaml) -> &[Yaml] {
    y.as_vec().map(Vec::as_slice).unwrap_or(&[])
}

fn string(y: &Yaml, what: &str) -> String {
    y.as_str()
        .unwrap_or_else(|| panic!("{what} should be a string, got {y:?}"))
        .to_string()
}

/// The string map at `y` (labels, selectors).
fn string_map(y: &Yaml) -> BTreeMap<String, String> {
    y.as_hash()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether every pair of `selector` is in `labels`.
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The workload running the pod: a Deployment (Recreate) or a StatefulSet.
fn workload(docs: &[(String, Yaml)]) -> Yaml {
    let mut found = of_kind(docs, "Deployment");
    found.extend(of_kind(docs, "StatefulSet"));
    assert_eq!(found.len(), 1, "one Deployment or StatefulSet");
    found.into_iter().next().expect("checked above")
}

fn container<'a>(pod: &'a Yaml, name: &str) -> &'a Yaml {
    list(&pod["containers"])
        .iter()
        .find(|c| c["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("a container named {name:?}"))
}

/// A probe's or Service's port: a number, or the name of one of `container`'s ports.
fn resolve_port(container: &Yaml, port: &Yaml) -> i64 {
    if let Some(n) = port.as_i64() {
        return n;
    }
    let name = string(port, "a port");
    list(&container["ports"])
        .iter()
        .find(|p| p["name"].as_str() == Some(name.as_str()))
        .and_then(|p| p["containerPort"].as_i64())
        .unwrap_or_else(|| panic!("no container port named {name:?}"))
}

fn container_ports(container: &Yaml) -> BTreeSet<i64> {
    list(&container["ports"])
        .iter()
        .map(|p| {
            p["containerPort"]
                .as_i64()
                .expect("containerPort is a number")
        })
        .collect()
}

/// The volume that `container` mounts at `mount_path`.
fn volume_at<'a>(pod: &'a Yaml, container: &Yaml, mount_path: &str) -> &'a Yaml {
    let mount = list(&container["volumeMounts"])
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(mount_path))
        .unwrap_or_else(|| panic!("nothing is mounted at {mount_path}"));
    let name = string(&mount["name"], "a mount's volume name");
    list(&pod["volumes"])
        .iter()
        .find(|v| v["name"].as_str() == Some(name.as_str()))
        .unwrap_or_else(|| panic!("no volume named {name:?}"))
}

/// The ConfigMap's tollgate config, as text.
fn pod_config_text(docs: &[(String, Yaml)]) -> String {
    let cm = one(docs, "ConfigMap");
    string(
        &cm["data"]["tollgate.toml"],
        "the ConfigMap's tollgate.toml",
    )
}

#[test]
fn the_kubernetes_pod_runs_the_controller_behind_tollgate() {
    let docs = manifests();
    let cm = one(&docs, "ConfigMap");
    let config: toml::Table = pod_config_text(&docs)
        .parse()
        .expect("the ConfigMap's tollgate.toml is TOML");
    let wl = workload(&docs);
    let pod = &wl["spec"]["template"]["spec"];
    let pod_labels = string_map(&wl["spec"]["template"]["metadata"]["labels"]);

    // One pod at a time: the store is one file.
    assert_eq!(wl["spec"]["replicas"].as_i64(), Some(1));
    if wl["kind"].as_str() == Some("Deployment") {
        assert_eq!(wl["spec"]["strategy"]["type"].as_str(), Some("Recreate"));
    }
    assert!(selects(
        &string_map(&wl["spec"]["selector"]["matchLabels"]),
        &pod_labels
    ));

    // The Controller, on the ports tollgate forwards to.
    let controller = list(&pod["containers"])
        .iter()
        .find(|c| {
            c["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("influxdata/telegraf-controller"))
        })
        .expect("a container of the influxdata/telegraf-controller image");
    let env: Vec<String> = list(&controller["env"])
        .iter()
        .filter_map(|e| e["value"].as_str().map(str::to_string))
        .collect();
    for port in ["18888", "18000"] {
        assert!(
            env.iter().any(|v| v == port),
            "the Controller listens on {port}: {env:?}"
        );
    }

    // tollgate: its command, ports, probes and privileges.
    let tg = container(pod, "tollgate");
    let mut argv: Vec<String> = list(&tg["command"])
        .iter()
        .map(|a| string(a, "command"))
        .collect();
    argv.extend(list(&tg["args"]).iter().map(|a| string(a, "args")));
    assert!(
        argv.iter().any(|a| a == "serve"),
        "tollgate serves: {argv:?}"
    );
    let config_path = argv
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| argv.get(i + 1))
        .unwrap_or_else(|| panic!("--config PATH: {argv:?}"))
        .clone();
    let config_path = Path::new(&config_path);
    let config_dir = config_path.parent().unwrap().to_str().unwrap();
    let config_volume = volume_at(pod, tg, config_dir);
    assert_eq!(
        config_volume["configMap"]["name"].as_str(),
        cm["metadata"]["name"].as_str(),
        "the config comes from the ConfigMap"
    );
    let key = config_path.file_name().unwrap().to_str().unwrap();
    assert!(
        !cm["data"][key].is_badvalue(),
        "the ConfigMap has the key {key}"
    );

    assert_eq!(container_ports(tg), BTreeSet::from([8888, 8000, 9191]));
    let admin_bind = config["admin"]["bind"].as_str().expect("admin.bind");
    let admin_port = i64::from(port_of(admin_bind));
    assert_eq!(admin_port, 9191);
    assert!(
        !admin_bind.starts_with("127."),
        "the kubelet probes the pod IP: the admin port cannot be on loopback ({admin_bind})"
    );
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &tg[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe} path");
        assert_eq!(resolve_port(tg, &get["port"]), admin_port, "{probe} port");
    }

    let sc = &tg["securityContext"];
    assert!(
        sc["runAsNonRoot"].as_bool() == Some(true)
            || pod["securityContext"]["runAsNonRoot"].as_bool() == Some(true),
        "runAsNonRoot"
    );
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert!(
        list(&sc["capabilities"]["drop"])
            .iter()
            .any(|c| c.as_str() == Some("ALL")),
        "every capability dropped"
    );
    assert!(list(&sc["capabilities"]["add"]).is_empty(), "none added");
    assert!(
        !tg["resources"]["requests"].is_badvalue(),
        "resource requests"
    );
    assert!(
        !tg["resources"]["limits"]["memory"].is_badvalue(),
        "a memory limit"
    );

    // The store's directory is a PersistentVolumeClaim of these manifests.
    let store = config["store"]["path"].as_str().expect("store.path");
    let store_dir = Path::new(store).parent().unwrap().to_str().unwrap();
    let data = volume_at(pod, tg, store_dir);
    let claim = string(
        &data["persistentVolumeClaim"]["claimName"],
        "the store's claim",
    );
    let pvc = of_kind(&docs, "PersistentVolumeClaim")
        .into_iter()
        .find(|p| p["metadata"]["name"].as_str() == Some(claim.as_str()))
        .unwrap_or_else(|| panic!("a PersistentVolumeClaim named {claim:?}"));
    assert!(
        list(&pvc["spec"]["accessModes"])
            .iter()
            .any(|m| m.as_str() == Some("ReadWriteOnce")),
        "the store's claim is ReadWriteOnce"
    );
    // The admin token file sits on a mounted volume too.
    let token_file = config["admin"]["token_file"]
        .as_str()
        .expect("admin.token_file");
    volume_at(
        pod,
        tg,
        Path::new(token_file).parent().unwrap().to_str().unwrap(),
    );

    // Time to drain before the kill.
    let grace = config
        .get("server")
        .and_then(|s| s.get("shutdown_grace"))
        .and_then(toml::Value::as_str)
        .map_or(30, seconds);
    let termination = pod["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
    assert!(
        termination > grace as i64,
        "terminationGracePeriodSeconds {termination} must exceed shutdown_grace {grace}s"
    );

    // tollgate forwards to the Controller over the pod's loopback.
    let upstreams: BTreeSet<&str> = config["listener"]
        .as_array()
        .expect("[[listener]] tables")
        .iter()
        .filter_map(|l| l["upstream"].as_str())
        .collect();
    assert_eq!(
        upstreams,
        BTreeSet::from(["http://127.0.0.1:18000", "http://127.0.0.1:18888"])
    );
}

#[test]
fn the_kubernetes_service_and_policy_open_only_tollgates_two_ports() {
    let docs = manifests();
    let wl = workload(&docs);
    let pod = &wl["spec"]["template"]["spec"];
    let pod_labels = string_map(&wl["spec"]["template"]["metadata"]["labels"]);
    let tg = container(pod, "tollgate");

    let svc = one(&docs, "Service");
    assert!(
        selects(&string_map(&svc["spec"]["selector"]), &pod_labels),
        "the Service selects the pod"
    );
    let mut exposed = BTreeSet::new();
    for port in list(&svc["spec"]["ports"]) {
        let p = port["port"].as_i64().expect("a Service port number");
        let target = if port["targetPort"].is_badvalue() {
            p
        } else {
            resolve_port(tg, &port["targetPort"])
        };
        assert_eq!(target, p, "Service port {p} reaches tollgate's own {p}");
        exposed.insert(p);
    }
    assert_eq!(
        exposed,
        BTreeSet::from([8000, 8888]),
        "the Service exposes 8888 and 8000 only"
    );

    let policy = one(&docs, "NetworkPolicy");
    assert!(selects(
        &string_map(&policy["spec"]["podSelector"]["matchLabels"]),
        &pod_labels
    ));
    assert!(
        list(&policy["spec"]["policyTypes"])
            .iter()
            .any(|t| t.as_str() == Some("Ingress")),
        "the policy governs ingress"
    );
    let mut open_to_all = BTreeSet::new();
    for rule in list(&policy["spec"]["ingress"]) {
        let ports: Vec<i64> = list(&rule["ports"])
            .iter()
            .map(|p| p["port"].as_i64().expect("policy ports by number"))
            .collect();
        assert!(!ports.is_empty(), "every rule names its ports: {rule:?}");
        for p in &ports {
            assert!(
                ![18888, 18000].contains(p),
                "the Controller's own port {p} is opened"
            );
        }
        if list(&rule["from"]).is_empty() {
            open_to_all.extend(ports);
        }
    }
    assert_eq!(
        open_to_all,
        BTreeSet::from([8000, 8888]),
        "only tollgate's two ports are open to every pod"
    );
}

#[test]
fn the_kubernetes_config_passes_check_config_and_matches_the_shipped_layout() {
    let docs = manifests();
    let text = pod_config_text(&docs);
    let dir = tempfile::tempdir().expect("create a temp dir");
    let path = dir.path().join("tollgate.toml");
    std::fs::write(&path, &text).expect("write the config");
    assert_check_config_accepts(&path);

    // The same listeners, routes and credentials as config/telegraf-controller.toml: the pod
    // differs in paths and the admin address only.
    let pod: toml::Table = text.parse().expect("TOML");
    let host: toml::Table = read("config/telegraf-controller.toml")
        .parse()
        .expect("TOML");
    assert_eq!(
        pod["listener"], host["listener"],
        "the ConfigMap's listeners match config/telegraf-controller.toml"
    );
    assert_eq!(pod.get("server"), host.get("server"));
    assert_eq!(pod.get("log"), host.get("log"));
}
