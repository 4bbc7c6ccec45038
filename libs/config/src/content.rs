//! The `[content]` section: where templates and routing rules are, read by
//! intake (to validate) and the router (to render and route).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Templates and routing rules, read by intake (to validate) and the router
/// (to render and route).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ContentConfig {
    /// Folder of versioned templates: `<template_id>/v<N>.toml`.
    pub templates_dir: PathBuf,
    /// Routing rules; the rules shipped in `config/routing.toml` are compiled
    /// in and used when this is empty.
    pub routing_file: Option<PathBuf>,
}

impl Default for ContentConfig {
    fn default() -> Self {
        Self {
            templates_dir: PathBuf::from("config/templates"),
            routing_file: None,
        }
    }
}
