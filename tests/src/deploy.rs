//! The files under `deploy/` (Compose, Prometheus, the collector, the
//! Kubernetes manifests), parsed as the tools that read them would.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde_json::Value;

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

/// `deploy/k8s/`, the Kubernetes manifests.
pub fn k8s_dir() -> PathBuf {
    dir().join("k8s")
}

/// Every YAML file under `dir`, recursively, in a stable order.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries =
            std::fs::read_dir(&d).unwrap_or_else(|e| panic!("reading {}: {e}", d.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("reading {}: {e}", d.display()))
                .path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Every document of a YAML file (`---` between them), empty ones skipped.
pub fn documents(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_saphyr::from_multiple::<Value>(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// One Kubernetes object and the file it came from.
#[derive(Debug, Clone)]
pub struct Object {
    pub file: PathBuf,
    pub value: Value,
}

impl Object {
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("")
    }

    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("")
    }

    pub fn is(&self, kind: &str, name: &str) -> bool {
        self.kind() == kind && self.name() == name
    }
}

/// The first object of `kind` named `name`.
pub fn find<'a>(objects: &'a [Object], kind: &str, name: &str) -> Option<&'a Object> {
    objects.iter().find(|o| o.is(kind, name))
}

/// What a kustomization directory builds to, for the features these
/// manifests use: `resources` (files and directories with a
/// kustomization of their own), `namespace`, `labels` (on metadata only),
/// `replicas`, and JSON 6902 `patches` with a `target`. Anything else is
/// refused rather than ignored, and so is a file or patch target that is
/// not there, or a patch path the target lacks.
pub fn build(dir: &Path) -> Result<Vec<Object>, String> {
    let file = dir.join("kustomization.yaml");
    let mut docs = documents(&file)?;
    if docs.len() != 1 {
        return Err(format!("{}: expected one document", file.display()));
    }
    let k = docs.remove(0);
    let here = file.display().to_string();
    for key in k.as_object().into_iter().flat_map(|m| m.keys()) {
        if ![
            "apiVersion",
            "kind",
            "namespace",
            "labels",
            "resources",
            "replicas",
            "patches",
        ]
        .contains(&key.as_str())
        {
            return Err(format!("{here}: `{key}` is not understood by this check"));
        }
    }
    if k["kind"] != "Kustomization" {
        return Err(format!("{here}: kind is not Kustomization"));
    }

    let mut objects = Vec::new();
    for r in k["resources"].as_array().into_iter().flatten() {
        let r = r
            .as_str()
            .ok_or_else(|| format!("{here}: a resource is not a path"))?;
        let path = dir.join(r);
        if path.is_dir() {
            objects.extend(build(&path)?);
        } else if path.is_file() {
            for value in documents(&path)? {
                objects.push(Object {
                    file: path.clone(),
                    value,
                });
            }
        } else {
            return Err(format!("{here}: resource {r} does not exist"));
        }
    }

    for p in k["patches"].as_array().into_iter().flatten() {
        let target = &p["target"];
        let kind = target["kind"]
            .as_str()
            .ok_or_else(|| format!("{here}: a patch without a target kind"))?;
        let name = target["name"].as_str();
        if let Some(other) = target
            .as_object()
            .into_iter()
            .flat_map(|t| t.keys())
            .find(|k| *k != "kind" && *k != "name")
        {
            return Err(format!(
                "{here}: `{other}` in a patch target is not understood"
            ));
        }
        let ops: Value = match (p["patch"].as_str(), p["path"].as_str()) {
            (Some(text), None) => serde_saphyr::from_str(text)
                .map_err(|e| format!("{here}: patch of {kind} {name:?}: {e}"))?,
            (None, Some(file)) => {
                let mut d = documents(&dir.join(file))?;
                if d.len() != 1 {
                    return Err(format!("{here}: patch file {file}: expected one document"));
                }
                d.remove(0)
            }
            _ => return Err(format!("{here}: a patch needs `patch` or `path`")),
        };
        let ops = ops
            .as_array()
            .ok_or_else(|| format!("{here}: patch of {kind} {name:?} is not a JSON 6902 list"))?;
        let mut hit = false;
        for o in objects
            .iter_mut()
            .filter(|o| o.kind() == kind && name.is_none_or(|n| o.name() == n))
        {
            hit = true;
            for op in ops {
                apply_op(&mut o.value, op)
                    .map_err(|e| format!("{here}: patch of {kind} {}: {e}", o.name()))?;
            }
        }
        if !hit {
            return Err(format!(
                "{here}: patch target {kind} {name:?} does not exist"
            ));
        }
    }

    for r in k["replicas"].as_array().into_iter().flatten() {
        let name = r["name"].as_str().unwrap_or("");
        let count = r["count"]
            .as_u64()
            .ok_or_else(|| format!("{here}: replicas of {name} has no count"))?;
        let mut hit = false;
        for o in objects
            .iter_mut()
            .filter(|o| o.name() == name && ["Deployment", "StatefulSet"].contains(&o.kind()))
        {
            o.value["spec"]["replicas"] = count.into();
            hit = true;
        }
        if !hit {
            return Err(format!(
                "{here}: replicas names {name}, which does not exist"
            ));
        }
    }

    for l in k["labels"].as_array().into_iter().flatten() {
        for o in &mut objects {
            for (key, v) in l["pairs"].as_object().into_iter().flatten() {
                let meta = &mut o.value["metadata"];
                if meta["labels"].is_null() {
                    meta["labels"] = Value::Object(Default::default());
                }
                meta["labels"][key] = v.clone();
            }
        }
    }

    if let Some(ns) = k["namespace"].as_str() {
        for o in objects.iter_mut().filter(|o| o.kind() != "Namespace") {
            o.value["metadata"]["namespace"] = ns.into();
        }
    }
    Ok(objects)
}

/// Applies one JSON 6902 operation (`add`, `replace`, `remove`). A
/// `replace` or `remove` of what is not there is an error, as an `add`
/// under a parent that is not.
fn apply_op(value: &mut Value, op: &Value) -> Result<(), String> {
    let path = op["path"].as_str().ok_or("an operation without a path")?;
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| format!("{path}: not a JSON pointer"))?;
    let last = last.replace("~1", "/").replace("~0", "~");
    let verb = op["op"].as_str().unwrap_or("");
    let parent_value = value
        .pointer_mut(parent)
        .ok_or_else(|| format!("{verb} {path}: {parent} does not exist"))?;
    match (verb, parent_value) {
        ("add" | "replace", Value::Object(map)) => {
            if verb == "replace" && !map.contains_key(&last) {
                return Err(format!("replace {path}: nothing there"));
            }
            map.insert(last, op["value"].clone());
        }
        ("add" | "replace", Value::Array(items)) => {
            let new = op["value"].clone();
            if verb == "add" && last == "-" {
                items.push(new);
            } else {
                let i: usize = last
                    .parse()
                    .map_err(|_| format!("{verb} {path}: not an index"))?;
                match verb {
                    "add" if i <= items.len() => items.insert(i, new),
                    "replace" if i < items.len() => items[i] = new,
                    _ => return Err(format!("{verb} {path}: index out of range")),
                }
            }
        }
        ("remove", Value::Object(map)) => {
            map.remove(&last)
                .ok_or_else(|| format!("remove {path}: nothing there"))?;
        }
        ("remove", Value::Array(items)) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("remove {path}: not an index"))?;
            if i >= items.len() {
                return Err(format!("remove {path}: index out of range"));
            }
            items.remove(i);
        }
        _ => return Err(format!("{verb} {path}: not understood here")),
    }
    Ok(())
}

/// The pod template of a workload (Deployment, StatefulSet, Job).
pub fn pod_template(o: &Object) -> Option<&Value> {
    ["Deployment", "StatefulSet", "Job"]
        .contains(&o.kind())
        .then(|| &o.value["spec"]["template"])
}

/// Whether every `matchLabels` entry of `selector` is among `labels`.
pub fn selects(selector: &Value, labels: &Value) -> bool {
    selector["matchLabels"]
        .as_object()
        .is_some_and(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// The problems of a set of `HERALD_*` variables as Herald's configuration
/// reads them: a variable naming no section is ignored by Herald (so it is
/// a mistake here), one naming no key of its section is an unknown key,
/// and every value must pass the checks a service makes at start.
pub fn herald_env_problems(vars: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    let sections = match toml::Table::try_from(herald_config::Config::default()) {
        Ok(t) => t,
        Err(e) => return vec![format!("the default configuration: {e}")],
    };
    for (name, _) in vars {
        let Some(rest) = name.strip_prefix("HERALD_") else {
            continue;
        };
        let rest = rest.to_ascii_lowercase();
        match rest.split_once('_') {
            Some((section, _)) if sections.get(section).is_some_and(|s| s.is_table()) => {}
            _ => problems.push(format!("{name}: Herald has no such section")),
        }
    }
    if let Err(e) = herald_config::Config::load(None, vars.iter().cloned()) {
        problems.extend(e.problems);
    }
    problems
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
