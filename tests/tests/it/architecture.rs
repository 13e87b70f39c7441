//! The crate map holds: every dependency between the workspace's crates is one that
//! `docs/architecture.md` allows, and the pure crates use no I/O crate.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Command,
};

use serde_json::Value;

/// Crates whose presence means I/O: a pure crate may not depend on them.
const IO_CRATES: [&str; 7] = ["rdkafka", "deltalake", "axum", "tokio", "reqwest", "tansu-broker", "tansu-storage"];

/// The allowed map and the pure crates, from the `text` block of `docs/architecture.md`.
fn allowed(doc: &str) -> (BTreeMap<String, BTreeSet<String>>, BTreeSet<String>) {
    let mut map = BTreeMap::new();
    let mut pure = BTreeSet::new();
    let block = doc.split("```text\n").nth(1).and_then(|b| b.split("```").next()).expect("the map's text block");
    for line in block.lines() {
        if let Some(list) = line.strip_prefix("pure:") {
            pure.extend(list.split_whitespace().map(String::from));
        } else if let Some((name, deps)) = line.split_once("->") {
            map.insert(name.trim().to_string(), deps.split_whitespace().map(String::from).collect());
        }
    }
    (map, pure)
}

#[test]
fn dependencies_point_the_way_docs_architecture_allows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (map, pure) = allowed(&std::fs::read_to_string(root.join("docs/architecture.md")).unwrap());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let metadata: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut wrong = Vec::new();
    let packages = metadata["packages"].as_array().unwrap();
    for package in packages {
        let name = package["name"].as_str().unwrap();
        let Some(allowed) = map.get(name) else {
            wrong.push(format!("{name} is not in docs/architecture.md's map"));
            continue;
        };
        let normal = package["dependencies"].as_array().unwrap().iter().filter(|d| d["kind"].is_null());
        for dep in normal.map(|d| d["name"].as_str().unwrap()) {
            let internal = dep.starts_with("gata-");
            if internal && !allowed.contains("*") && !allowed.contains(dep) {
                wrong.push(format!("{name} -> {dep} is not allowed"));
            }
            if pure.contains(name) && IO_CRATES.contains(&dep) {
                wrong.push(format!("{name} is pure but depends on {dep}"));
            }
        }
    }
    assert!(packages.len() >= 16, "the workspace's crates: {}", packages.len());
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
