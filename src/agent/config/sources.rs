//! Where settings come from: JSON and HCL files (a directory's in alphabetical order), merged in
//! command-line order, and then the flags, which win.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::settings;

/// Parses one JSON or HCL file and checks it against the settings.
pub fn read_file(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("Error reading config file {}: {e}", path.display()))?;
    let v: Value = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_str(&text)
            .map_err(|e| format!("Error parsing {}: {e}", path.display()))?,
        Some("hcl") => {
            hcl::from_str(&text).map_err(|e| format!("Error parsing {}: {e}", path.display()))?
        }
        _ => {
            return Err(format!(
                "Error reading config file {}: extension must be .json or .hcl",
                path.display()
            ));
        }
    };
    settings::check(&v, "").map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(v)
}

/// The `*.json` and `*.hcl` files of `dir`, sorted.
pub fn dir_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| format!("Error reading config dir {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("json" | "hcl"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Sets dotted `path` in `root`, merging as [`merge`] does.
pub fn set_path(root: &mut Value, path: &str, v: Value) {
    let mut cur = root;
    let mut parts = path.split('.').peekable();
    while let Some(p) = parts.next() {
        let map = cur.as_object_mut().expect("objects along config paths");
        if parts.peek().is_none() {
            merge_key(map, p, v);
            return;
        }
        cur = map
            .entry(p.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

fn merge_key(map: &mut Map<String, Value>, k: &str, v: Value) {
    match (map.get_mut(k), v) {
        (Some(Value::Array(a)), Value::Array(b)) => a.extend(b),
        (Some(Value::Object(a)), Value::Object(b)) => {
            for (k, v) in b {
                merge_key(a, &k, v);
            }
        }
        (_, v) => {
            map.insert(k.to_owned(), v);
        }
    }
}

/// Later sources override earlier ones; lists (joins) accumulate, objects merge key by key, and
/// definitions (`service`, `check`, ...) accumulate whether a file gives one or a list: each file's
/// service is a service of its own, never merged into another file's.
pub fn merge(base: &mut Value, over: Value) {
    if let (Value::Object(a), Value::Object(b)) = (base, over) {
        for (k, v) in b {
            if settings::is_definitions(&k) {
                let mut list = match a.remove(&k) {
                    Some(Value::Array(l)) => l,
                    Some(one) => vec![one],
                    None => Vec::new(),
                };
                match v {
                    Value::Array(more) => list.extend(more),
                    one => list.push(one),
                }
                a.insert(k, Value::Array(list));
            } else {
                merge_key(a, &k, v);
            }
        }
    }
}
