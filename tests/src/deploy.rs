//! The files under `deploy/` (Compose, Prometheus, the collector), parsed
//! as the tools that read them would.

use std::{collections::BTreeMap, path::PathBuf};

/// The repository's `deploy/` directory.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// A YAML file under `deploy/`, with `<<: *anchor` merge keys resolved as
/// Compose resolves them (the YAML reader does).
pub fn yaml(path: &str) -> serde_json::Value {
    let text =
        std::fs::read_to_string(dir().join(path)).unwrap_or_else(|e| panic!("deploy/{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("deploy/{path}: {e}"))
}

/// A Compose service's environment, whether written as a map or a list.
pub fn env_of(service: &serde_json::Value) -> BTreeMap<String, String> {
    let env = &service["environment"];
    if let Some(map) = env.as_object() {
        return map
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => serde_saphyr::to_string(other).unwrap().trim().to_string(),
                    },
                )
            })
            .collect();
    }
    env.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str()?.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Each alert of `deploy/prometheus/alerts.yaml` with the Herald metrics
/// its expression names.
pub fn alert_metrics() -> Vec<(String, Vec<String>)> {
    let rules = yaml("prometheus/alerts.yaml");
    let mut out = Vec::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let alert = rule["alert"].as_str().expect("alert").to_string();
            let expr = rule["expr"].as_str().expect("expr");
            out.push((alert, metric_names(expr)));
        }
    }
    out
}

/// Herald metric names in a PromQL expression.
pub fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("herald_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_metrics_in_an_expression() {
        assert_eq!(
            super::metric_names(
                "sum(rate(herald_a_total{x=\"herald\"}[5m])) / herald_b_bucket > 0"
            ),
            ["herald_a_total", "herald_b_bucket"]
        );
    }
}
