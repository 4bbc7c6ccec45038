//! The deploy files agree with each other and with the services: Compose
//! runs every service against NATS, Redis and the collector by name, each
//! on the port Prometheus scrapes; everything mounted or built exists; the
//! collector hands traces to Jaeger. The Kubernetes manifests build, and
//! every name, key, port and label they refer to is there. Neither Docker
//! nor a cluster is needed to check this.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use herald_testkit::deploy::{
    Object, build, dir as deploy_dir, documents, env_of, find, herald_env_problems, k8s_dir,
    pod_template, selects, yaml, yaml_files,
};
use serde_json::Value;

#[test]
fn the_deploy_files_parse_and_point_at_each_other() {
    let compose = yaml("compose.yaml");
    let services = compose["services"].as_object().expect("services");
    let service = |name: &str| {
        services
            .get(name)
            .unwrap_or_else(|| panic!("compose has no {name}"))
    };
    for name in [
        "nats",
        "redis",
        "otel-collector",
        "jaeger",
        "prometheus",
        "intake",
        "router",
        "delivery",
        "sla",
        "escalation",
        "broadcast",
    ] {
        service(name);
    }
    // NATS runs the configuration `herald setup` writes (JetStream, TLS,
    // one user per identity), Redis its ACL, and both wait for it.
    let nats_cmd = serde_saphyr::to_string(&service("nats")["command"]).unwrap();
    assert!(nats_cmd.contains("nats-server.conf"), "{nats_cmd}");
    let redis_cmd = serde_saphyr::to_string(&service("redis")["command"]).unwrap();
    assert!(redis_cmd.contains("--aclfile"), "{redis_cmd}");
    let setup_cmd = serde_saphyr::to_string(&service("setup")["command"]).unwrap();
    assert!(setup_cmd.contains("herald setup"), "{setup_cmd}");
    assert!(setup_cmd.contains("--store-dir /data"), "{setup_cmd}");
    for waits in ["nats", "redis"] {
        assert_eq!(
            service(waits)["depends_on"]["setup"]["condition"].as_str(),
            Some("service_completed_successfully"),
            "{waits}"
        );
    }

    // Every file a service mounts from the repository is there.
    for (name, svc) in services {
        for volume in svc["volumes"].as_array().into_iter().flatten() {
            if let Some(src) = volume.as_str().and_then(|v| v.split(':').next())
                && src.starts_with('.')
            {
                assert!(
                    deploy_dir().join(src).exists(),
                    "{name:?} mounts {src}, which is not in deploy/"
                );
            }
        }
    }

    // The Herald services speak to NATS, Redis and the collector by name,
    // and expose the ports Prometheus scrapes.
    let prometheus = yaml("prometheus/prometheus.yml");
    let targets = serde_saphyr::to_string(&prometheus["scrape_configs"]).unwrap();
    for (name, http_key) in [
        ("intake", "HERALD_INTAKE_HTTP_ADDR"),
        ("router", "HERALD_ROUTER_HTTP_ADDR"),
        ("delivery", "HERALD_DELIVERY_HTTP_ADDR"),
        ("sla", "HERALD_SLA_HTTP_ADDR"),
        ("escalation", "HERALD_ESCALATION_HTTP_ADDR"),
        ("broadcast", "HERALD_BROADCAST_HTTP_ADDR"),
    ] {
        let svc = service(name);
        let env = env_of(svc);
        assert_eq!(env["HERALD_NATS_URL"], "nats://nats:4222", "{name}");
        assert!(env.contains_key("HERALD_NATS_CREDENTIALS_DIR"), "{name}");
        assert!(env.contains_key("HERALD_NATS_TLS_CA_FILE"), "{name}");
        assert!(env.contains_key("HERALD_REDIS_CREDENTIALS_DIR"), "{name}");
        assert_eq!(
            svc["depends_on"]["provision"]["condition"].as_str(),
            Some("service_completed_successfully"),
            "{name} starts before the streams are declared"
        );
        assert_eq!(env["HERALD_REDIS_URL"], "redis://redis:6379", "{name}");
        assert_eq!(
            env["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://otel-collector:4317",
            "{name}"
        );
        let port = env[http_key].rsplit(':').next().unwrap().to_string();
        assert!(
            targets.contains(&format!("{name}:{port}")),
            "Prometheus does not scrape {name}:{port}: {targets}"
        );
        let dockerfile = svc["build"]["dockerfile"].as_str().expect("dockerfile");
        let context = svc["build"]["context"].as_str().expect("build context");
        assert!(
            deploy_dir().join(context).join(dockerfile).exists(),
            "{name}: {context}/{dockerfile}"
        );
    }
    assert!(
        serde_saphyr::to_string(&prometheus["rule_files"])
            .unwrap()
            .contains("alerts.yaml")
    );

    // The collector takes OTLP and hands traces to Jaeger.
    let collector = yaml("otel-collector.yaml");
    assert!(!collector["receivers"]["otlp"]["protocols"]["grpc"].is_null());
    let traces = &collector["service"]["pipelines"]["traces"];
    let receivers = serde_saphyr::to_string(&traces["receivers"]).unwrap();
    assert!(receivers.contains("otlp"), "{receivers}");
    let exporters = traces["exporters"].as_array().expect("trace exporters");
    assert!(!exporters.is_empty());
    for e in exporters {
        let e = e.as_str().unwrap();
        assert!(
            !collector["exporters"][e].is_null(),
            "pipeline uses exporter {e}, which is not defined"
        );
    }
    let to_jaeger = serde_saphyr::to_string(&collector["exporters"]).unwrap();
    assert!(to_jaeger.contains("jaeger:4317"), "{to_jaeger}");
}

// ---------------------------------------------------------------------------
// Kubernetes (deploy/k8s): every overlay builds, and every reference in it
// holds, without a cluster or kubectl.

/// The six services with the HTTP port each serves health and metrics on.
const SERVICES: [(&str, u16); 6] = [
    ("intake", 9101),
    ("router", 9102),
    ("delivery", 9103),
    ("sla", 9104),
    ("escalation", 9105),
    ("broadcast", 9106),
];

/// The keys of the Secret `herald-secrets`: the files `herald setup`
/// writes, each under its own name (`kubectl create secret generic
/// --from-file` on its folders; see deploy/k8s/README.md). Checked against
/// what setup really writes below.
const SETUP_SECRET_KEYS: [&str; 26] = [
    "nats-server.conf",
    "ca.pem",
    "server.pem",
    "server-key.pem",
    "users.acl",
    "intake.nk",
    "router.nk",
    "delivery.nk",
    "broadcast.nk",
    "sla.nk",
    "escalation.nk",
    "publisher.nk",
    "coordinator.nk",
    "operator.nk",
    "directory.nk",
    "replay.nk",
    "provision.nk",
    "dpo.nk",
    "approver.nk",
    "editor.nk",
    "intake.password",
    "router.password",
    "delivery.password",
    "broadcast.password",
    "sla.password",
    "escalation.password",
];

/// The keys of the Secret `herald-app-secrets` (made by hand, README),
/// each with a value of the shape the service expects, so the
/// configuration a pod would get can be loaded here.
const APP_SECRETS: [(&str, &str); 9] = [
    (
        "escalation-survey-secret",
        "sample-survey-secret-0123456789",
    ),
    ("broadcast-link-secret", "sample-link-secret-0123456789"),
    (
        "intake-api-keys",
        r#"[{ system = "crm", key_sha256 = ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"] }]"#,
    ),
    ("delivery-smtp-url", "smtp://mail.example.org:25"),
    ("delivery-provider-account", "AC0123"),
    ("delivery-provider-token", "sample-provider-token"),
    ("delivery-provider-signing-key", "sample-signing-key"),
    ("delivery-inbound-email-signing-key", "sample-inbound-key"),
    ("approvals-signing-key", "sample-approvals-key-0123"),
];

fn k8s_builds() -> Vec<(&'static str, Vec<Object>)> {
    ["base", "overlays/dev", "overlays/prod"]
        .into_iter()
        .map(|d| {
            let objects = build(&k8s_dir().join(d)).unwrap_or_else(|e| panic!("{d}: {e}"));
            (d, objects)
        })
        .collect()
}

#[test]
fn the_kubernetes_files_parse_and_each_is_used() {
    let builds = k8s_builds();
    let used: BTreeSet<PathBuf> = builds
        .iter()
        .flat_map(|(_, objects)| objects.iter().map(|o| o.file.clone()))
        .collect();
    let files = yaml_files(&k8s_dir());
    assert!(files.len() > 10, "{files:?}");
    for file in files {
        let docs = documents(&file).unwrap();
        assert!(!docs.is_empty(), "{}: no document", file.display());
        for d in &docs {
            assert!(d["apiVersion"].is_string(), "{}: {d}", file.display());
            assert!(d["kind"].is_string(), "{}: {d}", file.display());
            assert_ne!(d["kind"], "Secret", "{}: key material", file.display());
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for needle in ["-----BEGIN", "PRIVATE KEY"] {
            assert!(!text.contains(needle), "{}: {needle}", file.display());
        }
        if file.file_name().is_some_and(|n| n == "kustomization.yaml") {
            assert_eq!(docs[0]["kind"], "Kustomization", "{}", file.display());
        } else {
            assert!(
                used.contains(&file),
                "{} is listed by no kustomization",
                file.display()
            );
        }
    }
}

#[test]
fn herald_setup_writes_the_keys_the_secret_is_made_of() {
    let dir = tempfile::tempdir().unwrap();
    let layout = herald_setup::Layout::new(dir.path());
    herald_setup::write(
        &layout,
        &herald_setup::Options {
            store_dir: Some("/data".into()),
            tls_names: vec!["nats".into()],
            redis_prefix: "herald:".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let mut names = Vec::new();
    for file in walk(dir.path()) {
        names.push(file.file_name().unwrap().to_string_lossy().into_owned());
    }
    // identities.toml stays beside the Secret: no pod needs it.
    names.retain(|n| n != "identities.toml");
    let written: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(
        written.len(),
        names.len(),
        "two files share a name: {names:?}"
    );
    assert_eq!(written, SETUP_SECRET_KEYS.into_iter().collect());
    // The server configuration names its files by the folder setup ran
    // on, which the manifests mount at /var/lib/herald/secrets.
    let conf = std::fs::read_to_string(layout.server_config()).unwrap();
    for f in [layout.tls_cert(), layout.tls_key()] {
        assert!(conf.contains(&f.display().to_string()), "{conf}");
    }
    assert!(conf.contains("store_dir: \"/data\""), "{conf}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry
                .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
                .path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn every_kubernetes_build_holds_together() {
    let mut report = Vec::new();
    for (dir, objects) in k8s_builds() {
        let problems = k8s_problems(&objects);
        if !problems.is_empty() {
            report.push(format!("deploy/k8s/{dir}:\n  {}", problems.join("\n  ")));
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
}

#[test]
fn dev_is_one_of_each_and_prod_is_replicated() {
    let builds = k8s_builds();
    let of = |dir: &str| &builds.iter().find(|(d, _)| *d == dir).unwrap().1;
    let replicas = |objects: &[Object], kind: &str, name: &str| {
        find(objects, kind, name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
            .value["spec"]["replicas"]
            .as_u64()
    };
    let stream_replicas = |objects: &[Object]| {
        find(objects, "ConfigMap", "herald-config").unwrap().value["data"]["HERALD_NATS_REPLICAS"]
            .as_str()
            .map(str::to_string)
    };

    let dev = of("overlays/dev");
    assert_eq!(replicas(dev, "StatefulSet", "nats"), Some(1));
    assert_eq!(stream_replicas(dev).as_deref(), Some("1"));
    for (svc, _) in SERVICES {
        assert_eq!(replicas(dev, "Deployment", svc), Some(1), "{svc}");
    }

    let prod = of("overlays/prod");
    assert_eq!(replicas(prod, "StatefulSet", "nats"), Some(3));
    assert_eq!(stream_replicas(prod).as_deref(), Some("3"));
    assert_eq!(replicas(prod, "StatefulSet", "redis"), Some(1));
    for (svc, _) in SERVICES {
        let hpa = find(prod, "HorizontalPodAutoscaler", svc);
        let least = match hpa {
            Some(h) => h.value["spec"]["minReplicas"].as_u64(),
            None => replicas(prod, "Deployment", svc),
        };
        assert!(least >= Some(2), "{svc}: {least:?}");
    }
    for scaled in ["router", "delivery"] {
        assert!(
            find(prod, "HorizontalPodAutoscaler", scaled).is_some(),
            "{scaled}"
        );
    }

    // Each server routes to every server by its stable name under the
    // headless Service, in a cluster named herald.
    let nats = find(prod, "StatefulSet", "nats").unwrap();
    let conf = nats_config_text(prod, nats).expect("the prod NATS configuration");
    let service = nats.value["spec"]["serviceName"].as_str().unwrap();
    let ns = nats.value["metadata"]["namespace"].as_str().unwrap();
    assert!(conf.contains("name: herald"), "{conf}");
    assert!(conf.contains("server_name: $POD_NAME"), "{conf}");
    for i in 0..3 {
        let route = format!("nats://nats-{i}.{service}.{ns}.svc.cluster.local:6222");
        assert!(conf.contains(&route), "{route} missing from {conf}");
    }
    assert_eq!(
        conf.matches("nats://").count(),
        3,
        "one route per server: {conf}"
    );
}

#[test]
fn the_kubernetes_checks_catch_broken_references() {
    let (_, base) = k8s_builds().remove(0);
    assert!(k8s_problems(&base).is_empty());
    let breakages: [Breakage; 11] = [
        ("secret key", |o| {
            let d = deployment(o, "router");
            d["spec"]["template"]["spec"]["volumes"][0]["secret"]["items"][0]["key"] =
                "routr.nk".into();
        }),
        ("probe port", |o| {
            let d = deployment(o, "sla");
            d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] =
                "metrics".into();
        }),
        ("service", |o| {
            o.retain(|x| !x.is("Service", "delivery"));
        }),
        ("service selector", |o| {
            let s = o.iter_mut().find(|x| x.is("Service", "delivery")).unwrap();
            s.value["spec"]["selector"]["app.kubernetes.io/name"] = "deliver".into();
        }),
        ("security context", |o| {
            let d = deployment(o, "intake");
            d["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] =
                false.into();
        }),
        ("limits", |o| {
            let d = deployment(o, "broadcast");
            d["spec"]["template"]["spec"]["containers"][0]["resources"]
                .as_object_mut()
                .unwrap()
                .remove("limits");
        }),
        ("herald variable", |o| {
            let d = deployment(o, "escalation");
            d["spec"]["template"]["spec"]["containers"][0]["env"][0]["name"] =
                "HERALD_ESCALATION_HTTP_ADRESS".into();
        }),
        ("config map key", |o| {
            let c = o
                .iter_mut()
                .find(|x| x.is("ConfigMap", "herald-config"))
                .unwrap();
            c.value["data"]
                .as_object_mut()
                .unwrap()
                .remove("HERALD_NATS_CREDENTIALS_DIR");
        }),
        ("network policy", |o| {
            let n = o
                .iter_mut()
                .find(|x| x.is("NetworkPolicy", "redis-clients"))
                .unwrap();
            n.value["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] =
                "valkey".into();
        }),
        ("app secret", |o| {
            let d = deployment(o, "broadcast");
            d["spec"]["template"]["spec"]["containers"][0]["env"][1]["valueFrom"]["secretKeyRef"]
                ["key"] = "link-secret".into();
        }),
        ("nats configuration", |o| {
            let n = o.iter_mut().find(|x| x.is("StatefulSet", "nats")).unwrap();
            n.value["spec"]["template"]["spec"]["volumes"][0]["secret"]["items"][0]["path"] =
                "nats.conf".into();
        }),
    ];
    for (what, breaks) in breakages {
        let mut broken = base.clone();
        breaks(&mut broken);
        assert!(
            !k8s_problems(&broken).is_empty(),
            "breaking the {what} went unnoticed"
        );
    }
}

/// What a check should notice, and how to break it.
type Breakage = (&'static str, fn(&mut Vec<Object>));

fn deployment<'a>(objects: &'a mut [Object], name: &str) -> &'a mut Value {
    &mut objects
        .iter_mut()
        .find(|o| o.is("Deployment", name))
        .unwrap_or_else(|| panic!("no Deployment {name}"))
        .value
}

/// Where a file at `path` in `container` comes from: the Secret or
/// ConfigMap (`kind`, name) and key mounted there.
fn mounted_file(spec: &Value, container: &Value, path: &str) -> Option<(String, String, String)> {
    for m in container["volumeMounts"].as_array().into_iter().flatten() {
        let Some(rest) = m["mountPath"]
            .as_str()
            .and_then(|at| path.strip_prefix(at))
            .and_then(|r| r.strip_prefix('/'))
        else {
            continue;
        };
        let Some(volume) = volumes(spec).into_iter().find(|v| v["name"] == m["name"]) else {
            continue;
        };
        let mut sources = vec![
            ("Secret", &volume["secret"], "secretName"),
            ("ConfigMap", &volume["configMap"], "name"),
        ];
        for s in volume["projected"]["sources"]
            .as_array()
            .into_iter()
            .flatten()
        {
            sources.push(("Secret", &s["secret"], "name"));
            sources.push(("ConfigMap", &s["configMap"], "name"));
        }
        for (kind, source, name_key) in sources {
            for item in source["items"].as_array().into_iter().flatten() {
                if item["path"] == rest {
                    return Some((
                        kind.to_string(),
                        source[name_key].as_str().unwrap_or("").to_string(),
                        item["key"].as_str().unwrap_or("").to_string(),
                    ));
                }
            }
        }
    }
    None
}

fn volumes(spec: &Value) -> Vec<&Value> {
    spec["volumes"].as_array().into_iter().flatten().collect()
}

/// The text of the configuration NATS is started with, when it is a
/// ConfigMap key (the prod cluster); `None` when it is the generated file.
fn nats_config_text(objects: &[Object], nats: &Object) -> Option<String> {
    let spec = &nats.value["spec"]["template"]["spec"];
    let c = &spec["containers"][0];
    let conf = flag_value(c, "-c")?;
    let (kind, name, key) = mounted_file(spec, c, &conf)?;
    if kind != "ConfigMap" {
        return None;
    }
    find(objects, "ConfigMap", &name)?.value["data"][&key]
        .as_str()
        .map(str::to_string)
}

/// The argument after `flag` on a container's command line.
fn flag_value(container: &Value, flag: &str) -> Option<String> {
    let args: Vec<&str> = container["command"]
        .as_array()
        .into_iter()
        .chain(container["args"].as_array())
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let at = args.iter().position(|a| *a == flag)?;
    args.get(at + 1).map(|s| s.to_string())
}

/// The container port a probe or Service names (by name or number).
fn resolve_port(container: &Value, port: &Value) -> Option<u64> {
    container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == *port || p["containerPort"] == *port)
        .and_then(|p| p["containerPort"].as_u64())
}

/// Everything wrong with a built set of manifests.
fn k8s_problems(objects: &[Object]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut p = |s: String| problems.push(s);
    let setup_keys: BTreeSet<&str> = SETUP_SECRET_KEYS.into_iter().collect();
    let app_secrets: BTreeMap<&str, &str> = APP_SECRETS.into_iter().collect();
    let config_map = |name: &str| find(objects, "ConfigMap", name);
    let pods: Vec<(&Object, &Value)> = objects
        .iter()
        .filter_map(|o| pod_template(o).map(|t| (o, t)))
        .collect();

    let mut seen = BTreeSet::new();
    for o in objects {
        if !seen.insert((o.kind().to_string(), o.name().to_string())) {
            p(format!("{} {} is defined twice", o.kind(), o.name()));
        }
    }

    // Each service: a Deployment probed on its HTTP port, a Service in
    // front of that port, a disruption budget.
    for (svc, port) in SERVICES {
        let Some(d) = find(objects, "Deployment", svc) else {
            p(format!("no Deployment {svc}"));
            continue;
        };
        let template = &d.value["spec"]["template"];
        let c = &template["spec"]["containers"][0];
        if c["image"] != "herald:local" {
            p(format!("{svc}: image {}", c["image"]));
        }
        if c["command"] != serde_json::json!([format!("herald-{svc}")]) {
            p(format!("{svc}: command {}", c["command"]));
        }
        let addr_var = format!("HERALD_{}_HTTP_ADDR", svc.to_ascii_uppercase());
        let addr = c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == addr_var.as_str())
            .and_then(|e| e["value"].as_str());
        if addr != Some(format!("0.0.0.0:{port}").as_str()) {
            p(format!("{svc}: {addr_var} is {addr:?}"));
        }
        for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
            let get = &c[probe]["httpGet"];
            if get["path"] != path {
                p(format!(
                    "{svc}: {probe} asks {} rather than {path}",
                    get["path"]
                ));
            }
            if resolve_port(c, &get["port"]) != Some(u64::from(port)) {
                p(format!(
                    "{svc}: {probe} port {} is not its declared HTTP port {port}",
                    get["port"]
                ));
            }
        }
        match find(objects, "Service", svc) {
            None => p(format!("no Service {svc}")),
            Some(s) => {
                let targets: Vec<Option<u64>> = s.value["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|sp| resolve_port(c, &sp["targetPort"]))
                    .collect();
                if !targets.contains(&Some(u64::from(port))) {
                    p(format!("Service {svc} does not target port {port}"));
                }
            }
        }
        match find(objects, "PodDisruptionBudget", svc) {
            None => p(format!("no PodDisruptionBudget {svc}")),
            Some(b) => {
                let spec = &b.value["spec"];
                if spec["minAvailable"].is_null() == spec["maxUnavailable"].is_null() {
                    p(format!(
                        "PodDisruptionBudget {svc}: set one of minAvailable, maxUnavailable"
                    ));
                }
            }
        }
        // Connects as itself: its own key and password are where its
        // configuration looks, and so is the CA.
        let data = config_map("herald-config").map(|m| &m.value["data"]);
        let setting = |key: &str| {
            data.and_then(|d| d[key].as_str())
                .unwrap_or_default()
                .to_string()
        };
        for file in [
            format!("{}/{svc}.nk", setting("HERALD_NATS_CREDENTIALS_DIR")),
            format!("{}/{svc}.password", setting("HERALD_REDIS_CREDENTIALS_DIR")),
            setting("HERALD_NATS_TLS_CA_FILE"),
        ] {
            if mounted_file(&template["spec"], c, &file).is_none() {
                p(format!("{svc}: nothing is mounted at {file}"));
            }
        }
    }

    // Every workload: resources, a locked-down security context, and only
    // volumes, keys and config maps that exist.
    for (o, template) in &pods {
        let what = format!("{} {}", o.kind(), o.name());
        let spec = &template["spec"];
        let labels = &template["metadata"]["labels"];
        if o.kind() != "Job" && !selects(&o.value["spec"]["selector"], labels) {
            p(format!("{what}: its selector does not select its pods"));
        }
        let claims: Vec<&Value> = o.value["spec"]["volumeClaimTemplates"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| &c["metadata"]["name"])
            .collect();
        for v in volumes(spec) {
            let mut sources = vec![
                ("Secret", &v["secret"], "secretName"),
                ("ConfigMap", &v["configMap"], "name"),
            ];
            for s in v["projected"]["sources"].as_array().into_iter().flatten() {
                sources.push(("Secret", &s["secret"], "name"));
                sources.push(("ConfigMap", &s["configMap"], "name"));
            }
            for (kind, source, name_key) in sources {
                if source.is_null() {
                    continue;
                }
                let name = source[name_key].as_str().unwrap_or("");
                let items: Vec<&str> = source["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i["key"].as_str())
                    .collect();
                if items.is_empty() {
                    p(format!(
                        "{what}: volume {} mounts all of {name}: name the keys",
                        v["name"]
                    ));
                }
                if kind == "Secret" {
                    if name != "herald-secrets" {
                        p(format!("{what}: mounts Secret {name}, which nothing makes"));
                    }
                    for k in items.iter().filter(|k| !setup_keys.contains(*k)) {
                        p(format!("{what}: herald-secrets has no key {k}"));
                    }
                } else {
                    match config_map(name) {
                        None => p(format!("{what}: no ConfigMap {name}")),
                        Some(m) => {
                            for k in items.iter().filter(|k| m.value["data"][**k].is_null()) {
                                p(format!("{what}: ConfigMap {name} has no key {k}"));
                            }
                        }
                    }
                }
            }
        }
        let pod_non_root = spec["securityContext"]["runAsNonRoot"] == true;
        for c in spec["containers"].as_array().into_iter().flatten() {
            let what = format!("{what} container {}", c["name"]);
            for (part, key) in [
                ("requests", "cpu"),
                ("requests", "memory"),
                ("limits", "cpu"),
                ("limits", "memory"),
            ] {
                if c["resources"][part][key].is_null() {
                    p(format!("{what}: no {part}.{key}"));
                }
            }
            let sc = &c["securityContext"];
            if sc["allowPrivilegeEscalation"] != false
                || sc["readOnlyRootFilesystem"] != true
                || !(pod_non_root || sc["runAsNonRoot"] == true)
                || !sc["capabilities"]["drop"]
                    .as_array()
                    .is_some_and(|d| d.contains(&"ALL".into()))
            {
                p(format!(
                    "{what}: must run as non-root, read-only, without privilege escalation or capabilities: {sc}"
                ));
            }
            for m in c["volumeMounts"].as_array().into_iter().flatten() {
                let declared = volumes(spec).into_iter().find(|v| v["name"] == m["name"]);
                match declared {
                    None if !claims.contains(&&m["name"]) => p(format!(
                        "{what}: mounts {}, which is not declared",
                        m["name"]
                    )),
                    Some(v)
                        if (!v["secret"].is_null() || !v["projected"].is_null())
                            && m["readOnly"] != true =>
                    {
                        p(format!(
                            "{what}: secrets at {} are not read-only",
                            m["mountPath"]
                        ))
                    }
                    _ => {}
                }
            }

            // The configuration a Herald container gets, as Herald reads it.
            let mut vars = Vec::new();
            for from in c["envFrom"].as_array().into_iter().flatten() {
                if !from["secretRef"].is_null() {
                    p(format!("{what}: takes a whole Secret as variables"));
                }
                let name = from["configMapRef"]["name"].as_str().unwrap_or("");
                match config_map(name) {
                    None => p(format!("{what}: no ConfigMap {name}")),
                    Some(m) => {
                        for (k, v) in m.value["data"].as_object().into_iter().flatten() {
                            vars.push((k.clone(), v.as_str().unwrap_or("").to_string()));
                        }
                    }
                }
            }
            for e in c["env"].as_array().into_iter().flatten() {
                let name = e["name"].as_str().unwrap_or("").to_string();
                let secret = &e["valueFrom"]["secretKeyRef"];
                let value = if let Some(v) = e["value"].as_str() {
                    v.to_string()
                } else if !secret.is_null() {
                    let key = secret["key"].as_str().unwrap_or("");
                    if secret["name"] != "herald-app-secrets" {
                        p(format!(
                            "{what}: {name} from Secret {}, which nothing makes",
                            secret["name"]
                        ));
                    }
                    match app_secrets.get(key) {
                        Some(sample) => sample.to_string(),
                        None => {
                            p(format!(
                                "{what}: {name}: herald-app-secrets has no key {key}"
                            ));
                            continue;
                        }
                    }
                } else if e["valueFrom"]["fieldRef"].is_object() {
                    continue;
                } else {
                    p(format!(
                        "{what}: {name} has no value this check understands"
                    ));
                    continue;
                };
                vars.retain(|(k, _)| *k != name);
                vars.push((name, value));
            }
            if c["image"] == "herald:local" {
                for problem in herald_env_problems(&vars) {
                    p(format!("{what}: {problem}"));
                }
            }
        }
    }

    // Services select pods, on ports those pods declare.
    for s in objects.iter().filter(|o| o.kind() == "Service") {
        let selected: Vec<&Value> = pods
            .iter()
            .map(|(_, t)| *t)
            .filter(|t| {
                selects(
                    &serde_json::json!({"matchLabels": s.value["spec"]["selector"]}),
                    &t["metadata"]["labels"],
                )
            })
            .collect();
        if selected.is_empty() {
            p(format!("Service {} selects no pod", s.name()));
        }
        for sp in s.value["spec"]["ports"].as_array().into_iter().flatten() {
            let found = selected.iter().any(|t| {
                t["spec"]["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| resolve_port(c, &sp["targetPort"]).is_some())
            });
            if !found {
                p(format!(
                    "Service {}: no pod declares port {}",
                    s.name(),
                    sp["targetPort"]
                ));
            }
        }
    }
    for b in objects.iter().filter(|o| o.kind() == "PodDisruptionBudget") {
        if !pods
            .iter()
            .any(|(_, t)| selects(&b.value["spec"]["selector"], &t["metadata"]["labels"]))
        {
            p(format!("PodDisruptionBudget {} selects no pod", b.name()));
        }
    }
    for set in objects.iter().filter(|o| o.kind() == "StatefulSet") {
        let service = set.value["spec"]["serviceName"].as_str().unwrap_or("");
        if find(objects, "Service", service).is_none_or(|s| s.value["spec"]["clusterIP"] != "None")
        {
            p(format!(
                "StatefulSet {}: no headless Service {service}",
                set.name()
            ));
        }
    }

    // Autoscalers scale what exists, on the lag of that service's consumers.
    for h in objects
        .iter()
        .filter(|o| o.kind() == "HorizontalPodAutoscaler")
    {
        let target = &h.value["spec"]["scaleTargetRef"];
        let kind = target["kind"].as_str().unwrap_or("");
        let name = target["name"].as_str().unwrap_or("");
        match find(objects, kind, name) {
            None => p(format!(
                "HorizontalPodAutoscaler {} scales {kind} {name}, which does not exist",
                h.name()
            )),
            Some(d) if !d.value["spec"]["replicas"].is_null() => p(format!(
                "{kind} {name} sets replicas, which every apply would reset under its autoscaler"
            )),
            Some(_) => {}
        }
        let metrics = h.value["spec"]["metrics"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if metrics.is_empty() {
            p(format!(
                "HorizontalPodAutoscaler {} has no metrics",
                h.name()
            ));
        }
        for m in metrics {
            let metric = &m["external"]["metric"];
            let consumer = metric["selector"]["matchLabels"]["consumer"]
                .as_str()
                .unwrap_or("");
            if metric["name"] != "herald_consumer_pending_messages"
                || !consumer.starts_with(&format!("{name}-"))
            {
                p(format!(
                    "HorizontalPodAutoscaler {}: not the lag of a {name} consumer: {m}",
                    h.name()
                ));
            }
        }
    }

    // Network policies select pods that exist, and open ports they declare.
    for n in objects.iter().filter(|o| o.kind() == "NetworkPolicy") {
        let selector = &n.value["spec"]["podSelector"];
        let everything = selector.as_object().is_some_and(|s| s.is_empty());
        let selected: Vec<&Value> = pods
            .iter()
            .map(|(_, t)| *t)
            .filter(|t| everything || selects(selector, &t["metadata"]["labels"]))
            .collect();
        if selected.is_empty() {
            p(format!("NetworkPolicy {} selects no pod", n.name()));
        }
        for rule in n.value["spec"]["ingress"].as_array().into_iter().flatten() {
            for from in rule["from"].as_array().into_iter().flatten() {
                let peer = &from["podSelector"];
                if !peer.is_null()
                    && !pods
                        .iter()
                        .any(|(_, t)| selects(peer, &t["metadata"]["labels"]))
                {
                    p(format!(
                        "NetworkPolicy {}: lets in from pods that do not exist: {peer}",
                        n.name()
                    ));
                }
            }
            for port in rule["ports"].as_array().into_iter().flatten() {
                let declared = selected.iter().any(|t| {
                    t["spec"]["containers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| resolve_port(c, &port["port"]).is_some())
                });
                if !declared {
                    p(format!(
                        "NetworkPolicy {}: no selected pod declares port {}",
                        n.name(),
                        port["port"]
                    ));
                }
            }
        }
    }

    // NATS runs the configuration setup wrote (or one that includes it),
    // with the files that configuration names and its store on a claim;
    // Redis its ACL, append-only.
    match find(objects, "StatefulSet", "nats") {
        None => p("no StatefulSet nats".into()),
        Some(nats) => {
            let spec = &nats.value["spec"]["template"]["spec"];
            let c = &spec["containers"][0];
            let secrets = "/var/lib/herald/secrets";
            let mut wanted = BTreeSet::from([
                format!("{secrets}/nats-server.conf"),
                format!("{secrets}/tls/server.pem"),
                format!("{secrets}/tls/server-key.pem"),
            ]);
            match flag_value(c, "-c") {
                None => p("nats: started without -c".into()),
                Some(conf) => {
                    if let Some(text) = nats_config_text(objects, nats) {
                        let dir = conf.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                        for line in text.lines().map(str::trim) {
                            if let Some(inc) = line.strip_prefix("include ") {
                                let inc = inc.trim().trim_matches('"').trim_start_matches("./");
                                wanted.insert(format!("{dir}/{inc}"));
                            }
                            if let Some((_, file)) = line.split_once("_file:") {
                                wanted.insert(file.trim().trim_matches('"').to_string());
                            }
                        }
                        if !text.contains("include ./nats-server.conf") {
                            p("nats: the cluster configuration does not include the generated one".into());
                        }
                    }
                    wanted.insert(conf);
                }
            }
            for file in wanted {
                if mounted_file(spec, c, &file).is_none() {
                    p(format!("nats: nothing is mounted at {file}"));
                }
            }
            let data_on_claim = c["volumeMounts"].as_array().into_iter().flatten().any(|m| {
                m["mountPath"] == "/data"
                    && nats.value["spec"]["volumeClaimTemplates"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|t| t["metadata"]["name"] == m["name"])
            });
            if !data_on_claim {
                p("nats: the JetStream store (/data) is not on a volume claim".into());
            }
        }
    }
    match find(objects, "StatefulSet", "redis") {
        None => p("no StatefulSet redis".into()),
        Some(redis) => {
            let spec = &redis.value["spec"]["template"]["spec"];
            let c = &spec["containers"][0];
            if flag_value(c, "--appendonly").as_deref() != Some("yes") {
                p("redis: not append-only".into());
            }
            match flag_value(c, "--aclfile") {
                Some(acl) if mounted_file(spec, c, &acl).is_some() => {}
                other => p(format!("redis: ACL file {other:?} is not mounted")),
            }
        }
    }
    match find(objects, "Job", "provision") {
        None => p("no Job provision".into()),
        Some(job) => {
            let spec = &job.value["spec"]["template"]["spec"];
            let c = &spec["containers"][0];
            if c["command"] != serde_json::json!(["herald", "provision"]) {
                p(format!("provision: command {}", c["command"]));
            }
            let dir = config_map("herald-config")
                .and_then(|m| m.value["data"]["HERALD_NATS_CREDENTIALS_DIR"].as_str())
                .unwrap_or("");
            if mounted_file(spec, c, &format!("{dir}/provision.nk")).is_none() {
                p("provision: its NATS key is not mounted".into());
            }
        }
    }
    problems
}
