//! Reading a service's HTTP port as Prometheus and a load balancer would:
//! `/metrics` parsed into samples, `/readyz` polled until it says what a
//! test waits for.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

/// One line of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A scrape of `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub samples: Vec<Sample>,
    /// Metric family names from the `# TYPE` lines.
    pub families: Vec<String>,
}

impl Scrape {
    /// The value of `name` with exactly these labels (others absent), or
    /// `None` when the series does not exist.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }

    /// As [`Scrape::value`], 0 when the series does not exist yet.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }

    /// The sum of `name` over every series whose labels include these
    /// (others may be present); 0 when there is none.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// Adds another scrape's samples and families to this one.
    pub fn extend(&mut self, other: Scrape) {
        self.samples.extend(other.samples);
        self.families.extend(other.families);
    }

    /// Whether a family or a sample of this name is exposed.
    pub fn has(&self, name: &str) -> bool {
        self.families.iter().any(|f| f == name) || self.samples.iter().any(|s| s.name == name)
    }
}

/// Parses the Prometheus / OpenMetrics text format.
pub fn parse(text: &str) -> Scrape {
    let mut out = Scrape::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.split_whitespace().next() {
                out.families.push(name.to_string());
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(p) => p,
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, parse_labels(rest.trim_end_matches('}'))),
            None => (series, BTreeMap::new()),
        };
        out.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    out
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').trim().to_string(), value);
        rest = &after[end..];
    }
    labels
}

/// `GET http://addr/path`: the status and the body.
pub async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    herald_runtime::install_crypto();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.text().await.map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// Scrapes `/metrics` on `addr`.
pub async fn metrics(addr: SocketAddr) -> Scrape {
    let (status, body) = get(addr, "/metrics").await.expect("/metrics answers");
    assert_eq!(status, 200, "/metrics: {body}");
    parse(&body)
}

/// Polls `/metrics` on `addr` until `ready` holds, and returns that scrape.
pub async fn metrics_until(
    addr: SocketAddr,
    what: &str,
    timeout: Duration,
    ready: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let m = metrics(addr).await;
        if ready(&m) {
            return m;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{what} not seen on {addr}/metrics within {timeout:?}: {m:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `/readyz` on `addr` until it answers with `want` (200 ready, 503
/// not ready); returns the last body. Panics after `timeout`.
pub async fn wait_readyz(addr: SocketAddr, want: u16, timeout: Duration) -> String {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let got = get(addr, "/readyz").await;
        if let Ok((status, body)) = &got
            && *status == want
        {
            return body.clone();
        }
        if tokio::time::Instant::now() > deadline {
            panic!("/readyz on {addr} did not answer {want} within {timeout:?}; last: {got:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_counters_histograms_and_escaped_labels() {
        let text = "# HELP herald_x_total X.\n# TYPE herald_x counter\n\
                    herald_x_total{lane=\"normal\",reason=\"a \\\"b\\\"\"} 3\n\
                    herald_h_bucket{le=\"+Inf\"} 2\nherald_up 1\n# EOF\n";
        let s = parse(text);
        assert_eq!(
            s.value(
                "herald_x_total",
                &[("lane", "normal"), ("reason", "a \"b\"")]
            ),
            Some(3.0)
        );
        assert_eq!(s.get("herald_h_bucket", &[("le", "+Inf")]), 2.0);
        assert_eq!(s.get("herald_up", &[]), 1.0);
        assert!(s.has("herald_x") && s.has("herald_x_total") && !s.has("herald_y"));
        assert_eq!(s.sum("herald_x_total", &[("lane", "normal")]), 3.0);
        assert_eq!(s.sum("herald_x_total", &[("lane", "emergency")]), 0.0);
    }
}
