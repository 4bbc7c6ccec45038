//! The deploy files agree with each other and with the services: Compose
//! runs every service against NATS, Redis and the collector by name, each
//! on the port Prometheus scrapes; everything mounted or built exists; the
//! collector hands traces to Jaeger. Docker is not needed to check this.

use herald_testkit::deploy::{dir as deploy_dir, env_of, yaml};

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
